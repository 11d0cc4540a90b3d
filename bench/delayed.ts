/**
 * The delayed-messages scenario: does a large number of pending delayed messages slow routing
 * elsewhere? On a shared machine msgs/s drifts between runs by more than the effect looked for, so
 * the two arms are interleaved on the same broker: the base throughput scenario runs without
 * pending messages (A), then `pending` messages are held in an `x-delayed-message` exchange (due in
 * an hour, so none is released during the run) and it runs again (B), the exchange is deleted, and
 * so on: A B A B ... A, `pairs` B runs between `pairs + 1` A runs. Each arm reports the median of
 * its runs, for msgs/s and for the broker's CPU time per delivered message (steadier under other
 * load, since it does not count the time the broker waits for a core).
 */
import { connect } from 'amqplib';

import type { Broker } from './brokers.js';
import type { RunResult } from './report.js';
import type { Scenario } from './scenarios.js';

export interface DelayedScenario {
  kind: 'delayed';
  name: string;
  protocol: 'amqp';
  summary: string;
  /** Messages held by the delayed exchange during the second run. */
  pending: number;
  /** The throughput scenario run with and without them. */
  base: Scenario;
}

/** Publishes in bursts of this many before waiting for confirms (bounds memory in the client). */
const BURST = 10_000;
const HOLD_MS = 3_600_000;

/** Declares `exchange` as a delayed exchange and holds `pending` 16-byte messages in it; resolves once all are confirmed. */
export async function prefillDelayed(url: string, exchange: string, pending: number): Promise<void> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createConfirmChannel();
    await ch.assertExchange(exchange, 'x-delayed-message', { durable: false, autoDelete: false, arguments: { 'x-delayed-type': 'direct' } });
    const body = Buffer.alloc(16, 0x61);
    const headers = { 'x-delay': HOLD_MS };
    for (let sent = 0; sent < pending; ) {
      const n = Math.min(BURST, pending - sent);
      for (let i = 0; i < n; i++) {
        if (!ch.publish(exchange, 'pending', body, { headers })) await new Promise<void>((resolve) => ch.once('drain', () => resolve()));
      }
      sent += n;
      await ch.waitForConfirms();
    }
    await ch.close();
  } finally {
    await conn.close().catch(() => undefined);
  }
}

/** Deletes the delayed exchange (its held messages go with it). */
export async function dropDelayed(url: string, exchange: string): Promise<void> {
  const conn = await connect(url);
  conn.on('error', () => undefined);
  try {
    const ch = await conn.createChannel();
    await ch.deleteExchange(exchange);
    await ch.close();
  } finally {
    await conn.close().catch(() => undefined);
  }
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

/** A/B pairs per broker when `--repeat` does not ask for more. */
export const DEFAULT_PAIRS = 3;

/** What the harness lends the scenario: a measured run, logging, sleeping and cleanup on signals. */
export interface DelayedHarness {
  runId: string;
  /** A/B pairs per broker (at least 1). */
  pairs: number;
  measure(s: Scenario, b: Broker): Promise<RunResult>;
  log(line: string): void;
  sleep(ms: number): Promise<void>;
  onCleanup(fn: () => Promise<void>): () => void;
  interrupted(): boolean;
}

/** One broker's runs, in the order they ran. */
export interface DelayedRow {
  broker: string;
  /** Runs without pending delayed messages (A). */
  without: RunResult[];
  /** Runs with `pending` delayed messages held (B). */
  with: RunResult[];
  /** Seconds each fill took. */
  fillS: number[];
  error: string | null;
}

/** Runs the scenario on every broker with AMQP, arms interleaved; returns the rows and every run. */
export async function measureDelayed(s: DelayedScenario, brokers: Broker[], h: DelayedHarness): Promise<{ rows: DelayedRow[]; runs: RunResult[] }> {
  const rows: DelayedRow[] = [];
  const runs: RunResult[] = [];
  for (const b of brokers) {
    if (h.interrupted()) break;
    const url = b.endpoints.amqp;
    if (url === undefined) continue;
    const row: DelayedRow = { broker: b.name, without: [], with: [], fillS: [], error: null };
    rows.push(row);
    const exchange = `warren-bench.${h.runId}.${s.name}.delayed`;
    const undo = h.onCleanup(() => dropDelayed(url, exchange).catch(() => undefined));
    const arm = async (label: 'A' | 'B', into: RunResult[]): Promise<boolean> => {
      const r = await h.measure(s.base, b);
      runs.push(r);
      into.push(r);
      h.log(r.error !== null ? `  ${label} failed: ${r.error}` : `  ${label}: ${Math.round(r.msgsPerSec)} msgs/s, ${fmtCpu(r)} µs/msg`);
      if (r.error !== null) row.error = `${label}: ${r.error}`;
      return r.error === null;
    };
    try {
      h.log(`${s.name} on ${b.name}: ${h.pairs} A/B pairs and a last A, A without and B with ${s.pending.toLocaleString('en-US')} pending`);
      for (let i = 0; i < h.pairs && !h.interrupted(); i++) {
        if (!(await arm('A', row.without))) break;
        const t0 = performance.now();
        await prefillDelayed(url, exchange, s.pending);
        row.fillS.push((performance.now() - t0) / 1000);
        h.log(`  held ${s.pending.toLocaleString('en-US')} in ${row.fillS[row.fillS.length - 1]!.toFixed(1)} s`);
        await h.sleep(2000); // let the broker settle (GC after the fill)
        const ok = await arm('B', row.with);
        await dropDelayed(url, exchange);
        await h.sleep(2000);
        if (!ok) break;
      }
      if (row.error === null && !h.interrupted()) await arm('A', row.without);
    } catch (e) {
      row.error = e instanceof Error ? e.message : String(e);
      h.log(`  failed: ${row.error}`);
    } finally {
      await dropDelayed(url, exchange).catch(() => undefined);
      undo();
    }
    await h.sleep(1000);
  }
  return { rows, runs };
}

function median(xs: number[]): number | null {
  if (xs.length === 0) return null;
  const v = [...xs].sort((a, b) => a - b);
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

const fmtCpu = (r: RunResult): string => (r.brokerCpuUsPerMsg === null ? 'n/a' : r.brokerCpuUsPerMsg.toFixed(2));
const fmtPct = (x: number): string => `${x >= 0 ? '+' : ''}${x.toFixed(1)} %`;
const ok = (rs: RunResult[]): RunResult[] => rs.filter((r) => r.error === null);

/** The change of B's median against A's, in % (positive: B is higher). */
function change(a: number | null, b: number | null): number | null {
  return a === null || b === null || a === 0 ? null : ((b - a) / a) * 100;
}

/** Medians per arm, the change, and each run in order; a row per broker. */
export function delayedTable(s: DelayedScenario, rows: DelayedRow[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    `| broker | runs (A / B) | msgs/s median A | msgs/s median B (${fmtInt(s.pending)} pending) | msgs/s change | broker CPU µs/msg median A | median B | CPU/msg change | other CPU median (A / B) | fill took |`,
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  const detail: string[] = [];
  for (const r of rows) {
    const a = ok(r.without);
    const b = ok(r.with);
    const rateA = median(a.map((x) => x.msgsPerSec));
    const rateB = median(b.map((x) => x.msgsPerSec));
    const cpuA = median(a.flatMap((x) => (x.brokerCpuUsPerMsg === null ? [] : [x.brokerCpuUsPerMsg])));
    const cpuB = median(b.flatMap((x) => (x.brokerCpuUsPerMsg === null ? [] : [x.brokerCpuUsPerMsg])));
    const otherA = median(a.flatMap((x) => (x.otherCpuPct === null ? [] : [x.otherCpuPct])));
    const otherB = median(b.flatMap((x) => (x.otherCpuPct === null ? [] : [x.otherCpuPct])));
    const rateChange = change(rateA, rateB);
    const cpuChange = change(cpuA, cpuB);
    const fill = median(r.fillS);
    const cells = [
      r.broker,
      `${a.length} / ${b.length}`,
      rateA === null ? '' : fmtInt(rateA),
      rateB === null ? (r.error === null ? '' : `failed: ${r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ')}`) : fmtInt(rateB),
      rateChange === null ? '' : fmtPct(rateChange),
      cpuA === null ? 'n/a' : cpuA.toFixed(2),
      cpuB === null ? 'n/a' : cpuB.toFixed(2),
      cpuChange === null ? '' : fmtPct(cpuChange),
      `${otherA === null ? 'n/a' : `${Math.round(otherA)} %`} / ${otherB === null ? 'n/a' : `${Math.round(otherB)} %`}`,
      fill === null ? 'n/a' : `${fill.toFixed(1)} s`,
    ];
    lines.push(`| ${cells.join(' | ')} |`);
    // Runs in the order they ran: A B A B ... A.
    const order: string[] = [];
    for (let i = 0; i < Math.max(r.without.length, r.with.length); i++) {
      const x = r.without[i];
      const y = r.with[i];
      if (x !== undefined) order.push(`A ${x.error === null ? `${fmtInt(x.msgsPerSec)} (${fmtCpu(x)})` : 'failed'}`);
      if (y !== undefined) order.push(`B ${y.error === null ? `${fmtInt(y.msgsPerSec)} (${fmtCpu(y)})` : 'failed'}`);
    }
    if (order.length > 0) detail.push(`${r.broker}, in order, msgs/s (broker CPU µs/msg): ${order.join(', ')}.`);
  }
  if (detail.length > 0) lines.push('', ...detail);
  return lines.join('\n');
}
