/**
 * `npm run fuzz`: structure-aware fuzzers against a real broker process. See README ("Fuzzing").
 */
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { BrokerChild } from './broker-child.js';
import { Bystanders } from './bystanders.js';
import { caseTarget, loadCase, runCase, saveCase, type FuzzCase, type Target } from './case.js';
import { DEFAULTS, FIXED_SEED, KNOWN_ISSUES, KNOWN_ISSUE_NAMES, TARGETS, namespaceOf, type FuzzOptions, type KnownIssue, type TargetName } from './config.js';
import { Rng, caseSeed } from './prng.js';
import { amqpTarget } from './targets/amqp.js';
import { httpTarget } from './targets/http.js';
import { mqttTarget } from './targets/mqtt.js';
import { stompTarget } from './targets/stomp.js';
import { wsTarget } from './targets/ws.js';

const TARGET_IMPLS: Record<TargetName, Target> = { amqp: amqpTarget, mqtt: mqttTarget, stomp: stompTarget, ws: wsTarget, http: httpTarget };
const ROOT = join(import.meta.dirname, '..', '..');
const PROPERTY_DIR = join(ROOT, 'test', 'property');
/** Completed cases kept for a failure report, besides those in flight. */
const RECENT = 64;

const USAGE = `usage: npm run fuzz -- [options]
  --minutes N         total fuzzing time, split across passes and targets (default ${DEFAULTS.minutes})
  --seed S            one pass with this seed (default: seed ${FIXED_SEED}, then a random seed)
  --target T          amqp|mqtt|stomp|ws|http (repeatable, or comma-separated; default: all)
  --concurrency N     connections in flight at once (default ${DEFAULTS.concurrency})
  --check-every N     cases between health checks (default ${DEFAULTS.checkEvery})
  --round-trip-ms N   bound on a bystander's round trip (default ${DEFAULTS.roundTripMs})
  --max-rss-mb N      bound on the broker's resident memory (default ${DEFAULTS.maxRssMiB})
  --skip NAME         avoid one class of input behind a past crash (repeatable; see fuzz/config.ts)
  --no-property       do not run the cross-protocol property test
  --property-runs N   WARREN_FUZZ_RUNS for the property test (default ${DEFAULTS.propertyRuns})
  --replay FILE       send one saved case (its .bin or .json) and check the broker
  --out DIR           where failing cases are saved (default: a new temp dir)`;

class FuzzFailure extends Error {
  override readonly name = 'FuzzFailure';
}

function parseOptions(argv: string[]): FuzzOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string' },
      seed: { type: 'string' },
      target: { type: 'string', multiple: true },
      concurrency: { type: 'string' },
      'check-every': { type: 'string' },
      'round-trip-ms': { type: 'string' },
      'max-rss-mb': { type: 'string' },
      skip: { type: 'string', multiple: true },
      'no-property': { type: 'boolean' },
      'property-runs': { type: 'string' },
      replay: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const num = (v: string | undefined, def: number, name: string): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: not a number: ${v}`);
    return n;
  };
  const targets = (values.target ?? []).flatMap((t) => t.split(',')).filter((t) => t !== '');
  const skip = (values.skip ?? []).flatMap((t) => t.split(',')).filter((t) => t !== '');
  for (const k of skip) if (!(KNOWN_ISSUE_NAMES as string[]).includes(k)) throw new Error(`--skip: unknown input class ${k} (${KNOWN_ISSUE_NAMES.join('|')})`);
  for (const t of targets) if (!(TARGETS as readonly string[]).includes(t)) throw new Error(`--target: unknown target ${t} (${TARGETS.join('|')})`);
  return {
    minutes: num(values.minutes, DEFAULTS.minutes, 'minutes'),
    seed: values.seed === undefined ? undefined : num(values.seed, 0, 'seed') >>> 0,
    targets: targets.length > 0 ? (targets as TargetName[]) : [...TARGETS],
    concurrency: Math.max(1, num(values.concurrency, DEFAULTS.concurrency, 'concurrency')),
    checkEvery: Math.max(1, num(values['check-every'], DEFAULTS.checkEvery, 'check-every')),
    roundTripMs: num(values['round-trip-ms'], DEFAULTS.roundTripMs, 'round-trip-ms'),
    maxRssMiB: num(values['max-rss-mb'], DEFAULTS.maxRssMiB, 'max-rss-mb'),
    skip: new Set<KnownIssue>(skip as KnownIssue[]),
    property: !values['no-property'],
    propertyRuns: num(values['property-runs'], DEFAULTS.propertyRuns, 'property-runs'),
    replay: values.replay,
    outDir: values.out,
  };
}

interface Stats {
  cases: number;
  ms: number;
}

/** One broker, its bystanders, and the health check run between batches of cases. */
class Harness {
  private constructor(
    readonly broker: BrokerChild,
    readonly bystanders: Bystanders,
    private readonly dataDir: string,
    private readonly opts: FuzzOptions,
  ) {}

  static async start(opts: FuzzOptions): Promise<Harness> {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-fuzz-data-'));
    const broker = await BrokerChild.start(dataDir, 'warn');
    const bystanders = await Bystanders.connect(broker.ports, !opts.skip.has('long-shortstr-to-amqp'));
    return new Harness(broker, bystanders, dataDir, opts);
  }

  /** Throws FuzzFailure when the broker died, a bystander failed or memory went over the bound. */
  async check(): Promise<number | undefined> {
    if (!this.broker.alive) throw new FuzzFailure(`broker exited (code ${this.broker.exitCode}, signal ${this.broker.exitSignal})`);
    try {
      await this.bystanders.check(this.opts.roundTripMs);
    } catch (e) {
      if (!this.broker.alive) throw new FuzzFailure(`broker exited (code ${this.broker.exitCode}, signal ${this.broker.exitSignal})`);
      throw new FuzzFailure(e instanceof Error ? e.message : String(e));
    }
    const warning = this.broker.warnings[0];
    if (warning !== undefined) throw new FuzzFailure(`broker printed a process warning: ${warning}`);
    const rss = await this.broker.rssMiB();
    if (rss !== undefined && rss > this.opts.maxRssMiB) throw new FuzzFailure(`broker RSS ${rss.toFixed(0)} MiB over the bound of ${this.opts.maxRssMiB} MiB`);
    return rss;
  }

  async stop(): Promise<void> {
    await this.bystanders.close();
    await this.broker.stop();
    await rm(this.dataDir, { recursive: true, force: true });
  }
}

interface Failure {
  seed: number;
  target: TargetName;
  reason: string;
  cases: [number, FuzzCase][];
}

async function report(f: Failure, broker: BrokerChild, outDir: string | undefined): Promise<never> {
  const dir = outDir ?? (await mkdtemp(join(tmpdir(), 'warren-fuzz-')));
  await mkdir(dir, { recursive: true });
  const out = process.stderr;
  out.write(`\nFUZZ FAILURE: ${f.reason}\n  target: ${f.target}\n  seed:   ${f.seed}\n`);
  out.write(`  reproduce: npm run fuzz -- --target ${f.target} --seed ${f.seed}\n`);
  out.write(`  cases since the last good check (${f.cases.length}, newest last), saved under ${dir}:\n`);
  const sorted = [...f.cases].sort((a, b) => a[0] - b[0]);
  for (const [i, c] of sorted) {
    const path = await saveCase(join(dir, `${f.target}-${f.seed}-${i}`), f.target, i, c);
    out.write(`    #${i} ${c.note}: ${path}\n`);
  }
  await writeFile(join(dir, 'broker-stderr.log'), broker.stderrTail);
  const tail = broker.stderrTail.split('\n').slice(-40).join('\n');
  out.write(`  replay one: npm run fuzz -- --replay <file>\n  broker stderr (tail; whole tail in ${join(dir, 'broker-stderr.log')}):\n${tail}\n`);
  await broker.stop().catch(() => undefined);
  process.exit(1);
}

/** Runs one target for `ms` against a fresh broker. */
async function fuzzTarget(target: Target, seed: number, ms: number, opts: FuzzOptions): Promise<Stats> {
  const h = await Harness.start(opts);
  await h.check();
  const ctx = { skip: opts.skip, ns: namespaceOf(target.name, opts.skip) };
  const inFlight = new Map<number, FuzzCase>();
  let sinceCheck: [number, FuzzCase][] = [];
  let index = 0;
  let done = 0;
  const started = Date.now();
  const deadline = started + ms;
  let lastRss: number | undefined;
  let failure: Failure | undefined;
  const fail = (reason: string): void => {
    failure ??= { seed, target: target.name, reason, cases: [...sinceCheck.slice(-RECENT), ...inFlight.entries()] };
  };
  void h.broker.exited.then(() => fail(`broker exited (code ${h.broker.exitCode}, signal ${h.broker.exitSignal})`));
  while (Date.now() < deadline && failure === undefined) {
    // one batch: checkEvery cases, `concurrency` at a time, then a health check
    const batchEnd = index + opts.checkEvery;
    const worker = async (): Promise<void> => {
      while (index < batchEnd && Date.now() < deadline && failure === undefined) {
        const i = index++;
        const c = target.generate(new Rng(caseSeed(seed, target.name, i)), ctx);
        inFlight.set(i, c);
        await runCase(c, h.broker.ports);
        inFlight.delete(i);
        sinceCheck.push([i, c]);
        if (sinceCheck.length > RECENT * 4) sinceCheck = sinceCheck.slice(-RECENT);
        done++;
      }
    };
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
    if (failure !== undefined) break;
    try {
      lastRss = await h.check();
      sinceCheck = [];
    } catch (e) {
      fail(e instanceof Error ? e.message : String(e));
    }
  }
  const elapsed = Date.now() - started;
  if (failure === undefined) {
    try {
      lastRss = await h.check();
    } catch (e) {
      fail(e instanceof Error ? e.message : String(e));
    }
  }
  if (failure !== undefined) return report(failure, h.broker, opts.outDir);
  process.stdout.write(`  ${target.name.padEnd(6)} seed ${seed}: ${done} cases in ${(elapsed / 1000).toFixed(1)} s (${((done * 1000) / elapsed).toFixed(0)}/s), broker RSS ${lastRss?.toFixed(0) ?? '?'} MiB\n`);
  await h.stop();
  return { cases: done, ms: elapsed };
}

async function replay(opts: FuzzOptions): Promise<void> {
  const c = await loadCase(opts.replay!);
  const t = await caseTarget(opts.replay!);
  const target: TargetName = (TARGETS as readonly string[]).includes(t) ? (t as TargetName) : 'amqp';
  const h = await Harness.start(opts);
  await h.check();
  process.stdout.write(`replaying ${c.note}\n`);
  await runCase(c, h.broker.ports);
  try {
    await h.check();
  } catch (e) {
    await report({ seed: 0, target, reason: e instanceof Error ? e.message : String(e), cases: [[0, c]] }, h.broker, opts.outDir);
  }
  process.stdout.write('broker alive, bystanders round-trip\n');
  await h.stop();
}

/** The cross-protocol property test, when it is there, with the pass's seed. */
function runPropertyTest(seed: number, runs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(`property test (test/property) seed ${seed}, ${runs} runs\n`);
    const child = spawn('npx', ['vitest', 'run', 'test/property'], {
      cwd: ROOT,
      stdio: 'inherit',
      env: { ...process.env, WARREN_FUZZ_SEED: String(seed), WARREN_FUZZ_RUNS: String(runs) },
    });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new FuzzFailure(`property test failed (exit ${code}) with WARREN_FUZZ_SEED=${seed}`))));
  });
}

async function main(): Promise<void> {
  let opts: FuzzOptions;
  try {
    opts = parseOptions(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n${USAGE}\n`);
    process.exit(2);
  }
  if (opts.replay !== undefined) return replay(opts);
  const seeds = opts.seed !== undefined ? [opts.seed] : [FIXED_SEED, randomInt(0, 2 ** 32 - 1)];
  if (opts.seed === undefined) process.stdout.write(`fuzz: fixed seed ${seeds[0]}, random seed ${seeds[1]}\n`);
  else process.stdout.write(`fuzz: seed ${opts.seed}\n`);
  if (opts.skip.size > 0) process.stdout.write(`fuzz: avoiding input classes: ${[...opts.skip].map((k) => `${k} (${KNOWN_ISSUES[k]})`).join('; ')}\n`);
  const perTarget = (opts.minutes * 60_000) / (seeds.length * opts.targets.length);
  const totals = new Map<TargetName, Stats>();
  for (const seed of seeds) {
    process.stdout.write(`pass with seed ${seed}: ${opts.targets.join(', ')}, ${(perTarget / 1000).toFixed(0)} s each\n`);
    for (const t of opts.targets) {
      const s = await fuzzTarget(TARGET_IMPLS[t], seed, perTarget, opts);
      const prev = totals.get(t) ?? { cases: 0, ms: 0 };
      totals.set(t, { cases: prev.cases + s.cases, ms: prev.ms + s.ms });
    }
  }
  process.stdout.write('cases per second per target:\n');
  for (const [t, s] of totals) process.stdout.write(`  ${t.padEnd(6)} ${((s.cases * 1000) / Math.max(1, s.ms)).toFixed(0).padStart(6)}/s  (${s.cases} cases in ${(s.ms / 1000).toFixed(1)} s)\n`);
  if (opts.property && existsSync(PROPERTY_DIR)) {
    for (const seed of seeds) await runPropertyTest(seed, opts.propertyRuns);
  } else if (opts.property) process.stdout.write('property test: test/property not present, skipped\n');
  process.stdout.write(`fuzz: no failure (seeds ${seeds.join(', ')})\n`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`fuzz: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
