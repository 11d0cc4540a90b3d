import { describe, expect, test } from 'vitest';
import { MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { BrokerError, Core } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, testChannel } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('t', { forwardTimeoutMs: 300 });

async function node(name: string): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  return { core, m: await nodes.join(engine, name, core) };
}

describe('publishes to a classic queue go to its home node', () => {
  test('a publish on n2 routed to a queue declared on n1 lands on n1 with its exchange and routing key, and settles when n1 has it', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const ch1 = testChannel(a.core);
    ch1.declareExchange('events', 'topic', { durable: true });
    ch1.declareQueue('audit', { durable: true });
    ch1.bindQueue('audit', 'events', 'user.*');
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.exchanges.get('events')?.bindings.size === 1, 2000, 'binding on n2');
    const sink = new RecordingSink();
    ch1.consume('audit', { noAck: true }, sink);

    const ch2 = testChannel(b.core);
    const results = ['one', 'two', 'three'].map((body) => ch2.publish({ exchange: 'events', routingKey: 'user.created', properties: { headers: { n: body } }, body: Buffer.from(body) }));
    expect(results.map((r) => r.routed)).toEqual([1, 1, 1]);
    await Promise.all(results.map((r) => r.settled));
    await waitFor(() => sink.got.length === 3, 2000, 'deliveries on n1');
    expect(sink.got.map((d) => [d.message.body.toString(), d.message.exchange, d.message.routingKey, d.message.properties.headers?.['n']])).toEqual([
      ['one', 'events', 'user.created', 'one'],
      ['two', 'events', 'user.created', 'two'],
      ['three', 'events', 'user.created', 'three'],
    ]);
    expect(b.core.vhosts.get('/')!.queues.get('audit')!.readyCount).toBe(0);
  });

  test("with the home node down, a publish to its queue fails (the publisher's nack)", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    testChannel(a.core).declareQueue('orders', { durable: true });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.has('orders'), 2000, 'queue on n2');
    await a.m.stop();
    const r = testChannel(b.core).publish({ exchange: '', routingKey: 'orders', properties: { deliveryMode: 2 }, body: Buffer.from('x') });
    const err = await r.settled.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).text).toMatch(/home node 'n1' is not running/);
  });

  test('a message dead-lettered into a queue whose home is down is dropped without an unhandled failure', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const ch1 = testChannel(a.core);
    ch1.declareExchange('dlx', 'fanout', { durable: true });
    ch1.declareQueue('dead', { durable: true });
    ch1.bindQueue('dead', 'dlx', '');
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.exchanges.get('dlx')?.bindings.size === 1, 2000, 'dlx on n2');
    await a.m.stop();
    const ch2 = testChannel(b.core);
    ch2.declareQueue('short', { durable: true, arguments: { 'x-message-ttl': 5, 'x-dead-letter-exchange': 'dlx' } });
    await ch2.publish({ exchange: '', routingKey: 'short', properties: {}, body: Buffer.from('x') }).settled.catch(() => undefined);
    await waitFor(() => b.m.forwarding.stats.failed === 1, 2000, 'the dead-lettered copy failed to reach n1');
    expect(b.core.vhosts.get('/')!.queues.get('short')!.readyCount).toBe(0);
  });

  test('a queue declared on a node is enqueued there, not forwarded', async () => {
    engine = new MemoryEngine();
    await node('n1');
    const b = await node('n2');
    const ch = testChannel(b.core);
    ch.declareQueue('local', { durable: true });
    await ch.publish({ exchange: '', routingKey: 'local', properties: {}, body: Buffer.from('x') }).settled;
    expect(b.core.vhosts.get('/')!.queues.get('local')!.readyCount).toBe(1);
    expect(b.m.forwarding.stats.forwarded).toBe(0);
  });
});
