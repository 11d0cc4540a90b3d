import { setFlagsFromString, getHeapSpaceStatistics } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, test } from 'vitest';
import { Core, type DeliverySink } from '../../../../src/core/index.js';
import { RouteSet } from '../../../../src/core/routing/route-set.js';

class Dest {
  routeMark = 0;
  constructor(readonly name: string) {}
}

const names = (s: RouteSet<Dest>): string[] => Array.from({ length: s.size }, (_, i) => s.at(i).name);

describe('RouteSet', () => {
  test('keeps each destination once, in the order added, until cleared', () => {
    const [a, b, c] = [new Dest('a'), new Dest('b'), new Dest('c')];
    const s = new RouteSet<Dest>();
    s.add(a);
    s.add(b);
    s.add(a);
    s.add(c);
    s.add(b);
    expect(names(s)).toEqual(['a', 'b', 'c']);
    s.clear();
    expect(s.size).toBe(0);
    s.add(c);
    s.add(c);
    expect(names(s)).toEqual(['c']);
  });

  test('two sets hold the same destination independently, one after the other', () => {
    const a = new Dest('a');
    const outer = new RouteSet<Dest>();
    const inner = new RouteSet<Dest>();
    outer.add(a);
    inner.add(a);
    inner.add(a);
    expect(names(inner)).toEqual(['a']);
    inner.clear();
    expect(names(outer)).toEqual(['a']);
    outer.clear();
    outer.add(a);
    expect(names(outer)).toEqual(['a']);
  });
});

describe('routing a publish does not grow the old generation', () => {
  const oldSpace = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'old_space')!.space_used_size;

  test('20,000 publishes to a topic exchange and the default exchange, on a vhost that lives long', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const core = new Core();
    const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
    const ch = conn.openChannel(1);
    ch.declareQueue('q', {});
    ch.bindQueue('q', 'amq.topic', 'a.*');
    let got = 0;
    const sink: DeliverySink = {
      congested: false,
      deliver: () => {
        got++;
      },
    };
    ch.consume('q', { noAck: true }, sink);
    const body = Buffer.alloc(16);
    const publish = (i: number): void => {
      void ch.publish({ exchange: i % 2 === 0 ? '' : 'amq.topic', routingKey: i % 2 === 0 ? 'q' : 'a.b', properties: {}, body });
    };
    const turn = (): Promise<void> => new Promise((r) => setImmediate(r));
    for (let i = 0; i < 200; i++) publish(i);
    await turn();
    // Two full collections move the vhost and everything it holds to the old generation, as in a
    // broker that has been up a while.
    gc();
    gc();
    const before = oldSpace();
    const n = 20_000;
    for (let i = 0; i < n; i += 100) {
      for (let k = 0; k < 100; k++) publish(i + k);
      await turn();
    }
    const perMessage = (oldSpace() - before) / n;
    expect(got).toBe(n + 200);
    // A long-lived Set cleared per publish put ~100-200 B per message there.
    expect(perMessage).toBeLessThan(16);
  });
});
