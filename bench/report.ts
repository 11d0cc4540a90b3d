/** Markdown for the results: an environment header and one table per scenario. */
import type { Scenario } from './scenarios.js';

export interface RunResult {
  scenario: string;
  broker: string;
  isWarren: boolean;
  /** Null when the run succeeded. */
  error: string | null;
  seconds: number;
  published: number;
  delivered: number;
  msgsPerSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  p999Ms?: number | null;
  maxMs?: number | null;
  /** Fixed-rate runs: latency from the actual send time (the due-time figures above include generator lag). */
  sendP50Ms?: number | null;
  sendP99Ms?: number | null;
  sendP999Ms?: number | null;
  /** Fixed-rate runs: how late the generator sent against the schedule (p99, max). */
  lagP99Ms?: number | null;
  lagMaxMs?: number | null;
  /** Broker CPU time per delivered message, µs; null when the broker's pid is unknown. */
  brokerCpuUsPerMsg: number | null;
  /** Broker CPU over the window, % of one core. */
  brokerCpuPct: number | null;
  /** All client processes together, % of one core. */
  clientCpuPct: number | null;
  /** Every other process on the machine (busy time minus broker and clients), % of one core. */
  otherCpuPct: number | null;
  /** Share of the window the publishers waited on the in-flight window / on transport drain, %. */
  windowWaitPct: number;
  drainWaitPct: number;
}

/** Other load above this (% of one core) makes a run suspect: it is flagged. */
export const OTHER_LOAD_WARN_PCT = 15;

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');

export function fmtMs(n: number | null): string {
  if (n === null) return 'n/a';
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : fmtInt(n);
}

export const fmt1 = (n: number | null): string => (n === null ? 'n/a' : n.toFixed(1));
export const fmtOther = (n: number | null): string =>
  n === null ? 'n/a' : n > OTHER_LOAD_WARN_PCT ? `${Math.round(n)} % ⚠` : `${Math.round(n)} %`;
const fmtPct = (n: number | null): string => (n === null ? 'n/a' : `${Math.round(n)} %`);

function ratio(a: number | null, b: number | null): string {
  if (a === null || b === null || b === 0 || a === 0) return 'n/a';
  return `${(a / b).toFixed(2)}×`;
}

export const isDisturbed = (r: RunResult): boolean => r.otherCpuPct !== null && r.otherCpuPct > OTHER_LOAD_WARN_PCT;

/**
 * The run with the median msgs/s (for an even count, the upper middle one), chosen among the
 * successful runs that other load did not disturb when there are any, else among all runs.
 */
function median(runs: RunResult[]): RunResult | undefined {
  const ok = runs.filter((r) => r.error === null);
  const clean = ok.filter((r) => !isDisturbed(r));
  const pool = clean.length > 0 ? clean : ok.length > 0 ? ok : runs;
  const sorted = [...pool].sort((a, b) => a.msgsPerSec - b.msgsPerSec);
  return sorted[Math.floor(sorted.length / 2)];
}

/** One table for a scenario; `runsPerBroker` holds each broker's repetitions (one or more). */
export function scenarioTable(s: Scenario, runsPerBroker: RunResult[][]): string {
  const results = runsPerBroker.map(median).filter((r): r is RunResult => r !== undefined);
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | msgs/s | p50 ms | p99 ms | broker CPU µs/msg | broker CPU | clients CPU | other CPU | publisher waited (window / drain) |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    if (r.error !== null) {
      lines.push(`| ${r.broker} | failed: ${r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ')} | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.broker} | ${fmtInt(r.msgsPerSec)} | ${fmtMs(r.p50Ms)} | ${fmtMs(r.p99Ms)} | ${fmt1(r.brokerCpuUsPerMsg)} | ` +
        `${fmtPct(r.brokerCpuPct)} | ${fmtPct(r.clientCpuPct)} | ${fmtOther(r.otherCpuPct)} | ` +
        `${Math.round(r.windowWaitPct)} % / ${Math.round(r.drainWaitPct)} % |`,
    );
  }
  const ok = results.filter((r) => r.error === null);
  for (const w of ok.filter((r) => r.isWarren)) {
    for (const p of ok.filter((r) => !r.isWarren)) {
      lines.push(
        `| **${w.broker} / ${p.broker}** | **${ratio(w.msgsPerSec, p.msgsPerSec)}** | | | ` +
          `**${ratio(w.brokerCpuUsPerMsg, p.brokerCpuUsPerMsg)}** | | | | |`,
      );
    }
  }
  const spread = runsPerBroker.filter((runs) => runs.length > 1);
  if (spread.length > 0) lines.push('');
  for (const runs of spread) {
    const ok = runs
      .filter((r) => r.error === null)
      .map((r) => `${fmtInt(r.msgsPerSec)}${isDisturbed(r) ? ' ⚠' : ''}`);
    const bad = runs.length - ok.length;
    lines.push(
      `- ${runs[0]?.broker ?? '?'}: ${runs.length} runs, msgs/s ${ok.join(', ')}` + (bad > 0 ? `, ${bad} failed` : ''),
    );
  }
  return lines.join('\n');
}

export const LEGEND = [
  '- msgs/s: messages delivered to consumers per second of the measured window (fan-out: summed over all queues).',
  '- p50/p99: end-to-end latency from publish() to the consumer callback, for messages received in the window.',
  '- broker CPU µs/msg: broker process user+system CPU time over the window / messages delivered in it.',
  '- broker CPU, clients CPU: % of one core over the window (this machine has the number of cores stated above;',
  '  clients = all publisher and consumer processes and the orchestrator).',
  `- other CPU: all other processes on the machine during the window (busy time from /proc/stat minus broker`,
  `  and clients), % of one core; ⚠ above ${OTHER_LOAD_WARN_PCT} %: the machine was not quiet, the run is suspect.`,
  '- publisher waited: share of the window the publisher was paused by the in-flight window (consumers behind)',
  '  or by transport back-pressure (publish() returned false until drain: the broker not reading fast enough).',
  '- Ratio rows: Warren / peer; for msgs/s higher is better, for CPU µs/msg lower is better.',
].join('\n');
