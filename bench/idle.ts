/**
 * The idle-connection memory scenario: fork a few client processes (idle-client.ts) that open N idle
 * MQTT connections between them (each with one subscription in the subscribed scenarios, with one
 * publisher fanning out to all of them in the fan-out one), and compare the broker's resident set
 * size (VmRSS of its process) before with its RSS while they idle, read once a second: (RSS -
 * before) / N is the broker's memory per idle connection, 5 s after connecting and settled. For a
 * broker that can run a full garbage collection on request (Warren started by the harness), the
 * heap used and the RSS right after one, before connecting and at the end of the idle time, give a
 * settled figure that does not depend on when the garbage collector returns memory. Also reports
 * how long connecting took, the broker CPU it cost, and the RSS once the connections are closed again.
 */
import { execFileSync, fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Broker, GcReading } from './brokers.js';
import { openTickingPublisher } from './clients/mqtt.js';
import { FailureLatch, sleep, wallMs, withTimeout } from './clock.js';
import type { FromIdleClient, ToIdleClient } from './idle-client.js';
import { cpuSeconds } from './proc.js';
import type { IdleScenario } from './scenarios.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const IDLE_CLIENT_JS = join(HERE, 'idle-client.js');
const OPEN_TIMEOUT_MS = 240_000;
/** Seconds after connecting of the early RSS reading. */
const EARLY_S = 5;
/** File descriptors a broker needs besides its client connections (listeners, files, epoll ...). */
const FD_RESERVE = 100;

/** Resident set size of `pid` in KiB (VmRSS), or null. */
export function rssKiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m?.[1] === undefined ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** Soft and hard limit on open files of `pid` ('self' for this process), or null. */
export function openFilesLimits(pid: number | 'self'): { soft: number; hard: number } | null {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'utf8'));
    if (m?.[1] === undefined || m[2] === undefined) return null;
    const n = (v: string): number => (v === 'unlimited' ? Number.POSITIVE_INFINITY : Number(v));
    return { soft: n(m[1]), hard: n(m[2]) };
  } catch {
    return null;
  }
}

/**
 * Raise this process's soft limit on open files to its hard limit (with util-linux `prlimit`; Node has
 * no setrlimit), so that the brokers and client processes started from here inherit it. 10 000 idle
 * connections need 10 000 descriptors in the broker and, split over the client processes, in them.
 * Returns the soft limit in effect.
 */
export function raiseOpenFilesLimit(): number | null {
  const before = openFilesLimits('self');
  if (before === null || before.soft >= before.hard) return before?.soft ?? null;
  const hard = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited';
  try {
    execFileSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { stdio: 'ignore' });
  } catch {
    // prlimit missing or refused: keep the current limit (the idle scenario then reports the failure).
  }
  return openFilesLimits('self')?.soft ?? before.soft;
}

export interface IdleResult {
  scenario: string;
  broker: string;
  isWarren: boolean;
  error: string | null;
  /** Connections asked for (lower than the scenario's when the broker's descriptor limit is lower). */
  wanted: number;
  /** Why `wanted` is below the scenario's count, if it is. */
  capped: string | null;
  opened: number;
  connectSeconds: number;
  rssBeforeKiB: number | null;
  /** RSS EARLY_S seconds after the last connection was up. */
  rssEarlyKiB: number | null;
  /** RSS once idle for the scenario's settle time (median of the last third of the readings). */
  rssAfterKiB: number | null;
  /** RSS a few seconds after the connections were closed again. */
  rssClosedKiB: number | null;
  /** (settled RSS - RSS before) / connections. */
  kibPerConnection: number | null;
  /** The same with the early reading. */
  kibPerConnectionEarly: number | null;
  /** Broker CPU while connecting, µs per connection. */
  brokerCpuUsPerConnection: number | null;
  /** After a full garbage collection (brokers with `fullGc`): before connecting, and at the end of the idle time. */
  gcBefore: GcReading | null;
  gcAfter: GcReading | null;
  /** (heap used after − before) / connections, KiB: the JS objects the connections keep. */
  heapKiBPerConnection: number | null;
  /** (RSS after the full GC − RSS after the one before connecting) / connections, KiB. */
  gcRssKiBPerConnection: number | null;
  /** Fan-out scenario: messages published and deliveries the subscribers received while idling. */
  published: number | null;
  deliveries: number | null;
}

class IdleProcess {
  readonly child: ChildProcess;
  private readonly waiters = new Map<FromIdleClient['type'], (m: FromIdleClient) => void>();

  constructor(onFatal: (err: Error) => void) {
    this.child = fork(IDLE_CLIENT_JS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: FromIdleClient) => {
      if (m.type === 'fatal') onFatal(new Error(m.message));
      this.waiters.get(m.type)?.(m);
    });
    this.child.on('error', onFatal);
  }

  send(msg: ToIdleClient): void {
    if (this.child.connected) this.child.send(msg);
  }

  next<T extends FromIdleClient['type']>(type: T): Promise<Extract<FromIdleClient, { type: T }>> {
    return new Promise((resolve) => {
      this.waiters.set(type, (m) => resolve(m as Extract<FromIdleClient, { type: T }>));
    });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(5_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/**
 * Opens `count` idle MQTT connections from `processes` client processes and keeps them open until
 * `release()` (used as background load by the latency scenarios). Rejects unless all of them opened.
 */
export async function holdIdleMqtt(
  url: string,
  count: number,
  processes: number,
  clientIdPrefix: string,
  onFatal: (err: Error) => void,
): Promise<{ release: () => Promise<void> }> {
  const procs: IdleProcess[] = [];
  const release = async (): Promise<void> => {
    const closed = procs.map((p) => p.next('closed'));
    for (const p of procs) p.send({ type: 'stop' });
    await withTimeout(Promise.all(closed), 60_000, 'closing idle connections').catch(() => undefined);
    await Promise.all(procs.map((p) => p.kill()));
  };
  try {
    const opened: Array<Promise<Extract<FromIdleClient, { type: 'opened' }>>> = [];
    for (let i = 0; i < processes; i++) {
      const p = new IdleProcess(onFatal);
      procs.push(p);
      opened.push(p.next('opened'));
      const n = Math.floor(count / processes) + (i < count % processes ? 1 : 0);
      p.send({ type: 'open', url, count: n, concurrency: 25, clientIdPrefix: `${clientIdPrefix}${i}-`, keepAliveS: 60 });
    }
    const results = await withTimeout(Promise.all(opened), OPEN_TIMEOUT_MS, 'opening idle connections');
    const total = results.reduce((a, r) => a + r.opened, 0);
    if (total < count) throw new Error(`only ${total} of ${count} idle connections opened: ${results.flatMap((r) => r.errors)[0] ?? '?'}`);
    return { release };
  } catch (err) {
    await Promise.all(procs.map((p) => p.kill()));
    throw err;
  }
}

function failedIdle(s: IdleScenario, b: Broker, error: string): IdleResult {
  return {
    scenario: s.name,
    broker: b.name,
    isWarren: b.isWarren,
    error,
    wanted: s.connections,
    capped: null,
    opened: 0,
    connectSeconds: 0,
    rssBeforeKiB: null,
    rssEarlyKiB: null,
    rssAfterKiB: null,
    rssClosedKiB: null,
    kibPerConnection: null,
    kibPerConnectionEarly: null,
    brokerCpuUsPerConnection: null,
    gcBefore: null,
    gcAfter: null,
    heapKiBPerConnection: null,
    gcRssKiBPerConnection: null,
    published: null,
    deliveries: null,
  };
}


/**
 * One idle-connection measurement against one broker. `onCleanup` registers the client processes'
 * teardown with the harness (for ctrl-C) and returns an unregister function.
 */
export async function runIdle(
  s: IdleScenario,
  broker: Broker,
  o: { runId: string; run: number; onCleanup: (fn: () => Promise<void>) => () => void; log: (msg: string) => void },
): Promise<IdleResult> {
  const url = broker.endpoints[s.protocol];
  if (url === undefined) return failedIdle(s, broker, `no ${s.protocol} endpoint`);
  const pid = broker.pid;
  if (pid === null || rssKiB(pid) === null) return failedIdle(s, broker, 'broker pid unknown: cannot read its memory');

  // A broker with a low descriptor limit (RabbitMQ started from a shell with ulimit -n 1024) cannot
  // hold the full count: measure with what it can hold, and say so.
  let wanted = s.connections;
  let capped: string | null = null;
  const limits = openFilesLimits(pid);
  if (limits !== null && limits.soft < s.connections + FD_RESERVE) {
    wanted = Math.max(100, Math.floor((limits.soft - FD_RESERVE) * 0.8));
    capped = `the broker's open files limit is ${limits.soft}`;
    o.log(`  ${broker.name}: open files limit ${limits.soft}: measuring with ${wanted} connections instead of ${s.connections}`);
  }

  const procs: IdleProcess[] = [];
  const latch = new FailureLatch();
  const guard = <T>(p: Promise<T>): Promise<T> => latch.guard(p);
  const undo = o.onCleanup(async () => {
    await Promise.all(procs.map((p) => p.kill()));
  });
  try {
    await sleep(1_000);
    const gcBefore = (await broker.fullGc?.()) ?? null;
    const rssBefore = rssKiB(pid);
    const prefix = `wb-${o.runId}-${s.name}-r${o.run}`;
    const subscribe = s.subscribe === undefined ? null : { filter: s.subscribe.filter.replace('%r', prefix), qos: s.subscribe.qos };
    const cpuBefore = cpuSeconds(pid);
    const t0 = wallMs();
    const n = Math.max(1, s.processes);
    const opened: Array<Promise<Extract<FromIdleClient, { type: 'opened' }>>> = [];
    for (let i = 0; i < n; i++) {
      const p = new IdleProcess(latch.signal);
      procs.push(p);
      const count = Math.floor(wanted / n) + (i < wanted % n ? 1 : 0);
      opened.push(p.next('opened'));
      p.send({
        type: 'open',
        url,
        count,
        concurrency: s.concurrency,
        clientIdPrefix: `${prefix}-p${i}-`,
        keepAliveS: s.keepAliveS,
        clean: s.clean ?? true,
        subscribe,
      });
    }
    const results = await guard(withTimeout(Promise.all(opened), OPEN_TIMEOUT_MS, 'opening idle connections'));
    const connectSeconds = (wallMs() - t0) / 1000;
    const cpuAfter = cpuSeconds(pid);
    const total = results.reduce((a, r) => a + r.opened, 0);
    const errors = results.flatMap((r) => r.errors);
    if (total < wanted) {
      return {
        ...failedIdle(s, broker, `only ${total} of ${wanted} connections opened: ${errors[0] ?? '?'}`),
        wanted,
        capped,
        opened: total,
      };
    }
    // RSS once a second while the connections idle: the early reading still holds what the burst of
    // connecting left behind (a garbage-collected broker's young generation, grown during the burst,
    // is returned some seconds later); the settled figure is the median of the last third.
    const publisher =
      s.fanOut === undefined || subscribe === null
        ? null
        : await guard(
            openTickingPublisher({
              url,
              clientId: `${prefix}-pub`,
              topic: subscribe.filter,
              qos: s.fanOut.qos,
              ratePerS: s.fanOut.ratePerS,
              body: Buffer.alloc(s.fanOut.bodySize, 0x61),
              onFatal: latch.signal,
            }),
          );
    const readings: number[] = [];
    let rssEarly: number | null = null;
    for (let t = 1; t <= s.settleS; t++) {
      await guard(sleep(1_000));
      const r = rssKiB(pid);
      if (r === null) continue;
      readings.push(r);
      if (t === Math.min(EARLY_S, s.settleS)) rssEarly = r;
    }
    const rssAfter = median(readings.slice(-Math.max(1, Math.floor(readings.length / 3))));
    // While the connections (and the fan-out load) are still there.
    const gcAfter = (await broker.fullGc?.()) ?? null;
    const published = publisher?.sent() ?? null;
    await publisher?.close();
    const closed = procs.map((p) => p.next('closed'));
    for (const p of procs) p.send({ type: 'stop' });
    const closedAll = await withTimeout(Promise.all(closed), 120_000, 'closing idle connections').catch((err: unknown) => {
      o.log(`  ${String(err)}`);
      return null;
    });
    const deliveries = closedAll === null || subscribe === null ? null : closedAll.reduce((a, m) => a + m.deliveries, 0);
    await sleep(3_000);
    const rssClosed = rssKiB(pid);
    return {
      scenario: s.name,
      broker: broker.name,
      isWarren: broker.isWarren,
      error: null,
      wanted,
      capped,
      opened: total,
      connectSeconds,
      rssBeforeKiB: rssBefore,
      rssEarlyKiB: rssEarly,
      rssAfterKiB: rssAfter,
      rssClosedKiB: rssClosed,
      kibPerConnectionEarly: rssBefore !== null && rssEarly !== null ? (rssEarly - rssBefore) / total : null,
      kibPerConnection: rssBefore !== null && rssAfter !== null ? (rssAfter - rssBefore) / total : null,
      brokerCpuUsPerConnection:
        cpuBefore !== null && cpuAfter !== null ? ((cpuAfter - cpuBefore) * 1e6) / total : null,
      gcBefore,
      gcAfter,
      heapKiBPerConnection: gcBefore !== null && gcAfter !== null ? (gcAfter.heapUsed - gcBefore.heapUsed) / 1024 / total : null,
      gcRssKiBPerConnection: gcBefore !== null && gcAfter !== null ? (gcAfter.rss - gcBefore.rss) / 1024 / total : null,
      published,
      deliveries,
    };
  } catch (err) {
    const e = latch.failure ?? err;
    return failedIdle(s, broker, e instanceof Error ? e.message : String(e));
  } finally {
    undo();
    await Promise.all(procs.map((p) => p.kill()));
  }
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const v = [...xs].sort((a, b) => a - b);
  const mid = v.length >> 1;
  return v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

const mib = (k: number | null): string => (k === null ? 'n/a' : (k / 1024).toFixed(1));
const kib = (k: number | null): string => (k === null ? 'n/a' : k.toFixed(2));

/** One table for an idle scenario: each broker's first run (on a fresh broker), all runs listed below. */
export function idleTable(s: IdleScenario, runsPerBroker: IdleResult[][]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    `| broker | connections | connect time s | broker CPU µs/connection | RSS before MiB | RSS after ${EARLY_S} s MiB | RSS settled MiB | RSS after closing MiB | KiB per connection after ${EARLY_S} s | KiB per connection settled | after a full GC: heap KiB per connection | after a full GC: RSS KiB per connection |`,
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const firsts = runsPerBroker.map((runs) => runs.find((r) => r.error === null) ?? runs[0]).filter((r): r is IdleResult => r !== undefined);
  for (const r of firsts) {
    if (r.error !== null) {
      lines.push(`| ${r.broker} | failed: ${r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ')} | | | | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.broker} | ${r.opened.toLocaleString('en-US')}${r.capped !== null ? ' ¹' : ''} | ${r.connectSeconds.toFixed(1)} | ` +
        `${r.brokerCpuUsPerConnection === null ? 'n/a' : Math.round(r.brokerCpuUsPerConnection)} | ${mib(r.rssBeforeKiB)} | ` +
        `${mib(r.rssEarlyKiB)} | ${mib(r.rssAfterKiB)} | ${mib(r.rssClosedKiB)} | ${kib(r.kibPerConnectionEarly)} | ${kib(r.kibPerConnection)} | ` +
        `${r.heapKiBPerConnection === null ? '—' : kib(r.heapKiBPerConnection)} | ${r.gcRssKiBPerConnection === null ? '—' : kib(r.gcRssKiBPerConnection)} |`,
    );
  }
  const ok = firsts.filter((r) => r.error === null && r.kibPerConnection !== null);
  for (const w of ok.filter((r) => r.isWarren)) {
    for (const p of ok.filter((r) => !r.isWarren)) {
      const ratio = (a: number | null, b: number | null): string => (a !== null && b !== null && b !== 0 ? `${(a / b).toFixed(2)}×` : 'n/a');
      lines.push(
        `| **${w.broker} / ${p.broker}** | | | | | | | | **${ratio(w.kibPerConnectionEarly, p.kibPerConnectionEarly)}** | **${ratio(w.kibPerConnection, p.kibPerConnection)}** | | ` +
          `**${ratio(w.gcRssKiBPerConnection, p.kibPerConnection)}** ² |`,
      );
    }
  }
  const notes: string[] = [];
  if (ok.some((r) => r.isWarren) && ok.some((r) => !r.isWarren)) {
    notes.push(`- ² ${ok.find((r) => r.isWarren)?.broker ?? 'Warren'}'s RSS after a full GC against the other broker's settled RSS (a broker without a garbage collector has nothing more to settle).`);
  }
  for (const r of firsts.filter((x) => x.error === null && x.published !== null)) {
    notes.push(`- ${r.broker}: ${r.published?.toLocaleString('en-US') ?? '?'} messages published during the idle time, ${r.deliveries?.toLocaleString('en-US') ?? '?'} deliveries received by the subscribers.`);
  }
  for (const r of firsts.filter((x) => x.capped !== null)) {
    notes.push(`- ¹ ${r.broker}: ${r.capped}, so ${r.wanted.toLocaleString('en-US')} connections instead of ${s.connections.toLocaleString('en-US')}.`);
  }
  for (const runs of runsPerBroker.filter((x) => x.length > 1)) {
    const vals = runs.map((r) => (r.error !== null ? 'failed' : `${kib(r.kibPerConnection)}`));
    notes.push(`- ${runs[0]?.broker ?? '?'}: ${runs.length} runs, KiB per connection settled ${vals.join(', ')} (the first, on a fresh broker, is shown)`);
  }
  if (notes.length > 0) lines.push('', ...notes);
  return lines.join('\n');
}

export const IDLE_LEGEND = [
  '- KiB per connection: (broker RSS with the connections open − RSS before) ÷ connections; RSS is VmRSS of the',
  `  broker process, read once a second while the connections idle (each sends a PINGREQ every half keep-alive,`,
  `  spread over that period): after ${EARLY_S} s, and settled (the median of the last third of the scenario's idle`,
  '  time). A garbage-collected broker returns the young generation it grew while the connections were opening',
  '  some seconds later; the settled figure is the memory the idle connections hold. Lower is better.',
  '- RSS after closing: a few seconds after all connections were closed (memory the broker keeps).',
  '- After a full GC (Warren only: started with `--expose-gc`, SIGUSR2 makes it collect everything and log its',
  '  memory): before connecting and at the end of the idle time, with the connections still open. Heap KiB per',
  "  connection = (V8 heap used after − before) ÷ connections: the JavaScript objects the connections keep, which",
  "  no timing of the garbage collector changes. RSS KiB per connection = the same with the RSS: that heap plus",
  "  native socket state and the heap's free space that V8 keeps (a full GC does not shrink the young generation).",
].join('\n');
