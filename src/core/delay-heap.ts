/**
 * A binary min-heap of items keyed by due time (ms since the epoch), ties broken by insertion
 * order so that items due at the same moment come out first-in first-out. push and pop are
 * O(log n); the heap keeps parallel arrays so an item costs no wrapper object.
 */
export class DelayHeap<T> {
  private readonly due: number[] = [];
  private readonly order: number[] = [];
  private readonly items: T[] = [];
  private seq = 0;

  get size(): number {
    return this.items.length;
  }

  /** Due time of the earliest item, or Infinity when empty. */
  peekDue(): number {
    return this.items.length === 0 ? Infinity : this.due[0]!;
  }

  peek(): T | undefined {
    return this.items[0];
  }

  push(due: number, item: T): void {
    const due_ = this.due;
    const order = this.order;
    const items = this.items;
    const o = this.seq++;
    let i = items.length;
    due_.push(due);
    order.push(o);
    items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (due_[p]! < due || (due_[p] === due && order[p]! < o)) break;
      due_[i] = due_[p]!;
      order[i] = order[p]!;
      items[i] = items[p]!;
      i = p;
    }
    due_[i] = due;
    order[i] = o;
    items[i] = item;
  }

  /** Removes and returns the earliest item. */
  pop(): T | undefined {
    const items = this.items;
    const n = items.length;
    if (n === 0) return undefined;
    const top = items[0]!;
    const due = this.due;
    const order = this.order;
    const lastDue = due.pop()!;
    const lastOrder = order.pop()!;
    const last = items.pop()!;
    const m = n - 1;
    if (m === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= m) break;
      const r = l + 1;
      let c = l;
      if (r < m && (due[r]! < due[l]! || (due[r] === due[l] && order[r]! < order[l]!))) c = r;
      if (due[c]! > lastDue || (due[c] === lastDue && order[c]! > lastOrder)) break;
      due[i] = due[c]!;
      order[i] = order[c]!;
      items[i] = items[c]!;
      i = c;
    }
    due[i] = lastDue;
    order[i] = lastOrder;
    items[i] = last;
    return top;
  }

  /** Removes every item (returned in no particular order). */
  clear(): T[] {
    const out = this.items.splice(0);
    this.due.length = 0;
    this.order.length = 0;
    return out;
  }

  /** Every item, in no particular order. */
  values(): readonly T[] {
    return this.items;
  }
}

/** Node timers take at most 2^31 - 1 ms; longer waits re-arm. */
const MAX_TIMER_MS = 0x7fffffff;

/**
 * Items released when they are due: a {@link DelayHeap} and one timer for the earliest. At most
 * `budget` items are released per timer turn; the rest follow on the next turn, so a burst of due
 * items never holds the event loop for long.
 */
export class DueQueue<T> {
  private readonly heap = new DelayHeap<T>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private releasing = false;
  private stopped = false;

  constructor(
    private readonly onDue: (item: T) => void,
    private readonly budget = Infinity,
  ) {}

  get size(): number {
    return this.heap.size;
  }

  push(due: number, item: T): void {
    this.heap.push(due, item);
    this.arm();
  }

  /** Removes every waiting item (returned in no particular order); the queue stays usable. */
  clear(): T[] {
    this.cancel();
    return this.heap.clear();
  }

  /** Removes every waiting item and releases nothing more. */
  stop(): T[] {
    this.stopped = true;
    return this.clear();
  }

  private cancel(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = Infinity;
  }

  private arm(): void {
    if (this.releasing || this.stopped) return;
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
    if (this.stopped) return;
    this.releasing = true;
    const heap = this.heap;
    const now = Date.now();
    let n = 0;
    try {
      while (heap.size > 0 && heap.peekDue() <= now && n < this.budget) {
        n++;
        this.onDue(heap.pop()!);
      }
    } finally {
      this.releasing = false;
    }
    if (heap.size > 0 && heap.peekDue() <= now && !this.stopped) {
      this.timerAt = now;
      this.timer = setTimeout(this.release, 0);
      this.timer.unref();
    } else this.arm();
  };
}
