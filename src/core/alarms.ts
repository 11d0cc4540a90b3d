import { readFileSync, statfs, statfsSync } from 'node:fs';
import { totalmem } from 'node:os';
import { latencyTrace, traceNow, TraceSpan } from './latency-trace.js';
import { processMemory, type MemoryAccount } from './memory.js';

export type AlarmListener = (blocked: boolean, reason: string) => void;

/** How often memory is sampled once the figure is at NEAR_RATIO of the watermark or above. */
export const MEMORY_SAMPLE_MS = 50;
/** Below NEAR_RATIO of the watermark, memory is sampled SLOW_FACTOR times less often. */
const NEAR_RATIO = 0.5;
const SLOW_FACTOR = 5;
const DISK_CHECK_MS = 1000;
/** A raised memory alarm clears once the figure is below this fraction of the watermark. */
export const MEMORY_CLEAR_RATIO = 0.9;
/** Limits at or above this are "no limit" (cgroup v1 reports about 2^63 when unlimited). */
const NO_LIMIT = 2 ** 60;

/** What a fractional watermark is a fraction of. */
export interface MemoryBase {
  bytes: number;
  /** 'cgroup': the container's memory limit; 'host': the machine's RAM. */
  source: 'cgroup' | 'host';
}

/** Where the cgroup memory limit is read when `process.constrainedMemory()` gives none. */
export const CGROUP_LIMIT_FILES = ['/sys/fs/cgroup/memory.max', '/sys/fs/cgroup/memory/memory.limit_in_bytes'];

function realLimit(n: number | undefined, total: number): number | undefined {
  return n !== undefined && Number.isFinite(n) && n > 0 && n < NO_LIMIT && n < total ? n : undefined;
}

/** The cgroup memory limit in `files` (the first that holds a number), or undefined. */
export function cgroupLimit(files: readonly string[] = CGROUP_LIMIT_FILES): number | undefined {
  for (const f of files) {
    let text: string;
    try {
      text = readFileSync(f, 'utf8').trim();
    } catch {
      continue;
    }
    if (/^\d+$/.test(text)) return Number(text);
    if (text === 'max') return undefined;
  }
  return undefined;
}

/**
 * The memory a fractional watermark applies to: the container's limit when the process runs under
 * one smaller than the machine's RAM (`process.constrainedMemory()`, else the cgroup files), else
 * the RAM.
 */
export function memoryBase(
  constrained: number | undefined = process.constrainedMemory?.(),
  files: readonly string[] = CGROUP_LIMIT_FILES,
  total: number = totalmem(),
): MemoryBase {
  const limit = realLimit(constrained, total) ?? realLimit(cgroupLimit(files), total);
  return limit !== undefined ? { bytes: limit, source: 'cgroup' } : { bytes: total, source: 'host' };
}

/** The memory figure the alarm compares with the watermark, in parts (bytes). */
export interface MemoryFigure {
  /** Messages held by queues in memory. */
  messages: number;
  /** Bytes in socket buffers and decoders. */
  buffered: number;
  /** V8 heap in use (JS objects: message records, queues, connections ...). */
  heapUsed: number;
  /** Memory outside the V8 heap that is not an ArrayBuffer (Buffers are counted where they are held). */
  otherExternal: number;
  total: number;
}

/**
 * Resource alarms: while any is raised, publishers are blocked (AMQP connection.blocked, other
 * protocols stop reading their sockets); consumers keep draining.
 *
 * Memory: the figure is what the broker accounts for itself (messages in queues, socket and
 * decoder buffers; see MemoryAccount) plus the V8 heap in use and non-buffer external memory,
 * sampled every MEMORY_SAMPLE_MS from half the watermark up (less often below) and also as soon as
 * queued messages alone would cross the watermark. The alarm is raised at the watermark and cleared below MEMORY_CLEAR_RATIO of it; it
 * does not follow the resident set size, which the allocator keeps high after memory is freed.
 * Free disk space in the data directory is checked once a second, off the hot path.
 */
export class Alarms {
  private readonly raised = new Set<string>();
  private readonly held = new Set<string>();
  private readonly listeners = new Set<AlarmListener>();
  private timer: NodeJS.Timeout | undefined;
  /** Watermark in bytes. */
  memoryLimit: number;
  /** What a fractional watermark was taken of (for the start-up log). */
  readonly memoryBase: MemoryBase | undefined;
  /** The figure at the last sample. */
  memoryUsed = 0;
  /** Free bytes below which the disk alarm is raised (0: never). */
  diskFreeLimit = 0;
  /** Free bytes on the data directory's file system at the last check (-1: unknown). */
  diskFree = -1;
  private diskPath: string | undefined;
  private diskChecking = false;
  private sampleMs = MEMORY_SAMPLE_MS;
  private diskCheckedAt = 0;
  /** The memory state as the sampler last decided it (a `set('memory', ...)` by hand stays until it flips). */
  private memoryHigh = false;
  private checkQueued = false;

  constructor(
    memoryHighWatermark: number,
    readonly account: MemoryAccount = processMemory,
    base?: MemoryBase,
  ) {
    if (memoryHighWatermark <= 1) {
      this.memoryBase = base ?? memoryBase();
      this.memoryLimit = Math.floor(this.memoryBase.bytes * memoryHighWatermark);
    } else {
      this.memoryBase = undefined;
      this.memoryLimit = memoryHighWatermark;
    }
  }

  get blocked(): boolean {
    return this.raised.size > 0 || this.held.size > 0;
  }

  get active(): string[] {
    return [...this.raised];
  }

  on(listener: AlarmListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  set(name: string, on: boolean): void {
    const wasBlocked = this.blocked;
    if (on) this.raised.add(name);
    else this.raised.delete(name);
    this.changed(wasBlocked);
  }

  /**
   * Flow control that is not a resource alarm: while any hold is on, publishers are blocked as
   * for an alarm (`name` is what the blocked notification says), but no alarm is reported (health
   * checks, `/api/nodes`, metrics). Used while a cluster node has too much in flight to a peer.
   */
  hold(name: string, on: boolean): void {
    const wasBlocked = this.blocked;
    if (on) this.held.add(name);
    else this.held.delete(name);
    this.changed(wasBlocked);
  }

  private changed(wasBlocked: boolean): void {
    if (wasBlocked === this.blocked) return;
    const reason = !this.blocked ? '' : this.raised.size > 0 ? `low on ${[...this.raised].join(', ')}` : [...this.held].join(', ');
    for (const l of this.listeners) l(this.blocked, reason);
  }

  /**
   * Watches free space on the file system holding `path` (the data directory): below `limit`
   * bytes the disk alarm is raised. Checked now, then once a second.
   */
  watchDisk(path: string, limit: number): void {
    this.diskPath = path;
    this.diskFreeLimit = limit;
    try {
      const s = statfsSync(path);
      this.diskSample(s.bavail * s.bsize);
    } catch {
      this.diskFree = -1;
    }
  }

  private diskSample(free: number): void {
    this.diskFree = free;
    this.set('disk', this.diskFreeLimit > 0 && free < this.diskFreeLimit);
  }

  /** The memory figure now, in parts (polls the buffer sources; reads no RSS). */
  memoryFigure(): MemoryFigure {
    const a = this.account;
    const mem = process.memoryUsage();
    const buffered = a.poll();
    const otherExternal = Math.max(0, mem.external - mem.arrayBuffers);
    const total = a.messageBytes + buffered + mem.heapUsed + otherExternal;
    return { messages: a.messageBytes, buffered, heapUsed: mem.heapUsed, otherExternal, total };
  }

  /**
   * Checks now, then memory every `intervalMs` while the figure is at half the watermark or above
   * (SLOW_FACTOR times less often below, where even a fast rise cannot reach the watermark before
   * the next sample; queued messages also trigger a check as they cross it), the disk once a second.
   */
  start(intervalMs = MEMORY_SAMPLE_MS): void {
    this.sampleMs = intervalMs;
    this.check();
    this.schedule();
  }

  private schedule(): void {
    const near = this.memoryHigh || this.memoryUsed >= this.memoryLimit * NEAR_RATIO;
    this.timer = setTimeout(this.tick, near ? this.sampleMs : this.sampleMs * SLOW_FACTOR);
    this.timer.unref();
  }

  private readonly tick = (): void => {
    if (this.timer === undefined) return;
    const trace = latencyTrace;
    const t0 = trace !== null ? traceNow() : 0;
    this.checkMemory();
    if (trace !== null) trace.span(TraceSpan.MEMORY_SAMPLE, t0);
    if (Date.now() - this.diskCheckedAt >= DISK_CHECK_MS) this.checkDisk();
    this.schedule();
  };

  /** Checks memory and disk now. */
  check(): void {
    this.checkMemory();
    this.checkDisk();
  }

  /** Samples memory: raised at the watermark, cleared below MEMORY_CLEAR_RATIO of it. */
  checkMemory(): void {
    const f = this.memoryFigure();
    this.memoryUsed = f.total;
    const limit = this.memoryLimit;
    const high = this.memoryHigh ? f.total >= limit * MEMORY_CLEAR_RATIO : f.total >= limit;
    if (high !== this.memoryHigh) {
      this.memoryHigh = high;
      this.set('memory', high);
    }
    // Until the next sample: check again as soon as queued messages alone take the figure over.
    this.account.notifyAt(high ? Number.POSITIVE_INFINITY : f.messages + (limit - f.total), this.onThreshold);
  }

  /** Queued messages crossed the watermark between samples: check once the current input is handled. */
  private readonly onThreshold = (): void => {
    if (this.checkQueued || this.timer === undefined) return;
    this.checkQueued = true;
    process.nextTick(this.thresholdCheck);
  };

  private readonly thresholdCheck = (): void => {
    this.checkQueued = false;
    if (this.timer !== undefined) this.checkMemory();
  };

  private checkDisk(): void {
    this.diskCheckedAt = Date.now();
    const path = this.diskPath;
    if (path === undefined || this.diskChecking) return;
    this.diskChecking = true;
    statfs(path, (err, s) => {
      this.diskChecking = false;
      if (err) return; // the data directory vanished or is unreadable: the store reports its own errors
      this.diskSample(s.bavail * s.bsize);
    });
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.diskPath = undefined;
    this.account.cancelNotify(this.onThreshold);
  }
}
