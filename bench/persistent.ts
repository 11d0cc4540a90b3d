/**
 * `npm run bench:persistent` — the persistent-message scenarios, side by side with a peer broker
 * (RabbitMQ), with the same guarantee on both: every message is persistent (delivery_mode 2) in a
 * durable queue and counted only once the broker has confirmed it (publisher confirms, at most
 * 1000 unconfirmed per publisher).
 *
 * - persistent-16b / persistent-1k: 1 publisher -> durable queue, no consumer (the queue grows);
 * - persistent-16b-consumer / persistent-1k-consumer: the same with one consumer acking each message;
 * - persistent-fanout10: 1 publisher -> fanout exchange -> 10 durable queues, one consumer per queue;
 * - restart-1m: fill a durable queue with 1 000 000 persistent 16 B messages, stop the broker
 *   cleanly, start it again on the same data: time until it listens, and until the queue reports
 *   every message. RabbitMQ runs as a private node for this one (needs the Debian package and root).
 *
 * With `--quorum`, replicated queues on three nodes instead: a Warren cluster of 3 nodes on 3
 * nats-servers (JetStream file storage, 3 replicas) against a private 3-node RabbitMQ cluster with
 * a quorum queue, publishing on node 1 and consuming on node 2:
 *
 * - quorum-16b / quorum-1k: confirmed throughput, one consumer acking each message;
 * - quorum-rate-1000: a fixed 1,000 msg/s, for confirm and publish -> delivery latency;
 * - quorum-idle-100: 100 replicated queues with a consumer each and no messages: what idling costs.
 *
 * Reuses the main harness's broker handling (brokers.ts) and CPU accounting (proc.ts).
 */
import { fork, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus, release, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from 'amqplib';
import type { ChannelModel } from 'amqplib';

import { brokerPids, connectPeer, freePort, rabbitmqInstalled, startRabbitmqCluster, startWarren, startWarrenCluster, waitExit, rabbitmqNodeEnv } from './brokers.js';
import type { Broker } from './brokers.js';
import { sleep, sleepUntil, wallMs } from './clock.js';
import { Histogram } from './histogram.js';
import type { Timeline } from './ipc.js';
import type { FromPersistentClient, PersistentResult, PersistentRole, ToPersistentClient } from './persistent-client.js';
import { cpuSecondsOf, machineBusySeconds } from './proc.js';
import { startNatsServers } from '../src/cluster/dev-cluster.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const CLIENT_JS = join(HERE, 'persistent-client.js');
const CONFIRM_WINDOW = 1000;
const PREFETCH = 1000;

interface ThroughputScenario {
  kind: 'throughput';
  name: string;
  summary: string;
  bodySize: number;
  queues: number;
  consumer: boolean;
  /** A replicated (quorum) queue, published to on one node and consumed on another. */
  quorum: boolean;
  /** A fixed publish rate (msgs/s) instead of as fast as confirms allow. */
  rate?: number;
}
interface IdleScenario {
  kind: 'idle';
  name: string;
  summary: string;
  queues: number;
}
interface RestartScenario {
  kind: 'restart';
  name: string;
  summary: string;
}
type PScenario = ThroughputScenario | RestartScenario | IdleScenario;

const tp = (name: string, bodySize: number, queues: number, consumer: boolean): ThroughputScenario => ({
  kind: 'throughput',
  name,
  bodySize,
  queues,
  consumer,
  quorum: false,
  summary:
    `AMQP 0-9-1: 1 publisher (confirms, ${CONFIRM_WINDOW} unconfirmed at most) -> ` +
    (queues > 1 ? `fanout exchange -> ${queues} durable queues` : 'durable queue') +
    `; ${bodySize} B persistent bodies; ` +
    (consumer ? `${queues > 1 ? 'one consumer per queue' : 'one consumer'}, prefetch ${PREFETCH}, ack each message` : 'no consumer (the queue grows)'),
});

const QUORUM_IDLE_QUEUES = 100;

const quorum = (name: string, bodySize: number, rate?: number): ThroughputScenario => ({
  kind: 'throughput',
  name,
  bodySize,
  queues: 1,
  consumer: true,
  quorum: true,
  ...(rate !== undefined ? { rate } : {}),
  summary:
    `AMQP 0-9-1 on 3 nodes: 1 publisher on node 1 (confirms, ${CONFIRM_WINDOW} unconfirmed at most${rate !== undefined ? `, a fixed ${rate.toLocaleString('en-US')} msgs/s` : ''}) -> ` +
    `replicated queue (3 replicas); ${bodySize} B persistent bodies; one consumer on node 2, prefetch ${PREFETCH}, ack each message`,
});

/** The `--quorum` scenarios: replicated queues on a cluster of three. */
export const QUORUM_SCENARIOS: readonly PScenario[] = [
  quorum('quorum-16b', 16),
  quorum('quorum-1k', 1024),
  quorum('quorum-rate-1000', 16, 1000),
  {
    kind: 'idle',
    name: 'quorum-idle-100',
    queues: QUORUM_IDLE_QUEUES,
    summary: `${QUORUM_IDLE_QUEUES} replicated queues (3 replicas) on 3 nodes, one consumer each on node 2 (prefetch ${PREFETCH}), no messages: CPU while idle`,
  },
];

export const PERSISTENT_SCENARIOS: readonly PScenario[] = [
  tp('persistent-16b', 16, 1, false),
  tp('persistent-1k', 1024, 1, false),
  tp('persistent-16b-consumer', 16, 1, true),
  tp('persistent-1k-consumer', 1024, 1, true),
  tp('persistent-fanout10', 16, 10, true),
  {
    kind: 'restart',
    name: 'restart-1m',
    summary: 'fill a durable queue with persistent 16 B messages (default 1 000 000), stop cleanly, start again on the same data',
  },
];

function log(msg: string): void {
  process.stderr.write(`bench: ${msg}\n`);
}

// ---- client processes ------------------------------------------------------------------------

class Client {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly failed: Promise<never>;
  filled: Promise<{ count: number; ms: number }>;
  private onResult: ((r: PersistentResult) => void) | undefined;

  constructor(spec: PersistentRole) {
    this.child = fork(CLIENT_JS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let ready: () => void = () => undefined;
    let filled: (v: { count: number; ms: number }) => void = () => undefined;
    let fail: (e: Error) => void = () => undefined;
    this.ready = new Promise((r) => (ready = r));
    this.filled = new Promise((r) => (filled = r));
    this.failed = new Promise<never>((_, rej) => (fail = rej));
    this.failed.catch(() => undefined);
    this.child.on('message', (m: FromPersistentClient) => {
      if (m.type === 'ready') ready();
      else if (m.type === 'filled') filled({ count: m.count, ms: m.ms });
      else if (m.type === 'result') this.onResult?.(m.result);
      else fail(new Error(`${spec.role}: ${m.message}`));
    });
    this.child.on('exit', (code) => {
      if (code !== 0) fail(new Error(`${spec.role} exited with ${code}`));
    });
    this.send({ type: 'init', spec });
  }

  send(m: ToPersistentClient): void {
    if (this.child.connected) this.child.send(m);
  }

  async stop(): Promise<PersistentResult> {
    const r = new Promise<PersistentResult>((resolve) => (this.onResult = resolve));
    this.send({ type: 'stop' });
    const result = await Promise.race([r, sleep(10_000).then(() => null)]);
    await waitExit(this.child, 5_000);
    if (result === null) throw new Error('client did not report');
    return result;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

// ---- throughput ------------------------------------------------------------------------------

interface ThroughputRow {
  broker: string;
  isWarren: boolean;
  error: string | null;
  confirmedPerSec: number;
  deliveredPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  /** Publish -> delivery at the consumer. */
  deliveryP50Ms: number | null;
  deliveryP99Ms: number | null;
  brokerCpuUsPerMsg: number | null;
  brokerCpuPct: number | null;
  /** The engine's servers (a Warren cluster's nats-servers), apart from the broker's. */
  engineCpuUsPerMsg: number | null;
  engineCpuPct: number | null;
  otherCpuPct: number | null;
  /** Over the consumers' whole run: deliveries flagged redelivered, and deliveries of a message seen before. */
  redelivered: number;
  duplicates: number;
}

/** The engine's processes of a broker (none: null). */
const enginePidsOf = (b: Broker): number[] | null => b.enginePids?.() ?? null;

/** A queue declared on one node of a cluster shows on another once its definition got there. */
async function queueVisible(url: string, queue: string, timeoutMs: number): Promise<void> {
  const deadline = wallMs() + timeoutMs;
  for (;;) {
    const ok = await withConn(url, async (c) => (await c.createChannel()).checkQueue(queue)).then(
      () => true,
      () => false,
    );
    if (ok) return;
    if (wallMs() > deadline) throw new Error(`queue ${queue} not on ${new URL(url).host} after ${timeoutMs} ms`);
    await sleep(100);
  }
}

const QUORUM_ARGS = { arguments: { 'x-queue-type': 'quorum' } };

async function withConn<T>(url: string, fn: (c: ChannelModel) => Promise<T>): Promise<T> {
  const c = await connect(url, { noDelay: true });
  c.on('error', () => undefined);
  try {
    return await fn(c);
  } finally {
    await c.close().catch(() => undefined);
  }
}

async function runThroughput(s: ThroughputScenario, b: Broker, runId: string, warmupS: number, durationS: number): Promise<ThroughputRow> {
  const url = b.endpoints.amqp!;
  const consumerUrl = s.quorum ? (b.consumerEndpoints?.amqp ?? url) : url;
  const base = `warren-bench-p.${runId}.${s.name}`;
  const queues = s.queues > 1 ? Array.from({ length: s.queues }, (_, i) => `${base}.q${i}`) : [base];
  const exchange = s.queues > 1 ? base : '';
  const clients: Client[] = [];
  const row: ThroughputRow = {
    broker: b.name,
    isWarren: b.isWarren,
    error: null,
    confirmedPerSec: 0,
    deliveredPerSec: 0,
    p50Ms: null,
    p99Ms: null,
    deliveryP50Ms: null,
    deliveryP99Ms: null,
    brokerCpuUsPerMsg: null,
    brokerCpuPct: null,
    engineCpuUsPerMsg: null,
    engineCpuPct: null,
    otherCpuPct: null,
    redelivered: 0,
    duplicates: 0,
  };
  try {
    await withConn(url, async (c) => {
      const ch = await c.createChannel();
      if (exchange !== '') await ch.assertExchange(exchange, 'fanout', { durable: true });
      for (const q of queues) {
        await ch.assertQueue(q, { durable: true, ...(b.shared ? { expires: 600_000 } : {}), ...(s.quorum ? QUORUM_ARGS : {}) });
        if (exchange !== '') await ch.bindQueue(q, exchange, '');
      }
    });
    if (consumerUrl !== url) for (const q of queues) await queueVisible(consumerUrl, q, 30_000);
    if (s.consumer) clients.push(new Client({ role: 'consumer', url: consumerUrl, queues, prefetch: PREFETCH }));
    const pub = new Client({
      role: 'publisher',
      url,
      exchange,
      routingKey: exchange === '' ? base : '',
      bodySize: s.bodySize,
      window: CONFIRM_WINDOW,
      ...(s.rate !== undefined ? { rate: s.rate } : {}),
    });
    clients.push(pub);
    const failed = Promise.race(clients.map((c) => c.failed));
    await Promise.race([Promise.all(clients.map((c) => c.ready)), failed]);
    const startAt = wallMs() + 200;
    const timeline: Timeline = { startAt, measureFrom: startAt + warmupS * 1000, measureTo: startAt + (warmupS + durationS) * 1000 };
    for (const c of clients) c.send({ type: 'start', timeline });
    await Promise.race([sleepUntil(timeline.measureFrom), failed]);
    const cpu0 = cpuSecondsOf(brokerPids(b));
    const e0 = cpuSecondsOf(enginePidsOf(b));
    const m0 = machineBusySeconds();
    const t0 = wallMs();
    await Promise.race([sleepUntil(timeline.measureTo), failed]);
    const cpu1 = cpuSecondsOf(brokerPids(b));
    const e1 = cpuSecondsOf(enginePidsOf(b));
    const m1 = machineBusySeconds();
    const secs = (wallMs() - t0) / 1000;
    await sleep(300);
    const results = await Promise.all(clients.map((c) => c.stop()));
    const p = results[results.length - 1]!;
    const delivered = results.slice(0, -1).reduce((a, r) => a + r.receivedInWindow, 0);
    row.redelivered = results.slice(0, -1).reduce((a, r) => a + r.redelivered, 0);
    row.duplicates = results.slice(0, -1).reduce((a, r) => a + r.duplicates, 0);
    const h = new Histogram();
    h.merge(p.latency);
    row.confirmedPerSec = p.confirmedInWindow / durationS;
    row.deliveredPerSec = delivered / durationS;
    row.p50Ms = h.quantileMs(0.5);
    row.p99Ms = h.quantileMs(0.99);
    const d = new Histogram();
    for (const r of results.slice(0, -1)) d.merge(r.delivery);
    if (d.count > 0) {
      row.deliveryP50Ms = d.quantileMs(0.5);
      row.deliveryP99Ms = d.quantileMs(0.99);
    }
    const engineCpu = e0 !== null && e1 !== null ? e1 - e0 : 0;
    if (e0 !== null && e1 !== null) {
      row.engineCpuPct = (engineCpu / secs) * 100;
      if (p.confirmedInWindow > 0) row.engineCpuUsPerMsg = (engineCpu * 1e6) / p.confirmedInWindow;
    }
    if (cpu0 !== null && cpu1 !== null) {
      row.brokerCpuPct = ((cpu1 - cpu0) / secs) * 100;
      if (p.confirmedInWindow > 0) row.brokerCpuUsPerMsg = ((cpu1 - cpu0) * 1e6) / p.confirmedInWindow;
      // Client processes are not separated here: "other" is everything but the broker and its engine.
      if (m0 !== null && m1 !== null) row.otherCpuPct = Math.max(0, ((m1 - m0 - (cpu1 - cpu0) - engineCpu) / secs) * 100);
    }
    if (p.confirmedInWindow === 0) row.error = 'nothing confirmed in the measured window';
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
  } finally {
    for (const c of clients) c.kill();
    await withConn(url, async (c) => {
      for (const q of queues) {
        const ch = await c.createChannel();
        await ch.deleteQueue(q).catch(() => undefined);
      }
      if (exchange !== '') {
        const ch = await c.createChannel();
        await ch.deleteExchange(exchange).catch(() => undefined);
      }
    }).catch((err: unknown) => log(`teardown: ${String(err)}`));
  }
  return row;
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmtMs = (n: number | null): string => (n === null ? 'n/a' : n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : fmtInt(n));
const fmtPct = (n: number | null): string => (n === null ? 'n/a' : `${Math.round(n)} %`);

function ratio(a: number | null, b: number | null): string {
  return a === null || b === null || a === 0 || b === 0 ? 'n/a' : `${(a / b).toFixed(2)}×`;
}

function throughputTable(s: ThroughputScenario, runs: ThroughputRow[][]): string {
  const pick = (rs: ThroughputRow[]): ThroughputRow => {
    const ok = rs.filter((r) => r.error === null).sort((a, b) => a.confirmedPerSec - b.confirmedPerSec);
    return ok[Math.floor(ok.length / 2)] ?? rs[0]!;
  };
  const rows = runs.map(pick);
  // Replicated queues: publish -> delivery latency, and the engine's CPU apart from the broker's.
  const q = s.quorum;
  const us = (n: number | null): string => (n === null ? 'n/a' : n.toFixed(1));
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    q
      ? '| broker | confirmed msgs/s | deliveries/s | confirm p50 ms | confirm p99 ms | delivery p50 ms | delivery p99 ms | broker CPU µs/msg | engine CPU µs/msg | broker CPU | engine CPU | other CPU |'
      : '| broker | confirmed msgs/s | deliveries/s | confirm p50 ms | confirm p99 ms | broker CPU µs/msg | broker CPU | other CPU |',
    q ? '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|' : '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    const cells =
      r.error !== null
        ? [`failed: ${r.error}`]
        : [
            fmtInt(r.confirmedPerSec),
            s.consumer ? fmtInt(r.deliveredPerSec) : '—',
            fmtMs(r.p50Ms),
            fmtMs(r.p99Ms),
            ...(q ? [fmtMs(r.deliveryP50Ms), fmtMs(r.deliveryP99Ms)] : []),
            us(r.brokerCpuUsPerMsg),
            ...(q ? [us(r.engineCpuUsPerMsg)] : []),
            fmtPct(r.brokerCpuPct),
            ...(q ? [fmtPct(r.engineCpuPct)] : []),
            fmtPct(r.otherCpuPct),
          ];
    lines.push(`| ${r.broker} | ${cells.join(' | ')} |`);
  }
  for (const w of rows.filter((r) => r.isWarren && r.error === null)) {
    for (const peer of rows.filter((r) => r !== w && r.error === null)) {
      if (peer.isWarren && rows.indexOf(peer) < rows.indexOf(w)) continue;
      // With the engine's CPU counted in: what the whole replicated queue costs per message.
      const total = (r: ThroughputRow): number | null => (r.brokerCpuUsPerMsg === null ? null : r.brokerCpuUsPerMsg + (r.engineCpuUsPerMsg ?? 0));
      const cells = [
        ratio(w.confirmedPerSec, peer.confirmedPerSec),
        s.consumer ? ratio(w.deliveredPerSec, peer.deliveredPerSec) : '—',
        '',
        '',
        ...(q ? ['', ''] : []),
        q ? `${ratio(total(w), total(peer))} (with engine)` : ratio(w.brokerCpuUsPerMsg, peer.brokerCpuUsPerMsg),
        ...(q ? [''] : []),
        '',
        ...(q ? [''] : []),
        '',
      ];
      lines.push(`| ${w.broker} / ${peer.broker} | ${cells.join(' | ')} |`);
    }
  }
  if (runs.some((rs) => rs.length > 1)) {
    lines.push('');
    for (const rs of runs) lines.push(`- ${rs[0]!.broker}: ${rs.length} runs, confirmed msgs/s ${rs.map((r) => (r.error ? 'failed' : fmtInt(r.confirmedPerSec))).join(', ')}`);
  }
  return lines.join('\n');
}

// ---- idle replicated queues ------------------------------------------------------------------

interface IdleRow {
  broker: string;
  error: string | null;
  /** % of one core over the measured window. */
  brokerCpuPct: number | null;
  engineCpuPct: number | null;
}

/** `s.queues` replicated queues with a consumer each on node 2 and no traffic: the CPU they cost. */
async function runIdle(s: IdleScenario, b: Broker, runId: string, warmupS: number, durationS: number): Promise<IdleRow> {
  const url = b.endpoints.amqp!;
  const consumerUrl = b.consumerEndpoints?.amqp ?? url;
  const queues = Array.from({ length: s.queues }, (_, i) => `warren-bench-p.${runId}.${s.name}.q${i}`);
  const row: IdleRow = { broker: b.name, error: null, brokerCpuPct: null, engineCpuPct: null };
  let consumer: Client | undefined;
  try {
    await withConn(url, async (c) => {
      const ch = await c.createChannel();
      for (const q of queues) await ch.assertQueue(q, { durable: true, ...QUORUM_ARGS });
    });
    for (const q of queues) await queueVisible(consumerUrl, q, 30_000);
    consumer = new Client({ role: 'consumer', url: consumerUrl, queues, prefetch: PREFETCH });
    await Promise.race([consumer.ready, consumer.failed]);
    await Promise.race([sleep(warmupS * 1000), consumer.failed]);
    const cpu0 = cpuSecondsOf(brokerPids(b));
    const e0 = cpuSecondsOf(enginePidsOf(b));
    const t0 = wallMs();
    await Promise.race([sleep(durationS * 1000), consumer.failed]);
    const cpu1 = cpuSecondsOf(brokerPids(b));
    const e1 = cpuSecondsOf(enginePidsOf(b));
    const secs = (wallMs() - t0) / 1000;
    if (cpu0 !== null && cpu1 !== null) row.brokerCpuPct = ((cpu1 - cpu0) / secs) * 100;
    if (e0 !== null && e1 !== null) row.engineCpuPct = ((e1 - e0) / secs) * 100;
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
  } finally {
    consumer?.kill();
    await withConn(url, async (c) => {
      for (const q of queues) await (await c.createChannel()).deleteQueue(q).catch(() => undefined);
    }).catch((err: unknown) => log(`teardown: ${String(err)}`));
  }
  return row;
}

function idleTable(s: IdleScenario, rows: IdleRow[]): string {
  const pct = (n: number | null): string => (n === null ? 'n/a' : `${n.toFixed(2)} %`);
  const lines = [`### ${s.name}`, '', s.summary, '', '| broker | broker CPU (% of a core) | engine CPU (% of a core) |', '|---|--:|--:|'];
  for (const r of rows) lines.push(r.error !== null ? `| ${r.broker} | failed: ${r.error} | |` : `| ${r.broker} | ${pct(r.brokerCpuPct)} | ${pct(r.engineCpuPct)} |`);
  return lines.join('\n');
}

// ---- restart ---------------------------------------------------------------------------------

interface RestartRow {
  broker: string;
  error: string | null;
  messages: number;
  fillS: number;
  dataMiB: number;
  listeningMs: number;
  allMessagesMs: number;
  note: string;
}

function duBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) n += duBytes(p);
    else if (e.isFile()) n += statSync(p).size;
  }
  return n;
}

/** A process printing lines; resolves `waitFor(re)` with the first matching line. */
function lines(child: ChildProcess): { seen: string[]; waitFor(re: RegExp, ms: number): Promise<string> } {
  const seen: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  const on = (l: string): void => {
    seen.push(l);
    if (seen.length > 200) seen.shift();
    for (const w of [...waiters]) if (w.re.test(l)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(l);
    }
  };
  if (child.stdout) createInterface({ input: child.stdout }).on('line', on);
  if (child.stderr) createInterface({ input: child.stderr }).on('line', on);
  return {
    seen,
    waitFor: (re, ms) => {
      const hit = seen.find((l) => re.test(l));
      if (hit !== undefined) return Promise.resolve(hit);
      return Promise.race([
        new Promise<string>((resolve) => waiters.push({ re, resolve })),
        sleep(ms).then(() => Promise.reject(new Error(`no line matching ${re} within ${ms} ms:\n${seen.slice(-20).join('\n')}`))),
      ]);
    },
  };
}

async function countIs(url: string, queue: string, n: number, timeoutMs: number): Promise<void> {
  const deadline = wallMs() + timeoutMs;
  for (;;) {
    const count = await withConn(url, async (c) => (await (await c.createChannel()).checkQueue(queue)).messageCount).catch(() => -1);
    if (count === n) return;
    if (wallMs() > deadline) throw new Error(`queue holds ${count} messages, expected ${n}`);
    await sleep(20);
  }
}

async function fill(url: string, queue: string, n: number): Promise<number> {
  await withConn(url, async (c) => {
    await (await c.createChannel()).assertQueue(queue, { durable: true });
  });
  const f = new Client({ role: 'filler', url, routingKey: queue, bodySize: 16, window: CONFIRM_WINDOW, count: n });
  try {
    await Promise.race([f.ready, f.failed]);
    f.send({ type: 'start', timeline: { startAt: wallMs(), measureFrom: Infinity, measureTo: -Infinity } });
    const r = await Promise.race([f.filled, f.failed]);
    return r.ms / 1000;
  } finally {
    await f.stop().catch(() => undefined);
  }
}

async function restartWarren(bin: string, n: number): Promise<RestartRow> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-restart-'));
  const row: RestartRow = { broker: 'Warren', error: null, messages: n, fillS: 0, dataMiB: 0, listeningMs: 0, allMessagesMs: 0, note: '' };
  const start = (): { child: ChildProcess; out: ReturnType<typeof lines> } => {
    const child = spawn(process.execPath, [bin, 'start', '--data-dir', dir, '--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off', '--bind', '127.0.0.1', '--log-level', 'info'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return { child, out: lines(child) };
  };
  let cur: ChildProcess | undefined;
  try {
    const a = start();
    cur = a.child;
    let port = Number(/amqp=(\d+)/.exec(await a.out.waitFor(/warren ready/, 30_000))![1]);
    const url1 = `amqp://guest:guest@127.0.0.1:${port}`;
    const probe = await withConn(url1, async (c) => c.connection.serverProperties);
    row.broker = `${String(probe['product'])} ${String(probe['version'])}`;
    row.fillS = await fill(url1, 'restart', n);
    a.child.kill('SIGTERM');
    await waitExit(a.child, 60_000);
    row.dataMiB = duBytes(dir) / 2 ** 20;
    const t0 = wallMs();
    const b = start();
    cur = b.child;
    port = Number(/amqp=(\d+)/.exec(await b.out.waitFor(/warren ready/, 120_000))![1]);
    row.listeningMs = wallMs() - t0;
    await countIs(`amqp://guest:guest@127.0.0.1:${port}`, 'restart', n, 120_000);
    row.allMessagesMs = wallMs() - t0;
    const rec = b.out.seen.find((l) => l.includes('recovered') && l.includes('messages in'));
    const m = rec === undefined ? null : /recovered \d+ messages in \d+ durable queues in (\d+) ms/.exec(rec);
    if (m) row.note = `recovery itself ${m[1]} ms (the rest is process start)`;
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
  } finally {
    if (cur && cur.exitCode === null) {
      cur.kill('SIGTERM');
      await waitExit(cur, 30_000);
    }
    await rm(dir, { recursive: true, force: true });
  }
  return row;
}

const RABBITMQ_SERVER = ['/usr/lib/rabbitmq/bin/rabbitmq-server'];

/** A private RabbitMQ node on `dir` (kept across starts), like brokers.ts starts one. */
async function restartRabbitmq(n: number): Promise<RestartRow> {
  const row: RestartRow = { broker: 'RabbitMQ', error: null, messages: n, fillS: 0, dataMiB: 0, listeningMs: 0, allMessagesMs: 0, note: 'private node' };
  const script = RABBITMQ_SERVER.find((p) => existsSync(p));
  if (script === undefined || process.getuid?.() !== 0) {
    row.error = 'needs the rabbitmq-server package and root';
    return row;
  }
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-rabbitmq-restart-'));
  await writeFile(join(dir, 'enabled_plugins'), '[].\n');
  const amqpPort = await freePort();
  const distPort = await freePort();
  const node = `warren-bench-restart-${process.pid}@localhost`;
  const env = rabbitmqNodeEnv(dir, node, amqpPort, distPort);
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  const start = (): ChildProcess => spawn(script, [], { env, cwd: dir, stdio: ['ignore', 'ignore', 'ignore'] });
  const listening = async (child: ChildProcess): Promise<void> => {
    const deadline = wallMs() + 180_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`rabbitmq-server exited (${child.exitCode})`);
      const ok = await withConn(url, async (c) => c.connection.serverProperties).then((p) => {
        row.broker = `${String(p['product'])} ${String(p['version'])}`;
        return true;
      }, () => false);
      if (ok) return;
      if (wallMs() > deadline) throw new Error('rabbitmq-server did not start');
      await sleep(100);
    }
  };
  const stop = async (child: ChildProcess): Promise<void> => {
    // The package's own rabbitmqctl (not the /usr/sbin wrapper, which switches user and HOME and
    // so would not find this node's cookie).
    spawnSync(join(dirname(script), 'rabbitmqctl'), ['-n', node, 'stop'], { env, stdio: 'ignore', timeout: 120_000 });
    await waitExit(child, 60_000);
  };
  let cur: ChildProcess | undefined;
  try {
    cur = start();
    await listening(cur);
    row.fillS = await fill(url, 'restart', n);
    await stop(cur);
    row.dataMiB = duBytes(join(dir, 'mnesia')) / 2 ** 20;
    const t0 = wallMs();
    cur = start();
    await listening(cur);
    row.listeningMs = wallMs() - t0;
    await countIs(url, 'restart', n, 300_000);
    row.allMessagesMs = wallMs() - t0;
  } catch (err) {
    row.error = err instanceof Error ? err.message : String(err);
  } finally {
    if (cur && cur.exitCode === null) await stop(cur);
    await rm(dir, { recursive: true, force: true });
  }
  return row;
}

function restartTable(s: RestartScenario, rows: RestartRow[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | messages | fill s | data MiB | restart -> listening ms | restart -> all messages ms | note |',
    '|---|--:|--:|--:|--:|--:|---|',
  ];
  for (const r of rows) {
    if (r.error !== null) lines.push(`| ${r.broker} | ${fmtInt(r.messages)} | failed: ${r.error} | | | | |`);
    else lines.push(`| ${r.broker} | ${fmtInt(r.messages)} | ${r.fillS.toFixed(1)} | ${r.dataMiB.toFixed(0)} | ${fmtInt(r.listeningMs)} | ${fmtInt(r.allMessagesMs)} | ${r.note} |`);
  }
  return lines.join('\n');
}

// ---- replicated queues: the clusters ---------------------------------------------------------

const QUORUM_NODES = 3;

/**
 * A Warren cluster of three on three fresh nats-servers for `bin` (and for `beforeBin`), and the
 * private RabbitMQ cluster when `peer`; the nats-servers are handed to `stopLater`.
 */
async function startQuorumBrokers(bin: string, beforeBin: string | undefined, peer: boolean, stopLater: (stop: () => Promise<void>) => void): Promise<Broker[]> {
  const out: Broker[] = [];
  const builds: Array<[string, string]> = [[bin, 'Warren']];
  if (beforeBin !== undefined) builds.push([beforeBin, 'Warren (before)']);
  try {
    for (const [b, label] of builds) {
      log(`starting ${QUORUM_NODES} nats-servers and a ${label} cluster of ${QUORUM_NODES} nodes ...`);
      const nats = await startNatsServers({ count: QUORUM_NODES });
      stopLater(() => nats.stop());
      const cluster = await startWarrenCluster({ bin: b, extraArgs: [], verbose: false, startTimeoutMs: 60_000, clusterUrl: nats.url, nodes: QUORUM_NODES });
      out.push({
        ...cluster,
        name: `${label} cluster of ${QUORUM_NODES}`,
        enginePids: () => nats.servers.flatMap((s) => (s.child.pid === undefined ? [] : [s.child.pid])),
        details: `${cluster.details}; nats-server ${natsVersion()} ×${QUORUM_NODES}, JetStream file storage`,
      });
    }
    if (peer) {
      if (!rabbitmqInstalled()) log('rabbitmq-server is not installed: Warren only');
      else {
        log(`starting a private RabbitMQ cluster of ${QUORUM_NODES} nodes (this takes a while) ...`);
        out.push(await startRabbitmqCluster({ nodes: QUORUM_NODES, verbose: false, startTimeoutMs: 180_000 }));
      }
    }
  } catch (e) {
    for (const b of out) await b.stop().catch(() => undefined);
    throw e;
  }
  for (const b of out) log(`  ${b.name}: ${b.details}`);
  return out;
}

function natsVersion(): string {
  const r = spawnSync('nats-server', ['--version'], { encoding: 'utf8' });
  return /v?(\d+\.\d+\.\d+)/.exec(r.stdout ?? '')?.[1] ?? '?';
}

// ---- main ------------------------------------------------------------------------------------

/** On a shared machine: wait (up to `maxS`) until less than a quarter of a core is busy. */
async function waitForQuiet(maxS: number): Promise<void> {
  const deadline = wallMs() + maxS * 1000;
  for (;;) {
    const b0 = machineBusySeconds();
    const t0 = wallMs();
    await sleep(2000);
    const b1 = machineBusySeconds();
    if (b0 === null || b1 === null) return;
    const pct = ((b1 - b0) / ((wallMs() - t0) / 1000)) * 100;
    if (pct < 25) return;
    if (wallMs() > deadline) {
      log(`machine still busy (${Math.round(pct)} % of a core); measuring anyway`);
      return;
    }
  }
}

const USAGE = `Usage: npm run bench:persistent -- [options]

  --scenarios <a,b,..>    scenarios to run (default: all; --list shows them)
  --duration <s>          measured seconds per run (default 10)
  --warmup <s>            warm-up seconds (default 2)
  --repeat <n>            runs per scenario and broker, median shown (default 1)
  --peer-url <url>        AMQP peer to compare with (default: the broker on 127.0.0.1:5672 if one answers)
  --warren-only           no peer
  --restart-messages <n>  messages for restart-1m (default 1000000)
  --no-rabbitmq-restart   skip the private RabbitMQ node in restart-1m
  --quiet-wait <s>        before each run, wait up to s seconds for the machine to be idle
  --quorum                replicated queues on 3 nodes instead: a Warren cluster of 3 on 3
                          nats-servers against a private 3-node RabbitMQ cluster (quorum queues)
  --before-bin <path>     with --quorum: also a Warren cluster from another build (its bin/warren.js),
                          in the same run, for before/after ratios
  --out <file>            also write the markdown report to <file>
  --list                  list the scenarios
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      scenarios: { type: 'string' },
      duration: { type: 'string' },
      warmup: { type: 'string' },
      repeat: { type: 'string' },
      'peer-url': { type: 'string' },
      'warren-only': { type: 'boolean', default: false },
      'restart-messages': { type: 'string' },
      'no-rabbitmq-restart': { type: 'boolean', default: false },
      'quiet-wait': { type: 'string' },
      quorum: { type: 'boolean', default: false },
      'before-bin': { type: 'string' },
      out: { type: 'string' },
      list: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (values.list) {
    for (const s of [...PERSISTENT_SCENARIOS, ...QUORUM_SCENARIOS]) process.stdout.write(`${s.name}\n    ${s.summary}\n`);
    return 0;
  }
  const durationS = Number(values.duration ?? 10);
  const warmupS = Number(values.warmup ?? 2);
  const repeat = Number(values.repeat ?? 1);
  const restartN = Number(values['restart-messages'] ?? 1_000_000);
  const quietS = Number(values['quiet-wait'] ?? 0);
  const wanted = values.scenarios?.split(',').map((x) => x.trim()).filter((x) => x !== '') ?? [];
  const all = values.quorum ? QUORUM_SCENARIOS : PERSISTENT_SCENARIOS;
  const unknown = wanted.filter((n) => !all.some((s) => s.name === n));
  if (unknown.length > 0) throw new Error(`unknown scenario(s) ${unknown.join(', ')}${values.quorum ? ' with --quorum' : ''}; --list shows them`);
  const scenarios = wanted.length === 0 ? all : all.filter((s) => wanted.includes(s.name));
  const bin = join(REPO_ROOT, 'bin', 'warren.js');

  const brokers: Broker[] = [];
  const sections: string[] = [];
  /** What goes after the brokers (their engines). */
  const stopping: Array<() => Promise<void>> = [];
  const stopLater = (stop: () => Promise<void>): void => void stopping.push(stop);
  try {
    if (values.quorum) brokers.push(...(await startQuorumBrokers(bin, values['before-bin'], !values['warren-only'], stopLater)));
    else if (scenarios.some((s) => s.kind === 'throughput')) {
      log('starting Warren ...');
      brokers.push(await startWarren({ bin, extraArgs: [], verbose: false, startTimeoutMs: 30_000 }));
      if (!values['warren-only']) {
        const url = values['peer-url'] ?? 'amqp://guest:guest@127.0.0.1:5672';
        const peer = await connectPeer({ url, name: null, pid: null }).catch(() => null);
        if (peer) brokers.push(peer);
        else log(`no peer answers on ${url}: Warren only`);
      }
    }
    const runId = `${process.pid}-${Date.now().toString(36)}`;
    for (const s of scenarios) {
      if (s.kind === 'throughput') {
        const runs = brokers.map((): ThroughputRow[] => []);
        for (let rep = 0; rep < repeat; rep++) {
          for (const [i, b] of brokers.entries()) {
            if (quietS > 0) await waitForQuiet(quietS);
            log(`${s.name} on ${b.name}${repeat > 1 ? ` (run ${rep + 1}/${repeat})` : ''}: ${warmupS} s warm-up + ${durationS} s ...`);
            const r = await runThroughput(s, b, runId, warmupS, durationS);
            log(
              r.error
                ? `  failed: ${r.error}`
                : `  ${fmtInt(r.confirmedPerSec)} confirmed msgs/s, ${fmtInt(r.deliveredPerSec)} deliveries/s` +
                    (s.consumer ? ` (${fmtInt(r.redelivered)} redelivered, ${fmtInt(r.duplicates)} duplicates in the run)` : ''),
            );
            runs[i]!.push(r);
            await sleep(1000);
          }
        }
        sections.push(throughputTable(s, runs));
      } else if (s.kind === 'idle') {
        const rows: IdleRow[] = [];
        for (const b of brokers) {
          log(`${s.name} on ${b.name}: ${warmupS} s settling + ${durationS} s ...`);
          const r = await runIdle(s, b, runId, Math.max(warmupS, 5), durationS);
          log(r.error ? `  failed: ${r.error}` : `  broker ${r.brokerCpuPct?.toFixed(2) ?? 'n/a'} %, engine ${r.engineCpuPct?.toFixed(2) ?? 'n/a'} % of a core`);
          rows.push(r);
        }
        sections.push(idleTable(s, rows));
      } else {
        log(`${s.name}: Warren, ${fmtInt(restartN)} messages ...`);
        const rows = [await restartWarren(bin, restartN)];
        log(`  listening after ${fmtInt(rows[0]!.listeningMs)} ms, all messages after ${fmtInt(rows[0]!.allMessagesMs)} ms`);
        if (!values['warren-only'] && !values['no-rabbitmq-restart'] && rabbitmqInstalled()) {
          log(`${s.name}: private RabbitMQ node, ${fmtInt(restartN)} messages (this takes a while) ...`);
          rows.push(await restartRabbitmq(restartN));
          const r = rows[1]!;
          log(r.error ? `  failed: ${r.error}` : `  listening after ${fmtInt(r.listeningMs)} ms, all messages after ${fmtInt(r.allMessagesMs)} ms`);
        }
        sections.push(restartTable(s, rows));
      }
    }
  } finally {
    for (const b of brokers) await b.stop().catch(() => undefined);
    for (const stop of stopping.splice(0)) await stop().catch(() => undefined);
  }
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  const report = [
    '## Warren bench: persistent messages',
    '',
    `- date: ${new Date().toISOString()}`,
    `- machine: ${availableParallelism()} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Linux ${release()}`,
    `- timing: ${warmupS} s warm-up, then ${durationS} s measured${repeat > 1 ? `; ${repeat} runs, median shown` : ''}`,
    `- every message persistent in a durable queue; a publish counts once the broker confirmed it (${CONFIRM_WINDOW} unconfirmed at most)`,
    ...(values.quorum
      ? [
          `- replicated queues on ${QUORUM_NODES} nodes: Warren's on ${QUORUM_NODES} nats-servers (JetStream, file storage, ${QUORUM_NODES} replicas), RabbitMQ's quorum queues (Raft, ${QUORUM_NODES} members); publisher on node 1, consumer on node 2`,
          ...brokers.map((b) => `- ${b.name}: ${b.details}`),
        ]
      : []),
    '',
    ...sections.flatMap((t) => [t, '']),
    '- confirmed msgs/s: publisher confirms received per second of the measured window; deliveries/s: messages consumers received (fan-out: summed over the queues).',
    '- confirm p50/p99: publish -> confirm latency. broker CPU µs/msg: broker CPU time over the window / confirmed messages. other CPU: every other process (clients included), % of one core.',
    '- delivery p50/p99: publish (its scheduled time at a fixed rate) -> delivery at the consumer. engine CPU: the nats-servers of a Warren cluster, apart from its nodes; the ratio row adds it in.',
    '- restart: from spawning the broker process to the AMQP port accepting, and to the queue reporting every message.',
    '',
  ].join('\n');
  process.stdout.write(`\n${report}`);
  if (values.out !== undefined) await writeFile(values.out, report);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    log(err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
