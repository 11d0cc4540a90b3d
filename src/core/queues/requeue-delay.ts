import { DelayHeap } from '../delay-heap.js';
import type { QueueEntry } from './entry.js';

/** Largest delay a timer is armed for at once; longer waits re-arm. */
const MAX_TIMER_MS = 0x7fffffff;

/**
 * The delay before a returned message is ready again: `base` ms, or with `max` set, `base`
 * doubled per earlier return (exponential back-off) up to `max`.
 */
export function requeueDelayFor(returns: number, base: number, max: number | undefined): number {
  if (max === undefined || returns <= 1) return max === undefined ? base : Math.min(base, max);
  const d = base * 2 ** Math.min(returns - 1, 40);
  return Math.min(d, max);
}

/**
 * Messages a consumer returned (nack/reject with requeue) to a queue with `x-requeue-delay`: held
 * in a heap keyed by due time, one timer for the earliest, then handed back to the queue.
 */
export class RequeueDelays {
  private readonly heap = new DelayHeap<QueueEntry>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;

  constructor(private readonly ready: (e: QueueEntry) => void) {}

  get count(): number {
    return this.heap.size;
  }

  hold(e: QueueEntry, delay: number): void {
    this.heap.push(Date.now() + delay, e);
    this.arm();
  }

  /** Every held entry, removed (queue deleted). */
  drain(): QueueEntry[] {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
    return this.heap.clear();
  }

  private arm(): void {
    const at = this.heap.peekDue();
    if (at >= this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(this.release, Math.min(Math.max(0, at - Date.now()), MAX_TIMER_MS));
    this.timer.unref();
  }

  private readonly release = (): void => {
    this.timer = undefined;
    this.timerAt = Infinity;
    const now = Date.now();
    while (this.heap.size > 0 && this.heap.peekDue() <= now) this.ready(this.heap.pop()!);
    if (this.heap.size > 0) this.arm();
  };
}
