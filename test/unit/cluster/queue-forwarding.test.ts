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

/** n1 the home of `names` (declared there), n2 seeing them placed; n2 joined with `extra`. */
async function homedOnN1(names: { name: string; args?: Record<string, unknown> }[], extra: Parameters<typeof nodes.join>[3] = {}): Promise<{ a: { core: Core; m: ClusterMembership }; b: { core: Core; m: ClusterMembership } }> {
  engine = new MemoryEngine();
  const a = await node('n1');
  const core = new Core();
  // These batches are answered, however loaded the machine: a timeout is not what they test.
  const b = { core, m: await nodes.join(engine, 'n2', core, { forwardTimeoutMs: 5000, ...extra }) };
  const ch1 = testChannel(a.core);
  for (const q of names) ch1.declareQueue(q.name, { durable: true, arguments: q.args ?? {} });
  await a.core.persistence.definitionsSettled();
  await waitFor(() => names.every((q) => b.core.vhosts.get('/')!.queues.get(q.name)?.forwarder !== undefined), 2000, 'queues placed on n2');
  return { a, b };
}

/** Counts the bus messages sent on a subject (a listener beside the node that answers them). */
function countOn(subject: string): { n: number } {
  const seen = { n: 0 };
  engine.connect('spy').bus.subscribe(subject, () => seen.n++);
  return seen;
}

const outcome = (p: Promise<void>): Promise<string> =>
  p.then(
    () => 'ok',
    (e: unknown) => (e instanceof BrokerError ? `${e.code}` : 'error'),
  );

describe('forwarding batches the publishes of one event-loop turn', () => {
  test('publishes to one home in one turn travel as one bus message and land in publish order', async () => {
    const { a, b } = await homedOnN1([{ name: 'q1' }, { name: 'q2' }]);
    const sent = countOn('warren.t.home.n1');
    const ch2 = testChannel(b.core);
    const results = [];
    for (let i = 0; i < 200; i++) results.push(ch2.publish({ exchange: '', routingKey: i % 2 === 0 ? 'q1' : 'q2', properties: {}, body: Buffer.from(`m${i}`) }));
    await Promise.all(results.map((r) => r.settled));
    expect(b.m.forwarding.stats.forwarded).toBe(200);
    expect(b.m.forwarding.stats.batches).toBe(1);
    await waitFor(() => sent.n > 0, 2000, 'the batch seen on the bus');
    expect(sent.n).toBe(1);
    expect(b.m.forwarding.inFlight).toBe(0);
    expect(b.m.forwarding.inFlightBytes('n1')).toBe(0);
    const bodies = (name: string): string[] => {
      const q = a.core.vhosts.get('/')!.queues.get(name)!;
      const out: string[] = [];
      for (let t = q.take(true); t !== undefined; t = q.take(true)) out.push(t.entry.msg.body.toString());
      return out;
    };
    const expected = (odd: number): string[] => Array.from({ length: 100 }, (_, k) => `m${2 * k + odd}`);
    expect(bodies('q1')).toEqual(expected(0));
    expect(bodies('q2')).toEqual(expected(1));
  });

  test('a turn with more than a batch holds is sent in several, still in order', async () => {
    const { a, b } = await homedOnN1([{ name: 'big' }]);
    const ch2 = testChannel(b.core);
    const n = 2500;
    const results = [];
    for (let i = 0; i < n; i++) results.push(ch2.publish({ exchange: '', routingKey: 'big', properties: {}, body: Buffer.from(String(i)) }));
    await Promise.all(results.map((r) => r.settled));
    expect(b.m.forwarding.stats.batches).toBe(Math.ceil(n / 1024));
    const q = a.core.vhosts.get('/')!.queues.get('big')!;
    const got: number[] = [];
    for (let t = q.take(true); t !== undefined; t = q.take(true)) got.push(Number(t.entry.msg.body.toString()));
    expect(got).toEqual(Array.from({ length: n }, (_, i) => i));
  });

  test('each message of a batch gets its own outcome: one the home refuses fails alone', async () => {
    const { a, b } = await homedOnN1([{ name: 'open' }, { name: 'full', args: { 'x-max-length': 1, 'x-overflow': 'reject-publish' } }]);
    const ch2 = testChannel(b.core);
    const to = ['full', 'open', 'full', 'open', 'full'];
    const results = to.map((rk, i) => ch2.publish({ exchange: '', routingKey: rk, properties: {}, body: Buffer.from(`x${i}`) }));
    const outcomes = await Promise.all(results.map((r) => outcome(r.settled)));
    expect(b.m.forwarding.stats.batches).toBe(1);
    // The first message to 'full' fits; the next two are refused there (reject-publish).
    const refused = outcomes.filter((o) => o !== 'ok');
    expect(outcomes.map((o, i) => (o === 'ok' ? to[i] : 'refused'))).toEqual(['full', 'open', 'refused', 'open', 'refused']);
    expect(new Set(refused).size).toBe(1);
    expect(b.m.forwarding.stats.failed).toBe(2);
    expect(a.core.vhosts.get('/')!.queues.get('open')!.readyCount).toBe(2);
    expect(a.core.vhosts.get('/')!.queues.get('full')!.readyCount).toBe(1);
  });

  test('with the home gone, every message of the batch fails naming its own queue', async () => {
    const { a, b } = await homedOnN1([{ name: 'left' }, { name: 'right' }]);
    await a.m.stop();
    nodes.forget(a.m);
    const ch2 = testChannel(b.core);
    const results = ['left', 'right', 'left'].map((rk) => ch2.publish({ exchange: '', routingKey: rk, properties: {}, body: Buffer.from(rk) }));
    const errors = await Promise.all(results.map((r) => r.settled.then(() => undefined, (e: unknown) => e)));
    expect(errors.map((e) => (e instanceof BrokerError ? e.text.match(/^queue '(\w+)' is unavailable: its home node 'n1' is not running$/)?.[1] : e))).toEqual(['left', 'right', 'left']);
    expect(b.m.forwarding.inFlightBytes('n1')).toBe(0);
  });

  test("above the in-flight bound the node's publishers are held, without a resource alarm, until the home answers", async () => {
    const { a, b } = await homedOnN1([{ name: 'slow' }], { forwardMaxInFlightBytes: 4096 });
    const changes: [boolean, string][] = [];
    b.core.alarms.on((blocked, reason) => changes.push([blocked, reason]));
    const ch2 = testChannel(b.core);
    const body = Buffer.alloc(1000, 1);
    const results = [];
    for (let i = 0; i < 3; i++) results.push(ch2.publish({ exchange: '', routingKey: 'slow', properties: {}, body }));
    expect(b.core.alarms.blocked).toBe(false);
    for (let i = 0; i < 3; i++) results.push(ch2.publish({ exchange: '', routingKey: 'slow', properties: {}, body }));
    expect(b.m.forwarding.inFlightBytes('n1')).toBeGreaterThan(4096);
    expect(b.core.alarms.blocked).toBe(true);
    expect(b.core.alarms.active).toEqual([]);
    await Promise.all(results.map((r) => r.settled));
    expect(b.core.alarms.blocked).toBe(false);
    expect(changes).toEqual([
      [true, "cluster forwarding to node 'n1' is behind"],
      [false, ''],
    ]);
    expect(b.m.forwarding.stats.held).toBe(1);
    expect(a.core.vhosts.get('/')!.queues.get('slow')!.readyCount).toBe(6);
  });
});
