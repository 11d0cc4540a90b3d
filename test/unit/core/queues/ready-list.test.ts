import { describe, expect, test } from 'vitest';
import { newEntry, type QueueEntry } from '../../../../src/core/queues/entry.js';
import { ReadyList } from '../../../../src/core/queues/ready-list.js';
import type { StoredMessage } from '../../../../src/core/types.js';

const msg = {} as StoredMessage;
const entry = (seq: number): QueueEntry => newEntry(msg, seq, 0, 0, 0);

describe('ReadyList', () => {
  test('requeued entries return to their original position, ahead of newer ones', () => {
    const r = new ReadyList();
    const es = [1, 2, 3, 4, 5, 6].map(entry);
    for (const e of es) r.push(e);
    const taken = [r.shift()!, r.shift()!, r.shift()!, r.shift()!]; // 1..4 out
    r.push(entry(7));
    r.requeue(taken[3]!); // 4
    r.requeue(taken[0]!); // 1
    r.requeue(taken[2]!); // 3
    expect(r.length).toBe(6);
    expect([...r].map((e) => e.seq)).toEqual([1, 3, 4, 5, 6, 7]);
    const order: number[] = [];
    r.drain((e) => order.push(e.seq));
    expect(order).toEqual([1, 3, 4, 5, 6, 7]);
    expect(r.length).toBe(0);
  });

  test('many requeues in random order come out sorted', () => {
    const r = new ReadyList();
    const n = 500;
    for (let i = 1; i <= n; i++) r.push(entry(i));
    const out: QueueEntry[] = [];
    for (let i = 0; i < n; i++) out.push(r.shift()!);
    out.sort(() => Math.random() - 0.5);
    for (const e of out) r.requeue(e);
    const seqs: number[] = [];
    r.drain((e) => seqs.push(e.seq));
    expect(seqs).toEqual(Array.from({ length: n }, (_, i) => i + 1));
  });

  test('peek shows what shift returns; popNewest takes the newest', () => {
    const r = new ReadyList();
    r.push(entry(10));
    r.push(entry(11));
    const first = r.shift()!;
    r.requeue(first);
    expect(r.peek()?.seq).toBe(10);
    expect(r.popNewest()?.seq).toBe(11);
    expect(r.shift()?.seq).toBe(10);
    expect(r.shift()).toBeUndefined();
  });
});
