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
