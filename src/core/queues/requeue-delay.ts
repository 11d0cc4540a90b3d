import { DueQueue } from '../delay-heap.js';
import type { QueueEntry } from './entry.js';

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
  private readonly due: DueQueue<QueueEntry>;

  constructor(ready: (e: QueueEntry) => void) {
    this.due = new DueQueue(ready);
  }

  get count(): number {
    return this.due.size;
  }

  hold(e: QueueEntry, delay: number): void {
    this.due.push(Date.now() + delay, e);
  }

  /** Every held entry, removed (queue deleted). */
  drain(): QueueEntry[] {
    return this.due.clear();
  }
}
