import { describe, expect, test } from 'vitest';
import { MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { BrokerError, Core, type Delivery } from '../../../src/core/index.js';
import { ByteWriter } from '../../../src/store/index.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, testChannel } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('t', { forwardTimeoutMs: 300, remoteConsumers: { pingMs: 50, missesAllowed: 2, silenceMs: 300, requestTimeoutMs: 200 } });

async function node(name: string): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  return { core, m: await nodes.join(engine, name, core) };
}

/** A sink that hears of a server-side cancel (AMQP's basic.cancel). */
class CancelSink extends RecordingSink {
  readonly cancels: string[] = [];
  cancelled(tag: string): void {
    this.cancels.push(tag);
  }
}

const body = (d: Delivery): string => d.message.body.toString();

async function twoNodes(): Promise<{ a: { core: Core; m: ClusterMembership }; b: { core: Core; m: ClusterMembership } }> {
  engine = new MemoryEngine();
  const a = await node('n1');
  const b = await node('n2');
  testChannel(a.core).declareQueue('work', { durable: true });
  await a.core.persistence.definitionsSettled();
  await waitFor(() => b.core.vhosts.get('/')!.queues.get('work')?.remote !== undefined, 2000, 'queue placed on n2');
  return { a, b };
}

describe('a consumer on n2 of a classic queue homed on n1', () => {
  test('gets the messages published on either node in order, never more than its prefetch unacked', async () => {
    const { a, b } = await twoNodes();
    const ch2 = testChannel(b.core);
    const s = new RecordingSink();
    ch2.consume('work', { prefetch: 2 }, s);
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    await waitFor(() => home.consumerCount === 1, 2000, 'the proxy on n1');
    const ch1 = testChannel(a.core);
    for (let i = 0; i < 3; i++) await ch1.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from(`a${i}`) }).settled;
    for (let i = 0; i < 3; i++) await ch2.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from(`b${i}`) }).settled;
    await waitFor(() => s.got.length === 2, 2000, 'two deliveries');
    // The home holds back the rest: the prefetch is its credit.
    await new Promise((r) => setTimeout(r, 100));
    expect(s.got.length).toBe(2);
    expect(home.readyCount).toBe(4);
    const seen: string[] = [];
    while (seen.length < 6) {
      await waitFor(() => s.got.length > seen.length, 2000, `delivery ${seen.length + 1}`);
      const d = s.got[seen.length]!;
      seen.push(body(d));
      ch2.ack(d.deliveryTag);
    }
    expect(seen).toEqual(['a0', 'a1', 'a2', 'b0', 'b1', 'b2']);
    await waitFor(() => home.unackedCount === 0 && home.readyCount === 0, 2000, 'all acked on n1');
    expect(home.stats.acked).toBe(6);
  });

  test('nack with requeue redelivers; reject drops; cancel removes the proxy', async () => {
    const { a, b } = await twoNodes();
    const ch2 = testChannel(b.core);
    const s = new RecordingSink();
    const tag = ch2.consume('work', { prefetch: 1 }, s);
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    await waitFor(() => home.consumerCount === 1, 2000, 'the proxy on n1');
    await testChannel(a.core).publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from('x') }).settled;
    await waitFor(() => s.got.length === 1, 2000, 'first delivery');
    expect(s.got[0]!.redelivered).toBe(false);
    ch2.nack(s.got[0]!.deliveryTag, false, true);
    await waitFor(() => s.got.length === 2, 2000, 'redelivery');
    expect(s.got[1]!.redelivered).toBe(true);
    expect(body(s.got[1]!)).toBe('x');
    ch2.nack(s.got[1]!.deliveryTag, false, false);
    await waitFor(() => home.unackedCount === 0, 2000, 'rejected on n1');
    expect(home.readyCount).toBe(0);
    ch2.cancel(tag);
    await waitFor(() => home.consumerCount === 0, 2000, 'proxy gone');
  });

  test("closing n2's channel returns its unacknowledged messages to n1's queue", async () => {
    const { a, b } = await twoNodes();
    const ch2 = testChannel(b.core);
    const s = new RecordingSink();
    ch2.consume('work', { prefetch: 5 }, s);
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    await waitFor(() => home.consumerCount === 1, 2000, 'the proxy on n1');
    await testChannel(a.core).publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from('x') }).settled;
    await waitFor(() => s.got.length === 1, 2000, 'delivery');
    ch2.close();
    await waitFor(() => home.consumerCount === 0 && home.readyCount === 1, 2000, 'returned');
  });

  test('when n2 goes silent, n1 redelivers its unacknowledged messages to a consumer on n1', async () => {
    const { a, b } = await twoNodes();
    const ch2 = testChannel(b.core);
    const s2 = new RecordingSink();
    ch2.consume('work', { prefetch: 5 }, s2);
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    await waitFor(() => home.consumerCount === 1, 2000, 'the proxy on n1');
    const ch1 = testChannel(a.core);
    await ch1.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from('m1') }).settled;
    await ch1.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from('m2') }).settled;
    await waitFor(() => s2.got.length === 2, 2000, 'deliveries on n2');
    // n2 stops talking (its bus subscriptions and pings end) without cancelling.
    b.m.remoteConsumers.stop();
    await waitFor(() => home.consumerCount === 0, 3000, 'proxy dropped');
    const s1 = new RecordingSink();
    ch1.consume('work', { noAck: true }, s1);
    await waitFor(() => s1.got.length === 2, 2000, 'redelivered on n1');
    expect(s1.got.map((d) => [body(d), d.redelivered])).toEqual([
      ['m1', true],
      ['m2', true],
    ]);
  });

  test('when n1 goes away, the consumer on n2 is cancelled', async () => {
    const { a, b } = await twoNodes();
    const ch2 = testChannel(b.core);
    const s = new CancelSink();
    const tag = ch2.consume('work', { prefetch: 1 }, s);
    await waitFor(() => a.core.vhosts.get('/')!.queues.get('work')!.consumerCount === 1, 2000, 'the proxy on n1');
    await a.m.stop();
    await waitFor(() => s.cancels.length === 1, 3000, 'cancelled');
    expect(s.cancels).toEqual([tag]);
    expect(b.core.vhosts.get('/')!.queues.get('work')!.consumerCount).toBe(0);
    expect(b.m.remoteConsumers.counts.attached).toBe(0);
  });

  test('deleting the queue on n1 cancels the consumer on n2', async () => {
    const { a, b } = await twoNodes();
    const s = new CancelSink();
    testChannel(b.core).consume('work', { prefetch: 1 }, s);
    await waitFor(() => a.core.vhosts.get('/')!.queues.get('work')!.consumerCount === 1, 2000, 'the proxy on n1');
    testChannel(a.core).deleteQueue('work');
    await waitFor(() => s.cancels.length === 1, 2000, 'cancelled');
  });

  test('a consumer of a queue whose home is down at consume time is cancelled', async () => {
    const { a, b } = await twoNodes();
    await a.m.stop();
    const s = new CancelSink();
    testChannel(b.core).consume('work', { prefetch: 1 }, s);
    await waitFor(() => s.cancels.length === 1, 2000, 'cancelled');
  });
});

describe('batching between the home and a remote consumer', () => {
  test("the deliveries of one turn reach the consumer's node as one bus message, and its acks of one turn go back as one", async () => {
    const { a, b } = await twoNodes();
    const spy = engine.connect('spy').bus;
    const toN2: number[] = [];
    const settlesToN1: number[] = [];
    spy.subscribe('warren.t.rcd.n2.*', (data) => toN2.push(data[0]!));
    // Settlements alone (2) or in a batch (6); pings and consumes are requests of their own.
    spy.subscribe('warren.t.rc.n1', (data) => {
      if (data[0] === 2 || data[0] === 6) settlesToN1.push(data[0]);
    });
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    const ch1 = testChannel(a.core);
    const n = 50;
    await Promise.all(Array.from({ length: n }, (_, i) => ch1.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from(`m${i}`) }).settled));
    const ch2 = testChannel(b.core);
    const s = new RecordingSink();
    ch2.consume('work', { prefetch: 100 }, s);
    await waitFor(() => s.got.length === n, 2000, 'every delivery on n2');
    await waitFor(() => toN2.length > 0, 2000, 'the deliveries seen on the bus');
    expect(toN2).toEqual([3]); // one batch
    expect(s.got.map(body)).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    expect(home.unackedCount).toBe(n);
    for (const d of s.got) ch2.ack(d.deliveryTag);
    await waitFor(() => home.unackedCount === 0, 2000, 'all acked on n1');
    await waitFor(() => settlesToN1.length > 0, 2000, 'the acks seen on the bus');
    expect(settlesToN1).toEqual([6]);
    expect(home.stats.acked).toBe(n);
  });

  test('a cancel after acks of the same turn arrives after them: the acked messages are not redelivered', async () => {
    const { a, b } = await twoNodes();
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    const ch1 = testChannel(a.core);
    for (let i = 0; i < 4; i++) await ch1.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from(`m${i}`) }).settled;
    const ch2 = testChannel(b.core);
    const s = new RecordingSink();
    const tag = ch2.consume('work', { prefetch: 10 }, s);
    await waitFor(() => s.got.length === 4, 2000, 'deliveries on n2');
    ch2.ack(s.got[0]!.deliveryTag);
    ch2.ack(s.got[2]!.deliveryTag);
    ch2.cancel(tag);
    await waitFor(() => home.consumerCount === 0, 2000, 'proxy gone');
    expect(home.stats.acked).toBe(2);
    expect(home.readyCount).toBe(2);
    const left: string[] = [];
    for (let t = home.take(true); t !== undefined; t = home.take(true)) left.push(t.entry.msg.body.toString());
    expect(left.sort()).toEqual(['m1', 'm3']);
  });
});

describe('the home side of the wire', () => {
  test('a proxy its node no longer lists in its ping is dropped; one of a silent node too', async () => {
    const { a } = await twoNodes();
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    const bus = engine.connect('n9').bus;
    const frame = (op: number, id: number, fill: (w: ByteWriter) => void): Buffer => {
      const w = new ByteWriter(256).reset();
      w.u8(op);
      w.str16('n9');
      w.u32(id);
      fill(w);
      return Buffer.from(w.buf.subarray(0, w.pos));
    };
    const consume = (id: number): Buffer =>
      frame(1, id, (w) => {
        w.str16('/');
        w.str16('work');
        w.u8(0);
        w.i32(0);
        w.u32(1);
      });
    expect((await bus.request('warren.t.rc.n1', consume(7), 1000))[0]).toBe(0);
    expect((await bus.request('warren.t.rc.n1', consume(8), 1000))[0]).toBe(0);
    expect(home.consumerCount).toBe(2);
    const answer = await bus.request('warren.t.rc.n1', frame(4, 0, (w) => {
      w.u32(2);
      w.u32(8);
      w.u32(9);
    }), 1000);
    // 9 is unknown to the home; 7 was not listed, so it is gone.
    expect([...answer]).toEqual([1, 0, 0, 0, 9, 0, 0, 0]); // the store codec: little-endian
    expect(home.consumerCount).toBe(1);
    // n9 says nothing more: after the silence its last proxy goes.
    await waitFor(() => home.consumerCount === 0, 3000, 'silent node dropped');
  });
});

describe('basic.get on n2 of a classic queue homed on n1', () => {
  test('takes the home\'s next message; ack, requeue and a closed channel settle it on the home', async () => {
    const { a, b } = await twoNodes();
    const home = a.core.vhosts.get('/')!.queues.get('work')!;
    const ch1 = testChannel(a.core);
    for (const x of ['g1', 'g2', 'g3']) await ch1.publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from(x) }).settled;
    const ch2 = testChannel(b.core);
    const r1 = await ch2.getRemote('work', false)!;
    expect(r1!.delivery.message.body.toString()).toBe('g1');
    expect(r1!.messageCount).toBe(2);
    expect(home.unackedCount).toBe(1);
    ch2.ack(r1!.delivery.deliveryTag);
    await waitFor(() => home.unackedCount === 0 && home.stats.acked === 1, 2000, 'acked on n1');

    const r2 = await ch2.getRemote('work', false)!;
    expect(r2!.delivery.message.body.toString()).toBe('g2');
    ch2.nack(r2!.delivery.deliveryTag, false, true);
    await waitFor(() => home.readyCount === 2 && home.unackedCount === 0, 2000, 'requeued on n1');
    const r3 = await ch2.getRemote('work', false)!;
    expect([r3!.delivery.message.body.toString(), r3!.delivery.redelivered]).toEqual(['g2', true]);
    ch2.close();
    await waitFor(() => home.readyCount === 2 && home.unackedCount === 0, 2000, 'returned when the channel closed');

    const ch3 = testChannel(b.core);
    const r4 = await ch3.getRemote('work', true)!;
    expect(r4!.delivery.message.body.toString()).toBe('g2');
    expect(home.unackedCount).toBe(0);
    const r5 = await ch3.getRemote('work', true)!;
    expect(r5!.delivery.message.body.toString()).toBe('g3');
    expect(await ch3.getRemote('work', true)!).toBeNull();
    expect(ch3.getRemote.bind(ch3, 'missing', true)).toThrow(BrokerError);
  });

  test('fails with 404 when the home is down, as RabbitMQ', async () => {
    const { a, b } = await twoNodes();
    await a.m.stop();
    await expect(testChannel(b.core).getRemote('work', false)!).rejects.toThrow(/home node 'n1' of durable queue 'work' in vhost '\/' is down or inaccessible/);
  });
});

describe('a publish whose only route is a queue whose home is down', () => {
  test('is not routed (a mandatory publish is returned) and fails its confirm', async () => {
    const { a, b } = await twoNodes();
    await a.m.stop();
    await waitFor(() => !b.m.registry.isRunning('n1'), 2000, 'n1 not running');
    const r = testChannel(b.core).publish({ exchange: '', routingKey: 'work', properties: {}, body: Buffer.from('x') });
    expect(r.routed).toBe(0);
    const err = await r.settled.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).text).toMatch(/home node 'n1' is not running/);
  });
});
