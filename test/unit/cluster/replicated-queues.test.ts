import { describe, expect, test } from 'vitest';
import { MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { scaledReplicas } from '../../../src/cluster/engine.js';
import { Core, type Delivery } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, silentLog, testChannel } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('t');

async function node(name: string, ackWaitMs = 30_000): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  return { core, m: await nodes.join(engine, name, core, { ackWaitMs }) };
}

const body = (d: Delivery): string => d.message.body.toString();

describe('replicated (quorum) queues on the in-process engine', () => {
  test('publishes on two nodes settle once the silentLog has them and are delivered once each to consumers on a third, within their prefetch', async () => {
    engine = new MemoryEngine();
    const [a, b, c] = [await node('n1'), await node('n2'), await node('n3')];
    testChannel(a.core).declareQueue('q', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => c.core.vhosts.get('/')!.queues.get('q')?.replica !== undefined && b.core.vhosts.get('/')!.queues.get('q')?.replica !== undefined, 5000, 'q on n2 and n3');
    const pubs = [a, b].flatMap((n, i) => Array.from({ length: 20 }, (_, k) => testChannel(n.core).publish({ exchange: '', routingKey: 'q', properties: { deliveryMode: 2 }, body: Buffer.from(`${i}-${k}`) })));
    expect(pubs.every((p) => p.routed === 1)).toBe(true);
    await Promise.all(pubs.map((p) => p.settled));
    // Nothing is kept on the publishing nodes: the silentLog has it.
    expect(a.core.vhosts.get('/')!.queues.get('q')!.readyCount).toBe(0);

    const ch = testChannel(c.core);
    ch.qos(5, false);
    const sink = new RecordingSink();
    ch.consume('q', { noAck: false }, sink);
    await waitFor(() => sink.got.length === 5, 5000, 'first five');
    expect(c.core.vhosts.get('/')!.queues.get('q')!.readyCount).toBe(0);
    for (let i = 0; i < 40; i++) {
      await waitFor(() => sink.got.length > i, 5000, () => `delivery ${i + 1} (${sink.got.length})`);
      ch.ack(sink.got[i]!.deliveryTag);
    }
    expect(sink.got.map(body).sort()).toEqual(pubs.map((_, i) => `${Math.floor(i / 20)}-${i % 20}`).sort());
    expect(sink.got.every((d) => !d.redelivered)).toBe(true);
    await waitFor(async () => (await c.m.replicationOf('/', 'q'))?.members.length === 1, 5000, 'status');
  });

  test('a nack with requeue goes back to the log: redelivered on another node with x-delivery-count, dead-lettered past x-delivery-limit', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    const ch1 = testChannel(a.core);
    ch1.declareQueue('dlq', { durable: true });
    ch1.declareQueue('p', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 1, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dlq' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('p')?.replica !== undefined && b.core.vhosts.get('/')!.queues.has('dlq'), 5000, 'p on n2');
    await ch1.publish({ exchange: '', routingKey: 'p', properties: {}, body: Buffer.from('poison') }).settled;

    const first = new RecordingSink();
    const chA = testChannel(a.core);
    chA.qos(1, false);
    chA.consume('p', { noAck: false }, first);
    await waitFor(() => first.got.length === 1, 5000, 'first delivery');
    expect([first.got[0]!.redelivered, first.got[0]!.message.properties.headers?.['x-delivery-count']]).toEqual([false, undefined]);
    chA.close();

    // n2 now: the message comes from the silentLog again, counted.
    const second = new RecordingSink();
    const chB = testChannel(b.core);
    chB.qos(1, false);
    chB.consume('p', { noAck: false }, second);
    await waitFor(() => second.got.length === 1, 5000, 'second delivery');
    expect([second.got[0]!.redelivered, second.got[0]!.message.properties.headers?.['x-delivery-count']]).toEqual([true, 1]);
    chB.nack(second.got[0]!.deliveryTag, false, true);
    // One return allowed: the second one dead-letters it, into the classic queue on n1.
    const dead = new RecordingSink();
    testChannel(a.core).consume('dlq', { noAck: true }, dead);
    await waitFor(() => dead.got.length === 1, 5000, 'dead-lettered');
    expect(body(dead.got[0]!)).toBe('poison');
    const death = (dead.got[0]!.message.properties.headers?.['x-death'] as Array<Record<string, unknown>>)[0]!;
    expect([death['reason'], death['queue']]).toEqual(['delivery_limit', 'p']);
    expect(second.got.length).toBe(1);
    expect(engine.logs.get(b.m.replicated.logName('/', 'p'))!.entries.size).toBe(0);
  });

  test('a node that stops answering: what it held comes to a consumer on another node after the ack wait, redelivered', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1', 300), await node('n2', 300)];
    testChannel(a.core).declareQueue('h', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('h')?.replica !== undefined, 5000, 'h on n2');
    const ch = testChannel(a.core);
    await Promise.all(['x', 'y', 'z'].map((s) => ch.publish({ exchange: '', routingKey: 'h', properties: {}, body: Buffer.from(s) }).settled));
    const held = new RecordingSink();
    const chA = testChannel(a.core);
    chA.qos(2, false);
    chA.consume('h', { noAck: false }, held);
    await waitFor(() => held.got.length === 2, 5000, 'two held on n1');
    // n1 goes silent: no acks, no in-progress (as a killed process).
    a.m.replicated.stop();

    const sink = new RecordingSink();
    const chB = testChannel(b.core);
    chB.consume('h', { noAck: false }, sink);
    await waitFor(() => sink.got.length === 3, 5000, () => `delivered on n2: ${sink.got.length}`);
    const byBody = new Map(sink.got.map((d) => [body(d), d.redelivered]));
    for (const d of held.got) expect(byBody.get(body(d))).toBe(true);
    expect([...byBody.keys()].sort()).toEqual(['x', 'y', 'z']);
  });

  test('a long-held delivery stays with its consumer past the ack wait (in-progress)', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1', 300), await node('n2', 300)];
    testChannel(a.core).declareQueue('slow', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('slow')?.replica !== undefined, 5000, 'slow on n2');
    await testChannel(a.core).publish({ exchange: '', routingKey: 'slow', properties: {}, body: Buffer.from('s') }).settled;
    const held = new RecordingSink();
    const chA = testChannel(a.core);
    chA.consume('slow', { noAck: false }, held);
    await waitFor(() => held.got.length === 1, 5000, 'held on n1');
    const other = new RecordingSink();
    testChannel(b.core).consume('slow', { noAck: false }, other);
    const since = Date.now();
    await waitFor(() => Date.now() - since > 1000, 5000, 'three ack waits');
    expect(other.got.length).toBe(0);
    chA.ack(held.got[0]!.deliveryTag);
    await waitFor(() => engine.logs.get(a.m.replicated.logName('/', 'slow'))!.entries.size === 0, 5000, 'acked in the log');
  });

  test("a policy with ha-mode makes a classic queue replicated; other classic queues stay on their node", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^ha\\.', applyTo: 'queues', definition: { 'ha-mode': 'exactly', 'ha-params': 2 }, priority: 0 });
    const ch = testChannel(a.core);
    ch.declareQueue('ha.one', { durable: true });
    ch.declareQueue('plain', { durable: true });
    await a.core.persistence.definitionsSettled();
    expect(a.m.replicated.has(a.core.vhosts.get('/')!.queues.get('ha.one')!)).toBe(true);
    expect(a.m.replicated.has(a.core.vhosts.get('/')!.queues.get('plain')!)).toBe(false);
    await ch.publish({ exchange: '', routingKey: 'ha.one', properties: {}, body: Buffer.from('m') }).settled;
    expect(engine.logs.get(a.m.replicated.logName('/', 'ha.one'))!.entries.size).toBe(1);
    ch.deleteQueue('ha.one', false, false);
    await a.core.persistence.definitionsSettled();
    await waitFor(() => !engine.logs.has(a.m.replicated.logName('/', 'ha.one')), 5000, 'silentLog removed with its queue');
  });

  test("an 'ha-mode' policy set after a classic queue was filled: its messages move to a log, its consumer's unacked ones last, and every node then serves it from the log", async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    const ch = testChannel(a.core);
    ch.declareQueue('late', { durable: true });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('late')?.remote !== undefined, 5000, 'the stand-in on n2');
    await Promise.all(Array.from({ length: 30 }, (_, i) => ch.publish({ exchange: '', routingKey: 'late', properties: { deliveryMode: 2 }, body: Buffer.from(`m${i}`) }).settled));
    const holder = new RecordingSink();
    const chH = testChannel(a.core);
    chH.qos(2, false);
    chH.consume('late', { noAck: false }, holder);
    await waitFor(() => holder.got.length === 2, 5000, 'two held on n1');

    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^late$', applyTo: 'queues', definition: { 'ha-mode': 'all' }, priority: 0 });
    const qA = a.core.vhosts.get('/')!.queues.get('late')!;
    const log = (): number => engine.logs.get(a.m.replicated.logName('/', 'late'))?.entries.size ?? 0;
    await waitFor(() => log() === 28, 5000, () => `moved ${log()}`);
    // Still held by the consumer on n1: the queue does not take from its log yet.
    expect([qA.replica, qA.unackedCount, holder.got.length]).toEqual([undefined, 2, 2]);
    const acked = new Set([body(holder.got[1]!)]);
    chH.ack(holder.got[1]!.deliveryTag);
    chH.nack(holder.got[0]!.deliveryTag, false, true);
    // The requeued one moves too, unless the consumer takes it again first: then its ack ends the wait.
    await waitFor(() => log() === 29 || holder.got.length === 3, 5000, 'the requeued one moved or redelivered');
    if (holder.got.length === 3) {
      acked.add(body(holder.got[2]!));
      chH.ack(holder.got[2]!.deliveryTag);
    }
    await waitFor(() => qA.replica !== undefined, 5000, 'n1 takes from the log');
    const qB = b.core.vhosts.get('/')!.queues.get('late')!;
    await waitFor(() => qB.replica !== undefined && qB.remote === undefined, 5000, 'n2 takes from the log');
    await testChannel(b.core).publish({ exchange: '', routingKey: 'late', properties: { deliveryMode: 2 }, body: Buffer.from('after') }).settled;
    expect(log()).toBeGreaterThanOrEqual(29);

    chH.close();
    const sink = new RecordingSink();
    testChannel(b.core).consume('late', { noAck: true }, sink);
    const expected = [...Array.from({ length: 30 }, (_, i) => `m${i}`).filter((m) => !acked.has(m)), 'after'];
    await waitFor(() => sink.got.length === expected.length, 5000, 'every message on n2');
    expect(sink.got.map(body).sort()).toEqual(expected.sort());
    expect([qA.readyCount, qA.unackedCount]).toEqual([0, 0]);
  });

  test("an 'ha-mode' policy's changes change its log's copies; removed, the log keeps one and the queue stays served from it, also by a node that joins after", async () => {
    engine = new MemoryEngine();
    engine.servers = 3;
    const a = await node('n1');
    const ha = (definition: Record<string, unknown>): void => a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^mirrored$', applyTo: 'queues', definition, priority: 0 });
    ha({ 'ha-mode': 'exactly', 'ha-params': 3 });
    const ch = testChannel(a.core);
    ch.declareQueue('mirrored', { durable: true });
    await a.core.persistence.definitionsSettled();
    await Promise.all(['1', '2', '3'].map((m) => ch.publish({ exchange: '', routingKey: 'mirrored', properties: { deliveryMode: 2 }, body: Buffer.from(m) }).settled));
    const copies = (): number | undefined => engine.logs.get(a.m.replicated.logName('/', 'mirrored'))?.opts.replicas;
    expect(copies()).toBe(3);
    ha({ 'ha-mode': 'exactly', 'ha-params': 2 });
    await waitFor(() => copies() === 2, 5000, () => `2 copies, not ${copies()}`);
    a.core.policies.delete('/', 'ha');
    await waitFor(() => copies() === 1, 5000, () => `1 copy, not ${copies()}`);
    const qA = a.core.vhosts.get('/')!.queues.get('mirrored')!;
    expect(a.m.replicated.has(qA)).toBe(true);

    // A node that joins now has no policy for it: it serves the queue from its log all the same.
    const b = await node('n2');
    const qB = b.core.vhosts.get('/')!.queues.get('mirrored');
    expect(qB !== undefined && b.m.replicated.has(qB)).toBe(true);
    await testChannel(b.core).publish({ exchange: '', routingKey: 'mirrored', properties: { deliveryMode: 2 }, body: Buffer.from('4') }).settled;
    expect(engine.logs.get(a.m.replicated.logName('/', 'mirrored'))!.entries.size).toBe(4);
    const sink = new RecordingSink();
    testChannel(b.core).consume('mirrored', { noAck: true }, sink);
    await waitFor(() => sink.got.length === 4, 5000, () => `delivered on n2: ${sink.got.length}`);
    expect(sink.got.map(body).sort()).toEqual(['1', '2', '3', '4']);

    // The policy back, as 'all': as many copies as servers.
    ha({ 'ha-mode': 'all' });
    await waitFor(() => copies() === 3, 5000, () => `3 copies, not ${copies()}`);
    expect(engine.logs.size).toBe(1);
  });

  test('the copies a log keeps: what is asked, capped by the servers known, never fewer only because fewer servers are known', () => {
    expect(scaledReplicas(3, 1, 3)).toBe(1);
    expect(scaledReplicas(3, 2, 3)).toBe(2);
    expect(scaledReplicas(1, 3, 3)).toBe(3);
    expect(scaledReplicas(1, 5, 3)).toBe(3);
    expect(scaledReplicas(3, Number.POSITIVE_INFINITY, 2)).toBe(3);
    expect(scaledReplicas(2, Number.POSITIVE_INFINITY, 3)).toBe(3);
    expect(scaledReplicas(3, 3, 1)).toBe(3);
    expect(scaledReplicas(1, 0, 3)).toBe(1);
  });

  test('a purge while a queue moves to its log drops what the log has and what the queue still holds ready; unacked messages stay', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const ch = testChannel(a.core);
    ch.declareQueue('mid', { durable: true });
    await a.core.persistence.definitionsSettled();
    await Promise.all(Array.from({ length: 10 }, (_, i) => ch.publish({ exchange: '', routingKey: 'mid', properties: { deliveryMode: 2 }, body: Buffer.from(`m${i}`) }).settled));
    const holder = new RecordingSink();
    const chH = testChannel(a.core);
    chH.qos(2, false);
    chH.consume('mid', { noAck: false }, holder);
    await waitFor(() => holder.got.length === 2, 5000, 'two held');
    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^mid$', applyTo: 'queues', definition: { 'ha-mode': 'all' }, priority: 0 });
    const log = (): number => engine.logs.get(a.m.replicated.logName('/', 'mid'))?.entries.size ?? 0;
    await waitFor(() => log() === 8, 5000, 'eight moved');
    await Promise.all(['n1', 'n2', 'n3'].map((b) => ch.publish({ exchange: '', routingKey: 'mid', properties: { deliveryMode: 2 }, body: Buffer.from(b) }).settled));
    expect(log()).toBe(11);
    expect(await ch.purgeQueue('mid')).toBe(11);
    expect(log()).toBe(0);
    // The two held go back, move, and are all the queue has.
    chH.close();
    const q = a.core.vhosts.get('/')!.queues.get('mid')!;
    await waitFor(() => q.replica !== undefined, 5000, 'moved');
    expect(log()).toBe(2);
  });

  test("an 'ha-mode' policy matching several filled queues moves them one after the other, each whole", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const ch = testChannel(a.core);
    const names = ['two.a', 'two.b', 'two.c'];
    for (const q of names) ch.declareQueue(q, { durable: true });
    await a.core.persistence.definitionsSettled();
    await Promise.all(names.flatMap((q) => Array.from({ length: 1200 }, (_, i) => ch.publish({ exchange: '', routingKey: q, properties: { deliveryMode: 2 }, body: Buffer.from(`${q}-${i}`) }).settled)));
    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^two\\.', applyTo: 'queues', definition: { 'ha-mode': 'all' }, priority: 0 });
    const queues = names.map((n) => a.core.vhosts.get('/')!.queues.get(n)!);
    await waitFor(() => queues.every((q) => q.replica !== undefined), 10_000, 'all three moved');
    for (const n of names) expect(engine.logs.get(a.m.replicated.logName('/', n))!.entries.size, n).toBe(1200);
    expect(queues.map((q) => q.readyCount)).toEqual([0, 0, 0]);
  });

  test("a queue moving to its log while the engine is away keeps its messages and moves them once it is back (no failure on the node's timers)", async () => {
    engine = new MemoryEngine();
    // A short ack wait: the node's timer over what it holds runs every 100 ms.
    const a = await node('n1', 300);
    const ch = testChannel(a.core);
    ch.declareQueue('away', { durable: true });
    await a.core.persistence.definitionsSettled();
    await Promise.all(['1', '2', '3'].map((m) => ch.publish({ exchange: '', routingKey: 'away', properties: { deliveryMode: 2 }, body: Buffer.from(m) }).settled));
    const holder = new RecordingSink();
    const chH = testChannel(a.core);
    chH.qos(1, false);
    chH.consume('away', { noAck: false }, holder);
    await waitFor(() => holder.got.length === 1, 5000, 'one held');
    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^away$', applyTo: 'queues', definition: { 'ha-mode': 'all' }, priority: 0 });
    const q = a.core.vhosts.get('/')!.queues.get('away')!;
    const log = (): number => engine.logs.get(a.m.replicated.logName('/', 'away'))?.entries.size ?? 0;
    await waitFor(() => log() === 2, 5000, 'two moved');
    // The engine goes away; the held one comes back to the queue, which has no consumer now.
    engine.available = false;
    chH.close();
    expect([q.consumers.length, q.readyCount]).toEqual([0, 1]);
    const since = Date.now();
    await waitFor(() => Date.now() - since > 400, 5000, 'a few turns of the timer');
    // Still here (ready, or in a move that is tried again), and the queue does not take from the log yet.
    expect([q.replica, q.readyCount + q.unackedCount]).toEqual([undefined, 1]);
    engine.available = true;
    await waitFor(() => q.replica !== undefined, 5000, 'moved once the engine is back');
    expect(log()).toBe(3);
    expect(q.readyCount).toBe(0);
  });

  test('x-max-length 0, a message over x-max-length-bytes and a TTL of 0 are settled without the log, as on one node', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const ch = testChannel(a.core);
    ch.declareQueue('dead', { durable: true });
    const quorum = { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dead' };
    ch.declareQueue('none-reject', { durable: true, arguments: { ...quorum, 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    // reject-publish-dlx is for classic queues: one made replicated by a mirroring policy.
    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '^none-dlx$', applyTo: 'queues', definition: { 'ha-mode': 'all' }, priority: 0 });
    ch.declareQueue('none-dlx', { durable: true, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dead', 'x-max-length': 0, 'x-overflow': 'reject-publish-dlx' } });
    ch.declareQueue('none-drop', { durable: true, arguments: { ...quorum, 'x-max-length': 0 } });
    ch.declareQueue('small', { durable: true, arguments: { ...quorum, 'x-max-length-bytes': 100, 'x-overflow': 'reject-publish' } });
    ch.declareQueue('instant', { durable: true, arguments: { ...quorum, 'x-message-ttl': 0 } });
    await a.core.persistence.definitionsSettled();
    const publish = (q: string, text: string, expiration?: string): Promise<string> =>
      ch.publish({ exchange: '', routingKey: q, properties: expiration === undefined ? {} : { expiration }, body: Buffer.from(text) }).settled.then(
        () => 'confirmed',
        (e: unknown) => (e instanceof Error ? e.message : String(e)),
      );
    expect(await publish('none-reject', 'r')).toContain('message rejected by a full queue');
    expect(await publish('none-dlx', 'rd')).toContain('message rejected by a full queue');
    expect(await publish('none-drop', 'dh')).toBe('confirmed');
    expect(await publish('small', 'x'.repeat(200))).toContain('message rejected by a full queue');
    expect(await publish('small', 'fits')).toBe('confirmed');
    expect(await publish('instant', 'gone')).toBe('confirmed');
    for (const q of ['none-reject', 'none-dlx', 'none-drop', 'instant']) expect(engine.logs.get(a.m.replicated.logName('/', q))?.entries.size ?? 0, q).toBe(0);
    expect(engine.logs.get(a.m.replicated.logName('/', 'small'))!.entries.size).toBe(1);
    const dead = new RecordingSink();
    testChannel(a.core).consume('dead', { noAck: true }, dead);
    await waitFor(() => dead.got.length === 3, 5000, 'three dead-lettered');
    const reasons = dead.got.map((d) => [body(d), (d.message.properties.headers?.['x-death'] as Array<Record<string, unknown>>)[0]!['reason']]);
    expect(reasons.sort()).toEqual([['dh', 'maxlen'], ['gone', 'expired'], ['rd', 'maxlen']]);
  });

  test('x-max-length counts ready messages only, as RabbitMQ: what consumers hold does not fill the queue; drop-head dead-letters the oldest', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    const ch = testChannel(a.core);
    ch.declareQueue('dead', { durable: true });
    const quorum = { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dead' };
    ch.declareQueue('two', { durable: true, arguments: { ...quorum, 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
    ch.declareQueue('last-two', { durable: true, arguments: { ...quorum, 'x-max-length': 2 } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('two')?.replica !== undefined && b.core.vhosts.get('/')!.queues.get('last-two')?.replica !== undefined, 5000, 'both on n2');
    const publish = (on: Core, q: string, text: string): Promise<string> =>
      testChannel(on).publish({ exchange: '', routingKey: q, properties: {}, body: Buffer.from(text) }).settled.then(
        () => 'confirmed',
        (e: unknown) => (e instanceof Error ? e.message : String(e)),
      );
    expect([await publish(a.core, 'two', 'a'), await publish(b.core, 'two', 'b')]).toEqual(['confirmed', 'confirmed']);
    // A consumer on n2 with a prefetch of 2 holds both, unacked: the queue has no ready message.
    const holder = new RecordingSink();
    const chH = testChannel(b.core);
    chH.qos(2, false);
    chH.consume('two', { noAck: false }, holder);
    await waitFor(() => holder.got.length === 2, 5000, 'both held');
    expect([await publish(a.core, 'two', 'c'), await publish(b.core, 'two', 'd')]).toEqual(['confirmed', 'confirmed']);
    expect(await publish(a.core, 'two', 'e')).toContain('message rejected by a full queue');
    // A burst on one node stops at the limit.
    ch.declareQueue('burst', { durable: true, arguments: { ...quorum, 'x-max-length': 50, 'x-overflow': 'reject-publish' } });
    await a.core.persistence.definitionsSettled();
    const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => publish(a.core, 'burst', `b${i}`)));
    expect(outcomes.filter((o) => o === 'confirmed').length).toBe(50);

    for (const [i, t] of ['1', '2', '3', '4'].entries()) expect(await publish(i % 2 === 0 ? a.core : b.core, 'last-two', t)).toBe('confirmed');
    const dead = new RecordingSink();
    testChannel(a.core).consume('dead', { noAck: true }, dead);
    await waitFor(() => dead.got.length === 2, 5000, 'the two oldest dead-lettered');
    expect(dead.got.map(body)).toEqual(['1', '2']);
    expect((dead.got[0]!.message.properties.headers?.['x-death'] as Array<Record<string, unknown>>)[0]!['reason']).toBe('maxlen');
    const sink = new RecordingSink();
    testChannel(b.core).consume('last-two', { noAck: true }, sink);
    await waitFor(() => sink.got.length === 2, 5000, 'the two newest delivered');
    expect(sink.got.map(body)).toEqual(['3', '4']);
  });

  test('with no consumer anywhere, a TTL with a dead-letter exchange dead-letters every message when it expires, oldest first (a delay queue)', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    const ch = testChannel(a.core);
    ch.declareQueue('work', { durable: true });
    ch.declareQueue('delay', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': 200, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'work' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('delay')?.replica !== undefined, 5000, 'delay on n2');
    const sent = Date.now();
    for (let i = 0; i < 6; i++) await testChannel(i % 2 === 0 ? a.core : b.core).publish({ exchange: '', routingKey: 'delay', properties: {}, body: Buffer.from(`d${i}`) }).settled;
    const work = new RecordingSink();
    testChannel(a.core).consume('work', { noAck: true }, work);
    await waitFor(() => work.got.length === 6, 5000, 'all six dead-lettered');
    expect(Date.now() - sent).toBeGreaterThanOrEqual(200);
    expect(work.got.map(body).sort()).toEqual(['d0', 'd1', 'd2', 'd3', 'd4', 'd5']);
    expect(work.got.every((d) => (d.message.properties.headers?.['x-death'] as Array<Record<string, unknown>>)[0]!['reason'] === 'expired')).toBe(true);
    expect(engine.logs.get(a.m.replicated.logName('/', 'delay'))!.entries.size).toBe(0);
  });

  test('a message whose expiration passed in the log is dead-lettered by the node that pulls it, not delivered; the others are', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    const ch = testChannel(a.core);
    ch.declareQueue('dead', { durable: true });
    ch.declareQueue('exp', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dead' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('exp')?.replica !== undefined, 5000, 'exp on n2');
    await ch.publish({ exchange: '', routingKey: 'exp', properties: { expiration: '100' }, body: Buffer.from('short') }).settled;
    await ch.publish({ exchange: '', routingKey: 'exp', properties: { expiration: '60000' }, body: Buffer.from('long') }).settled;
    await ch.publish({ exchange: '', routingKey: 'exp', properties: {}, body: Buffer.from('plain') }).settled;
    const since = Date.now();
    await waitFor(() => Date.now() - since > 150, 5000, 'the short expiration past');
    const sink = new RecordingSink();
    testChannel(b.core).consume('exp', { noAck: true }, sink);
    const dead = new RecordingSink();
    testChannel(a.core).consume('dead', { noAck: true }, dead);
    await waitFor(() => sink.got.length === 2 && dead.got.length === 1, 5000, 'delivered and dead-lettered');
    expect(sink.got.map(body)).toEqual(['long', 'plain']);
    expect(body(dead.got[0]!)).toBe('short');
    expect((dead.got[0]!.message.properties.headers?.['x-death'] as Array<Record<string, unknown>>)[0]!['reason']).toBe('expired');
    expect(b.m.replicated.stats.expired).toBe(1);
  });

  test('a node whose last consumer goes gives back what it had pulled but not delivered, at once', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    testChannel(a.core).declareQueue('g', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('g')?.replica !== undefined, 5000, 'g on n2');
    const pub = testChannel(a.core);
    await Promise.all(['1', '2', '3', '4'].map((s) => pub.publish({ exchange: '', routingKey: 'g', properties: {}, body: Buffer.from(s) }).settled));
    // n1's consumer has a prefetch of 4 but its sink is congested: the four wait in n1's queue.
    const stuck = new RecordingSink();
    stuck.congested = true;
    const chA = testChannel(a.core);
    chA.qos(4, false);
    const tag = chA.consume('g', { noAck: false }, stuck);
    const qA = a.core.vhosts.get('/')!.queues.get('g')!;
    await waitFor(() => qA.readyCount === 4, 5000, 'four pulled by n1');
    chA.cancel(tag);
    expect(qA.readyCount).toBe(0);
    const sink = new RecordingSink();
    testChannel(b.core).consume('g', { noAck: true }, sink);
    await waitFor(() => sink.got.length === 4, 5000, () => `delivered on n2: ${sink.got.length}`);
    expect(sink.got.map(body).sort()).toEqual(['1', '2', '3', '4']);
  });

  test("a replicated queue arriving from another node while the engine is away is kept, and served once it is back (no unhandled failure)", async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    testChannel(a.core).declareQueue('arrives', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    // n2's watch passes the declare on after this: its log cannot be opened then.
    engine.available = false;
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('arrives')?.replica !== undefined, 5000, 'arrives on n2');
    await new Promise((resolve) => setTimeout(resolve, 50));
    engine.available = true;
    const sink = new RecordingSink();
    testChannel(b.core).consume('arrives', { noAck: true }, sink);
    await testChannel(a.core).publish({ exchange: '', routingKey: 'arrives', properties: {}, body: Buffer.from('later') }).settled;
    await waitFor(() => sink.got.length === 1, 5000, 'delivered on n2');
    expect(body(sink.got[0]!)).toBe('later');
  });

  test('a message the log hands out again as if for the first time (its count lost) goes out as redelivered', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    testChannel(a.core).declareQueue('lost-count', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await testChannel(a.core).publish({ exchange: '', routingKey: 'lost-count', properties: {}, body: Buffer.from('once') }).settled;
    const sink = new RecordingSink();
    const ch = testChannel(a.core);
    ch.qos(5, false);
    ch.consume('lost-count', { noAck: false }, sink);
    await waitFor(() => sink.got.length === 1, 5000, 'first delivery');
    expect(sink.got[0]!.redelivered).toBe(false);
    // The engine forgets that it handed the message out (as a consumer leader elected anew may).
    const state = engine.logs.get(a.m.replicated.logName('/', 'lost-count'))!;
    const entry = [...state.entries.values()][0]!;
    clearTimeout(entry.timer);
    entry.timer = undefined;
    entry.deliveries = 0;
    entry.pending = false;
    for (const w of [...state.waiting]) w();
    await waitFor(() => sink.got.length === 2, 5000, 'second delivery');
    expect(body(sink.got[1]!)).toBe('once');
    expect(sink.got[1]!.redelivered).toBe(true);
    ch.ack(sink.got[0]!.deliveryTag);
    ch.ack(sink.got[1]!.deliveryTag);
  });

  test('an idle queue with a consumer waits on the log instead of polling it; a publish on another node reaches the consumer', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    testChannel(a.core).declareQueue('idle', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('idle')?.replica !== undefined, 5000, 'idle on n2');
    const sink = new RecordingSink();
    const ch = testChannel(b.core);
    ch.qos(10, false);
    ch.consume('idle', { noAck: false }, sink);
    const state = engine.logs.get(b.m.replicated.logName('/', 'idle'))!;
    await waitFor(() => state.waiting.size === 1, 5000, 'a pull waiting on the log');
    const before = state.pulls;
    await new Promise((resolve) => setTimeout(resolve, 1000));
    // One long poll covers the second (a 100 ms poll would have asked ten times).
    expect(state.pulls - before).toBeLessThanOrEqual(1);
    await testChannel(a.core).publish({ exchange: '', routingKey: 'idle', properties: {}, body: Buffer.from('woke') }).settled;
    await waitFor(() => sink.got.length === 1, 5000, 'delivered on n2');
    expect(body(sink.got[0]!)).toBe('woke');
    ch.ack(sink.got[0]!.deliveryTag);
    await waitFor(() => state.entries.size === 0, 5000, 'acked in the log');
  });

  test('basic.get on a node without consumers: an empty get pulls one message, which the next get returns', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    testChannel(a.core).declareQueue('gq', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.queues.get('gq')?.replica !== undefined, 5000, 'gq on n2');
    await testChannel(a.core).publish({ exchange: '', routingKey: 'gq', properties: {}, body: Buffer.from('got') }).settled;
    const ch = testChannel(b.core);
    const got = await waitFor(() => ch.get('gq', false), 5000, 'a get that returns the message');
    expect([got.delivery.message.body.toString(), got.delivery.redelivered]).toEqual(['got', false]);
    ch.ack(got.delivery.deliveryTag);
    await waitFor(() => engine.logs.get(b.m.replicated.logName('/', 'gq'))!.entries.size === 0, 5000, 'acked in the log');
    expect(ch.get('gq', true)).toBeNull();
  });
});
