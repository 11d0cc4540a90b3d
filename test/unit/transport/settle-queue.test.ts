import { describe, expect, test } from 'vitest';
import { PauseReason } from '../../../src/transport/link.js';
import { SettleBudget, SettleQueue, type SettleFlow, type SettleTarget } from '../../../src/transport/settle-queue.js';

class Target implements SettleTarget<number> {
  readonly log: string[] = [];
  settledInOrder(item: number, last: boolean): void {
    this.log.push(`ok ${item}${last ? '' : '+'}`);
  }
  settleFailed(item: number, err: unknown, last: boolean): void {
    this.log.push(`fail ${item} ${(err as Error).message}${last ? '' : '+'}`);
  }
}

class Flow implements SettleFlow {
  paused = 0;
  readonly events: string[] = [];
  readonly contained: unknown[] = [];
  readonly guard = { contain: (e: unknown): void => void this.contained.push(e) };
  pause(r: number): void {
    this.paused |= r;
    this.events.push(`pause ${r}`);
  }
  unpause(r: number): void {
    this.paused &= ~r;
    this.events.push(`unpause ${r}`);
  }
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('SettleQueue', () => {
  test('a settled publish with nothing ahead goes straight to the target', () => {
    const t = new Target();
    const q = new SettleQueue(t, new SettleBudget(new Flow()));
    q.push(1);
    q.push(2);
    expect(t.log).toEqual(['ok 1', 'ok 2']);
    expect(q.length).toBe(0);
  });

  test('acknowledgements leave in publish order, whatever order they settle in, coalescible runs marked', async () => {
    const t = new Target();
    const q = new SettleQueue(t, new SettleBudget(new Flow()));
    const a = deferred();
    const b = deferred();
    q.push(1, a.promise);
    q.push(2, b.promise);
    q.push(3); // settled, but behind 1 and 2
    q.push(4, deferred().promise); // never settles in this test
    b.resolve();
    await turn();
    expect(t.log).toEqual([]);
    a.resolve();
    await turn();
    expect(t.log).toEqual(['ok 1+', 'ok 2+', 'ok 3']);
    expect(q.length).toBe(1);
  });

  test('a failed publish is reported in its place', async () => {
    const t = new Target();
    const q = new SettleQueue(t, new SettleBudget(new Flow()));
    const a = deferred();
    const b = deferred();
    q.push(1, a.promise);
    q.push(2, b.promise);
    q.push(3);
    b.reject(new Error('disk'));
    a.resolve();
    await turn();
    expect(t.log).toEqual(['ok 1+', 'fail 2 disk+', 'ok 3']);
  });

  test('above the bound reading pauses, and resumes once half have drained', async () => {
    const t = new Target();
    const f = new Flow();
    const q = new SettleQueue(t, new SettleBudget(f, 4));
    const ds = Array.from({ length: 6 }, () => deferred());
    ds.forEach((d, i) => q.push(i, d.promise));
    expect(f.events).toEqual([`pause ${PauseReason.UNSETTLED}`]);
    ds[0]!.resolve();
    ds[1]!.resolve();
    ds[2]!.resolve();
    await turn();
    expect(q.length).toBe(3);
    expect(f.events).toEqual([`pause ${PauseReason.UNSETTLED}`]); // 3 > 4 / 2
    ds[3]!.resolve();
    await turn();
    expect(f.events).toEqual([`pause ${PauseReason.UNSETTLED}`, `unpause ${PauseReason.UNSETTLED}`]);
    expect(f.paused).toBe(0);
  });

  test('after clear nothing is released, and a paused connection is let go', async () => {
    const t = new Target();
    const f = new Flow();
    const q = new SettleQueue(t, new SettleBudget(f, 1));
    const a = deferred();
    const b = deferred();
    q.push(1, a.promise);
    q.push(2, b.promise);
    expect(f.paused).toBe(PauseReason.UNSETTLED);
    q.clear();
    expect(f.paused).toBe(0);
    a.resolve();
    b.resolve();
    await turn();
    expect(t.log).toEqual([]);
    expect(q.length).toBe(0);
  });

  test('a throw from the target is contained by the connection guard', async () => {
    const f = new Flow();
    const q = new SettleQueue<number>(
      {
        settledInOrder: () => {
          throw new Error('encode failed');
        },
        settleFailed: () => undefined,
      },
      new SettleBudget(f),
    );
    const a = deferred();
    q.push(1, a.promise);
    a.resolve();
    await turn();
    expect((f.contained[0] as Error).message).toBe('encode failed');
  });

  test('one budget bounds every queue of a connection (AMQP: one queue per channel)', async () => {
    const f = new Flow();
    const budget = new SettleBudget(f, 3);
    const t = new Target();
    const q1 = new SettleQueue(t, budget);
    const q2 = new SettleQueue(t, budget);
    const a = deferred();
    const b = deferred();
    q1.push(1, a.promise);
    q1.push(2);
    q2.push(3, b.promise);
    expect(f.paused).toBe(0);
    q2.push(4);
    expect(f.paused).toBe(PauseReason.UNSETTLED);
    expect(budget.unsettled).toBe(4);
    a.resolve();
    await turn();
    expect(t.log).toEqual(['ok 1+', 'ok 2']);
    expect(budget.unsettled).toBe(2);
    expect(f.paused).toBe(PauseReason.UNSETTLED); // 2 > 3 / 2
    q2.clear(); // the channel closed
    expect(budget.unsettled).toBe(0);
    expect(f.paused).toBe(0);
  });

  test('many settlements in order compact the queue and keep order', async () => {
    const t = new Target();
    const q = new SettleQueue(t, new SettleBudget(new Flow(), 100_000));
    const first = deferred();
    q.push(0, first.promise);
    for (let i = 1; i < 5000; i++) q.push(i);
    first.resolve();
    await turn();
    expect(t.log.length).toBe(5000);
    expect(t.log[4999]).toBe('ok 4999');
    expect(q.length).toBe(0);
  });
});
