import { totalmem } from 'node:os';

export type AlarmListener = (blocked: boolean, reason: string) => void;

/**
 * Resource alarms: while any is raised, publishers are blocked (AMQP connection.blocked, other
 * protocols stop reading their sockets). Memory is sampled off the hot path.
 */
export class Alarms {
  private readonly raised = new Set<string>();
  private readonly listeners = new Set<AlarmListener>();
  private timer: NodeJS.Timeout | undefined;
  /** Resident set size limit in bytes. */
  memoryLimit: number;

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

  /** Checks memory now and every `intervalMs`. */
  start(intervalMs = 1000): void {
    this.check();
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  check(): void {
    this.set('memory', process.memoryUsage.rss() > this.memoryLimit);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
