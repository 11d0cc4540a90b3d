import { describe, expect, test } from 'vitest';
import { Deque } from '../../../src/core/deque.js';

describe('Deque', () => {
  test('behaves like an array used at both ends, across many wrap-arounds and growths', () => {
    const d = new Deque<number>();
    const model: number[] = [];
    let seed = 7;
    const rnd = (): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let i = 0; i < 20_000; i++) {
      const r = rnd();
      if (r < 0.4) {
        d.push(i);
        model.push(i);
      } else if (r < 0.55) {
        d.unshift(i);
        model.unshift(i);
      } else if (r < 0.85) expect(d.shift()).toBe(model.shift());
      else expect(d.pop()).toBe(model.pop());
      expect(d.length).toBe(model.length);
      expect(d.peek()).toBe(model[0]);
      expect(d.peekLast()).toBe(model[model.length - 1]);
    }
    expect([...d]).toEqual(model);
    expect(d.at(0)).toBe(model[0]);
    expect(d.at(model.length)).toBeUndefined();
  });

  test('starts small and gives a backlog-sized buffer back once emptied', () => {
    const d = new Deque<number>();
    const capacity = (): number => (d as unknown as { buf: unknown[] }).buf.length;
    expect(capacity()).toBe(4);
    for (let i = 0; i < 5000; i++) d.push(i);
    expect(capacity()).toBeGreaterThanOrEqual(5000);
    for (let i = 0; i < 4999; i++) expect(d.shift()).toBe(i);
    expect(capacity()).toBeGreaterThanOrEqual(5000);
    expect(d.pop()).toBe(4999);
    expect(capacity()).toBe(4);
    d.push(1);
    d.unshift(0);
    expect([...d]).toEqual([0, 1]);
  });

  test('shift and pop on an empty deque return undefined', () => {
    const d = new Deque<string>();
    expect(d.shift()).toBeUndefined();
    expect(d.pop()).toBeUndefined();
    d.push('a');
    d.clear();
    expect(d.length).toBe(0);
    expect(d.peek()).toBeUndefined();
  });
});
