import { setImmediate as turn } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { SlicedWalk } from '../../../src/core/sliced-walk.js';
import { TraceSpan } from '../../../src/core/latency-trace.js';

describe('SlicedWalk', () => {
  it('visits at most one slice per turn of the event loop, in order, and every item once', async () => {
    const seen: number[] = [];
    const perTurn: number[] = [];
    const walk = new SlicedWalk<number>(3, (n) => seen.push(n), TraceSpan.HEARTBEAT_SWEEP);
    walk.start([1, 2, 3, 4, 5, 6, 7]);
    perTurn.push(seen.length);
    while (walk.running) {
      await turn();
      perTurn.push(seen.length);
    }
    expect(seen).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(perTurn).toEqual([3, 6, 7]);
  });

  it('skips items deleted from a live Set while the walk runs', async () => {
    const items = new Set([1, 2, 3, 4, 5, 6]);
    const seen: number[] = [];
    const walk = new SlicedWalk<number>(2, (n) => seen.push(n), TraceSpan.HEARTBEAT_SWEEP);
    walk.start(items);
    items.delete(4);
    items.delete(5);
    while (walk.running) await turn();
    expect(seen).toEqual([1, 2, 3, 6]);
  });

  it('a new start abandons the walk in progress and starts over', async () => {
    const seen: string[] = [];
    const walk = new SlicedWalk<string>(1, (s) => seen.push(s), TraceSpan.HEARTBEAT_SWEEP);
    walk.start(['a1', 'a2', 'a3']);
    walk.start(['b1', 'b2']);
    while (walk.running) await turn();
    expect(seen).toEqual(['a1', 'b1', 'b2']);
  });

  it('stop ends the walk: no further item is visited', async () => {
    const seen: number[] = [];
    const walk = new SlicedWalk<number>(1, (n) => seen.push(n), TraceSpan.HEARTBEAT_SWEEP);
    walk.start([1, 2, 3]);
    walk.stop();
    expect(walk.running).toBe(false);
    await turn();
    await turn();
    expect(seen).toEqual([1]);
  });

  it('a visit that restarts the walk leaves the new walk running to its end', async () => {
    const seen: number[] = [];
    let restarted = false;
    const walk: SlicedWalk<number> = new SlicedWalk<number>(
      5,
      (n) => {
        seen.push(n);
        if (n === 2 && !restarted) {
          restarted = true;
          walk.start([10, 11]);
        }
      },
      TraceSpan.HEARTBEAT_SWEEP,
    );
    walk.start([1, 2, 3]);
    while (walk.running) await turn();
    expect(seen).toEqual([1, 2, 10, 11]);
  });
});
