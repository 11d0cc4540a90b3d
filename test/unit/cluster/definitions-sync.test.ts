import { describe, expect, test } from 'vitest';
import { MemoryEngine, bucketKey, type ClusterMembership } from '../../../src/cluster/index.js';
import { BrokerError, Core, ReplyCode, SETTLED } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { memoryNodes } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('test');

async function node(name: string, core = new Core()): Promise<{ core: Core; m: ClusterMembership }> {
  return { core, m: await nodes.join(engine, name, core) };
}

const vhostOf = (core: Core, name = '/') => core.vhosts.get(name)!;
const durable = { durable: true, autoDelete: false, arguments: {} };

function declareTopology(core: Core): void {
  const v = vhostOf(core);
  const x = v.declareExchange('orders', 'topic', { durable: true, autoDelete: false, internal: false, arguments: {} }, false);
  const q = v.declareQueue('billing', { ...durable, arguments: { 'x-max-length': 10 } }, false, 0);
  v.bind(x, q, 'order.*', {});
  core.auth.addUser('alice', 'secret', ['management']);
  core.auth.setPermission('/', 'alice', { configure: '', write: 'orders', read: '' });
  core.policies.set({ vhost: '/', name: 'cap', pattern: '^billing$', applyTo: 'queues', definition: { 'max-length': 5 }, priority: 1 });
}

describe('definitions replicated through the cluster bucket', () => {
  test('a node that joins later gets every definition the first node had', async () => {
    engine = new MemoryEngine();
    const first = new Core();
    declareTopology(first);
    await node('n1', first);
    const { core } = await node('n2');
    const v = vhostOf(core);
    expect(v.exchanges.get('orders')?.type).toBe('topic');
    expect(v.queues.get('billing')?.args['x-max-length']).toBe(10);
    expect([...v.exchanges.get('orders')!.bindings.values()].map((b) => [b.routingKey, b.destination.name])).toEqual([['order.*', 'billing']]);
    expect(core.auth.users.get('alice')?.tags).toEqual(['management']);
    expect(core.auth.permissions.get('/')?.get('alice')?.write).toBe('orders');
    expect(core.policies.list().map((p) => p.name)).toEqual(['cap']);
  });

  test('a declare on one node reaches the others, and its settle waits until the engine has it', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    vhostOf(a.core).declareQueue('jobs', durable, false, 0);
    const settled = a.core.persistence.definitionsSettled();
    expect(settled).not.toBe(SETTLED);
    await settled;
    const stored = engine.buckets.get('warren_test_definitions')!.entries.get(bucketKey(JSON.stringify(['q', '/', 'jobs'])));
    expect(stored).toBeDefined();
    await waitFor(() => vhostOf(b.core).queues.has('jobs'), 2000, 'queue on n2');
    expect(b.m.definitions.homeOf('/', 'jobs')).toBe('n1');
    expect(a.m.definitions.homeOf('/', 'jobs')).toBe('n1');
  });

  test('a catch-up on another node resolves once that node has every change written before it', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    vhostOf(a.core).declareQueue('session-q', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    // The watch has not passed the declare on to n2 yet; the catch-up waits for it.
    expect(vhostOf(b.core).queues.has('session-q')).toBe(false);
    await b.m.definitions.caughtUp();
    expect(vhostOf(b.core).queues.has('session-q')).toBe(true);
    const v = vhostOf(a.core);
    v.removeQueue(v.queues.get('session-q')!);
    await a.core.persistence.definitionsSettled();
    await Promise.all([b.m.definitions.caughtUp(), b.m.definitions.caughtUp()]);
    expect(vhostOf(b.core).queues.has('session-q')).toBe(false);
    // Catch-up keys are not definitions: n1 has nothing new to apply.
    expect(a.m.definitions.size).toBe(b.m.definitions.size);
  });

  test('deletes travel too: queue, binding, user, vhost', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    declareTopology(a.core);
    a.core.addVhost('staging');
    vhostOf(a.core, 'staging').declareQueue('tmp', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    const b = await node('n2');
    expect(vhostOf(b.core, 'staging').queues.has('tmp')).toBe(true);
    const v = vhostOf(b.core);
    v.unbind(v.exchanges.get('orders')!, v.queues.get('billing')!, 'order.*', {});
    b.core.auth.deleteUser('alice');
    v.removeQueue(v.queues.get('billing')!);
    b.core.vhosts.get('staging')!.removeAll();
    b.core.vhosts.delete('staging');
    b.core.auth.deleteVhost('staging');
    void b.core.persistence.definitionsChanged();
    await b.core.persistence.definitionsSettled();
    await waitFor(() => !vhostOf(a.core).queues.has('billing') && !a.core.vhosts.has('staging') && !a.core.auth.users.has('alice'), 2000, 'deletes on n1');
    expect(vhostOf(a.core).exchanges.get('orders')!.bindings.size).toBe(0);
    expect(vhostOf(a.core).exchanges.has('orders')).toBe(true);
  });

  test('a node back from an absence drops what was deleted meanwhile and takes what was added', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    vhostOf(a.core).declareQueue('old', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    // n2 as it comes back: its own copy still has 'old' (from its data directory).
    const returning = new Core();
    vhostOf(returning).declareQueue('old', durable, false, 0);
    vhostOf(a.core).removeQueue(vhostOf(a.core).queues.get('old')!);
    vhostOf(a.core).declareQueue('new', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    const b = await node('n2', returning);
    expect([...vhostOf(b.core).queues.keys()]).toEqual(['new']);
  });

  test("a node's own quick changes come back through the watch without undoing each other", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const v = vhostOf(a.core);
    // declare, delete, declare again in separate ticks, faster than the watch delivers
    v.declareQueue('flip', durable, false, 0);
    await new Promise((r) => setImmediate(r));
    v.removeQueue(v.queues.get('flip')!);
    await new Promise((r) => setImmediate(r));
    const q = v.declareQueue('flip', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    await waitFor(() => vhostOf(b.core).queues.has('flip'), 2000, 'queue on n2');
    await new Promise((r) => setTimeout(r, 50));
    expect(v.queues.get('flip')).toBe(q);
    expect(vhostOf(b.core).queues.has('flip')).toBe(true);
  });

  test('a change the engine does not take fails its settle with a 541', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    engine.available = false;
    vhostOf(a.core).declareQueue('lost', durable, false, 0);
    const err = await a.core.persistence.definitionsSettled().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe(ReplyCode.INTERNAL_ERROR);
  });

  test('a change of an existing definition the engine did not take is written again once it is back, and reaches the others', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    vhostOf(a.core).declareQueue('late', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    await waitFor(() => vhostOf(b.core).queues.has('late'), 2000, 'late on n2');
    engine.available = false;
    vhostOf(a.core).deleteQueue('late', false, false, 0);
    await expect(a.core.persistence.definitionsSettled()).rejects.toBeInstanceOf(BrokerError);
    engine.available = true;
    await waitFor(() => !vhostOf(b.core).queues.has('late'), 3000, 'late gone on n2');
  });

  test('a new exchange, queue and binding the engine refused are undone on the node that declared them', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const v = vhostOf(a.core);
    engine.available = false;
    const x = v.declareExchange('refused-x', 'direct', { durable: true, autoDelete: false, internal: false, arguments: {} }, false);
    const q = v.declareQueue('refused-q', durable, false, 0);
    v.bind(x, q, 'k', {});
    const err = await a.core.persistence.definitionsSettled().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as BrokerError).code).toBe(ReplyCode.INTERNAL_ERROR);
    // Undone before the failure is reported: a passive declare says 404, as on every other node.
    expect(v.exchanges.has('refused-x')).toBe(false);
    expect(v.queues.has('refused-q')).toBe(false);
    expect(() => v.declareQueue('refused-q', durable, true, 0)).toThrow(expect.objectContaining({ code: ReplyCode.NOT_FOUND }));
    expect(() => v.declareExchange('refused-x', 'direct', { durable: true, autoDelete: false, internal: false, arguments: {} }, true)).toThrow(
      expect.objectContaining({ code: ReplyCode.NOT_FOUND }),
    );
    // Not written again once the engine is back: the cluster never has it.
    engine.available = true;
    vhostOf(a.core).declareQueue('after', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    await b.m.definitions.caughtUp();
    expect(vhostOf(b.core).queues.has('after')).toBe(true);
    await new Promise((r) => setTimeout(r, 600));
    const bucket = engine.buckets.get('warren_test_definitions')!.entries;
    expect(bucket.has(bucketKey(JSON.stringify(['q', '/', 'refused-q'])))).toBe(false);
    expect(bucket.has(bucketKey(JSON.stringify(['x', '/', 'refused-x'])))).toBe(false);
    expect(vhostOf(b.core).queues.has('refused-q')).toBe(false);
    expect(v.queues.has('refused-q')).toBe(false);
  });

  test('a refused declare of a definition the cluster has leaves it in place', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const v = vhostOf(a.core);
    v.declareQueue('kept-q', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    engine.available = false;
    v.declareQueue('kept-q', durable, false, 0);
    v.declareQueue('new-q', durable, false, 0);
    await expect(a.core.persistence.definitionsSettled()).rejects.toBeInstanceOf(BrokerError);
    expect(v.queues.has('kept-q')).toBe(true);
    expect(v.queues.has('new-q')).toBe(false);
  });

  test('a non-exclusive transient queue is known on every node as a stand-in, not a definition; an exclusive one stays on its node', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    vhostOf(a.core).declareQueue('scratch', { durable: false, autoDelete: false, arguments: {} }, false, 0);
    vhostOf(a.core).declareQueue('mine', { durable: false, exclusive: true, arguments: {} }, false, 7);
    vhostOf(a.core).declareQueue('kept', durable, false, 0);
    await a.core.persistence.definitionsSettled();
    await waitFor(() => vhostOf(b.core).queues.has('kept'), 2000, 'durable queue on n2');
    const standIn = await waitFor(() => vhostOf(b.core).queues.get('scratch'), 2000, 'transient queue on n2');
    expect(standIn.durable).toBe(false);
    expect(b.m.homeOf('/', 'scratch')).toBe('n1');
    expect(b.m.definitions.homeOf('/', 'scratch')).toBeUndefined();
    expect(vhostOf(b.core).queues.has('mine')).toBe(false);
    vhostOf(a.core).deleteQueue('scratch', false, false, 0);
    await waitFor(() => !vhostOf(b.core).queues.has('scratch'), 2000, 'transient queue gone on n2');
  });
});

describe('node registry', () => {
  test('lists every node, and one whose heartbeat stops as not running after the TTL', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    await waitFor(() => a.m.nodes().filter((n) => n.running).length === 2, 2000, 'both running');
    expect(a.m.nodes().map((n) => n.name)).toEqual(['n1', 'n2']);
    // n2 dies without a word: its heartbeat timer stops, nothing is deleted.
    (b.m.registry as unknown as { timer: NodeJS.Timeout }).timer.close();
    await waitFor(() => a.m.nodes().find((n) => n.name === 'n2')?.running === false, 3000, 'n2 not running');
    expect(a.m.nodes().find((n) => n.name === 'n2')!.uptime).toBe(0);
  });

  test('a clean stop shows as not running at once', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    await waitFor(() => a.m.nodes().find((n) => n.name === 'n2')?.running, 2000, 'n2 running');
    await b.m.stop();
    await waitFor(() => a.m.nodes().find((n) => n.name === 'n2')?.running === false, 150, 'n2 stopped');
  });

  test('a restarted node takes its name over from its dead predecessor once the heartbeat is stale', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const dead = await node('n2');
    (dead.m.registry as unknown as { timer: NodeJS.Timeout }).timer.close(); // killed: no more heartbeats
    const t0 = Date.now();
    const again = await node('n2');
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(again.m.registry.instance).not.toBe(dead.m.registry.instance);
    await waitFor(() => a.m.nodes().find((n) => n.name === 'n2')?.running, 2000, 'n2 running again');
  });

  test('a second live process with the same node name is refused', async () => {
    engine = new MemoryEngine();
    await node('n1');
    await expect(node('n1')).rejects.toThrow(/node name 'n1' is in use/);
  });
});
