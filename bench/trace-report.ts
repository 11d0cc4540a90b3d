/**
 * Lines up a traced run's files — the broker's recording (WARREN_LATENCY_TRACE, see
 * src/core/latency-trace.ts) and the consumer's (due, sent, received) times — and says what the
 * tail is made of: for the messages at or above p99 and p99.9, how long each leg took, and which of
 * them overlapped a garbage collection, an event-loop stall or a piece of periodic work.
 *
 * One publisher, one consumer, one FIFO queue: the n-th message the consumer received is the n-th
 * the broker routed, enqueued and dispatched (checked: a message that would be read before it was
 * sent means the files do not line up, and the analysis says so instead of guessing).
 *
 * Also runnable on its own: node dist/bench/trace-report.js <broker.json> <consumer.bin> [warmup s]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

interface BrokerTrace {
  startedAt: number;
  stoppedAt: number;
  counts: { routes: number; enqueues: number; dispatches: number; flushes: number };
  read: number[];
  route: number[];
  enqueue: number[];
  dispatch: number[];
  flush: number[];
  flushBytes: number[];
  gc: { at: number[]; ms: number[]; kind: number[] };
  stalls: { at: number[]; ms: number[] };
  spans: { at: number[]; ms: number[]; kind: string[] };
  loopDelayMs: { p50: number; p99: number; p999: number; max: number; mean: number } | null;
}

/** Where the broker writes its recording (the harness renames it after each run). */
export function brokerTraceFile(dir: string): string {
  return join(dir, 'warren-trace.json');
}

/** V8's GC kinds (PerformanceObserver 'gc' detail.kind). */
const GC_KINDS: Record<number, string> = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental', 8: 'weak-callbacks', 16: 'minor-mark-compact' };

const LEGS = ['generator (due → sent)', 'client → broker read', 'read → route', 'route → enqueue', 'enqueue → dispatch', 'dispatch → flush', 'flush → consumer'] as const;

/** First index in sorted `a` with a[i] >= x. */
function lowerBound(a: number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (a[mid]! < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

const f2 = (n: number): string => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const pct = (a: number, b: number): string => (b === 0 ? 'n/a' : `${Math.round((a / b) * 100)} %`);

/** Events (start, duration) that overlap [from, to]. */
function overlapping(at: number[], ms: number[], from: number, to: number): number[] {
  const out: number[] = [];
  // Events are in start order; an event can only overlap if it starts before `to`.
  const end = lowerBound(at, to);
  for (let i = end - 1; i >= 0; i--) {
    if (at[i]! + ms[i]! >= from) out.push(i);
    else if (from - at[i]! > 1000) break; // nothing periodic here lasts a second
  }
  return out;
}

export function traceBreakdown(brokerFile: string, consumerFile: string, warmupS: number): string {
  const b = JSON.parse(readFileSync(brokerFile, 'utf8')) as BrokerTrace;
  const raw = readFileSync(consumerFile);
  const c = new Float64Array(raw.buffer, raw.byteOffset, Math.floor(raw.length / 8));
  const n = Math.min(c.length / 3, b.route.length, b.enqueue.length, b.dispatch.length);
  if (n === 0) return 'trace: nothing recorded';
  const firstDue = c[0]!;
  const windowFrom = firstDue + warmupS * 1000;
  const rows: Array<{ total: number; legs: number[]; due: number; recv: number }> = [];
  let misaligned = 0;
  for (let i = 0; i < n; i++) {
    const due = c[3 * i]!;
    const sent = c[3 * i + 1]!;
    const recv = c[3 * i + 2]!;
    const read = b.read[i]!;
    const route = b.route[i]!;
    const enqueue = b.enqueue[i]!;
    const dispatch = b.dispatch[i]!;
    const fi = lowerBound(b.flush, dispatch);
    const flush = fi < b.flush.length ? b.flush[fi]! : Number.NaN;
    // Clocks of one host agree to well under 0.1 ms; more than that backwards means the indexes slipped.
    if (read + 0.1 < sent || recv + 0.1 < flush) misaligned++;
    if (due < windowFrom) continue;
    rows.push({
      total: recv - due,
      legs: [sent - due, read - sent, route - read, enqueue - route, dispatch - enqueue, flush - dispatch, recv - flush],
      due,
      recv,
    });
  }
  if (misaligned > n / 100) {
    return `trace: ${misaligned} of ${n} messages do not line up (read before sent, or received before flushed): not analysed`;
  }
  const totals = rows.map((r) => r.total).sort((x, y) => x - y);
  const p50 = quantile(totals, 0.5);
  const p99 = quantile(totals, 0.99);
  const p999 = quantile(totals, 0.999);
  const groups: Array<[string, typeof rows]> = [
    ['all', rows],
    [`≥ p99 (${f2(p99)} ms)`, rows.filter((r) => r.total >= p99)],
    [`≥ p99.9 (${f2(p999)} ms)`, rows.filter((r) => r.total >= p999)],
  ];
  const lines: string[] = [];
  lines.push(`${rows.length} messages in the window (p50 ${f2(p50)}, p99 ${f2(p99)}, p99.9 ${f2(p999)}, max ${f2(totals[totals.length - 1] ?? Number.NaN)} ms); mean ms per leg:`);
  lines.push('');
  lines.push(`| messages | n | ${LEGS.join(' | ')} |`);
  lines.push(`|---|--:|${LEGS.map(() => '--:').join('|')}|`);
  for (const [name, g] of groups) {
    const means = LEGS.map((_, k) => g.reduce((a, r) => a + r.legs[k]!, 0) / Math.max(1, g.length));
    lines.push(`| ${name} | ${g.length} | ${means.map(f2).join(' | ')} |`);
  }
  // What the slowest messages overlapped.
  const tail = groups[1]![1];
  const spanKinds = [...new Set(b.spans.kind)];
  const hit = { gc: 0, gcMajor: 0, stall: 0, spans: new Map<string, number>(), none: 0 };
  for (const r of tail) {
    const gcs = overlapping(b.gc.at, b.gc.ms, r.due, r.recv);
    const stalls = overlapping(b.stalls.at, b.stalls.ms, r.due, r.recv);
    let any = gcs.length > 0 || stalls.length > 0;
    if (gcs.length > 0) hit.gc++;
    if (gcs.some((i) => b.gc.kind[i] !== 1)) hit.gcMajor++;
    if (stalls.length > 0) hit.stall++;
    for (const k of spanKinds) {
      const idx = b.spans.kind.map((x, i) => (x === k ? i : -1)).filter((i) => i >= 0);
      const at = idx.map((i) => b.spans.at[i]!);
      const ms = idx.map((i) => b.spans.ms[i]!);
      if (overlapping(at, ms, r.due, r.recv).length > 0) {
        hit.spans.set(k, (hit.spans.get(k) ?? 0) + 1);
        any = true;
      }
    }
    if (!any) hit.none++;
  }
  // The dominant leg of each tail message.
  const dominant = new Map<string, number>();
  for (const r of tail) {
    let k = 0;
    for (let j = 1; j < r.legs.length; j++) if (r.legs[j]! > r.legs[k]!) k = j;
    dominant.set(LEGS[k]!, (dominant.get(LEGS[k]!) ?? 0) + 1);
  }
  lines.push('');
  lines.push(
    `Messages ≥ p99 (${tail.length}): largest leg ` +
      [...dominant.entries()].sort((x, y) => y[1] - x[1]).map(([k, v]) => `${k} ${pct(v, tail.length)}`).join(', ') +
      `; overlapping a GC ${pct(hit.gc, tail.length)} (not a scavenge: ${pct(hit.gcMajor, tail.length)}), ` +
      `an event-loop stall > 2 ms ${pct(hit.stall, tail.length)}` +
      [...hit.spans.entries()].map(([k, v]) => `, ${k} ${pct(v, tail.length)}`).join('') +
      `, none of these ${pct(hit.none, tail.length)}.`,
  );
  // The broker's side over the whole recording.
  const gcByKind = new Map<string, { n: number; total: number; max: number }>();
  b.gc.kind.forEach((k, i) => {
    const name = GC_KINDS[k] ?? `kind ${k}`;
    const e = gcByKind.get(name) ?? { n: 0, total: 0, max: 0 };
    e.n++;
    e.total += b.gc.ms[i]!;
    e.max = Math.max(e.max, b.gc.ms[i]!);
    gcByKind.set(name, e);
  });
  const spanByKind = new Map<string, { n: number; max: number }>();
  b.spans.kind.forEach((k, i) => {
    const e = spanByKind.get(k) ?? { n: 0, max: 0 };
    e.n++;
    e.max = Math.max(e.max, b.spans.ms[i]!);
    spanByKind.set(k, e);
  });
  const seconds = (b.stoppedAt - b.startedAt) / 1000;
  lines.push(
    `Broker over ${seconds.toFixed(1)} s: GC ` +
      ([...gcByKind.entries()].map(([k, e]) => `${k} ×${e.n} (${f2(e.total)} ms, max ${f2(e.max)})`).join(', ') || 'none') +
      `; stalls > 2 ms ×${b.stalls.at.length}` +
      (b.stalls.ms.length > 0 ? ` (max ${f2(Math.max(...b.stalls.ms))} ms)` : '') +
      `; periodic work ` +
      ([...spanByKind.entries()].map(([k, e]) => `${k} ×${e.n} (max ${f2(e.max)} ms)`).join(', ') || 'none') +
      (b.loopDelayMs !== null
        ? `; event-loop delay p50 ${f2(b.loopDelayMs.p50)} / p99 ${f2(b.loopDelayMs.p99)} / max ${f2(b.loopDelayMs.max)} ms`
        : '') +
      `; ${b.counts.flushes} flushes for ${b.counts.dispatches} deliveries.`,
  );
  return lines.join('\n');
}

if (process.argv[1]?.endsWith('trace-report.js') === true) {
  const [brokerFile, consumerFile, warmup] = process.argv.slice(2);
  if (brokerFile === undefined || consumerFile === undefined) {
    process.stderr.write('usage: node dist/bench/trace-report.js <broker.json> <consumer.bin> [warm-up seconds]\n');
    process.exit(2);
  }
  process.stdout.write(`${traceBreakdown(brokerFile, consumerFile, Number(warmup ?? 2))}\n`);
}
