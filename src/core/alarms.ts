import { statfs, statfsSync } from 'node:fs';
import { totalmem } from 'node:os';

export type AlarmListener = (blocked: boolean, reason: string) => void;

/**
 * Resource alarms: while any is raised, publishers are blocked (AMQP connection.blocked, other
 * protocols stop reading their sockets); consumers keep draining. Memory (resident set size) and
 * free disk space in the data directory are sampled off the hot path.
 */
export class Alarms {
  private readonly raised = new Set<string>();
  private readonly listeners = new Set<AlarmListener>();
  private timer: NodeJS.Timeout | undefined;
  /** Resident set size limit in bytes. */
  memoryLimit: number;
  /** Free bytes below which the disk alarm is raised (0: never). */
  diskFreeLimit = 0;
  /** Free bytes on the data directory's file system at the last check (-1: unknown). */
  diskFree = -1;
  private diskPath: string | undefined;
  private diskChecking = false;

  constructor(memoryHighWatermark: number) {
    this.memoryLimit = memoryHighWatermark <= 1 ? Math.floor(totalmem() * memoryHighWatermark) : memoryHighWatermark;
  }

  get blocked(): boolean {
    return this.raised.size > 0;
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
    if (wasBlocked !== this.blocked) {
      const reason = this.blocked ? `low on ${[...this.raised].join(', ')}` : '';
      for (const l of this.listeners) l(this.blocked, reason);
    }
  }

  /**
   * Watches free space on the file system holding `path` (the data directory): below `limit`
   * bytes the disk alarm is raised. Checked now, then with the memory check.
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

  /** Checks memory now and every `intervalMs`. */
  start(intervalMs = 1000): void {
    this.check();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  check(): void {
    this.set('memory', process.memoryUsage.rss() > this.memoryLimit);
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
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.diskPath = undefined;
  }
}
