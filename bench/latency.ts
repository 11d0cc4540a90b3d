/**
 * The fixed-rate latency scenarios: background load (10 000 idle MQTT connections, or a 1 000 000-
 * message backlog on another queue) held around a 1:1 run whose publisher keeps a fixed schedule,
 * and the table that compares p50 / p99 / p99.9 / max across brokers.
 *
 * Latency counts from each message's due time, not from when the publisher got round to sending it,
 * so a stalled broker (or a stalled generator) cannot hide its stall by slowing the sender down
 * (coordinated omission). The generator's own lateness is reported next to it, so a late generator
 * is visible rather than blamed on the broker.
 */
import { connect } from 'amqplib';

import type { Broker } from './brokers.js';
import { brokerPids } from './brokers.js';
import { sleep } from './clock.js';
import { holdIdleMqtt } from './idle.js';
import { cpuSecondsOf } from './proc.js';
import { fmtMs, fmtOther, isDisturbed } from './report.js';
import type { RunResult } from './report.js';
import type { LatencyScenario } from './scenarios.js';

const IDLE_CONNECTIONS = 10_000;
const IDLE_PROCESSES = 4;
const BACKLOG_MESSAGES = 1_000_000;
/** Backlog publishes between waits for confirms (bounds the client's memory). */
const BACKLOG_BURST = 20_000;

/** Why a broker cannot run a scenario's load (null: it can). */
export function loadUnsupported(s: LatencyScenario, b: Broker): string | null {
  if (s.load === 'idle-10k' && b.endpoints.mqtt === undefined) return 'no MQTT endpoint for the idle connections';
  if (s.load === 'backlog-1m' && b.endpoints.amqp === undefined) return 'no AMQP endpoint to fill the backlog';
  return null;
}

/** Holds the scenario's background load on `b`; resolves with how to release it. */
export async function holdLoad(
  s: LatencyScenario,
  b: Broker,
  runId: string,
  onFatal: (err: Error) => void,
  log: (msg: string) => void,
): Promise<() => Promise<void>> {
  switch (s.load) {
    case 'none':
      return () => Promise.resolve();
    case 'idle-10k': {
      log(`  holding ${IDLE_CONNECTIONS.toLocaleString('en-US')} idle MQTT connections ...`);
      const held = await holdIdleMqtt(b.endpoints.mqtt!, IDLE_CONNECTIONS, IDLE_PROCESSES, `wb-${runId}-${s.name}-idle`, onFatal);
      return held.release;
    }
    case 'backlog-1m': {
      const queue = `warren-bench.${runId}.${s.name}.backlog`;
      log(`  filling ${queue} with ${BACKLOG_MESSAGES.toLocaleString('en-US')} messages ...`);
      const t0 = performance.now();
      await fillBacklog(b.endpoints.amqp!, queue, BACKLOG_MESSAGES, b.shared);
      log(`  filled in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      return () => deleteQueue(b.endpoints.amqp!, queue);
    }
  }
}

/** A broker that used less than this share of a core over the last second has settled. */
const SETTLED_CPU = 0.05;
const SETTLE_STEP_MS = 250;
const SETTLE_MAX_MS = 60_000;

/**
 * Waits until the broker has settled after its load was put in place: its CPU below 5 % of a core
 * over a whole second (a runtime still collecting the garbage of a 1,000,000-message fill is busy;
 * one holding the backlog at rest is not), at most 60 s. Resolves with the milliseconds waited, or
 * null when the broker's process is unknown (then it waits 2 s).
 */
export async function waitForSettled(b: Broker): Promise<number | null> {
  const pids = brokerPids(b);
  if (cpuSecondsOf(pids) === null) {
    await sleep(2000);
    return null;
  }
  const t0 = performance.now();
  const window: number[] = [cpuSecondsOf(pids)!];
  const perWindow = 1000 / SETTLE_STEP_MS;
  while (performance.now() - t0 < SETTLE_MAX_MS) {
    await sleep(SETTLE_STEP_MS);
    const now = cpuSecondsOf(pids);
    if (now === null) break;
    window.push(now);
    if (window.length > perWindow + 1) window.shift();
    if (window.length === perWindow + 1 && now - window[0]! < SETTLED_CPU) break;
  }
  return performance.now() - t0;
}

async function fillBacklog(url: string, queue: string, count: number, shared: boolean): Promise<void> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue(queue, { durable: false, autoDelete: false, ...(shared ? { arguments: { 'x-expires': 600_000 } } : {}) });
    const body = Buffer.alloc(16, 0x62);
    for (let sent = 0; sent < count; ) {
      const n = Math.min(BACKLOG_BURST, count - sent);
      for (let i = 0; i < n; i++) {
        if (!ch.publish('', queue, body)) await new Promise<void>((resolve) => ch.once('drain', () => resolve()));
      }
      sent += n;
      await ch.waitForConfirms();
    }
    await ch.close();
  } finally {
    await conn.close().catch(() => undefined);
  }
}

async function deleteQueue(url: string, queue: string): Promise<void> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    await ch.deleteQueue(queue);
    await ch.close();
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** The run with the median p99.9 (upper middle for even counts), preferring undisturbed runs. */
function medianByTail(runs: RunResult[]): RunResult | undefined {
  const ok = runs.filter((r) => r.error === null);
  const clean = ok.filter((r) => !isDisturbed(r));
  const pool = clean.length > 0 ? clean : ok.length > 0 ? ok : runs;
  const sorted = [...pool].sort((a, b) => (a.p999Ms ?? 0) - (b.p999Ms ?? 0));
  return sorted[Math.floor(sorted.length / 2)];
}

const cell = (n: number | null | undefined): string => fmtMs(n ?? null);

/** One table per latency scenario; `skipped` lists brokers that could not hold its load. */
export function latencyTable(s: LatencyScenario, runsPerBroker: RunResult[][], skipped: string[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | msgs/s | p50 ms | p99 ms | p99.9 ms | max ms | from send p50 / p99 / p99.9 ms | generator late p99 / max ms | broker CPU µs/msg | other CPU |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const runs of runsPerBroker) {
    const r = medianByTail(runs);
    if (r === undefined) continue;
    if (r.error !== null) {
      lines.push(`| ${r.broker} | failed: ${r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ')} | | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.broker} | ${Math.round(r.msgsPerSec).toLocaleString('en-US')} | ${cell(r.p50Ms)} | ${cell(r.p99Ms)} | ` +
        `**${cell(r.p999Ms)}** | ${cell(r.maxMs)} | ${cell(r.sendP50Ms)} / ${cell(r.sendP99Ms)} / ${cell(r.sendP999Ms)} | ` +
        `${cell(r.lagP99Ms)} / ${cell(r.lagMaxMs)} | ${r.brokerCpuUsPerMsg?.toFixed(1) ?? 'n/a'} | ${fmtOther(r.otherCpuPct)} |`,
    );
  }
  for (const why of skipped) lines.push(`| ${why} | | | | | | | | | |`);
  const spread = runsPerBroker.filter((runs) => runs.length > 1);
  if (spread.length > 0) lines.push('');
  for (const runs of spread) {
    const ok = runs.filter((r) => r.error === null);
    lines.push(
      `- ${runs[0]?.broker ?? '?'}: ${runs.length} runs, p99 ${ok.map((r) => cell(r.p99Ms)).join(', ')}; ` +
        `p99.9 ${ok.map((r) => `${cell(r.p999Ms)}${isDisturbed(r) ? ' ⚠' : ''}`).join(', ')}` +
        (ok.length < runs.length ? `, ${runs.length - ok.length} failed` : ''),
    );
  }
  return lines.join('\n');
}

export const LATENCY_LEGEND = [
  '- Latency scenarios: p50 … max are from each message\'s due time on the fixed schedule to the consumer callback',
  '  (coordinated-omission free); "from send" is from the moment the publisher actually wrote it; "generator late"',
  '  is how far behind its schedule the publisher sent (its own stalls, not the broker\'s). The run shown is the',
  '  median by p99.9 of the repetitions.',
].join('\n');
