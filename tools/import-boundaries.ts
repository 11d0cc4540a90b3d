/**
 * Import boundaries: dependencies point inward (adapters -> core -> store interfaces). Every
 * import and re-export of the project's TypeScript files under src/ and adapters/ is checked
 * against the rules below; `npm run lint` runs this file and fails listing each violation, and the
 * test suite runs the same check over the tree.
 *
 * Areas (by path):
 *   core        src/core/**
 *   store       src/store/**
 *   transport   src/transport/**
 *   management  src/management/**
 *   cluster     src/cluster/**
 *   adapter     adapters/<protocol>/**  (one area per protocol)
 *   base        src/logger.ts, src/config.ts
 *   root        src/broker.ts, src/main.ts, src/index.ts, src/data-dir.ts, src/engine-tuning.ts (composition and entry)
 * A file under src/ or adapters/ outside these areas is itself a violation: a new area needs a rule.
 * test/, bench/ and tools/ are not checked (tests and benchmarks reach inside on purpose).
 *
 * Rules ("type-only" = `import type` / `export type`, or every named specifier marked `type`;
 * dynamic `import()` is a value import; packages and node: builtins are not restricted):
 *   R1 core imports only core.
 *   R2 an adapter imports: its own files; the core only through src/core/index.ts; src/transport/**;
 *      the store only through src/store/index.ts; base files type-only. Never another adapter,
 *      root, management, or core/store internals.
 *   R3 store imports: store; base; core type-only (any core module). A value import from the core
 *      is allowed only where STORE_CORE_VALUES lists it (the store rebuilds core state on recovery
 *      and runs definitions import/export); each entry says why. Never adapters, transport,
 *      management, root.
 *   R4 transport imports: transport; base; type-only from src/core/index.ts and src/store/index.ts,
 *      except the value imports TRANSPORT_CORE_VALUES lists, each with its reason.
 *      Never adapters, management, root, or core/store internals.
 *   R5 management imports: management; base; the core only through src/core/index.ts. Never
 *      adapters, store, transport, root.
 *   R6 base imports nothing of the project.
 *   R8 cluster imports: cluster; base; the core only through src/core/index.ts; the store only
 *      through src/store/index.ts. Never adapters, transport, management, root. Nothing but root
 *      imports the cluster (R1-R5 already keep core, store, transport, management and adapters
 *      away from it), and root only with a dynamic import: the single-node broker never loads it.
 *   R7 root may import anything.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SyntaxKind } from 'typescript/unstable/ast';
import { createScanner } from 'typescript/unstable/ast/scanner';

/** One import or re-export found in a file. */
export interface ImportRef {
  /** The module specifier as written. */
  readonly specifier: string;
  readonly typeOnly: boolean;
  /** A dynamic `import('...')`. */
  readonly dynamic?: boolean;
  /** 1-based line. */
  readonly line: number;
}

export interface Violation {
  /** Path relative to the project root, with `/`. */
  readonly file: string;
  readonly line: number;
  readonly specifier: string;
  readonly rule: string;
  readonly message: string;
}

/**
 * The store's value imports from the core, by (importing file, imported module). Everything else
 * the store takes from the core is type-only.
 */
export const STORE_CORE_VALUES: ReadonlyArray<readonly [file: string, module: string, why: string]> = [
  ['src/store/index.ts', 'src/core/index.ts', 'definitions export/import when opening the data directory'],
  ['src/store/offline.ts', 'src/core/index.ts', 'offline definitions tools build a Core of their own'],
  ['src/store/message-store.ts', 'src/core/index.ts', 'definitions import on recovery, BrokerError for store limits, SETTLED for definitions with nothing to wait for, the bench-only latency trace (commit spans)'],
  ['src/store/stream-log.ts', 'src/core/index.ts', 'the chunks a stream holds for its readers count in the process memory account'],
  ['src/store/definitions-state.ts', 'src/core/index.ts', 'the definitions log keys the same JSON entries the export writes'],
  ['src/store/codec.ts', 'src/core/index.ts', 'Decimal and own-key helpers when decoding field tables'],
  ['src/store/queue-log.ts', 'src/core/index.ts', 'Deque of paged entries; queue arguments as JSON in queue.json'],
  ['src/store/queue-log.ts', 'src/core/queues/entry.ts', 'paged messages come back as queue entries'],
  ['src/store/queue-recovery.ts', 'src/core/queues/entry.ts', 'recovered messages come back as queue entries'],
  ['src/store/spill.ts', 'src/core/index.ts', "a spill's buffers count in the process memory account"],
  ['src/store/spill.ts', 'src/core/queues/entry.ts', 'spilled messages come back as queue entries'],
];

/** Value imports the transport may make from the core's API, and why. */
export const TRANSPORT_CORE_VALUES: ReadonlyArray<readonly [file: string, why: string]> = [
  ['src/transport/link.ts', "bytes buffered for a client are reported to the process memory account (the memory alarm's figure); the bench-only latency trace (read and flush times, sweep spans); the sliced walk the heartbeat sweep shares with the core's periodic sweeps"],
  ['src/transport/byte-queue.ts', 'unread input bytes are reported to the process memory account'],
];

type Area = 'core' | 'store' | 'transport' | 'management' | 'cluster' | 'base' | 'root' | `adapter:${string}`;

const BASE = new Set(['src/logger.ts', 'src/config.ts']);
const ROOT = new Set(['src/broker.ts', 'src/main.ts', 'src/index.ts', 'src/data-dir.ts', 'src/engine-tuning.ts']);
const CORE_API = 'src/core/index.ts';
const STORE_API = 'src/store/index.ts';

/** The area of a project path (relative, `/`-separated); undefined when no rule covers it. */
export function areaOf(path: string): Area | undefined {
  if (path.startsWith('src/core/')) return 'core';
  if (path.startsWith('src/store/')) return 'store';
  if (path.startsWith('src/transport/')) return 'transport';
  if (path.startsWith('src/management/')) return 'management';
  if (path.startsWith('src/cluster/')) return 'cluster';
  if (BASE.has(path)) return 'base';
  if (ROOT.has(path)) return 'root';
  const m = /^adapters\/([^/]+)\//.exec(path);
  if (m !== null) return `adapter:${m[1]!}`;
  return undefined;
}

/** Tokens after which a `/` divides; elsewhere it starts a regular expression. */
const ENDS_EXPRESSION = new Set<SyntaxKind>([
  SyntaxKind.Identifier,
  SyntaxKind.PrivateIdentifier,
  SyntaxKind.NumericLiteral,
  SyntaxKind.BigIntLiteral,
  SyntaxKind.StringLiteral,
  SyntaxKind.RegularExpressionLiteral,
  SyntaxKind.NoSubstitutionTemplateLiteral,
  SyntaxKind.TemplateTail,
  SyntaxKind.CloseParenToken,
  SyntaxKind.CloseBracketToken,
  SyntaxKind.CloseBraceToken,
  SyntaxKind.PlusPlusToken,
  SyntaxKind.MinusMinusToken,
  SyntaxKind.ExclamationToken,
  SyntaxKind.ThisKeyword,
  SyntaxKind.SuperKeyword,
  SyntaxKind.TrueKeyword,
  SyntaxKind.FalseKeyword,
  SyntaxKind.NullKeyword,
  SyntaxKind.UndefinedKeyword,
]);

interface Token {
  readonly kind: SyntaxKind;
  readonly text: string;
  readonly pos: number;
}

/**
 * The file's tokens, comments dropped. Regular expressions and template literals are scanned as
 * the parser would (a `/` after an operator starts a regex; a `}` closing a `${` continues the
 * template), so text inside them never looks like an import.
 */
function tokens(text: string): Token[] {
  const sc = createScanner(true, undefined, text);
  const out: Token[] = [];
  /** For each open `{` or `${`: true when it opened a template substitution. */
  const braces: boolean[] = [];
  let prev: SyntaxKind | undefined;
  for (let kind = sc.scan(); kind !== SyntaxKind.EndOfFile; kind = sc.scan()) {
    if ((kind === SyntaxKind.SlashToken || kind === SyntaxKind.SlashEqualsToken) && (prev === undefined || !ENDS_EXPRESSION.has(prev))) {
      kind = sc.reScanSlashToken();
    } else if (kind === SyntaxKind.CloseBraceToken && braces.length > 0 && braces[braces.length - 1] === true) {
      braces.pop();
      kind = sc.reScanTemplateToken(false);
      if (kind === SyntaxKind.TemplateMiddle) braces.push(true);
      out.push({ kind, text: sc.getTokenText(), pos: sc.getTokenStart() });
      prev = kind;
      continue;
    }
    if (kind === SyntaxKind.OpenBraceToken) braces.push(false);
    else if (kind === SyntaxKind.CloseBraceToken) braces.pop();
    else if (kind === SyntaxKind.TemplateHead) braces.push(true);
    out.push({ kind, text: sc.getTokenText(), pos: sc.getTokenStart() });
    prev = kind;
  }
  return out;
}

function unquote(t: Token): string {
  return t.text.slice(1, -1);
}

/** Every static import, re-export (`export ... from`) and dynamic `import('...')` of a source text. */
export function findImports(text: string): ImportRef[] {
  const toks = tokens(text);
  const lineStarts: number[] = [0];
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) lineStarts.push(i + 1);
  const lineOf = (pos: number): number => {
    let lo = 0;
    let hi = lineStarts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (lineStarts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo + 1;
  };
  const out: ImportRef[] = [];
  const kindAt = (i: number): SyntaxKind | undefined => toks[i]?.kind;
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i]!;
    const isImport = t.kind === SyntaxKind.ImportKeyword;
    const isExport = t.kind === SyntaxKind.ExportKeyword;
    if (!isImport && !isExport) continue;
    if (kindAt(i - 1) === SyntaxKind.DotToken) continue; // `x.import`
    if (isImport && kindAt(i + 1) === SyntaxKind.DotToken) continue; // import.meta
    if (isImport && kindAt(i + 1) === SyntaxKind.OpenParenToken) {
      // import('x'): a value import, unless it names a type (`typeof import('x')`).
      if (kindAt(i + 2) === SyntaxKind.StringLiteral) {
        out.push({ specifier: unquote(toks[i + 2]!), typeOnly: kindAt(i - 1) === SyntaxKind.TypeOfKeyword, dynamic: true, line: lineOf(t.pos) });
      }
      continue;
    }
    if (isImport && kindAt(i + 1) === SyntaxKind.StringLiteral) {
      out.push({ specifier: unquote(toks[i + 1]!), typeOnly: false, line: lineOf(t.pos) });
      continue;
    }
    // `import type X from`, `import type { } from`, but not `import type from 'x'` (a default named type).
    let j = i + 1;
    let typeOnly = false;
    if (kindAt(j) === SyntaxKind.TypeKeyword && kindAt(j + 1) !== SyntaxKind.FromKeyword && kindAt(j + 1) !== SyntaxKind.CommaToken) {
      typeOnly = true;
      j++;
    }
    if (isExport && kindAt(j) !== SyntaxKind.OpenBraceToken && kindAt(j) !== SyntaxKind.AsteriskToken) continue; // a declaration
    // Walk the clause up to `from 'x'`; note whether every named specifier is marked `type`.
    let named = 0;
    let namedTypes = 0;
    let other = false;
    let depth = 0;
    let found: Token | undefined;
    let atSpecifier = false;
    for (; j < toks.length; j++) {
      const k = toks[j]!.kind;
      if (k === SyntaxKind.OpenBraceToken) {
        depth++;
        atSpecifier = true;
        continue;
      }
      if (k === SyntaxKind.CloseBraceToken) {
        depth--;
        continue;
      }
      if (depth > 0) {
        if (k === SyntaxKind.CommaToken) atSpecifier = true;
        else if (atSpecifier) {
          named++;
          if (k === SyntaxKind.TypeKeyword && kindAt(j + 1) !== SyntaxKind.CommaToken && kindAt(j + 1) !== SyntaxKind.CloseBraceToken && kindAt(j + 1) !== SyntaxKind.AsKeyword) {
            namedTypes++;
          }
          atSpecifier = false;
        }
        continue;
      }
      if (k === SyntaxKind.FromKeyword && kindAt(j + 1) === SyntaxKind.StringLiteral) {
        found = toks[j + 1];
        break;
      }
      if (k === SyntaxKind.SemicolonToken || k === SyntaxKind.EqualsToken) break;
      if (k === SyntaxKind.Identifier || k === SyntaxKind.AsteriskToken) other = true;
    }
    if (found === undefined) continue;
    if (!typeOnly && named > 0 && namedTypes === named && !other) typeOnly = true;
    out.push({ specifier: unquote(found), typeOnly, line: lineOf(t.pos) });
  }
  return out;
}

/** The project path (relative, `/`) a relative specifier of `file` names; undefined for packages. */
export function resolveSpecifier(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith('./') && !specifier.startsWith('../')) return undefined;
  const joined = join(dirname(file), specifier).split(sep).join('/');
  return joined.replace(/\.js$/, '.ts').replace(/\.mjs$/, '.mts');
}

/** The rule broken by `file` importing `target` (type-only or not); undefined when allowed. */
export function check(file: string, target: string, typeOnly: boolean, dynamic = false): { rule: string; message: string } | undefined {
  const from = areaOf(file);
  if (from === undefined) return { rule: 'areas', message: `no import rule covers ${file}` };
  if (from === 'root') {
    // R8: the single-node broker does not load the cluster engine.
    if (areaOf(target) === 'cluster' && !typeOnly && !dynamic) return { rule: 'R8', message: 'root imports the cluster only with a dynamic import() (or types)' };
    return undefined;
  }
  const to = areaOf(target);
  if (to === from) return undefined;
  const deny = (rule: string, message: string) => ({ rule, message });
  if (target.startsWith('src/') || target.startsWith('adapters/')) {
    if (to === undefined) return deny('areas', `${target} is in no area`);
  } else {
    return deny('areas', `${target} is outside src/ and adapters/`);
  }
  switch (from) {
    case 'core':
      return deny('R1', 'the core imports only the core');
    case 'base':
      return deny('R6', 'logger and config import nothing of the project');
    case 'management':
      if (to === 'base') return undefined;
      if (to === 'core') return target === CORE_API ? undefined : deny('R5', 'management imports the core only through src/core/index.ts');
      return deny('R5', `management does not import ${to}`);
    case 'transport':
      if (to === 'base') return undefined;
      if (to === 'core' || to === 'store') {
        const api = to === 'core' ? CORE_API : STORE_API;
        if (target !== api) return deny('R4', `transport imports ${to} only through ${api}`);
        if (typeOnly || (to === 'core' && TRANSPORT_CORE_VALUES.some(([f]) => f === file))) return undefined;
        return deny('R4', `transport imports only types from ${to}`);
      }
      return deny('R4', `transport does not import ${to}`);
    case 'cluster':
      if (to === 'base') return undefined;
      if (to === 'core') return target === CORE_API ? undefined : deny('R8', 'the cluster imports the core only through src/core/index.ts');
      if (to === 'store') return target === STORE_API ? undefined : deny('R8', 'the cluster imports the store only through src/store/index.ts');
      return deny('R8', `the cluster does not import ${to}`);
    case 'store':
      if (to === 'base') return undefined;
      if (to === 'core') {
        if (typeOnly) return undefined;
        if (STORE_CORE_VALUES.some(([f, m]) => f === file && m === target)) return undefined;
        return deny('R3', 'the store imports only types from the core (value imports are listed in STORE_CORE_VALUES)');
      }
      return deny('R3', `the store does not import ${to}`);
    default: {
      // an adapter
      if (to === 'base') return typeOnly ? undefined : deny('R2', 'adapters import only types from logger and config');
      if (to === 'core') return target === CORE_API ? undefined : deny('R2', 'adapters import the core only through src/core/index.ts');
      if (to === 'store') return target === STORE_API ? undefined : deny('R2', 'adapters import the store only through src/store/index.ts');
      if (to === 'transport') return undefined;
      if (to!.startsWith('adapter:')) return deny('R2', 'an adapter does not import another adapter');
      return deny('R2', `adapters do not import ${to}`);
    }
  }
}

/** The violations of one file's source text (`file` relative to the project root, with `/`). */
export function checkSource(file: string, text: string): Violation[] {
  const out: Violation[] = [];
  if (areaOf(file) === undefined) {
    out.push({ file, line: 1, specifier: '', rule: 'areas', message: `no import rule covers ${file}` });
    return out;
  }
  for (const ref of findImports(text)) {
    const target = resolveSpecifier(file, ref.specifier);
    if (target === undefined) continue;
    const v = check(file, target, ref.typeOnly, ref.dynamic === true);
    if (v !== undefined) out.push({ file, line: ref.line, specifier: ref.specifier, ...v });
  }
  return out;
}

function sourceFiles(root: string, dir: string, out: string[]): void {
  let entries;
  try {
    entries = readdirSync(join(root, dir), { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) sourceFiles(root, rel, out);
    else if (/\.(c|m)?ts$/.test(e.name) && !e.name.endsWith('.d.ts')) out.push(rel);
  }
}

/**
 * Checks every TypeScript file under `root`/src and `root`/adapters. An entry of
 * STORE_CORE_VALUES that no import uses any more is reported too, so the list stays exact.
 */
export function checkTree(root: string): Violation[] {
  const files: string[] = [];
  sourceFiles(root, 'src', files);
  sourceFiles(root, 'adapters', files);
  files.sort();
  const out: Violation[] = [];
  const used = new Set<string>();
  for (const f of files) {
    const text = readFileSync(join(root, f), 'utf8');
    out.push(...checkSource(f, text));
    for (const ref of findImports(text)) {
      const target = resolveSpecifier(f, ref.specifier);
      if (target !== undefined && !ref.typeOnly) used.add(`${f} ${target}`);
    }
  }
  for (const [file, module] of STORE_CORE_VALUES) {
    if (!used.has(`${file} ${module}`)) {
      out.push({ file, line: 1, specifier: '', rule: 'R3', message: `STORE_CORE_VALUES lists a value import of ${module} that the file no longer makes` });
    }
  }
  return out;
}

export function formatViolation(v: Violation): string {
  return `${v.file}:${v.line}: ${v.rule}: ${v.specifier === '' ? '' : `'${v.specifier}': `}${v.message}`;
}

/** The project root: two levels above this file whether it runs from tools/ or dist/tools/. */
function projectRoot(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const up = resolve(here, '..');
  return relative(up, here) === 'tools' && up.endsWith(`${sep}dist`) ? resolve(up, '..') : up;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // An optional argument names another project root (tests check a tree made for them).
  const violations = checkTree(process.argv[2] !== undefined ? resolve(process.argv[2]) : projectRoot());
  for (const v of violations) console.error(formatViolation(v));
  if (violations.length > 0) {
    console.error(`${violations.length} import boundary violation${violations.length === 1 ? '' : 's'}`);
    process.exitCode = 1;
  } else console.log('import boundaries: ok');
}
