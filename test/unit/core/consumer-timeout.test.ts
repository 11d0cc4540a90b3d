import { describe, expect, test } from 'vitest';
import { Core, type CoreChannel } from '../../../src/core/index.js';
import { oldestUnackedAge, sweepChannel } from '../../../src/core/consumer-timeout.js';
import type { Delivery, DeliverySink } from '../../../src/core/types.js';

class Sink implements DeliverySink {
  readonly got: Delivery[] = [];
  congested = false;
  deliver(d: Delivery): void {
    this.got.push(d);
  }
}

function setup(defaultMs: number): { core: Core; ch: CoreChannel; timedOut: Array<[string | null, number]> } {
  const core = new Core({ consumerTimeout: defaultMs });
  const conn = core.connect({ protocol: 'amqp', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  const timedOut: Array<[string | null, number]> = [];
  ch.onConsumerTimeout = (tag, ms) => timedOut.push([tag, ms]);
  return { core, ch, timedOut };
}

const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

function publish(ch: CoreChannel, queue: string, n: number): void {
  for (let i = 0; i < n; i++) ch.publish({ exchange: '', routingKey: queue, properties: {}, body: Buffer.from(String(i)) });
}

describe('consumer timeout sweep', () => {
  test('a consumer past its queue timeout is cancelled, its deliveries requeued; another consumer on the channel stays', async () => {
    const { core, ch, timedOut } = setup(0);
    ch.declareQueue('slow', { arguments: { 'x-consumer-timeout': 1000 } });
    ch.declareQueue('fast', {});
    const slow = new Sink();
    const fast = new Sink();
    const slowTag = ch.consume('slow', {}, slow);
    const fastTag = ch.consume('fast', {}, fast);
    publish(ch, 'slow', 3);
    publish(ch, 'fast', 3);
    await flush();
    expect(slow.got).toHaveLength(3);
    expect(fast.got).toHaveLength(3);
    const now = Date.now();
    expect(sweepChannel(ch, now + 500, core.consumerTimeouts.defaultMs)).toBe(0);
    expect(sweepChannel(ch, now + 5000, core.consumerTimeouts.defaultMs)).toBe(1);
    expect(timedOut).toEqual([[slowTag, 1000]]);
    expect(ch.consumers.has(slowTag)).toBe(false);
    expect(ch.consumers.has(fastTag)).toBe(true);
    const q = core.vhosts.get('/')!.queues.get('slow')!;
    expect(q.readyCount).toBe(3);
    expect(q.unackedCount).toBe(0);
    expect(ch.unackedCount).toBe(3);
    // The requeued messages are redelivered to the next consumer, flagged.
    const again = new Sink();
    ch.consume('slow', {}, again);
    await flush();
    expect(again.got.map((d) => d.redelivered)).toEqual([true, true, true]);
  });

  test('the broker default applies to queues without their own timeout; 0 on a queue turns it off', async () => {
    const { core, ch, timedOut } = setup(2000);
    ch.declareQueue('dflt', {});
    ch.declareQueue('never', { arguments: { 'x-consumer-timeout': 0 } });
    const a = ch.consume('dflt', {}, new Sink());
    ch.consume('never', {}, new Sink());
    publish(ch, 'dflt', 1);
    publish(ch, 'never', 1);
    await flush();
    expect(core.consumerTimeouts.sweep(Date.now() + 1000)).toBe(0);
    expect(core.consumerTimeouts.sweep(Date.now() + 60_000)).toBe(1);
    expect(timedOut).toEqual([[a, 2000]]);
    expect(ch.unackedCount).toBe(1);
  });

  test('a basic.get delivery held too long is reported with a null consumer tag and requeued', () => {
    const { ch, timedOut } = setup(1000);
    ch.declareQueue('g', {});
    publish(ch, 'g', 1);
    expect(ch.get('g', false)).not.toBeNull();
    expect(sweepChannel(ch, Date.now() + 5000, 1000)).toBe(1);
    expect(timedOut).toEqual([[null, 1000]]);
    expect(ch.unackedCount).toBe(0);
  });

  test('channels that do not handle timeouts are not swept', async () => {
    const { core, ch } = setup(1000);
    ch.onConsumerTimeout = undefined;
    ch.declareQueue('x', {});
    ch.consume('x', {}, new Sink());
    publish(ch, 'x', 1);
    await flush();
    expect(core.consumerTimeouts.sweep(Date.now() + 60_000)).toBe(0);
    expect(ch.unackedCount).toBe(1);
  });

  test('oldest unacked age reads the oldest delivery of the queue consumers', async () => {
    const { core, ch } = setup(0);
    ch.declareQueue('age', {});
    ch.consume('age', {}, new Sink());
    const q = core.vhosts.get('/')!.queues.get('age')!;
    expect(oldestUnackedAge(q)).toBe(0);
    publish(ch, 'age', 2);
    await flush();
    const at = Date.now();
    expect(oldestUnackedAge(q, at + 3000)).toBeGreaterThanOrEqual(3000);
    ch.ack(0, true);
    expect(oldestUnackedAge(q, at + 3000)).toBe(0);
  });
});
