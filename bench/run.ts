/**
 * `npm run bench` — runs the load scenarios against Warren (started here as a child process) and a
 * peer broker, and prints one markdown table per scenario. See bench/README.md.
 *
 * Each scenario run: declare the topology, fork one process per client role (dist/bench/client.js),
 * wait until all are connected, start them on a shared wall-clock timeline (warm-up, then the
 * measured window), pace the publishers with an in-flight window fed by the consumers' progress,
 * sample the broker's and the clients' CPU time at both ends of the window, then stop the clients,
 * collect their counts and latency histograms, and delete the topology.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism, cpus, release, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { addPluginEndpoints, brokerPids, connectPeer, mergePeers, rabbitmqInstalled, startLocalRabbitmq, startWarren, startWarrenCluster } from './brokers.js';
import type { Broker } from './brokers.js';
import { setupTopology, teardownTopology } from './clients/index.js';
import type { RoleSpec } from './clients/types.js';
import { FailureLatch, sleep, sleepUntil, wallMs, withTimeout } from './clock.js';
import { Histogram } from './histogram.js';
import { connectionsTable, runConnections } from './connections.js';
import type { ConnectionsResult } from './connections.js';
import { IDLE_LEGEND, idleTable, raiseOpenFilesLimit, runIdle } from './idle.js';
import type { IdleResult } from './idle.js';
import type { ConsumerResult, FromClient, PublisherResult, RoleResult, Timeline, ToClient } from './ipc.js';
import { clockTicksPerSecond, cpuSeconds, machineBusySeconds, processName } from './proc.js';
import { LEGEND, OTHER_LOAD_WARN_PCT, scenarioTable } from './report.js';
import type { RunResult } from './report.js';
import { SCENARIOS } from './scenarios.js';
import type { AnyScenario, LatencyScenario } from './scenarios.js';
import { holdLoad, LATENCY_LEGEND, latencyTable, loadUnsupported, waitForSettled } from './latency.js';
import { brokerTraceFile, traceBreakdown } from './trace-report.js';
import { DEFAULT_PAIRS, delayedTable, measureDelayed } from './delayed.js';
import type { DelayedScenario } from './delayed.js';
import { rpcTable, runRpc } from './rpc.js';
import type { RpcResult, RpcScenario } from './rpc.js';
import type { ConnectionsScenario, IdleScenario, QueueDeleteScenario, Scenario, StormScenario } from './scenarios.js';
import { queueDeleteTable, runQueueDelete, runStorm, stormTable } from './teardown.js';
import type { QueueDeleteRow, StormResult } from './teardown.js';
import { startNatsServers } from '../src/cluster/dev-cluster.js';
import { loopTable, runLoop } from './loop.js';
import type { LoopResult } from './loop.js';
import { startAedes } from './peers/aedes.js';
import { startMosquitto } from './peers/mosquitto.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const CLIENT_JS = join(HERE, 'client.js');
const DEFAULT_PEER_URL = 'amqp://guest:guest@127.0.0.1:5672';

/** Machine load (% of one core, all processes) above which waitForQuiet keeps waiting. */
const QUIET_PCT = 25;

const USAGE = `Usage: npm run bench -- [options]

  --scenarios <a,b,..>   scenarios to run (default: all; --list shows them)
  --duration <s>         measured seconds per run (default 10, max 300)
  --warmup <s>           warm-up seconds excluded from the measurement (default 2)
  --repeat <n>           run each scenario n times per broker, report the median run (default 1)
  --quiet-wait <s>       before each run, wait up to <s> seconds for the machine to be idle
                         (< ${QUIET_PCT} % of a core busy), and redo (up to 3 times) a run that other
                         processes disturbed; for shared machines (default 0: don't wait)
  --window <n>           in-flight window in deliveries (default: the scenario's, 10000)
  --peer-url <url>       peer broker to compare with, e.g. amqp://guest:guest@127.0.0.1:5672
                         (repeatable; loopback only). Without it: the broker on 127.0.0.1:5672
                         if one answers, else none (or --start-rabbitmq)
  --peer-name <name>     label for the peer (default: product and version it reports)
  --peer-pid <pid>       pid to charge the peer's CPU to (default: the process listening on its port)
  --start-rabbitmq       start a private RabbitMQ node (Debian package) for this run as the peer
  --start-mosquitto      start Mosquitto (Debian package) on a free loopback port as an MQTT peer
  --start-aedes          start Aedes (npm devDependency) in a child process as an MQTT peer
  --warren-only          no peer
  --peer-only            do not start Warren (e.g. to validate the harness against RabbitMQ)
  --warren-bin <path>    Warren's launcher (default: bin/warren.js in this repo)
  --warren-arg <arg>     extra argument for \`warren start\` (repeatable)
  --warren-node-arg <a>  Node.js option for Warren's process, e.g. --cpu-prof (repeatable)
  --trace-dir <dir>      latency scenarios: run Warren with its latency trace on (WARREN_LATENCY_TRACE),
                         keep per-message times of broker and consumer in <dir>, and print where the
                         tail of each run comes from (see bench/README.md)
  --workers <n>          also run Warren as \`warren start --workers <n>\` (a local nats-server with
                         JetStream is started for it) beside the single process
  --cluster              also run Warren as a cluster of 3 nodes on 3 local nats-servers:
                         publishers on n1, consumers on n2
  --out <file>           also write the markdown report to <file>
  --json <file>          also write the raw results as JSON
  --list                 list the scenarios and exit
  --verbose              echo broker output
`;

// ---------------------------------------------------------------------------------------------
// Cleanup: every started broker, client process and declared topology registers how to undo itself,
// so a failure or ctrl-C leaves nothing behind.

const cleanups = new Set<() => Promise<void>>();

function onCleanup(fn: () => Promise<void>): () => void {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}


async function cleanupAll(): Promise<void> {
  for (const fn of [...cleanups].reverse()) {
    cleanups.delete(fn);
    await withTimeout(fn(), 35_000, 'cleanup').catch((err: unknown) => log(`cleanup: ${String(err)}`));
  }
}

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130); // second ctrl-C: give up on cleaning
    interrupted = true;
    log(`${signal}: stopping clients, deleting queues, stopping brokers ...`);
    cleanupAll().finally(() => process.exit(130));
  });
}

function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

// ---------------------------------------------------------------------------------------------
// One client process.

class ClientProcess {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  private result: RoleResult | null = null;
  private resultWaiter: ((r: RoleResult) => void) | null = null;
  private stopped = false;

  constructor(
    readonly spec: RoleSpec,
    onProgress: (received: number) => void,
    onFailure: (err: Error) => void,
  ) {
    this.child = fork(CLIENT_JS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let markReady: () => void = () => undefined;
    this.ready = new Promise<void>((resolve) => {
      markReady = resolve;
    });
    this.child.on('message', (msg: FromClient) => {
      switch (msg.type) {
        case 'ready':
          markReady();
          return;
        case 'progress':
          onProgress(msg.received);
          return;
        case 'result':
          this.result = msg.result;
          this.resultWaiter?.(msg.result);
          return;
        case 'fatal':
          onFailure(new Error(`${spec.id}: ${msg.message}`));
          return;
      }
    });
    this.child.on('exit', (code, signal) => {
      if (!this.stopped) onFailure(new Error(`${spec.id} exited (${signal ?? code})`));
    });
    this.child.on('error', onFailure);
    this.send({ type: 'init', spec });
  }

  send(msg: ToClient): void {
    if (this.child.connected) this.child.send(msg);
  }

  /** Ask for the result and wait for the process to exit. */
  async stop(): Promise<RoleResult> {
    this.stopped = true;
    const result =
      this.result !== null
        ? Promise.resolve(this.result)
        : new Promise<RoleResult>((resolve) => {
            this.resultWaiter = resolve;
          });
    this.send({ type: 'stop' });
    const r = await withTimeout(result, 10_000, `${this.spec.id} result`);
    await this.waitExit(5_000);
    return r;
  }

  async kill(): Promise<void> {
    this.stopped = true;
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await this.waitExit(3_000);
  }

  private async waitExit(ms: number): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    if (await Promise.race([exited.then(() => false), sleep(ms).then(() => true)])) {
      this.child.kill('SIGKILL');
      await exited;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One scenario against one broker.

interface RunOptions {
  runId: string;
  /** Overrides every scenario's in-flight window (deliveries). */
  window: number | null;
  repeat: number;
  warmupS: number;
  durationS: number;
  /** Latency tracing (--trace-dir): where the broker's and the consumers' trace files go. */
  traceDir: string | null;
}

/** A traced run: the broker is told when the window opens and closes; files are named by `tag`. */
interface TraceRun {
  dir: string;
  tag: string;
}

interface CpuSample {
  at: number;
  broker: number | null;
  clients: number | null;
  machine: number | null;
}

/**
 * irq + softirq seconds (all cores) from /proc/stat, or null. On loopback this is mostly the kernel's
 * TCP receive processing for the benchmark's own traffic (a broker that writes one small segment per
 * message causes a lot of it), and it is charged to no process: it is left out of "other CPU" so that
 * it does not mark a run as disturbed.
 */
function interruptSeconds(): number | null {
  let text: string;
  try {
    text = readFileSync('/proc/stat', 'utf8');
  } catch {
    return null;
  }
  const f = text.slice(0, text.indexOf('\n')).trim().split(/\s+/);
  const irq = Number(f[6]);
  const softirq = Number(f[7]);
  if (f[0] !== 'cpu' || !Number.isFinite(irq) || !Number.isFinite(softirq)) return null;
  return (irq + softirq) / clockTicksPerSecond();
}

function sumCpu(pids: number[] | null): number | null {
  if (pids === null) return null;
  let total: number | null = 0;
  for (const pid of pids) {
    const s = cpuSeconds(pid);
    total = s === null || total === null ? null : total + s;
  }
  return total;
}

function sampleCpu(broker: Broker, clientPids: number[]): CpuSample {
  const clients = sumCpu(clientPids);
  return {
    at: wallMs(),
    broker: sumCpu(brokerPids(broker)),
    clients,
    machine: ((busy, irq) => (busy === null ? null : busy - (irq ?? 0)))(machineBusySeconds(), interruptSeconds()),
  };
}

function failed(s: Scenario, b: Broker, error: string): RunResult {
  return {
    scenario: s.name,
    broker: b.name,
    isWarren: b.isWarren,
    error,
    seconds: 0,
    published: 0,
    delivered: 0,
    msgsPerSec: 0,
    p50Ms: null,
    p99Ms: null,
    brokerCpuUsPerMsg: null,
    brokerCpuPct: null,
    clientCpuPct: null,
    otherCpuPct: null,
    windowWaitPct: 0,
    drainWaitPct: 0,
  };
}

async function runScenario(s: Scenario, broker: Broker, o: RunOptions, trace: TraceRun | null = null): Promise<RunResult> {
  const url = broker.endpoints[s.protocol];
  if (url === undefined) return failed(s, broker, `no ${s.protocol} endpoint`);
  const missing = (s.alsoNeeds ?? []).filter((p) => broker.endpoints[p] === undefined);
  if (missing.length > 0) return failed(s, broker, `no ${missing.join(', ')} endpoint`);
  const planned = s.plan({ runId: o.runId, url, urls: broker.endpoints, totalSeconds: o.warmupS + o.durationS + 5 });
  const tracePid = trace !== null && broker.isWarren ? broker.pid : null;
  const plan =
    trace === null
      ? planned
      : { ...planned, consumers: planned.consumers.map((c) => ({ ...c, traceOut: join(trace.dir, `${trace.tag}.${c.id}.bin`) })) };
  // Publish on one node, consume on another: the consumers' specs are planned against that node.
  const consumerUrl = broker.consumerEndpoints?.[s.protocol];
  if (broker.consumerEndpoints !== undefined && consumerUrl === undefined) return failed(s, broker, `no ${s.protocol} endpoint on the consuming node`);
  const consumerSpecs =
    consumerUrl === undefined
      ? plan.consumers
      : s.plan({ runId: o.runId, url: consumerUrl, urls: broker.consumerEndpoints!, totalSeconds: o.warmupS + o.durationS + 5 }).consumers;

  const latch = new FailureLatch();
  const guard = <T>(p: Promise<T>): Promise<T> => latch.guard(p);
  let tracing = false;

  const procs: ClientProcess[] = [];
  const topology = plan.topology;
  const undo = onCleanup(async () => {
    await Promise.all(procs.map((p) => p.kill()));
    if (topology !== null) {
      for (const problem of await teardownTopology(topology)) log(`teardown: ${problem}`);
    }
  });
  try {
    if (topology !== null) {
      await withTimeout(setupTopology(topology, { queueExpiresMs: broker.shared ? 120_000 : null }), 20_000, 'topology');
      // The other node applies the declarations from the engine a moment later (the visibility window).
      if (consumerUrl !== undefined) await sleep(1000);
    }

    // Pacing: publishers together may publish up to (delivered + window) / deliveriesPerPublish.
    const window = o.window ?? plan.window;
    const received = new Map<string, number>();
    const publishers: ClientProcess[] = [];
    const nPub = Math.max(1, plan.publishers.length);
    let limit = Math.max(1, Math.floor(window / plan.deliveriesPerPublish / nPub));
    const onProgress = (id: string, n: number): void => {
      received.set(id, n);
      let total = 0;
      for (const v of received.values()) total += v;
      const next = Math.floor((total + window) / plan.deliveriesPerPublish / nPub);
      if (next > limit) {
        limit = next;
        for (const p of publishers) p.send({ type: 'limit', limit });
      }
    };
    // Consumers connect and subscribe first; the publishers then wait for the shared start time.
    for (const spec of consumerSpecs) {
      procs.push(new ClientProcess(spec, (n) => onProgress(spec.id, n), latch.signal));
    }
    await guard(withTimeout(Promise.all(procs.map((p) => p.ready)), 30_000, 'consumers connecting'));
    for (const spec of plan.publishers) {
      const p = new ClientProcess(spec, () => undefined, latch.signal);
      procs.push(p);
      publishers.push(p);
    }
    await guard(withTimeout(Promise.all(procs.map((p) => p.ready)), 30_000, 'publishers connecting'));

    const startAt = wallMs() + 200;
    const timeline: Timeline = {
      startAt,
      measureFrom: startAt + o.warmupS * 1000,
      measureTo: startAt + (o.warmupS + o.durationS) * 1000,
    };
    for (const p of procs) p.send({ type: 'start', timeline, limit });

    // The orchestrator itself (it relays the consumers' progress) counts as client CPU too.
    const pids = [process.pid, ...procs.map((p) => p.child.pid).filter((pid): pid is number => pid !== undefined)];
    // A traced Warren records from the start of the run (the warm-up too, so the trace's message
    // indexes match the consumer's) until the window closes; SIGUSR2 starts and stops it.
    if (tracePid !== null && trace !== null) {
      rmSync(brokerTraceFile(trace.dir), { force: true }); // a failed run's recording must not be taken for this one's
      process.kill(tracePid, 'SIGUSR2');
      tracing = true;
    }
    await guard(sleepUntil(timeline.measureFrom));
    const before = sampleCpu(broker, pids);
    await guard(sleepUntil(timeline.measureTo));
    const after = sampleCpu(broker, pids);
    if (tracePid !== null) process.kill(tracePid, 'SIGUSR2');
    tracing = false;
    // Let consumers pass the end of the window before asking for their counts.
    await guard(sleep(250));

    const results = await guard(Promise.all(procs.map((p) => p.stop())));
    const consumers = results.filter((r): r is ConsumerResult => r.role === 'consumer');
    const pubs = results.filter((r): r is PublisherResult => r.role === 'publisher');
    const latency = new Histogram();
    let delivered = 0;
    const sendLatency = new Histogram();
    const lag = new Histogram();
    for (const c of consumers) {
      delivered += c.receivedInWindow;
      latency.merge(c.latency);
      if (c.sendLatency !== undefined) sendLatency.merge(c.sendLatency);
    }
    for (const p of pubs) if (p.lag !== undefined) lag.merge(p.lag);
    const windowMs = after.at - before.at;
    const brokerCpu = before.broker !== null && after.broker !== null ? after.broker - before.broker : null;
    const clientCpu = before.clients !== null && after.clients !== null ? after.clients - before.clients : null;
    const machineCpu = before.machine !== null && after.machine !== null ? after.machine - before.machine : null;
    // Everything else that ran meanwhile (this harness's parent, other users' processes). Only known
    // when the broker's CPU is; clamped at 0 because tick accounting is coarse.
    const otherCpu =
      machineCpu !== null && brokerCpu !== null && clientCpu !== null
        ? Math.max(0, machineCpu - brokerCpu - clientCpu)
        : null;
    const pubWindowMs = o.durationS * 1000 * Math.max(1, pubs.length);
    const result: RunResult = {
      scenario: s.name,
      broker: broker.name,
      isWarren: broker.isWarren,
      error: delivered === 0 ? 'no messages delivered in the measured window' : null,
      seconds: o.durationS,
      published: pubs.reduce((a, p) => a + p.publishedInWindow, 0),
      delivered,
      msgsPerSec: delivered / o.durationS,
      p50Ms: latency.quantileMs(0.5),
      p99Ms: latency.quantileMs(0.99),
      p999Ms: latency.quantileMs(0.999),
      maxMs: latency.maxMs(),
      ...(sendLatency.count > 0
        ? { sendP50Ms: sendLatency.quantileMs(0.5), sendP99Ms: sendLatency.quantileMs(0.99), sendP999Ms: sendLatency.quantileMs(0.999) }
        : {}),
      ...(lag.count > 0 ? { lagP99Ms: lag.quantileMs(0.99), lagMaxMs: lag.maxMs() } : {}),
      brokerCpuUsPerMsg: brokerCpu !== null && delivered > 0 ? (brokerCpu * 1e6) / delivered : null,
      brokerCpuPct: brokerCpu !== null ? (brokerCpu / (windowMs / 1000)) * 100 : null,
      clientCpuPct: clientCpu !== null ? (clientCpu / (windowMs / 1000)) * 100 : null,
      otherCpuPct: otherCpu !== null ? (otherCpu / (windowMs / 1000)) * 100 : null,
      windowWaitPct: (pubs.reduce((a, p) => a + p.windowWaitMs, 0) / pubWindowMs) * 100,
      drainWaitPct: (pubs.reduce((a, p) => a + p.drainWaitMs, 0) / pubWindowMs) * 100,
    };
    return result;
  } catch (err) {
    const e = latch.failure ?? err;
    return failed(s, broker, e instanceof Error ? e.message : String(e));
  } finally {
    // A run that failed while the broker recorded: stop the recording (its file is not used).
    if (tracing && tracePid !== null) process.kill(tracePid, 'SIGUSR2');
    undo();
    await Promise.all(procs.map((p) => p.kill()));
    if (topology !== null) {
      const problems = await withTimeout(teardownTopology(topology), 30_000, 'teardown').catch((err: unknown) => [
        String(err),
      ]);
      for (const problem of problems) log(`teardown: ${problem}`);
    }
  }
}

/**
 * On a shared machine: wait (up to `maxS`) until the whole machine is nearly idle over a 2 s sample,
 * so other people's work does not land in the measurement. Gives up with a warning.
 */
async function waitForQuiet(maxS: number): Promise<void> {
  const deadline = wallMs() + maxS * 1000;
  let said = false;
  for (;;) {
    const b0 = machineBusySeconds();
    const t0 = wallMs();
    await sleep(2000);
    const b1 = machineBusySeconds();
    if (b0 === null || b1 === null) return;
    const pct = ((b1 - b0) / ((wallMs() - t0) / 1000)) * 100;
    if (pct < QUIET_PCT) return;
    if (wallMs() > deadline) {
      log(`machine still busy (${Math.round(pct)} % of a core); measuring anyway`);
      return;
    }
    if (!said) log(`machine busy (${Math.round(pct)} % of a core in use); waiting up to ${maxS} s for it to calm down`);
    said = true;
  }
}

function disturbed(r: RunResult): boolean {
  return r.error === null && r.otherCpuPct !== null && r.otherCpuPct > OTHER_LOAD_WARN_PCT;
}

async function measure(s: Scenario, b: Broker, o: RunOptions, quietWaitS: number, trace: TraceRun | null = null): Promise<RunResult> {
  if (quietWaitS > 0) await waitForQuiet(quietWaitS);
  return runScenario(s, b, o, trace);
}

/**
 * A latency scenario on every broker that has its endpoints: the background load is held, the
 * fixed-rate run measured, the load released; repetitions alternate between brokers.
 */
async function measureLatency(s: LatencyScenario, brokers: Broker[], o: RunOptions, quietWaitS: number, results: RunResult[]): Promise<string> {
  const runs = new Map<Broker, RunResult[]>();
  const skipped: string[] = [];
  const notes: string[] = [];
  for (let rep = 1; rep <= o.repeat; rep++) {
    for (const b of brokers) {
      if (interrupted) break;
      if (b.endpoints[s.protocol] === undefined) continue;
      if ((s.base.alsoNeeds ?? []).some((p) => b.endpoints[p] === undefined)) continue;
      const unsupported = loadUnsupported(s, b);
      if (unsupported !== null) {
        if (rep === 1) skipped.push(`${b.name}: skipped (${unsupported})`);
        continue;
      }
      const of = o.repeat > 1 ? ` (run ${rep}/${o.repeat})` : '';
      log(`${s.name} on ${b.name}${of}: ${o.warmupS} s warm-up + ${o.durationS} s at ${s.rate} msgs/s ...`);
      const latch = new FailureLatch();
      let release: (() => Promise<void>) | null = null;
      const undo = onCleanup(async () => {
        await release?.();
      });
      let r: RunResult;
      const trace = o.traceDir !== null && b.isWarren ? { dir: o.traceDir, tag: `${s.name}.${rep}` } : null;
      try {
        release = await holdLoad(s, b, o.runId, latch.signal, log);
        if (s.load !== 'none') {
          const waited = await waitForSettled(b);
          if (waited !== null) log(`  broker settled after ${(waited / 1000).toFixed(1)} s`);
        }
        r = await measure(s.base, b, o, quietWaitS, trace);
        if (latch.failure !== null) r = { ...r, error: `background load failed: ${latch.failure.message}` };
      } catch (e) {
        r = failed(s.base, b, e instanceof Error ? e.message : String(e));
      } finally {
        undo();
        await release?.().catch((err: unknown) => log(`  releasing the load: ${String(err)}`));
      }
      log(
        r.error !== null
          ? `  failed: ${r.error}`
          : `  p50 ${r.p50Ms?.toFixed(2)} ms, p99 ${r.p99Ms?.toFixed(2)} ms, p99.9 ${r.p999Ms?.toFixed(2)} ms, ` +
              `max ${r.maxMs?.toFixed(1)} ms, generator late p99 ${r.lagP99Ms?.toFixed(2)} ms, other load ${Math.round(r.otherCpuPct ?? 0)} %`,
      );
      if (trace !== null && r.error === null) {
        const note = await collectTrace(trace, o);
        if (note !== null) notes.push(`${b.name}, run ${rep}:\n\n${note}`);
      }
      runs.set(b, [...(runs.get(b) ?? []), r]);
      results.push(r);
      await sleep(1000);
    }
  }
  const table = latencyTable(s, [...runs.values()], skipped);
  return notes.length > 0 ? `${table}\n\n#### Where the time goes (trace)\n\n${notes.join('\n\n')}` : table;
}

/** Waits for the broker's trace of the run just finished, names it after the run, and analyses it. */
async function collectTrace(trace: TraceRun, o: RunOptions): Promise<string | null> {
  const from = brokerTraceFile(trace.dir);
  for (let i = 0; i < 100 && !existsSync(from); i++) await sleep(100);
  if (!existsSync(from)) {
    log('  no broker trace was written (is the trace on?)');
    return null;
  }
  const brokerFile = join(trace.dir, `${trace.tag}.broker.json`);
  renameSync(from, brokerFile);
  try {
    return traceBreakdown(brokerFile, join(trace.dir, `${trace.tag}.con-0.bin`), o.warmupS);
  } catch (err) {
    log(`  trace analysis failed: ${String(err)}`);
    return null;
  }
}

/** Runs a delayed-messages scenario on every broker with AMQP, arms interleaved (see delayed.ts), and returns its table. */
async function measureDelayedScenario(s: DelayedScenario, brokers: Broker[], o: RunOptions, quietWaitS: number, results: RunResult[]): Promise<string> {
  const { rows, runs } = await measureDelayed(s, brokers, {
    runId: o.runId,
    pairs: Math.max(o.repeat, DEFAULT_PAIRS),
    measure: (scenario, b) => measure(scenario, b, o, quietWaitS),
    log,
    sleep,
    onCleanup,
    interrupted: () => interrupted,
  });
  results.push(...runs);
  return delayedTable(s, rows);
}

/** Runs the direct reply-to RPC scenario on every broker with AMQP, each in-flight count in turn (see rpc.ts). */
async function measureRpc(s: RpcScenario, brokers: Broker[], o: RunOptions, quietWaitS: number): Promise<RpcResult[]> {
  const rows: RpcResult[] = [];
  for (const n of s.inFlight) {
    for (const b of brokers) {
      if (interrupted) break;
      const url = b.endpoints.amqp;
      if (url === undefined) continue;
      if (quietWaitS > 0) await waitForQuiet(quietWaitS);
      log(`${s.name} on ${b.name}, ${n} in flight: ${o.warmupS} s warm-up + ${o.durationS} s ...`);
      const queue = `warren-bench.${o.runId}.${s.name}.${n}`;
      const r = await runRpc(s, { name: b.name, isWarren: b.isWarren, url, pid: b.pid }, queue, n, o.warmupS, o.durationS);
      log(
        r.error !== null
          ? `  failed: ${r.error}`
          : `  ${Math.round(r.perSec)} round trips/s, p50 ${r.p50Ms?.toFixed(2)} ms, broker ${r.brokerCpuUsPerRoundTrip?.toFixed(1) ?? 'n/a'} µs/round trip`,
      );
      rows.push(r);
      await sleep(1000);
    }
  }
  return rows;
}

/** Whether `s` is among the selected names; a name ending in `*` selects every scenario it prefixes. */
function selected(names: string[], s: AnyScenario): boolean {
  return names.some((n) => (n.endsWith('*') ? s.name.startsWith(n.slice(0, -1)) : n === s.name));
}

/** Whether the --scenarios selection includes an idle-connection scenario. */
function wantsIdle(selection: string | undefined): boolean {
  const names = selection?.split(',').map((n) => n.trim()) ?? [];
  const all = names.length === 0 || names.includes('all');
  return SCENARIOS.some(
    (s) =>
      (s.kind === 'idle' || s.kind === 'connections' || s.kind === 'storm' || (s.kind === 'latency' && s.load === 'idle-10k')) &&
      (all || selected(names, s)),
  );
}

/**
 * The idle-connection scenario on every broker with its endpoint. Runs are not redone when other load
 * shows (memory is not CPU), but each waits for a quiet machine first when asked to.
 */
async function measureIdle(s: IdleScenario, brokers: Broker[], o: RunOptions, quietWaitS: number): Promise<IdleResult[][]> {
  const runs = new Map<Broker, IdleResult[]>();
  for (let rep = 1; rep <= o.repeat; rep++) {
    for (const b of brokers) {
      if (interrupted) break;
      if (b.endpoints[s.protocol] === undefined) continue;
      const of = o.repeat > 1 ? ` (run ${rep}/${o.repeat})` : '';
      log(`${s.name} on ${b.name}${of}: ${s.connections} idle connections ...`);
      if (quietWaitS > 0) await waitForQuiet(quietWaitS);
      const r = await runIdle(s, b, { runId: o.runId, run: rep, onCleanup, log });
      log(
        r.error !== null
          ? `  failed: ${r.error}`
          : `  ${r.opened} connections in ${r.connectSeconds.toFixed(1)} s, ${r.kibPerConnectionEarly?.toFixed(2) ?? 'n/a'} KiB each after 5 s, ${r.kibPerConnection?.toFixed(2) ?? 'n/a'} settled`,
      );
      runs.set(b, [...(runs.get(b) ?? []), r]);
      await sleep(2000);
    }
  }
  return [...runs.values()];
}

/**
 * The many-connections scenario on every broker with an MQTT endpoint, one after another (each
 * broker gets the machine's descriptors and ports to itself).
 */
async function measureConnections(s: ConnectionsScenario, brokers: Broker[], o: RunOptions, quietWaitS: number): Promise<ConnectionsResult[]> {
  const out: ConnectionsResult[] = [];
  for (const b of brokers) {
    if (interrupted) break;
    if (b.endpoints.mqtt === undefined) continue;
    log(`${s.name} on ${b.name}: ${s.connections} connections ...`);
    if (quietWaitS > 0) await waitForQuiet(quietWaitS);
    const r = await runConnections(s, b, { runId: o.runId, onCleanup, log });
    log(
      r.error !== null
        ? `  failed: ${r.error}`
        : `  ${r.mqttIdle} idle MQTT + ${r.active} active held; ${r.kibPerIdleMqtt?.toFixed(2) ?? 'n/a'} KiB per idle MQTT connection settled`,
    );
    out.push(r);
    await sleep(2000);
  }
  return out;
}

/**
 * The disconnect storm on every broker with an MQTT endpoint except RabbitMQ (see StormScenario),
 * each count in turn, one broker after another.
 */
async function measureStorm(s: StormScenario, brokers: Broker[], o: RunOptions, quietWaitS: number): Promise<StormResult[]> {
  const out: StormResult[] = [];
  let round = 0;
  for (const b of brokers) {
    if (b.endpoints.mqtt === undefined || b.name.startsWith('RabbitMQ')) continue;
    for (const n of s.sessions) {
      if (interrupted) break;
      log(`${s.name} on ${b.name}: ${n} sessions ...`);
      if (quietWaitS > 0) await waitForQuiet(quietWaitS);
      const r = await runStorm(s, n, round++, b, { runId: o.runId, onCleanup, log });
      log(
        r.error !== null
          ? `  failed: ${r.error}`
          : `  ${r.sessions} sessions: storm ${r.stormMs?.toFixed(0)} ms, ${r.cpuUsPerSession?.toFixed(1)} µs CPU each, ${r.probes.length} new clients, worst ${r.probes.length > 0 ? Math.max(...r.probes).toFixed(1) : 'n/a'} ms; before the drop: ${r.probesBefore.map((x) => x.toFixed(1)).join(' ')}; during: ${r.probes.map((x) => x.toFixed(0)).join(' ')}`,
      );
      out.push(r);
      await sleep(3000);
    }
  }
  return out;
}

/** Queue delete and connect + close on every broker with an AMQP endpoint. */
async function measureQueueDelete(s: QueueDeleteScenario, brokers: Broker[], o: RunOptions, quietWaitS: number): Promise<QueueDeleteRow[]> {
  const out: QueueDeleteRow[] = [];
  for (const b of brokers) {
    if (interrupted) break;
    if (b.endpoints.amqp === undefined) continue;
    log(`${s.name} on ${b.name} ...`);
    if (quietWaitS > 0) await waitForQuiet(quietWaitS);
    out.push(...(await runQueueDelete(s, b, { runId: o.runId, onCleanup, log })));
    await sleep(2000);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function packageVersion(name: string): string {
  try {
    const require = createRequire(import.meta.url);
    let dir = dirname(require.resolve(name));
    // Walk up to the package root (the entry point may sit in a subdirectory).
    for (let i = 0; i < 5; i++) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? '?';
      } catch {
        // not here
      }
      dir = dirname(dir);
    }
  } catch {
    // not installed
  }
  return '?';
}

const STARTED_AT = new Date();

function environment(brokers: Broker[], o: RunOptions): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const lines = [
    `- date: ${STARTED_AT.toISOString()}`,
    `- machine: ${availableParallelism()} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}`,
    `- clients: Node.js ${process.version}, amqplib ${packageVersion('amqplib')} (AMQP); MQTT 3.1.1 and STOMP 1.2 ` +
      `(TCP and WebSocket) clients written for the harness (bench/clients/); one process per client role`,
    `- timing: ${o.warmupS} s warm-up, then ${o.durationS} s measured, per scenario and broker` +
      (o.repeat > 1 ? `; ${o.repeat} runs each, the median run by msgs/s shown (runs with other load ⚠ only if all were)` : ''),
  ];
  for (const b of brokers) {
    const comm = b.pid === null ? null : processName(b.pid);
    lines.push(`- broker ${b.name}: ${b.details}${comm !== null ? ` [${comm}]` : ''}`);
  }
  return lines.join('\n');
}

function parseSeconds(v: string | undefined, fallback: number, name: string, max: number): number {
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > max) throw new Error(`--${name} must be a number of seconds in 0..${max}`);
  return n;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scenarios: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      window: { type: 'string' },
      repeat: { type: 'string' },
      'quiet-wait': { type: 'string' },
      'peer-url': { type: 'string', multiple: true },
      'peer-name': { type: 'string' },
      'peer-pid': { type: 'string' },
      'start-rabbitmq': { type: 'boolean', default: false },
      'start-mosquitto': { type: 'boolean', default: false },
      'start-aedes': { type: 'boolean', default: false },
      'warren-node-arg': { type: 'string', multiple: true },
      workers: { type: 'string' },
      cluster: { type: 'boolean', default: false },
      'warren-only': { type: 'boolean', default: false },
      'peer-only': { type: 'boolean', default: false },
      'warren-bin': { type: 'string' },
      'warren-arg': { type: 'string', multiple: true },
      out: { type: 'string' },
      json: { type: 'string' },
      'trace-dir': { type: 'string' },
      list: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.list) {
    for (const s of SCENARIOS) process.stdout.write(`${s.name}\n    ${s.summary}\n`);
    return 0;
  }
  // 10 000 idle connections need as many descriptors in the broker and the client processes, which
  // inherit this process's limit.
  const fdLimit = raiseOpenFilesLimit();
  if (fdLimit !== null && fdLimit < 12_000 && wantsIdle(values.scenarios)) {
    log(`open files limit is ${fdLimit}: the idle-connection scenario may fail (raise ulimit -n)`);
  }
  const durationS = parseSeconds(values.duration, 10, 'duration', 300);
  const warmupS = parseSeconds(values.warmup, 2, 'warmup', 60);
  if (durationS <= 0) throw new Error('--duration must be > 0');
  const wanted = values.scenarios?.split(',').map((n) => n.trim()).filter((n) => n.length > 0 && n !== 'all') ?? [];
  const unknown = wanted.filter((n) => !SCENARIOS.some((s) => selected([n], s)));
  if (unknown.length > 0) throw new Error(`unknown scenario(s) ${unknown.join(', ')}; --list shows them`);
  const scenarios = wanted.length === 0 ? [...SCENARIOS] : SCENARIOS.filter((s) => selected(wanted, s));
  if (values['warren-only'] && values['peer-only']) throw new Error('--warren-only and --peer-only exclude each other');
  const window = values.window === undefined ? null : Number(values.window);
  if (window !== null && !(Number.isInteger(window) && window > 0)) throw new Error('--window must be a positive integer');
  const quietWaitS = parseSeconds(values['quiet-wait'], 0, 'quiet-wait', 3600);
  const repeat = values.repeat === undefined ? 1 : Number(values.repeat);
  if (!(Number.isInteger(repeat) && repeat >= 1 && repeat <= 20)) throw new Error('--repeat must be an integer in 1..20');
  const peerPid = values['peer-pid'] === undefined ? null : Number(values['peer-pid']);
  if (peerPid !== null && !Number.isInteger(peerPid)) throw new Error('--peer-pid must be an integer');

  const traceDir = values['trace-dir'] ?? null;
  if (traceDir !== null) mkdirSync(traceDir, { recursive: true });

  const brokers: Broker[] = [];
  const track = (b: Broker): Broker => {
    brokers.push(b);
    onCleanup(() => b.stop());
    return b;
  };
  if (!values['peer-only']) {
    log('starting Warren ...');
    track(
      await startWarren({
        bin: values['warren-bin'] ?? join(REPO_ROOT, 'bin', 'warren.js'),
        extraArgs: values['warren-arg'] ?? [],
        nodeArgs: values['warren-node-arg'] ?? [],
        ...(traceDir !== null ? { env: { WARREN_LATENCY_TRACE: traceDir } } : {}),
        verbose: values.verbose,
        startTimeoutMs: 30_000,
        ...(values.workers !== undefined || values.cluster ? { label: 'Warren, 1 process' } : {}),
      }),
    );
  }
  const workers = values.workers === undefined ? null : Number(values.workers);
  if (workers !== null && !(Number.isInteger(workers) && workers >= 1 && workers <= 64)) throw new Error('--workers must be an integer in 1..64');
  if (workers !== null || values.cluster) {
    // The engine: nats-server with JetStream (Debian's nats-server on the PATH).
    const common = {
      bin: values['warren-bin'] ?? join(REPO_ROOT, 'bin', 'warren.js'),
      nodeArgs: values['warren-node-arg'] ?? [],
      verbose: values.verbose,
      startTimeoutMs: 60_000,
    };
    if (workers !== null) {
      log(`starting a nats-server and Warren with ${workers} workers ...`);
      const nats = await startNatsServers({ count: 1 });
      onCleanup(() => nats.stop());
      track(
        await startWarren({
          ...common,
          extraArgs: ['--workers', String(workers), '--cluster', 'bench', '--cluster-url', nats.url, '--node-name', 'w', ...(values['warren-arg'] ?? [])],
          label: `Warren, ${workers} workers`,
        }),
      );
    }
    if (values.cluster) {
      log('starting 3 nats-servers and a Warren cluster of 3 nodes ...');
      const nats = await startNatsServers({ count: 3 });
      onCleanup(() => nats.stop());
      track(await startWarrenCluster({ ...common, extraArgs: values['warren-arg'] ?? [], clusterUrl: nats.url, nodes: 3 }));
    }
  }
  if (!values['warren-only'] && workers === null && !values.cluster) {
    const urls = values['peer-url'] ?? [];
    // URLs served by one process (RabbitMQ's AMQP, MQTT and STOMP listeners) are one broker.
    const peers: Broker[] = [];
    for (const url of urls) {
      peers.push(await connectPeer({ url, name: values['peer-name'] ?? null, pid: peerPid }));
    }
    for (const peer of mergePeers(peers)) track(peer);
    if (urls.length === 0 && values['start-rabbitmq']) {
      log('starting a private RabbitMQ node ...');
      track(await startLocalRabbitmq({ verbose: values.verbose, startTimeoutMs: 90_000 }));
    } else if (urls.length === 0) {
      const peer = await connectPeer({ url: DEFAULT_PEER_URL, name: values['peer-name'] ?? null, pid: peerPid }).catch(
        () => null,
      );
      if (peer !== null) {
        const plugins = await addPluginEndpoints(peer);
        log(
          `no --peer-url: comparing with the broker on 127.0.0.1:5672 (${peer.name})` +
            (plugins.length > 0 ? `, also over ${plugins.join(', ')}` : ''),
        );
        track(peer);
      } else {
        log(
          `no --peer-url and nothing answers on 127.0.0.1:5672: no peer` +
            (rabbitmqInstalled() ? ' (pass --start-rabbitmq to start one)' : ''),
        );
      }
    }
  }
  if (!values['warren-only'] && values['start-mosquitto']) {
    log('starting Mosquitto ...');
    track(await startMosquitto({ verbose: values.verbose, startTimeoutMs: 15_000 }));
  }
  if (!values['warren-only'] && values['start-aedes']) {
    log('starting Aedes ...');
    track(await startAedes({ verbose: values.verbose, startTimeoutMs: 15_000 }));
  }
  if (brokers.length === 0) throw new Error('no broker to benchmark');

  const o: RunOptions = { runId: `${process.pid}-${Date.now().toString(36)}`, window, repeat, warmupS, durationS, traceDir };
  const results: RunResult[] = [];
  const idleResults: IdleResult[] = [];
  const connectionResults: ConnectionsResult[] = [];
  const rpcResults: RpcResult[] = [];
  const stormResults: StormResult[] = [];
  const queueDeleteResults: QueueDeleteRow[] = [];
  const loopResults: LoopResult[] = [];
  const sections: string[] = [];
  let latencyRan = false;
  for (const s of scenarios) {
    if (s.kind === 'latency') {
      sections.push(await measureLatency(s, brokers, o, quietWaitS, results));
      latencyRan = true;
      continue;
    }
    if (s.kind === 'rpc') {
      const rows = await measureRpc(s, brokers, o, quietWaitS);
      rpcResults.push(...rows);
      if (rows.length > 0) sections.push(rpcTable(s, rows));
      continue;
    }
    if (s.kind === 'delayed') {
      sections.push(await measureDelayedScenario(s, brokers, o, quietWaitS, results));
      continue;
    }
    if (s.kind === 'idle') {
      const table = await measureIdle(s, brokers, o, quietWaitS);
      idleResults.push(...table.flat());
      if (table.length > 0) sections.push(idleTable(s, table));
      continue;
    }
    if (s.kind === 'loop') {
      const rows: LoopResult[] = [];
      for (const b of brokers) {
        if (interrupted || b.endpoints[s.protocol] === undefined) continue;
        if (quietWaitS > 0) await waitForQuiet(quietWaitS);
        log(`${s.name} on ${b.name}: ${warmupS} s warm-up + ${durationS} s ...`);
        const r = await runLoop(s, b, { runId: o.runId, warmupS, durationS, onCleanup });
        log(r.error !== null ? `  failed: ${r.error}` : `  ${Math.round(r.msgsPerSec)} msgs/s, broker ${r.brokerCpuUsPerMsg?.toFixed(1) ?? 'n/a'} µs/msg, ${r.brokerCpuPct?.toFixed(0) ?? 'n/a'} % of a core`);
        rows.push(r);
        loopResults.push(r);
        await sleep(1000);
      }
      if (rows.length > 0) sections.push(loopTable(s, rows));
      continue;
    }
    if (s.kind === 'connections') {
      const rows = await measureConnections(s, brokers, o, quietWaitS);
      connectionResults.push(...rows);
      if (rows.length > 0) sections.push(connectionsTable(s, rows));
      continue;
    }
    if (s.kind === 'storm') {
      const rows = await measureStorm(s, brokers, o, quietWaitS);
      stormResults.push(...rows);
      if (rows.length > 0) sections.push(stormTable(s, rows));
      continue;
    }
    if (s.kind === 'queue-delete') {
      const rows = await measureQueueDelete(s, brokers, o, quietWaitS);
      queueDeleteResults.push(...rows);
      if (rows.length > 0) sections.push(queueDeleteTable(s, rows));
      continue;
    }
    // Repetitions alternate between brokers, so slow drifts in machine load hit both alike.
    const runs = new Map<Broker, RunResult[]>();
    for (let rep = 1; rep <= repeat; rep++) {
      for (const b of brokers) {
        if (interrupted) break;
        if (b.endpoints[s.protocol] === undefined) continue;
        if ((s.alsoNeeds ?? []).some((p) => b.endpoints[p] === undefined)) continue;
        const of = repeat > 1 ? ` (run ${rep}/${repeat})` : '';
        log(`${s.name} on ${b.name}${of}: ${warmupS} s warm-up + ${durationS} s ...`);
        let r = await measure(s, b, o, quietWaitS);
        // On a shared machine, a run that other processes disturbed is redone (up to 3 times).
        for (let retry = 1; quietWaitS > 0 && retry <= 3 && disturbed(r) && !interrupted; retry++) {
          log(`  other load ${Math.round(r.otherCpuPct ?? 0)} % during the run: discarded, retry ${retry}/3`);
          r = await measure(s, b, o, quietWaitS);
        }
        log(
          r.error !== null
            ? `  failed: ${r.error}`
            : `  ${Math.round(r.msgsPerSec)} msgs/s, p50 ${r.p50Ms?.toFixed(2)} ms, p99 ${r.p99Ms?.toFixed(2)} ms, ` +
                `broker ${r.brokerCpuUsPerMsg?.toFixed(1) ?? 'n/a'} µs/msg, other load ${Math.round(r.otherCpuPct ?? 0)} %`,
        );
        runs.set(b, [...(runs.get(b) ?? []), r]);
        results.push(r);
        await sleep(1000); // let the broker settle (queue deletion, GC) before the next run
      }
    }
    if (runs.size > 0) sections.push(scenarioTable(s, [...runs.values()]));
  }

  const report = [
    '## Warren bench',
    '',
    environment(brokers, o),
    '',
    ...sections.flatMap((t) => [t, '']),
    LEGEND,
    ...(latencyRan ? [LATENCY_LEGEND] : []),
    ...(idleResults.length > 0 ? [IDLE_LEGEND] : []),
    '',
  ].join('\n');
  process.stdout.write(`\n${report}`);
  if (values.out !== undefined) await writeFile(values.out, report);
  if (values.json !== undefined) {
    await writeFile(
      values.json,
      `${JSON.stringify({ environment: environment(brokers, o), results, idleResults, connectionResults, rpcResults, stormResults, queueDeleteResults, loopResults }, null, 2)}\n`,
    );
  }
  await cleanupAll();
  return results.some((r) => r.error !== null) ||
    idleResults.some((r) => r.error !== null) ||
    connectionResults.some((r) => r.error !== null) ||
    rpcResults.some((r) => r.error !== null) ||
    stormResults.some((r) => r.error !== null) ||
    queueDeleteResults.some((r) => r.error !== null) ||
    loopResults.some((r) => r.error !== null)
    ? 1
    : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  async (err: unknown) => {
    log(err instanceof Error ? err.message : String(err));
    await cleanupAll();
    process.exitCode = 1;
  },
);
