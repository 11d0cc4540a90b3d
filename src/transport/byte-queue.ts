import { processMemory, type MemorySource } from '../core/index.js';

const EMPTY = Buffer.alloc(0);

/**
 * The bytes received from a socket and not yet decoded: a ring of chunks plus a read offset into
 * the first one. Reads that stay inside one chunk return views of it (no copy); reads that span
 * chunks copy exactly once (STYLE P1). Views keep the socket chunk alive: copy what you keep (P3).
 */
export class ByteQueue implements MemorySource {
  private ring: (Buffer | undefined)[] = new Array<Buffer | undefined>(8);
  private head = 0;
  private count = 0;
  /** Bytes already consumed from `ring[head]`. */
  private offset = 0;
  private total = 0;

  /** Number of unread bytes. */
  get length(): number {
    return this.total;
  }

  /** MemorySource: the unread bytes (while there are any, the memory account polls this queue). */
  get heldBytes(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.total === 0) processMemory.track(this);
    if (this.count === this.ring.length) this.grow();
    this.ring[(this.head + this.count) & (this.ring.length - 1)] = chunk;
    this.count++;
    this.total += chunk.length;
  }

  /** The byte at position `i` (0 = next unread byte). `i` must be < length. */
  at(i: number): number {
    if (i < 0 || i >= this.total) throw new RangeError(`ByteQueue.at(${i}) outside 0..${this.total - 1}`);
    let pos = this.offset + i;
    const mask = this.ring.length - 1;
    for (let k = 0; ; k++) {
      const c = this.ring[(this.head + k) & mask]!;
      if (pos < c.length) return c[pos]!;
      pos -= c.length;
    }
  }

  /**
   * The next `n` bytes without consuming them: a view when they lie in one chunk, else a copy into
   * `scratch` (when it is large enough) or a new buffer. The result is only valid until the queue
   * or `scratch` changes.
   */
  peek(n: number, scratch?: Buffer): Buffer {
    this.check(n);
    if (n === 0) return EMPTY;
    const first = this.ring[this.head]!;
    if (first.length - this.offset >= n) return first.subarray(this.offset, this.offset + n);
    const out = scratch !== undefined && scratch.length >= n ? scratch : Buffer.allocUnsafe(n);
    const mask = this.ring.length - 1;
    let start = this.offset;
    for (let off = 0, k = 0; off < n; k++) {
      const c = this.ring[(this.head + k) & mask]!;
      const take = Math.min(c.length - start, n - off);
      c.copy(out, off, start, start + take);
      off += take;
      start = 0;
    }
    return out.length === n ? out : out.subarray(0, n);
  }

  /**
   * Removes and returns the next `n` bytes: a view of the chunk when they lie in one chunk,
   * otherwise one new buffer holding a single copy.
   */
  consume(n: number): Buffer {
    this.check(n);
    if (n === 0) return EMPTY;
    const first = this.ring[this.head]!;
    const avail = first.length - this.offset;
    if (n <= avail) {
      const out = this.offset === 0 && n === first.length ? first : first.subarray(this.offset, this.offset + n);
      this.advance(n, avail);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    for (let off = 0; off < n; ) {
      const c = this.ring[this.head]!;
      const left = c.length - this.offset;
      const take = Math.min(left, n - off);
      c.copy(out, off, this.offset, this.offset + take);
      off += take;
      this.advance(take, left);
    }
    return out;
  }

  /** Discards the next `n` bytes. */
  skip(n: number): void {
    this.check(n);
    while (n > 0) {
      const c = this.ring[this.head]!;
      const left = c.length - this.offset;
      const take = Math.min(left, n);
      this.advance(take, left);
      n -= take;
    }
  }

  /** Position of the first `byte` at or after position `from`, or -1. */
  indexOf(byte: number, from = 0): number {
    if (from < 0) from = 0;
    if (from >= this.total) return -1;
    const mask = this.ring.length - 1;
    let base = 0; // queue position of the current chunk's first unread byte
    let start = this.offset;
    for (let k = 0; k < this.count; k++) {
      const c = this.ring[(this.head + k) & mask]!;
      const len = c.length - start;
      if (from < base + len) {
        const at = c.indexOf(byte, start + Math.max(0, from - base));
        if (at !== -1) return base + at - start;
      }
      base += len;
      start = 0;
    }
    return -1;
  }

  /** Drops every unread byte; an owner that discards a non-empty queue must clear it first. */
  clear(): void {
    if (this.total > 0) processMemory.untrack(this);
    this.ring.fill(undefined);
    this.head = 0;
    this.count = 0;
    this.offset = 0;
    this.total = 0;
  }

  /** Consumes `n` bytes of the first chunk, which has `left` unread bytes (n <= left). */
  private advance(n: number, left: number): void {
    this.total -= n;
    if (n < left) {
      this.offset += n;
      return;
    }
    this.ring[this.head] = undefined;
    this.head = (this.head + 1) & (this.ring.length - 1);
    this.count--;
    this.offset = 0;
  }

  private check(n: number): void {
    if (!(n >= 0 && n <= this.total)) throw new RangeError(`ByteQueue: ${n} bytes requested, ${this.total} available`);
  }

  private grow(): void {
    const old = this.ring;
    const next = new Array<Buffer | undefined>(old.length * 2);
    for (let k = 0; k < this.count; k++) next[k] = old[(this.head + k) & (old.length - 1)];
    this.ring = next;
    this.head = 0;
  }
}
