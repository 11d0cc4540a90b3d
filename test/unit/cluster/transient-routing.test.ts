import { describe, expect, test } from 'vitest';
import { encodeKey, encodeToken, interestSubjects, MemoryEngine, TransientRouting, type ClusterBus, type ClusterMembership } from '../../../src/cluster/index.js';
import { Core } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, silentLog, testChannel } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('t');

async function node(name: string): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  return { core, m: await nodes.join(engine, name, core) };
}

const BASE = 'warren.t.r._2f.amq_2etopic';

describe('subjects for keys and patterns', () => {
  test('a word is one token: plain words as they are, every other byte escaped, the empty word as _', () => {
    expect(encodeToken('abc-XYZ09')).toBe('abc-XYZ09');
    expect(encodeToken('')).toBe('_');
    expect(encodeToken('_')).toBe('_5f');
    expect(encodeToken('a b*>')).toBe('a_20b_2a_3e');
    expect(encodeToken('é')).toBe('_c3_a9');
    expect(encodeToken('/')).toBe('_2f');
    expect(encodeKey('a.b.c')).toBe('a.b.c');
    expect(encodeKey('')).toBe('_');
    expect(encodeKey('a..b.')).toBe('a._.b._');
    expect(encodeKey('sensors/1.temp c')).toBe('sensors_2f1.temp_20c');
  });

  test('direct: the exact key; fanout and headers: the whole exchange', () => {
    expect(interestSubjects(BASE, 'direct', 'a.*.#')).toEqual([`${BASE}.a._2a._23`]);
    expect(interestSubjects(BASE, 'fanout', 'anything')).toEqual([`${BASE}.>`]);
    expect(interestSubjects(BASE, 'headers', '')).toEqual([`${BASE}.>`]);
  });

  test('topic: * as *, # at the end as the prefix and prefix.>, # in the middle wider, # first the whole exchange', () => {
    expect(interestSubjects(BASE, 'topic', 'a.*.c')).toEqual([`${BASE}.a.*.c`]);
    expect(interestSubjects(BASE, 'topic', 'a.#')).toEqual([`${BASE}.a`, `${BASE}.a.>`]);
    expect(interestSubjects(BASE, 'topic', 'a.*.#.z')).toEqual([`${BASE}.a.*`, `${BASE}.a.*.>`]);
    expect(interestSubjects(BASE, 'topic', '#')).toEqual([`${BASE}.>`]);
    expect(interestSubjects(BASE, 'topic', '#.z')).toEqual([`${BASE}.>`]);
    expect(interestSubjects(BASE, 'topic', 'a b.c*')).toEqual([`${BASE}.a_20b.c_2a`]);
  });
});

describe('transient subscribers across nodes (memory engine)', () => {
  test('an exclusive queue on n2 bound twice gets a publish on n1 once; a durable queue is not fed twice', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const ch2 = testChannel(b.core);
    const { queue } = ch2.declareQueue('', { exclusive: true });
    ch2.bindQueue(queue, 'amq.topic', 'a.*.c');
    ch2.bindQueue(queue, 'amq.topic', 'a.#');
    const sink = new RecordingSink();
    ch2.consume(queue, { noAck: true }, sink);
    expect(b.m.transient.subjects().sort()).toEqual([`${BASE}.a`, `${BASE}.a.*.c`, `${BASE}.a.>`, `warren.t.r._2f._.${encodeKey(queue)}`].sort());

    await waitFor(() => a.m.transient.remoteInterest('/', 'amq.topic') && a.m.transient.remoteInterest('/', ''), 2000, "n2's interest seen by n1");
    expect(a.m.transient.remoteInterest('/', 'amq.fanout')).toBe(false);
    const ch1 = testChannel(a.core);
    ch1.publish({ exchange: 'amq.topic', routingKey: 'a.b.c', properties: {}, body: Buffer.from('one') });
    ch1.publish({ exchange: 'amq.topic', routingKey: 'x.y', properties: {}, body: Buffer.from('none') });
    ch1.publish({ exchange: 'amq.topic', routingKey: 'a', properties: {}, body: Buffer.from('two') });
    await waitFor(() => sink.got.length >= 2, 2000, 'deliveries on n2');
    ch1.publish({ exchange: '', routingKey: queue, properties: {}, body: Buffer.from('three') });
    await waitFor(() => sink.got.length >= 3, 2000, 'default exchange delivery on n2');
    expect(sink.got.map((d) => d.message.body.toString())).toEqual(['one', 'two', 'three']);
    expect(b.m.transient.stats.duplicates).toBeGreaterThan(0);
    // What n2 got from the bus it routed, and sent on to nobody.
    expect(b.m.transient.stats.sent).toBe(0);
    expect(a.m.transient.stats.sent).toBe(4);
  });

  test('a bus that refuses (its connection closed) fails neither a bind nor a publish', async () => {
    const core = new Core();
    const refusing: ClusterBus = {
      publish: () => {
        throw new Error('closed');
      },
      subscribe: () => {
        throw new Error('closed');
      },
      request: () => Promise.reject(new Error('closed')),
    };
    const relay = new TransientRouting(core, refusing, 't', 'n1', silentLog);
    await relay.start();
    const ch = testChannel(core);
    const q = ch.declareQueue('', { exclusive: true }).queue;
    ch.bindQueue(q, 'amq.topic', 'x.#');
    const sink = new RecordingSink();
    ch.consume(q, { noAck: true }, sink);
    expect(ch.publish({ exchange: 'amq.topic', routingKey: 'x.y', properties: {}, body: Buffer.from('local') }).routed).toBe(1);
    await waitFor(() => sink.got.length === 1, 2000, 'the local delivery');
    expect(relay.stats.dropped).toBe(1);
    ch.unbindQueue(q, 'amq.topic', 'x.#');
    await relay.stop();
    expect(core.relay).toBeUndefined();
  });

  test('one subscription per subject however many bindings; the last unbind drops it', async () => {
    engine = new MemoryEngine();
    const b = await node('n2');
    const ch = testChannel(b.core);
    const q1 = ch.declareQueue('', { exclusive: true }).queue;
    const q2 = ch.declareQueue('', { exclusive: true }).queue;
    ch.bindQueue(q1, 'amq.direct', 'k');
    ch.bindQueue(q2, 'amq.direct', 'k');
    const subject = 'warren.t.r._2f.amq_2edirect.k';
    expect(b.m.transient.subjects().filter((s) => s === subject)).toHaveLength(1);
    ch.unbindQueue(q1, 'amq.direct', 'k');
    expect(b.m.transient.subjects()).toContain(subject);
    ch.deleteQueue(q2, false, false);
    expect(b.m.transient.subjects()).not.toContain(subject);
    expect(b.m.transient.subjects()).toContain(`warren.t.r._2f._.${encodeKey(q1)}`);
  });

  test('a publish on an exchange no other node listens on is not sent; interest comes and goes with the bindings', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const ch1 = testChannel(a.core);
    ch1.publish({ exchange: 'amq.direct', routingKey: 'k', properties: {}, body: Buffer.from('nobody') });
    expect(a.m.transient.stats).toMatchObject({ sent: 0, skipped: 1 });
    const ch2 = testChannel(b.core);
    const q = ch2.declareQueue('', { exclusive: true }).queue;
    ch2.bindQueue(q, 'amq.direct', 'k');
    ch2.bindQueue(q, 'amq.direct', 'k2');
    const sink = new RecordingSink();
    ch2.consume(q, { noAck: true }, sink);
    await waitFor(() => a.m.transient.remoteInterest('/', 'amq.direct'), 2000, "n2's interest seen by n1");
    ch1.publish({ exchange: 'amq.direct', routingKey: 'k', properties: {}, body: Buffer.from('one') });
    await waitFor(() => sink.got.length === 1, 2000, 'the delivery on n2');
    ch2.unbindQueue(q, 'amq.direct', 'k');
    expect(b.m.transient.subjects()).toContain('warren.t.r._2f.amq_2edirect.k2');
    ch2.unbindQueue(q, 'amq.direct', 'k2');
    await waitFor(() => !a.m.transient.remoteInterest('/', 'amq.direct'), 2000, "n2's interest withdrawn");
    // A node that stops withdraws the rest (its queue on the default exchange).
    expect(a.m.transient.remoteInterest('/', '')).toBe(true);
    await b.m.stop();
    await waitFor(() => !a.m.transient.remoteInterest('/', ''), 2000, 'interest of a stopped node withdrawn');
  });

  test('durable queues are left to forwarding: a message from another node never reaches them', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const ch1 = testChannel(a.core);
    ch1.declareQueue('audit', { durable: true });
    ch1.bindQueue('audit', 'amq.fanout', '');
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.core.vhosts.get('/')!.exchanges.get('amq.fanout')!.bindings.size === 1, 2000, 'binding on n2');
    const ch2 = testChannel(b.core);
    const t = ch2.declareQueue('', { exclusive: true }).queue;
    ch2.bindQueue(t, 'amq.fanout', '');
    const sink = new RecordingSink();
    ch2.consume(t, { noAck: true }, sink);
    await waitFor(() => a.m.transient.remoteInterest('/', 'amq.fanout'), 2000, "n2's interest seen by n1");
    const r = ch1.publish({ exchange: 'amq.fanout', routingKey: '', properties: {}, body: Buffer.from('x') });
    expect(r.routed).toBe(1);
    await waitFor(() => sink.got.length === 1, 2000, 'transient delivery on n2');
    expect(a.core.vhosts.get('/')!.queues.get('audit')!.readyCount).toBe(1);
    expect(b.core.vhosts.get('/')!.queues.get('audit')!.readyCount).toBe(0);
  });
});
