import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import type { Queue } from '../../../src/core/queues/queue.js';
import type { QueueEntry } from '../../../src/core/queues/entry.js';
import { UnackedLog, type Unacked } from '../../../src/core/unacked-log.js';

/** A record the log only stores and hands back; `at` carries the tag so results can be checked. */
function rec(tag: number): Unacked {
  return { entry: {} as QueueEntry, queue: {} as Queue, consumer: null, at: tag };
}

type Op =
  | { op: 'add'; n: number }
  | { op: 'take'; pick: number }
  | { op: 'upTo'; pick: number }
  | { op: 'where'; mod: number }
  | { op: 'drain' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ op: fc.constant('add' as const), n: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 6, arbitrary: fc.record({ op: fc.constant('take' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('upTo' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('where' as const), mod: fc.integer({ min: 2, max: 5 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'drain' as const }) },
);

describe('UnackedLog', () => {
  test('behaves as a Map from tag to delivery in tag order, for any order of acks', () => {
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 300 }), (ops) => {
        const log = new UnackedLog();
        const model = new Map<number, Unacked>();
        let next = 1;
        for (const o of ops) {
          switch (o.op) {
            case 'add':
              for (let i = 0; i < o.n; i++) {
                // Tags with gaps, as a channel's no-ack deliveries leave them.
                const tag = next;
                next += 1 + (tag % 3 === 0 ? 1 : 0);
                const u = rec(tag);
                log.add(tag, u);
                model.set(tag, u);
              }
              break;
            case 'take': {
              // Held tags, and now and then one that is not (acked already, or never handed out).
              const keys = [...model.keys()];
              const tag = keys.length > 0 && o.pick % 7 !== 0 ? keys[o.pick % keys.length]! : o.pick % (next + 2);
              expect(log.take(tag)).toBe(model.get(tag));
              model.delete(tag);
              break;
            }
            case 'upTo': {
              const upTo = o.pick % (next + 1);
              const got: Unacked[] = [];
              for (let u = log.takeOldest(upTo); u !== undefined; u = log.takeOldest(upTo)) got.push(u);
              const want = [...model.entries()].filter(([t]) => t <= upTo);
              expect(got).toEqual(want.map(([, u]) => u));
              for (const [t] of want) model.delete(t);
              break;
            }
            case 'where': {
              const got: Unacked[] = [];
              log.takeWhere((u) => u.at % o.mod === 0, (u) => got.push(u));
              const want = [...model.entries()].filter(([t]) => t % o.mod === 0);
              expect(got).toEqual(want.map(([, u]) => u));
              for (const [t] of want) model.delete(t);
              break;
            }
            case 'drain': {
              const got: Unacked[] = [];
              log.drain((u) => got.push(u));
              expect(got).toEqual([...model.values()]);
              model.clear();
              break;
            }
          }
          expect(log.size).toBe(model.size);
        }
        expect([...log.values()]).toEqual([...model.values()]);
        for (const [t, u] of model) expect(log.get(t)).toBe(u);
      }),
      { numRuns: 300 },
    );
  });

  test('memory follows what is held, not the span of tags: the first delivery held while a million pass', () => {
    const log = new UnackedLog();
    const first = rec(1);
    log.add(1, first);
    let taken = 0;
    for (let tag = 2; tag <= 1_000_000; tag++) {
      log.add(tag, rec(tag));
      if (log.take(tag) !== undefined) taken++;
    }
    expect(taken).toBe(999_999);
    expect(log.size).toBe(1);
    // The arrays never grew: the holes were compacted away whenever they filled up.
    expect((log as unknown as { tags: number[] }).tags.length).toBeLessThanOrEqual(32);
    expect(log.take(1)).toBe(first);
    expect(log.size).toBe(0);
  });

  test('a delivery settled while a multiple ack is being taken is not handed out twice', () => {
    const log = new UnackedLog();
    for (let tag = 1; tag <= 10; tag++) log.add(tag, rec(tag));
    const got: number[] = [];
    for (let u = log.takeOldest(8); u !== undefined; u = log.takeOldest(8)) {
      got.push(u.at);
      // Settling tag 3 also settles 5 (what a requeue to this channel might do), and a new one is
      // delivered: 5 is not seen again, 11 is beyond the ack.
      if (u.at === 3) {
        log.take(5);
        log.add(11, rec(11));
      }
    }
    expect(got).toEqual([1, 2, 3, 4, 6, 7, 8]);
    expect([...log.values()].map((u) => u.at)).toEqual([9, 10, 11]);
  });
});
