/**
 * The delayed-messages scenario: does a large number of pending delayed messages slow routing
 * elsewhere? The harness runs a base throughput scenario, then holds `pending` messages in an
 * `x-delayed-message` exchange (due in an hour, so none is released during the run), runs the base
 * scenario again, deletes the exchange, and runs the base scenario a third time. The change is the
 * run with pending messages against the mean of the two runs without (so a drift of the machine's
 * load or a cold start shows as a difference between those two).
 */
import { connect } from 'amqplib';

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

/** One row per broker: msgs/s without and with the pending messages, and the change. */
export interface DelayedRow {
  broker: string;
  before: RunResult;
  with: RunResult | null;
  after: RunResult | null;
  prefillS: number | null;
  error: string | null;
}

const cpu = (r: RunResult): string => (r.brokerCpuUsPerMsg === null ? 'n/a' : r.brokerCpuUsPerMsg.toFixed(1));
const other = (r: RunResult): string => (r.otherCpuPct === null ? 'n/a' : `${Math.round(r.otherCpuPct)} %`);

/** One row per broker: msgs/s before, with and after the pending messages, and the change. */
export function delayedTable(s: DelayedScenario, rows: DelayedRow[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    `| broker | msgs/s before | msgs/s with ${fmtInt(s.pending)} pending | msgs/s after | change (with / mean of before, after) | broker CPU µs/msg (before / with / after) | other CPU (before / with / after) | filling took |`,
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    const runs = [r.before, r.with, r.after];
    const bad = runs.find((x) => x === null || x.error !== null);
    if (r.error !== null || bad !== undefined) {
      const err = r.error ?? bad?.error ?? 'failed';
      lines.push(`| ${r.broker} | ${r.before.error === null ? fmtInt(r.before.msgsPerSec) : ''} | failed: ${err.replace(/\|/g, '\\|').replace(/\s+/g, ' ')} | | | | | |`);
      continue;
    }
    const w = r.with!;
    const a = r.after!;
    const base = (r.before.msgsPerSec + a.msgsPerSec) / 2;
    const change = base > 0 ? ((w.msgsPerSec - base) / base) * 100 : 0;
    lines.push(
      `| ${r.broker} | ${fmtInt(r.before.msgsPerSec)} | ${fmtInt(w.msgsPerSec)} | ${fmtInt(a.msgsPerSec)} | ${change >= 0 ? '+' : ''}${change.toFixed(1)} % | ` +
        `${cpu(r.before)} / ${cpu(w)} / ${cpu(a)} | ${other(r.before)} / ${other(w)} / ${other(a)} | ${r.prefillS === null ? 'n/a' : `${r.prefillS.toFixed(1)} s`} |`,
    );
  }
  return lines.join('\n');
}
