import { Deque } from '../deque.js';
import type { QueueEntry } from './entry.js';

/**
 * The ready messages of one queue (or one priority level), in publish order.
 *
 * New messages are appended to a deque. A requeued message goes back to its original position
 * (as RabbitMQ's classic queues do): every unacked message was taken from the front, so its
 * sequence number is lower than that of anything still in the deque, and the requeued messages,
 * kept in a min-heap by sequence, always come before the deque.
 */
/**
 * Shared by every list until its first message (a subscribed session's queue is empty most of its
 * life): never written to, a list swaps in its own deque or heap first.
 */
const NO_FIFO = new Deque<QueueEntry>(0);
const NO_REQUEUED: QueueEntry[] = [];

export class ReadyList {
  private fifo = NO_FIFO;
  private requeued = NO_REQUEUED;

  get length(): number {
    return this.fifo.length + this.requeued.length;
  }

  push(e: QueueEntry): void {
    if (this.fifo === NO_FIFO) this.fifo = new Deque<QueueEntry>();
    this.fifo.push(e);
  }

  requeue(e: QueueEntry): void {
    if (this.requeued === NO_REQUEUED) this.requeued = [];
    const h = this.requeued;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.seq <= e.seq) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  peek(): QueueEntry | undefined {
    return this.requeued.length > 0 ? this.requeued[0] : this.fifo.peek();
  }

  shift(): QueueEntry | undefined {
    if (this.requeued.length === 0) return this.fifo.shift();
    const h = this.requeued;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && h[r]!.seq < h[l]!.seq ? r : l;
        if (h[c]!.seq >= last.seq) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }

  /** Removes the newest message (for overflow on a priority level); requeued ones are older. */
  popNewest(): QueueEntry | undefined {
    return this.fifo.length > 0 ? this.fifo.pop() : this.shift();
  }

  /** Empties the list, calling `fn` on each entry in order. */
  drain(fn: (e: QueueEntry) => void): void {
    for (let e = this.shift(); e !== undefined; e = this.shift()) fn(e);
  }

  *[Symbol.iterator](): IterableIterator<QueueEntry> {
    const heap = [...this.requeued].sort((a, b) => a.seq - b.seq);
    yield* heap;
    yield* this.fifo;
  }
}
