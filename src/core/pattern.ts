import { RE2JS } from 're2js';

/**
 * Regular expressions over names and routing keys that clients choose (permissions, topic
 * permissions, policy patterns, management filters). They run in time linear in the input: a
 * pattern made only of literal text, `^`/`$` anchors, a trailing `.*` and top-level `|` is matched
 * with plain string operations; every other pattern runs on RE2 (re2js), which never backtracks.
 * The syntax is RE2's (close to PCRE, which RabbitMQ uses): no lookarounds, no backreferences.
 */
export interface Pattern {
  readonly source: string;
  /** True when the pattern matches anywhere in `s` (unanchored, as RabbitMQ matches). */
  test(s: string): boolean;
}

/** What RE2 treats as an operator outside a character class. */
const META = new Set(['\\', '.', '+', '*', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$']);

/** Escapes `s` so that RE2 reads it as literal text (used for variables substituted into patterns). */
export function escapePattern(s: string): string {
  let out = '';
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    if (!META.has(s[i]!)) continue;
    out += `${s.slice(from, i)}\\${s[i]}`;
    from = i + 1;
  }
  return from === 0 ? s : out + s.slice(from);
}

/** One alternative of a literal pattern: `[^]literal[.*][$]`. */
interface Branch {
  readonly start: boolean;
  readonly end: boolean;
  readonly text: string;
}

const isAsciiPunct = (c: number): boolean =>
  (c >= 0x21 && c <= 0x2f) || (c >= 0x3a && c <= 0x40) || (c >= 0x5b && c <= 0x60) || (c >= 0x7b && c <= 0x7e);

/**
 * Parses a branch made of literal characters and escaped ASCII punctuation (RE2 and JS both read
 * `\` + punctuation as that character), with an optional leading `^`, and either a trailing `$`
 * or a trailing `.*` (which can match the empty string, so it changes nothing in an unanchored
 * search). Anything else: undefined.
 */
function parseBranch(b: string): Branch | undefined {
  let i = 0;
  let n = b.length;
  const start = b.startsWith('^');
  if (start) i = 1;
  let end = false;
  if (n > i && b[n - 1] === '$' && !escapedAt(b, n - 1)) {
    end = true;
    n--;
  } else if (n - i >= 2 && b[n - 1] === '*' && b[n - 2] === '.' && !escapedAt(b, n - 2)) {
    n -= 2;
  }
  let text = '';
  for (; i < n; i++) {
    const ch = b[i]!;
    if (ch === '\\') {
      const next = b.charCodeAt(i + 1);
      if (i + 1 >= n || !isAsciiPunct(next)) return undefined;
      text += b[++i];
    } else if (META.has(ch)) return undefined;
    else text += ch;
  }
  return { start, end, text };
}

/** Whether the character at `i` is preceded by an odd number of backslashes. */
function escapedAt(s: string, i: number): boolean {
  let k = 0;
  while (i - k - 1 >= 0 && s[i - k - 1] === '\\') k++;
  return k % 2 === 1;
}

/** Splits on `|` that is not escaped (only called when the pattern has no groups or classes). */
function splitAlternatives(source: string): string[] | undefined {
  if (source.includes('(') || source.includes('[')) return undefined;
  const out: string[] = [];
  let from = 0;
  for (let i = 0; i < source.length; i++) {
    if (source[i] === '\\') i++;
    else if (source[i] === '|') {
      out.push(source.slice(from, i));
      from = i + 1;
    }
  }
  out.push(source.slice(from));
  return out;
}

class LiteralPattern implements Pattern {
  constructor(
    readonly source: string,
    private readonly branches: readonly Branch[],
  ) {}

  test(s: string): boolean {
    for (let i = 0; i < this.branches.length; i++) {
      const b = this.branches[i]!;
      const t = b.text;
      // lastIndexOf(t, 0) / indexOf(t, end) look at one position only (cheaper than startsWith in V8)
      if (b.start ? (b.end ? s === t : s.lastIndexOf(t, 0) === 0) : b.end ? s.length >= t.length && s.indexOf(t, s.length - t.length) !== -1 : s.includes(t)) {
        return true;
      }
    }
    return false;
  }
}

/** Results kept per RE2 pattern, for strings up to this long (routing keys, names). */
const RESULT_CACHE_MAX = 64;
const RESULT_KEY_MAX = 256;

class Re2Pattern implements Pattern {
  private results: Map<string, boolean> | undefined;

  constructor(
    readonly source: string,
    private readonly re: RE2JS,
  ) {}

  /**
   * RE2 costs about a microsecond per test where a string compare costs nanoseconds, so recent
   * answers are kept (publishers mostly repeat a few routing keys).
   */
  test(s: string): boolean {
    if (s.length > RESULT_KEY_MAX) return this.re.test(s);
    const cached = this.results?.get(s);
    if (cached !== undefined) return cached;
    const r = this.re.test(s);
    if (this.results === undefined) this.results = new Map();
    else if (this.results.size >= RESULT_CACHE_MAX) this.results.clear();
    this.results.set(s, r);
    return r;
  }
}

/** Thrown by {@link compilePattern}: the reason RE2 gives, without the pattern. */
export class PatternError extends Error {
  override readonly name = 'PatternError';
}

/**
 * Bound on a pattern's size once its counted repetitions are expanded (RE2 compiles `x{1000}` as
 * a thousand copies of x). RE2's compile time and its matching time per input character grow with
 * this size, so an unbounded one would let a short pattern stall the broker.
 */
export const MAX_PATTERN_SIZE = 5000;

const REPEAT = /^\{(\d{1,4})(,(\d{0,4}))?\}/;

/**
 * An upper estimate of the compiled size: every atom counts 1, a group the sum of its content,
 * `{n,m}` multiplies the atom before it by max(n, m) (n + 1 when open-ended). Linear in the
 * pattern; stops counting once past the bound.
 */
export function expandedSize(source: string, bound = MAX_PATTERN_SIZE): number {
  const groups: number[] = [];
  let size = 0;
  let last = 0;
  for (let i = 0; i < source.length && size <= bound; i++) {
    const ch = source[i]!;
    if (ch === '\\') {
      const next = source[i + 1];
      if ((next === 'x' || next === 'p' || next === 'P') && source[i + 2] === '{') {
        const close = source.indexOf('}', i + 3);
        i = close < 0 ? source.length : close;
      } else if (next === 'Q') {
        const close = source.indexOf('\\E', i + 2);
        const stop = close < 0 ? source.length : close;
        last = stop - (i + 2);
        size += last;
        i = close < 0 ? source.length : close + 1;
        continue;
      } else i++;
      last = 1;
      size += 1;
    } else if (ch === '[') {
      let j = i + 1;
      if (source[j] === '^') j++;
      if (source[j] === ']') j++;
      for (; j < source.length && source[j] !== ']'; j++) {
        if (source[j] === '\\') j++;
        else if (source[j] === '[' && source[j + 1] === ':') {
          const close = source.indexOf(':]', j + 2);
          if (close >= 0) j = close + 1;
        }
      }
      i = j;
      last = 1;
      size += 1;
    } else if (ch === '(') {
      groups.push(size);
      size = 0;
      last = 0;
    } else if (ch === ')') {
      const inner = size + 1;
      size = (groups.pop() ?? 0) + inner;
      last = inner;
    } else if (ch === '{') {
      const m = REPEAT.exec(source.slice(i, i + 12));
      if (m === null) {
        last = 1;
        size += 1;
        continue;
      }
      const n = Number(m[1]);
      const times = m[2] === undefined ? n : m[3] === '' ? n + 1 : Math.max(n, Number(m[3]));
      size += last * (times - 1);
      last *= times;
      i += m[0].length - 1;
    } else if (ch === '*' || ch === '+' || ch === '?') {
      size += 1;
    } else if (ch === '|') {
      size += 1;
      last = 0;
    } else {
      last = 1;
      size += 1;
    }
  }
  while (groups.length > 0) size += groups.pop()!;
  return size;
}

/** Compiles a pattern; a PatternError says why RE2 cannot run it. */
export function compilePattern(source: string): Pattern {
  const alternatives = splitAlternatives(source);
  if (alternatives !== undefined) {
    const branches: Branch[] = [];
    for (const a of alternatives) {
      const b = parseBranch(a);
      if (b === undefined) break;
      branches.push(b);
    }
    if (branches.length === alternatives.length) return new LiteralPattern(source, branches);
  }
  if (expandedSize(source) > MAX_PATTERN_SIZE) {
    throw new PatternError(`too complex: its repetitions expand to more than ${MAX_PATTERN_SIZE} steps`);
  }
  try {
    return new Re2Pattern(source, RE2JS.compile(source));
  } catch (e) {
    throw new PatternError(describe(e));
  }
}

function describe(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  const m = /^error parsing regexp: (.*)$/s.exec(text);
  const why = m ? m[1]! : text;
  if (/Perl syntax: `\(\?[=!<]/.test(why)) return `${why} (lookarounds are not supported)`;
  if (/invalid escape sequence: `\\[1-9]/.test(why)) return `${why} (backreferences are not supported)`;
  return why;
}

/** The reason `source` cannot be compiled, or undefined when it can. */
export function patternProblem(source: string): string | undefined {
  try {
    compilePattern(source);
    return undefined;
  } catch (e) {
    return e instanceof PatternError ? e.message : String(e);
  }
}

/**
 * Compiled patterns by source, bounded: the oldest entry goes when it is full. Holders that need
 * one pattern on a hot path keep the Pattern itself rather than looking it up each time.
 */
export class PatternCache {
  private readonly map = new Map<string, Pattern>();

  constructor(private readonly max = 1024) {}

  /** The compiled pattern; throws PatternError when it does not compile. */
  get(source: string): Pattern {
    let p = this.map.get(source);
    if (p === undefined) {
      p = compilePattern(source);
      if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
      this.map.set(source, p);
    }
    return p;
  }

  get size(): number {
    return this.map.size;
  }
}
