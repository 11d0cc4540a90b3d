/** Initial capacity: most deques (one per queue, per subscriber session) stay empty or nearly so. */
const MIN_CAPACITY = 4;
/** Emptied with at least this capacity (after a backlog), a deque goes back to MIN_CAPACITY. */
const SHRINK_CAPACITY = 1024;

/**
 * A growable ring-buffer double-ended queue: O(1) push/shift at both ends, no `Array#shift`.
 * It starts tiny and, once emptied after a backlog, gives the large buffer back.
 */
export class Deque<T> {
  private buf: (T | undefined)[];
  private head = 0;
  private len = 0;

  constructor(capacity = MIN_CAPACITY) {
    let cap = MIN_CAPACITY;
    while (cap < capacity) cap <<= 1;
    this.buf = new Array<T | undefined>(cap);
  }

  get length(): number {
    return this.len;
  }

  push(value: T): void {
    if (this.len === this.buf.length) this.grow();
    this.buf[(this.head + this.len) & (this.buf.length - 1)] = value;
    this.len++;
  }

  unshift(value: T): void {
    if (this.len === this.buf.length) this.grow();
    this.head = (this.head - 1) & (this.buf.length - 1);
    this.buf[this.head] = value;
    this.len++;
  }

  shift(): T | undefined {
    if (this.len === 0) return undefined;
    const value = this.buf[this.head];
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) & (this.buf.length - 1);
    if (--this.len === 0 && this.buf.length >= SHRINK_CAPACITY) this.clear();
    return value;
  }

  pop(): T | undefined {
    if (this.len === 0) return undefined;
    const i = (this.head + this.len - 1) & (this.buf.length - 1);
    const value = this.buf[i];
    this.buf[i] = undefined;
    if (--this.len === 0 && this.buf.length >= SHRINK_CAPACITY) this.clear();
    return value;
  }

  peek(): T | undefined {
    return this.len === 0 ? undefined : this.buf[this.head];
  }

  peekLast(): T | undefined {
    return this.len === 0 ? undefined : this.buf[(this.head + this.len - 1) & (this.buf.length - 1)];
  }

  /** The i-th element from the front (0-based). */
  at(i: number): T | undefined {
    if (i < 0 || i >= this.len) return undefined;
    return this.buf[(this.head + i) & (this.buf.length - 1)];
  }

  clear(): void {
    this.buf = new Array<T | undefined>(MIN_CAPACITY);
    this.head = 0;
    this.len = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = 0; i < this.len; i++) yield this.buf[(this.head + i) & (this.buf.length - 1)] as T;
  }

  private grow(): void {
    const old = this.buf;
    const next = new Array<T | undefined>(old.length * 2);
    for (let i = 0; i < this.len; i++) next[i] = old[(this.head + i) & (old.length - 1)];
    this.buf = next;
    this.head = 0;
  }
}
