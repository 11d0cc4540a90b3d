import { describe, expect, test } from 'vitest';
import { ByteQueue } from '../../../src/transport/byte-queue.js';

const bytes = (...xs: number[]): Buffer => Buffer.from(xs);

function queueOf(...chunks: Buffer[]): ByteQueue {
  const q = new ByteQueue();
  for (const c of chunks) q.push(c);
  return q;
}

describe('ByteQueue', () => {
  test('length counts every pushed byte and ignores empty chunks', () => {
    const q = queueOf(bytes(1, 2), Buffer.alloc(0), bytes(3));
    expect(q.length).toBe(3);
  });

  test('consume inside one chunk returns a view of that chunk', () => {
    const chunk = bytes(1, 2, 3, 4);
    const q = queueOf(chunk);
    const a = q.consume(2);
    expect([...a]).toEqual([1, 2]);
    expect(a.buffer).toBe(chunk.buffer);
    const b = q.consume(2);
    expect([...b]).toEqual([3, 4]);
    expect(b.buffer).toBe(chunk.buffer);
    expect(q.length).toBe(0);
  });

  test('consume of a whole chunk returns the chunk itself', () => {
    const chunk = bytes(9, 8);
    expect(queueOf(chunk).consume(2)).toBe(chunk);
  });

  test('consume across chunks returns one copy with the bytes in order', () => {
    const a = bytes(1, 2, 3);
    const b = bytes(4);
    const c = bytes(5, 6, 7);
    const q = queueOf(a, b, c);
    q.skip(1);
    const out = q.consume(5);
    expect([...out]).toEqual([2, 3, 4, 5, 6]);
    a.fill(0);
    b.fill(0);
    expect([...out]).toEqual([2, 3, 4, 5, 6]); // a copy, not views of the chunks
    expect([...q.consume(1)]).toEqual([7]);
    expect(q.length).toBe(0);
  });

  test('peek does not consume and uses the scratch buffer across chunks', () => {
    const q = queueOf(bytes(1, 2), bytes(3, 4));
    const scratch = Buffer.alloc(3);
    const p = q.peek(3, scratch);
    expect(p).toBe(scratch);
    expect([...p]).toEqual([1, 2, 3]);
    expect(q.length).toBe(4);
    const bigScratch = Buffer.alloc(10);
    expect([...q.peek(3, bigScratch)]).toEqual([1, 2, 3]);
    expect([...q.peek(4)]).toEqual([1, 2, 3, 4]);
    expect([...q.consume(4)]).toEqual([1, 2, 3, 4]);
  });

  test('peek inside one chunk returns a view', () => {
    const chunk = bytes(1, 2, 3);
    const q = queueOf(chunk);
    q.skip(1);
    const p = q.peek(2);
    expect([...p]).toEqual([2, 3]);
    expect(p.buffer).toBe(chunk.buffer);
  });

  test('skip crosses chunk boundaries', () => {
    const q = queueOf(bytes(1, 2), bytes(3, 4), bytes(5));
    q.skip(3);
    expect(q.length).toBe(2);
    expect([...q.consume(2)]).toEqual([4, 5]);
  });

  test('at reads a byte anywhere in the queue', () => {
    const q = queueOf(bytes(1, 2), bytes(3), bytes(4, 5, 6));
    q.skip(1);
    expect([0, 1, 2, 3, 4].map((i) => q.at(i))).toEqual([2, 3, 4, 5, 6]);
    expect(() => q.at(5)).toThrow(RangeError);
  });

  test('indexOf finds a byte across chunks, honouring from', () => {
    const q = queueOf(bytes(0, 10, 0), bytes(10), bytes(7, 10));
    q.skip(1);
    // queue is now 10 0 10 7 10
    expect(q.indexOf(10)).toBe(0);
    expect(q.indexOf(10, 1)).toBe(2);
    expect(q.indexOf(10, 3)).toBe(4);
    expect(q.indexOf(7)).toBe(3);
    expect(q.indexOf(99)).toBe(-1);
    expect(q.indexOf(10, 5)).toBe(-1);
  });

  test('requests beyond the buffered length throw a RangeError', () => {
    const q = queueOf(bytes(1));
    expect(() => q.consume(2)).toThrow(RangeError);
    expect(() => q.peek(2)).toThrow(RangeError);
    expect(() => q.skip(2)).toThrow(RangeError);
  });

  test('zero-length reads return empty buffers', () => {
    const q = new ByteQueue();
    expect(q.consume(0).length).toBe(0);
    expect(q.peek(0).length).toBe(0);
  });

  test('clear drops everything', () => {
    const q = queueOf(bytes(1, 2), bytes(3));
    q.clear();
    expect(q.length).toBe(0);
    q.push(bytes(4));
    expect([...q.consume(1)]).toEqual([4]);
  });

  test('many small chunks (ring growth and wrap-around) behave like one concatenated buffer', () => {
    const q = new ByteQueue();
    const all: number[] = [];
    let read: number[] = [];
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    for (let round = 0; round < 500; round++) {
      const n = rand(5);
      const chunk = Buffer.alloc(n);
      for (let i = 0; i < n; i++) chunk[i] = rand(256);
      q.push(chunk);
      all.push(...chunk);
      if (rand(3) === 0 && q.length > 0) {
        const take = 1 + rand(q.length);
        read = read.concat([...q.consume(take)]);
      }
    }
    read = read.concat([...q.consume(q.length)]);
    expect(read).toEqual(all);
  });
});
