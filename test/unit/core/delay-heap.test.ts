import { afterEach, describe, expect, test, vi } from 'vitest';
import { DelayHeap, DueQueue } from '../../../src/core/delay-heap.js';

describe('DelayHeap', () => {
  test('pops items in due order whatever the push order', () => {
    const h = new DelayHeap<number>();
    const dues = [50, 10, 40, 30, 20, 60, 0, 35];
    for (const d of dues) h.push(d, d);
    const out: number[] = [];
    for (let x = h.pop(); x !== undefined; x = h.pop()) out.push(x);
    expect(out).toEqual([...dues].sort((a, b) => a - b));
    expect(h.size).toBe(0);
  });

  test('items due at the same time come out in insertion order', () => {
    const h = new DelayHeap<string>();
    for (let i = 0; i < 100; i++) h.push(i % 3, `${i % 3}:${i}`);
    const out: string[] = [];
    for (let x = h.pop(); x !== undefined; x = h.pop()) out.push(x);
    const expected = [0, 1, 2].flatMap((d) => Array.from({ length: 100 }, (_, i) => i).filter((i) => i % 3 === d).map((i) => `${d}:${i}`));
    expect(out).toEqual(expected);
  });

  test('peekDue reports the earliest due time, Infinity when empty', () => {
    const h = new DelayHeap<number>();
    expect(h.peekDue()).toBe(Infinity);
    h.push(7, 1);
    h.push(3, 2);
    expect(h.peekDue()).toBe(3);
    expect(h.peek()).toBe(2);
    h.pop();
    expect(h.peekDue()).toBe(7);
  });

  test('random pushes and pops interleaved stay ordered (against a sorted reference)', () => {
    const h = new DelayHeap<number>();
    const ref: number[] = [];
    let seed = 12345;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 1000);
    for (let i = 0; i < 5000; i++) {
      if (rnd() < 600) {
        const d = rnd();
        h.push(d, d);
        ref.push(d);
        ref.sort((a, b) => a - b);
      } else {
        expect(h.pop()).toBe(ref.shift());
      }
      expect(h.size).toBe(ref.length);
    }
  });

  test('clear empties the heap and returns every item', () => {
    const h = new DelayHeap<number>();
    for (let i = 0; i < 10; i++) h.push(i, i);
    expect(h.clear().sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(h.size).toBe(0);
    expect(h.pop()).toBeUndefined();
  });
});

describe('DueQueue', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  test('releases items once due, in due order, with one timer for the earliest', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const out: string[] = [];
    const q = new DueQueue<string>((s) => out.push(s));
    const now = Date.now();
    q.push(now + 300, 'c');
    q.push(now + 100, 'a');
    q.push(now + 200, 'b');
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(150);
    expect(out).toEqual(['a']);
    vi.advanceTimersByTime(200);
    expect(out).toEqual(['a', 'b', 'c']);
    expect(q.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  test('a budget spreads a burst of due items over several turns', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const turns: number[] = [];
    let inTurn = 0;
    const q = new DueQueue<number>(() => inTurn++, 10);
    const now = Date.now();
    for (let i = 0; i < 25; i++) q.push(now + 5, i);
    vi.advanceTimersByTime(5);
    turns.push(inTurn);
    vi.advanceTimersToNextTimer();
    turns.push(inTurn);
    vi.advanceTimersToNextTimer();
    turns.push(inTurn);
    expect(turns).toEqual([10, 20, 25]);
  });

  test('an item pushed while releasing waits for its own due time', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const out: number[] = [];
    const q: DueQueue<number> = new DueQueue<number>((n) => {
      out.push(n);
      if (n === 1) q.push(Date.now() + 50, 2);
    });
    q.push(Date.now() + 10, 1);
    vi.advanceTimersByTime(10);
    expect(out).toEqual([1]);
    vi.advanceTimersByTime(49);
    expect(out).toEqual([1]);
    vi.advanceTimersByTime(1);
    expect(out).toEqual([1, 2]);
  });

  test('clear hands back what waits and keeps the queue usable; stop releases nothing more', () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    const out: number[] = [];
    const q = new DueQueue<number>((n) => out.push(n));
    q.push(Date.now() + 10, 1);
    q.push(Date.now() + 20, 2);
    expect(q.clear().sort()).toEqual([1, 2]);
    expect(vi.getTimerCount()).toBe(0);
    q.push(Date.now() + 5, 3);
    vi.advanceTimersByTime(5);
    expect(out).toEqual([3]);
    q.push(Date.now() + 5, 4);
    expect(q.stop()).toEqual([4]);
    q.push(Date.now() + 5, 5);
    vi.advanceTimersByTime(10);
    expect(out).toEqual([3]);
  });
});
