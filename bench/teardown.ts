/**
 * Costs that could grow with the broker's size: tearing things down.
 *
 * - Disconnect storm (MQTT): `sessions` subscribed clean sessions, each with a QoS 0 will, held
 *   from several client processes, drop at once (their sockets are destroyed, as in a load
 *   balancer restart). Reported: the time from the drop until the broker has handled every
 *   session's end (the last will reaches a watcher subscribed to them all), the broker's CPU time
 *   per session (sampled every {@link SAMPLE_MS} ms from /proc, up to when its CPU use falls below
 *   {@link IDLE_PCT} % after the last will), and the connect time (CONNECT -> CONNACK) of new
 *   clients started every {@link PROBE_EVERY_MS} ms while the storm lasts, median and worst.
 * - Queue delete (AMQP): with 1k, 10k and 50k queues in the vhost (each bound to amq.topic), the
 *   broker's CPU per queue.delete of 5,000 further bound queues (pipelined on one channel, so the
 *   wall time per delete is shown too), and the broker's CPU per AMQP connect + channel + close
 *   (sequential, 200 of them). The broker's CPU use while idle at that level (measured for 5 s
 *   just before; stats sampling and timers grow with the queues too) is taken off both.
 *
 * The broker's CPU is its process's utime + stime: whatever else it does meanwhile (GC, timers)
 * is charged too, for every broker alike.
 */
import { fork } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { connect as amqpConnect } from 'amqplib';

import type { Broker } from './brokers.js';
import { PublishCounter, openSession } from './clients/mqtt-raw.js';
import { sleep, withTimeout } from './clock.js';
import { openFilesLimits } from './idle.js';
import { cpuSeconds } from './proc.js';
import type { QueueDeleteScenario, StormScenario } from './scenarios.js';
import type { FromStormClient, ToStormClient } from './storm-client.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Descriptors a broker needs besides its client connections (listeners, data files, epoll ...). */
const FD_RESERVE = 100;
const SAMPLE_MS = 10;
/** The storm is over once the broker's CPU use stays below this over a window. */
const IDLE_PCT = 25;
/** /proc counts CPU in 10 ms ticks: a window of 100 ms tells 30 % (3 ticks) from noise. */
const IDLE_WINDOW_MS = 100;
const PROBE_EVERY_MS = 10;
const OPEN_TIMEOUT_MS = 600_000;
/** How long the broker's idle CPU use is measured before the queue-delete figures. */
const IDLE_BASELINE_MS = 5_000;

export interface Ctx {
  runId: string;
  onCleanup(fn: () => Promise<void>): () => void;
  log(msg: string): void;
}

export interface StormResult {
  broker: string;
  sessions: number;
  /** Why fewer sessions than asked for were opened, if so. */
  capped: string | null;
  error: string | null;
  openSeconds: number;
  /** ms from the drop until the broker went quiet. */
  stormMs: number | null;
  cpuUsPerSession: number | null;
  /** Connect times of new clients started during the storm (ms). */
  probes: number[];
  /** The same, for clients started in the 300 ms before the drop (the baseline). */
  probesBefore: number[];
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

class StormProcess {
  readonly child = fork(join(HERE, 'storm-client.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  private readonly waiters = new Map<string, (m: FromStormClient) => void>();
  fatal: string | null = null;

  constructor() {
    this.child.on('message', (m: FromStormClient) => {
      if (m.type === 'fatal') this.fatal ??= m.message;
      this.waiters.get(m.type)?.(m);
    });
  }

  send(m: ToStormClient): void {
    if (this.child.connected) this.child.send(m);
  }

  next<T extends FromStormClient['type']>(type: T): Promise<Extract<FromStormClient, { type: T }>> {
    return new Promise((resolve) => this.waiters.set(type, (m) => resolve(m as Extract<FromStormClient, { type: T }>)));
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** One storm of `wanted` sessions on `b`. `round` picks the client processes' loopback addresses. */
export async function runStorm(s: StormScenario, wanted: number, round: number, b: Broker, ctx: Ctx): Promise<StormResult> {
  const url = new URL(b.endpoints.mqtt!);
  const host = url.hostname;
  const port = Number(url.port || 1883);
  const r: StormResult = { broker: b.name, sessions: 0, capped: null, error: null, openSeconds: 0, stormMs: null, cpuUsPerSession: null, probes: [], probesBefore: [] };
  let count = wanted;
  const lim = b.pid === null ? null : openFilesLimits(b.pid);
  if (lim !== null && Number.isFinite(lim.soft) && lim.soft - FD_RESERVE < count) {
    count = lim.soft - FD_RESERVE;
    r.capped = `open files limit ${lim.soft} of the broker process`;
  }
  const procs: StormProcess[] = [];
  const willTopic = `wbench/will/${ctx.runId}-${round}/`;
  const undo = ctx.onCleanup(async () => procs.forEach((p) => p.kill()));
  try {
    const per = Math.ceil(count / s.processes);
    const t0 = performance.now();
    for (let i = 0; i < s.processes; i++) procs.push(new StormProcess());
    const opened = await withTimeout(
      Promise.all(
        procs.map((p, i) => {
          const n = Math.min(per, count - i * per);
          const got = p.next('opened');
          p.send({
            type: 'open',
            host,
            port,
            localAddress: `127.${10 + (round % 200)}.${i}.1`,
            count: Math.max(0, n),
            concurrency: 50,
            prefix: `wbench-${ctx.runId}-${round}-${i}-`,
            willPrefix: willTopic,
          });
          return got;
        }),
      ),
      OPEN_TIMEOUT_MS,
      'opening the sessions',
    );
    r.openSeconds = (performance.now() - t0) / 1000;
    r.sessions = opened.reduce((n, o) => n + o.opened, 0);
    const errs = opened.flatMap((o) => o.errors);
    if (r.sessions < count) throw new Error(`only ${r.sessions} of ${count} sessions opened: ${errs[0] ?? procs.find((p) => p.fatal)?.fatal ?? '?'}`);
    // Every session's will comes here: the last one says the broker has handled the last drop.
    let lastWillAt = 0;
    let allIn: () => void = () => undefined;
    const all = new Promise<void>((resolve) => (allIn = resolve));
    const counter = new PublishCounter((n) => {
      lastWillAt = performance.now();
      if (n >= r.sessions) allIn();
    });
    const watcher = await openSession({ host, port, clientId: `wbench-watch-${ctx.runId}-${round}`, topic: `${willTopic}#` }, counter.push);
    await sleep(3_000); // let the broker settle (GC after the burst of connects)
    const pid = b.pid;
    // CPU samples: [wall ms, cpu s]
    const samples: Array<[number, number]> = [];
    const sample = (): void => {
      const c = pid === null ? null : cpuSeconds(pid);
      if (c !== null) samples.push([performance.now(), c]);
    };
    const sampler = setInterval(sample, SAMPLE_MS);
    sample();
    // New clients, one every PROBE_EVERY_MS, each timed CONNECT -> CONNACK.
    const probes: Array<{ start: number; ms: number }> = [];
    let seq = 0;
    const pending: Promise<void>[] = [];
    const prober = setInterval(() => {
      const start = performance.now();
      const id = `wbench-probe-${ctx.runId}-${round}-${seq++}`;
      pending.push(
        openSession({ host, port, clientId: id, topic: null }).then(
          (sock) => {
            probes.push({ start, ms: performance.now() - start });
            sock.destroy();
          },
          () => undefined,
        ),
      );
    }, PROBE_EVERY_MS);
    await sleep(300);
    const dropAt = performance.now();
    const dropped = Promise.all(procs.map((p) => p.next('dropped')));
    for (const p of procs) p.send({ type: 'drop' });
    try {
      await withTimeout(dropped, 30_000, 'dropping the sessions');
      await withTimeout(all, 60_000, `the wills of the dropped sessions (${counter.count} of ${r.sessions} in)`);
    } finally {
      clearInterval(prober);
    }
    const endAt = lastWillAt;
    await sleep(300); // what the broker finishes after the last will (e.g. deferred teardown)
    clearInterval(sampler);
    sample();
    await Promise.all(pending);
    watcher.destroy();
    r.stormMs = endAt - dropAt;
    const quiet = stormEnd(samples, endAt);
    const cpuAt = (t: number): number => {
      let best = samples[0]!;
      for (const x of samples) if (x[0] <= t) best = x;
      return best[1];
    };
    r.cpuUsPerSession = ((cpuAt(Math.max(endAt, quiet ?? endAt) + IDLE_WINDOW_MS) - cpuAt(dropAt)) * 1e6) / r.sessions;
    r.probes = probes.filter((p) => p.start >= dropAt && p.start <= endAt).map((p) => p.ms);
    r.probesBefore = probes.filter((p) => p.start < dropAt).map((p) => p.ms);
  } catch (e) {
    r.error = e instanceof Error ? e.message : String(e);
  } finally {
    procs.forEach((p) => p.kill());
    undo();
  }
  return r;
}

/**
 * The start of the first window (after the drop) from which the broker's CPU use stays below
 * IDLE_PCT, or null when it is still busy at the last sample.
 */
function stormEnd(samples: Array<[number, number]>, dropAt: number): number | null {
  let lastBusyEnd: number | null = null;
  let j = 0;
  for (let i = 0; i < samples.length; i++) {
    const [t, c] = samples[i]!;
    if (t < dropAt) continue;
    while (j < i && samples[j]![0] < t - IDLE_WINDOW_MS) j++;
    const [t0, c0] = samples[Math.max(0, j - 1)]!;
    const span = t - t0;
    if (span <= 0) continue;
    const pct = ((c - c0) * 1000 * 100) / span;
    if (pct >= IDLE_PCT) lastBusyEnd = t;
  }
  return lastBusyEnd ?? dropAt;
}

export function stormTable(s: StormScenario, rows: StormResult[]): string {
  const out = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | sessions | storm (drop → last will out) | broker CPU per session | new client connect during storm: median / max (n) | opened in |',
    '|---|---:|---:|---:|---|---:|',
  ];
  for (const r of rows) {
    if (r.error !== null) {
      out.push(`| ${r.broker} | ${r.sessions} | failed: ${r.error} | | | |`);
      continue;
    }
    const med = median(r.probes);
    const max = r.probes.length === 0 ? null : Math.max(...r.probes);
    out.push(
      `| ${r.broker} | ${r.sessions.toLocaleString('en-US')}${r.capped !== null ? ' ⁽ᶜ⁾' : ''} | ${r.stormMs!.toFixed(0)} ms | ` +
        `${r.cpuUsPerSession!.toFixed(1)} µs | ${med === null ? 'n/a' : `${med.toFixed(1)} / ${max!.toFixed(1)} ms (${r.probes.length})`} | ${r.openSeconds.toFixed(1)} s |`,
    );
  }
  if (rows.some((r) => r.capped !== null)) {
    out.push('', `⁽ᶜ⁾ capped: ${rows.find((r) => r.capped !== null)!.capped} (minus ${FD_RESERVE} descriptors for the broker's own use).`);
  }
  return out.join('\n');
}

// ---- queue delete and connect + close ---------------------------------------------------------

export interface QueueDeleteRow {
  broker: string;
  queues: number;
  error: string | null;
  deleteCpuUs: number | null;
  deleteWallUs: number | null;
  connectCloseCpuMs: number | null;
  connectCloseWallMs: number | null;
  /** The broker's CPU use while idle at this level (% of a core), taken off the figures. */
  idlePct: number | null;
}

/** The broker's CPU use (seconds per second) over `ms` of doing nothing. */
async function idleRate(pid: number | null, ms: number): Promise<number> {
  if (pid === null) return 0;
  const c0 = cpuSeconds(pid);
  const t0 = performance.now();
  await sleep(ms);
  const c1 = cpuSeconds(pid);
  if (c0 === null || c1 === null) return 0;
  return (c1 - c0) / ((performance.now() - t0) / 1000);
}

async function inBatches(n: number, batch: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < n; i += batch) {
    const ps: Promise<unknown>[] = [];
    for (let k = i; k < Math.min(n, i + batch); k++) ps.push(fn(k));
    await Promise.all(ps);
  }
}

export async function runQueueDelete(s: QueueDeleteScenario, b: Broker, ctx: Ctx): Promise<QueueDeleteRow[]> {
  const url = b.endpoints.amqp!;
  const rows: QueueDeleteRow[] = [];
  const conn = await amqpConnect(url, { noDelay: true });
  const ch = await conn.createChannel();
  const prefix = `wbench-qd-${ctx.runId}`;
  let filled = 0;
  const declare = async (name: string, key: string): Promise<void> => {
    await ch.assertQueue(name, { durable: false, autoDelete: false });
    await ch.bindQueue(name, 'amq.topic', key);
  };
  const undo = ctx.onCleanup(async () => {
    await inBatches(filled, 500, (i) => ch.deleteQueue(`${prefix}-${i}`)).catch(() => undefined);
    await conn.close().catch(() => undefined);
  });
  try {
    for (const level of s.levels) {
      const row: QueueDeleteRow = { broker: b.name, queues: level, error: null, deleteCpuUs: null, deleteWallUs: null, connectCloseCpuMs: null, connectCloseWallMs: null, idlePct: null };
      rows.push(row);
      try {
        ctx.log(`  ${level.toLocaleString('en-US')} queues ...`);
        const from = filled;
        await inBatches(level - from, 500, (k) => declare(`${prefix}-${from + k}`, `wbench.qd.${from + k}`));
        filled = level;
        // The queues to delete, declared and bound like the others.
        const victims = Array.from({ length: s.deletes }, (_, i) => `${prefix}-victim-${level}-${i}`);
        await inBatches(victims.length, 500, (i) => declare(victims[i]!, `wbench.qd.victim.${level}.${i}`));
        await sleep(1_000);
        const pid = b.pid;
        // What the broker spends meanwhile anyway (stats sampling, timers: they grow with the
        // number of queues too) is measured while idle and taken off both figures.
        const idle = await idleRate(pid, IDLE_BASELINE_MS);
        let c0 = pid === null ? null : cpuSeconds(pid);
        let t0 = performance.now();
        await Promise.all(victims.map((v) => ch.deleteQueue(v)));
        let t1 = performance.now();
        let c1 = pid === null ? null : cpuSeconds(pid);
        row.deleteWallUs = ((t1 - t0) * 1000) / victims.length;
        row.deleteCpuUs = c0 === null || c1 === null ? null : ((c1 - c0 - idle * ((t1 - t0) / 1000)) * 1e6) / victims.length;
        await sleep(500);
        c0 = pid === null ? null : cpuSeconds(pid);
        t0 = performance.now();
        for (let i = 0; i < s.connects; i++) {
          const c = await amqpConnect(url, { noDelay: true });
          await c.createChannel();
          await c.close();
        }
        t1 = performance.now();
        c1 = pid === null ? null : cpuSeconds(pid);
        row.connectCloseWallMs = (t1 - t0) / s.connects;
        row.connectCloseCpuMs = c0 === null || c1 === null ? null : ((c1 - c0 - idle * ((t1 - t0) / 1000)) * 1e3) / s.connects;
        row.idlePct = idle * 100;
        ctx.log(
          `    delete: ${row.deleteCpuUs?.toFixed(1) ?? 'n/a'} µs CPU; connect+close: ${row.connectCloseCpuMs?.toFixed(2) ?? 'n/a'} ms CPU`,
        );
      } catch (e) {
        row.error = e instanceof Error ? e.message : String(e);
        break;
      }
    }
  } finally {
    await inBatches(filled, 500, (i) => ch.deleteQueue(`${prefix}-${i}`)).catch(() => undefined);
    filled = 0;
    await conn.close().catch(() => undefined);
    undo();
  }
  return rows;
}

export function queueDeleteTable(s: QueueDeleteScenario, rows: QueueDeleteRow[]): string {
  const out = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | queues in vhost | queue.delete: broker CPU | queue.delete: wall (pipelined) | connect + channel + close: broker CPU | connect + close: wall | broker idle CPU (taken off) |',
    '|---|---:|---:|---:|---:|---:|---:|',
  ];
  for (const r of rows) {
    if (r.error !== null) {
      out.push(`| ${r.broker} | ${r.queues.toLocaleString('en-US')} | failed: ${r.error} | | | | |`);
      continue;
    }
    const f = (v: number | null, d: number, u: string): string => (v === null ? 'n/a' : `${v.toFixed(d)} ${u}`);
    out.push(
      `| ${r.broker} | ${r.queues.toLocaleString('en-US')} | ${f(r.deleteCpuUs, 1, 'µs')} | ${f(r.deleteWallUs, 1, 'µs')} | ${f(r.connectCloseCpuMs, 2, 'ms')} | ${f(r.connectCloseWallMs, 2, 'ms')} | ${f(r.idlePct, 1, '%')} |`,
    );
  }
  return out.join('\n');
}
