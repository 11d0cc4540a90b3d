/**
 * A latency trace for benchmarks: where a message's time goes inside the broker. Off unless the
 * process starts with WARREN_LATENCY_TRACE=<directory>; then `latencyTrace` is a LatencyTrace and
 * every call site's `if (t !== null)` is taken, otherwise `latencyTrace` is null and the call sites
 * cost one load and a compare.
 *
 * Recording starts and stops on SIGUSR2 (the bench sends one when its run starts and one when the
 * measured window ends); at the stop everything recorded is written to
 * `<directory>/warren-trace.json` and the buffers start over.
 *
 * What is recorded, into typed arrays sized once (no object per message):
 * - per published message (by arrival order): when the socket chunk that carried it was read
 *   (`read`), when the core was asked to route it (`route`);
 * - per enqueue and per dispatch to a consumer (by order);
 * - every flush of a connection's corked output (`flush`: time, bytes) — a delivery leaves at the
 *   first flush after its dispatch;
 * - V8 garbage collections (start, duration, kind), from a PerformanceObserver;
 * - event-loop stalls: a 1 ms timer that sees a gap > STALL_MS records when and how long;
 * - spans of periodic work (stats sampling, memory sampling, heartbeat sweeps, store commits,
 *   consumer-timeout sweeps) with their start and duration;
 * - the event-loop delay histogram (monitorEventLoopDelay) summary.
 * With one publisher and one consumer over one FIFO queue, the n-th route, enqueue and dispatch
 * are the same message, which is what the bench's analysis (bench/trace-report.ts) relies on.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PerformanceObserver, monitorEventLoopDelay, performance } from 'node:perf_hooks';
import type { IntervalHistogram, PerformanceEntry } from 'node:perf_hooks';

/** Periodic work the trace times. */
export const TraceSpan = {
  STATS_SAMPLE: 0,
  MEMORY_SAMPLE: 1,
  HEARTBEAT_SWEEP: 2,
  STORE_COMMIT: 3,
  CONSUMER_TIMEOUT_SWEEP: 4,
} as const;

const SPAN_NAMES = ['stats-sample', 'memory-sample', 'heartbeat-sweep', 'store-commit', 'consumer-timeout-sweep'];

/** Messages (and flushes) one recording holds; later ones are counted but not kept. */
const CAPACITY = 1 << 20;
const EVENTS = 1 << 16;
/** Gaps of the 1 ms stall probe above this (ms) are recorded. */
const STALL_MS = 2;

/** Wall-clock milliseconds, comparable across the processes of one host (as the bench's clock). */
const origin = performance.timeOrigin;
export const traceNow = (): number => origin + performance.now();

export class LatencyTrace {
  recording = false;
  /** When the last input chunk was read (set by the transport for every chunk). */
  lastRead = 0;
  private readonly readAt = new Float64Array(CAPACITY);
  private readonly routeAt = new Float64Array(CAPACITY);
  private readonly enqueueAt = new Float64Array(CAPACITY);
  private readonly dispatchAt = new Float64Array(CAPACITY);
  private readonly flushAt = new Float64Array(CAPACITY);
  private readonly flushBytes = new Float64Array(CAPACITY);
  private routes = 0;
  private enqueues = 0;
  private dispatches = 0;
  private flushes = 0;
  private readonly gcAt = new Float64Array(EVENTS);
  private readonly gcMs = new Float64Array(EVENTS);
  private readonly gcKind = new Uint8Array(EVENTS);
  private gcs = 0;
  private readonly stallAt = new Float64Array(EVENTS);
  private readonly stallMs = new Float64Array(EVENTS);
  private stalls = 0;
  private readonly spanAt = new Float64Array(EVENTS);
  private readonly spanMs = new Float64Array(EVENTS);
  private readonly spanKind = new Uint8Array(EVENTS);
  private spans = 0;
  private startedAt = 0;
  private probeLast = 0;
  private probe: NodeJS.Timeout | undefined;
  private loopDelay: IntervalHistogram | undefined;
  private readonly gcObserver: PerformanceObserver;

  constructor(private readonly dir: string) {
    this.gcObserver = new PerformanceObserver((list) => {
      if (!this.recording) return;
      for (const e of list.getEntries()) {
        const i = this.gcs++;
        if (i >= EVENTS) continue;
        this.gcAt[i] = origin + e.startTime;
        this.gcMs[i] = e.duration;
        this.gcKind[i] = ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind) ?? 0;
      }
    });
    this.gcObserver.observe({ entryTypes: ['gc'] });
  }

  /** A message reached the core's publish. */
  route(): void {
    if (!this.recording) return;
    const i = this.routes++;
    if (i >= CAPACITY) return;
    this.readAt[i] = this.lastRead;
    this.routeAt[i] = traceNow();
  }

  enqueue(): void {
    if (!this.recording) return;
    const i = this.enqueues++;
    if (i < CAPACITY) this.enqueueAt[i] = traceNow();
  }

  dispatch(): void {
    if (!this.recording) return;
    const i = this.dispatches++;
    if (i < CAPACITY) this.dispatchAt[i] = traceNow();
  }

  /** A connection's corked output went to its socket. */
  flush(bytes: number): void {
    if (!this.recording) return;
    const i = this.flushes++;
    if (i >= CAPACITY) return;
    this.flushAt[i] = traceNow();
    this.flushBytes[i] = bytes;
  }

  /** Periodic work of `kind` (TraceSpan) that started at `start` (traceNow()) has just ended. */
  span(kind: number, start: number): void {
    if (!this.recording) return;
    const i = this.spans++;
    if (i >= EVENTS) return;
    this.spanAt[i] = start;
    this.spanMs[i] = traceNow() - start;
    this.spanKind[i] = kind;
  }

  private readonly onProbe = (): void => {
    const now = traceNow();
    const gap = now - this.probeLast;
    this.probeLast = now;
    if (gap > STALL_MS) {
      const i = this.stalls++;
      if (i < EVENTS) {
        this.stallAt[i] = now - gap;
        this.stallMs[i] = gap;
      }
    }
  };

  /** Starts a recording (the previous one, if any, is discarded). */
  start(): void {
    this.routes = this.enqueues = this.dispatches = this.flushes = this.gcs = this.stalls = this.spans = 0;
    this.startedAt = this.probeLast = traceNow();
    this.loopDelay = monitorEventLoopDelay({ resolution: 1 });
    this.loopDelay.enable();
    this.probe = setInterval(this.onProbe, 1);
    this.probe.unref();
    this.recording = true;
  }

  /** Stops the recording and writes it (off the hot path: the window has ended). */
  stop(): string {
    this.recording = false;
    clearInterval(this.probe);
    const d = this.loopDelay;
    d?.disable();
    const list = (a: Float64Array | Uint8Array, n: number): number[] => Array.from(a.subarray(0, Math.min(n, a.length)));
    const ms = (ns: number): number => ns / 1e6;
    const dump = {
      startedAt: this.startedAt,
      stoppedAt: traceNow(),
      counts: { routes: this.routes, enqueues: this.enqueues, dispatches: this.dispatches, flushes: this.flushes },
      read: list(this.readAt, this.routes),
      route: list(this.routeAt, this.routes),
      enqueue: list(this.enqueueAt, this.enqueues),
      dispatch: list(this.dispatchAt, this.dispatches),
      flush: list(this.flushAt, this.flushes),
      flushBytes: list(this.flushBytes, this.flushes),
      gc: { at: list(this.gcAt, this.gcs), ms: list(this.gcMs, this.gcs), kind: list(this.gcKind, this.gcs) },
      stalls: { at: list(this.stallAt, this.stalls), ms: list(this.stallMs, this.stalls) },
      spans: { at: list(this.spanAt, this.spans), ms: list(this.spanMs, this.spans), kind: list(this.spanKind, this.spans).map((k) => SPAN_NAMES[k] ?? String(k)) },
      loopDelayMs:
        d === undefined
          ? null
          : { p50: ms(d.percentile(50)), p99: ms(d.percentile(99)), p999: ms(d.percentile(99.9)), max: ms(d.max), mean: ms(d.mean) },
    };
    const file = join(this.dir, 'warren-trace.json');
    writeFileSync(`${file}.tmp`, JSON.stringify(dump));
    // Renamed into place whole, so a reader never sees half a file.
    renameSync(`${file}.tmp`, file);
    return file;
  }

  /** SIGUSR2: start when idle, stop (and write) when recording. */
  toggle(): void {
    if (this.recording) this.stop();
    else this.start();
  }
}

const dir = process.env.WARREN_LATENCY_TRACE;

/** The process's trace when WARREN_LATENCY_TRACE is set, else null (the normal case). */
export const latencyTrace: LatencyTrace | null = dir !== undefined && dir !== '' ? new LatencyTrace(dir) : null;
