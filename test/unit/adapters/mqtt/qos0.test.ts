import { describe, expect, test } from 'vitest';
import type { Delivery } from '../../../../src/core/index.js';
import { MAX_QUEUED_QOS0, MAX_QUEUED_QOS0_BYTES, Qos0Sink, type Qos0Host } from '../../../../adapters/mqtt/qos0.js';

class Host implements Qos0Host {
  linkCongested = false;
  readonly written: string[] = [];
  readonly failed: string[] = [];
  droppedCount = 0;
  poison = '';
  deliverNow(d: Delivery): void {
    const b = d.message.body.toString();
    if (b === this.poison) throw new Error('cannot encode');
    this.written.push(b);
  }
  undeliverable(d: Delivery): void {
    this.failed.push(d.message.body.toString());
  }
  dropped(n: number): void {
    this.droppedCount += n;
  }
  cancelled(): void {}
}

let tag = 0;
function delivery(body: string | Buffer): Delivery {
  const b = typeof body === 'string' ? Buffer.from(body) : body;
  return {
    message: { id: ++tag, exchange: 'amq.topic', routingKey: 'a', properties: {}, body: b } as unknown as Delivery['message'],
    deliveryTag: tag,
    redelivered: false,
    consumerTag: 'c',
    queue: 'q',
    deliveryCount: 0,
    expiresAt: 0,
  };
}

describe('the bounded QoS 0 sink of an MQTT session', () => {
  test('never congested; writes at once while the link has room', () => {
    const h = new Host();
    const sink = new Qos0Sink(h);
    expect(sink.congested).toBe(false);
    sink.deliver(delivery('a'));
    expect(h.written).toEqual(['a']);
    expect(sink.length).toBe(0);
  });

  test('while the link is congested deliveries wait, the oldest beyond the bound are dropped and counted', () => {
    const h = new Host();
    const sink = new Qos0Sink(h);
    h.linkCongested = true;
    for (let i = 0; i < MAX_QUEUED_QOS0 + 10; i++) sink.deliver(delivery(`m${i}`));
    expect(h.written).toEqual([]);
    expect(sink.length).toBe(MAX_QUEUED_QOS0);
    expect(h.droppedCount).toBe(10);
    h.linkCongested = false;
    sink.flush();
    expect(h.written.length).toBe(MAX_QUEUED_QOS0);
    expect(h.written[0]).toBe('m10'); // the newest were kept, in order
    expect(h.written.at(-1)).toBe(`m${MAX_QUEUED_QOS0 + 9}`);
  });

  test('a payload byte bound applies too', () => {
    const h = new Host();
    const sink = new Qos0Sink(h);
    h.linkCongested = true;
    const big = Buffer.alloc(1 << 20);
    const n = (MAX_QUEUED_QOS0_BYTES >> 20) + 3;
    for (let i = 0; i < n; i++) sink.deliver(delivery(big));
    expect(sink.length).toBe(MAX_QUEUED_QOS0_BYTES >> 20);
    expect(h.droppedCount).toBe(3);
  });

  test('order is kept: a new delivery goes behind waiting ones even once the link has room', () => {
    const h = new Host();
    const sink = new Qos0Sink(h);
    h.linkCongested = true;
    sink.deliver(delivery('first'));
    h.linkCongested = false;
    sink.deliver(delivery('second'));
    expect(h.written).toEqual(['first', 'second']);
  });

  test('a waiting delivery that cannot be encoded is reported and the rest go on', () => {
    const h = new Host();
    const sink = new Qos0Sink(h);
    h.linkCongested = true;
    h.poison = 'bad';
    for (const b of ['x', 'bad', 'y']) sink.deliver(delivery(b));
    h.linkCongested = false;
    sink.flush();
    expect(h.written).toEqual(['x', 'y']);
    expect(h.failed).toEqual(['bad']);
  });
});
