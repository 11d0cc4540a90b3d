import { AMQPClient } from '@cloudamqp/amqp-client';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startNatsServers } from '../../src/cluster/dev-cluster.js';
import { waitFor } from '../helpers/broker.js';
import { spawnNode, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { http } from '../helpers/management.js';
import { runWarren } from '../helpers/warren-process.js';

interface NodeRow {
  name: string;
  running: boolean;
  mem_used: number;
  uptime: number;
}

const nodesOn = async (port: number): Promise<NodeRow[]> => (await http<NodeRow[]>(port, 'GET', '/api/nodes')).body;

describe('three Warren nodes on three clustered nats-servers', { timeout: 60_000 }, () => {
  let cluster: TestCluster;

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    await cluster.start('n1');
    await Promise.all([cluster.start('n2'), cluster.start('n3')]);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  const port = (name: string, kind: 'amqp' | 'http' = 'http'): number => {
    const n = cluster.nodes.get(name)!;
    return kind === 'amqp' ? n.amqpPort : n.httpPort;
  };

  test('a queue, exchange and binding declared over AMQP on n1 are there on n2 (passive declare) and n3 (management API)', async () => {
    const c1 = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${port('n1', 'amqp')}`).connect();
    const ch1 = await c1.channel();
    await ch1.exchangeDeclare('orders', 'topic', { durable: true });
    await ch1.queueDeclare('billing', { durable: true }, { 'x-max-length': 100 });
    await ch1.queueBind('billing', 'orders', 'order.*');
    await c1.close();

    // The visibility window: n2 has it once its watch has delivered it.
    await waitFor(async () => (await http(port('n2'), 'GET', '/api/queues/%2F/billing')).status === 200, 5000, 'billing on n2');
    const c2 = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${port('n2', 'amqp')}`).connect();
    const ch2 = await c2.channel();
    const ok = await ch2.queueDeclare('billing', { passive: true });
    expect(ok.name).toBe('billing');
    await ch2.exchangeDeclare('orders', 'topic', { passive: true });
    await c2.close();

    await waitFor(async () => (await http<unknown[]>(port('n3'), 'GET', '/api/exchanges/%2F/orders/bindings/source')).body.length === 1, 5000, 'binding on n3');
    const q = await http<{ arguments: Record<string, unknown>; durable: boolean; node: string }>(port('n3'), 'GET', '/api/queues/%2F/billing');
    expect(q.body.durable).toBe(true);
    expect(q.body.node).toBe('n1'); // its home: the node that declared it
    expect(q.body.arguments['x-max-length']).toBe(100);
    const bindings = await http<{ destination: string; routing_key: string }[]>(port('n3'), 'GET', '/api/exchanges/%2F/orders/bindings/source');
    expect(bindings.body.map((b) => [b.destination, b.routing_key])).toEqual([['billing', 'order.*']]);
  });

  test('a user and a vhost added on n3 through the management API can log in on n1', async () => {
    expect((await http(port('n3'), 'PUT', '/api/vhosts/shop')).status).toBeLessThan(300);
    expect((await http(port('n3'), 'PUT', '/api/users/carol', { body: { password: 'pw', tags: '' } })).status).toBeLessThan(300);
    expect((await http(port('n3'), 'PUT', '/api/permissions/shop/carol', { body: { configure: '.*', write: '.*', read: '.*' } })).status).toBeLessThan(300);
    expect((await http(port('n3'), 'PUT', '/api/permissions/shop/guest', { body: { configure: '.*', write: '.*', read: '.*' } })).status).toBeLessThan(300);
    await waitFor(async () => (await http(port('n1'), 'GET', '/api/permissions/shop/guest')).status === 200, 5000, 'permissions on n1');
    const c = await new AMQPClient(`amqp://carol:pw@127.0.0.1:${port('n1', 'amqp')}/shop`).connect();
    const ch = await c.channel();
    await ch.queueDeclare('cart', { durable: true });
    await c.close();
    await waitFor(async () => (await http(port('n2'), 'GET', '/api/queues/shop/cart')).status === 200, 5000, 'cart on n2');
  });

  test('/api/nodes lists every node with name, running, memory and uptime; /api/overview names this node', async () => {
    await waitFor(async () => (await nodesOn(port('n1'))).filter((n) => n.running).length === 3, 5000, 'three running');
    const rows = await nodesOn(port('n1'));
    expect(rows.map((n) => n.name)).toEqual(['n1', 'n2', 'n3']);
    for (const n of rows) {
      expect(n.running).toBe(true);
      expect(n.mem_used).toBeGreaterThan(0);
      expect(n.uptime).toBeGreaterThan(0);
    }
    const ov = await http<{ node: string; cluster_name: string }>(port('n2'), 'GET', '/api/overview');
    expect([ov.body.node, ov.body.cluster_name]).toEqual(['n2', 'test']);
    const status = await runWarren(['cluster', 'status', '--url', `http://127.0.0.1:${port('n1')}`]);
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('3 of 3 nodes running');
    expect(status.stdout).toMatch(/n2\s+running/);
  });

  test('a SIGKILLed node shows running:false after the heartbeat TTL; started again on its data directory, it is back in step', async () => {
    await cluster.kill('n3');
    await waitFor(async () => (await nodesOn(port('n1'))).find((n) => n.name === 'n3')?.running === false, 10_000, 'n3 not running');
    // Each node sees the heartbeat expire on its own: n2 may come a moment after n1.
    await waitFor(async () => (await nodesOn(port('n2'))).find((n) => n.name === 'n3')?.running === false, 10_000, 'n3 not running, as n2 sees it');
    const rows = await nodesOn(port('n2'));
    expect(rows.map((n) => [n.name, n.running])).toEqual([['n1', true], ['n2', true], ['n3', false]]);
    // Meanwhile: one queue goes, one comes.
    expect((await http(port('n1'), 'DELETE', '/api/queues/shop/cart')).status).toBeLessThan(300);
    expect((await http(port('n1'), 'PUT', '/api/queues/%2F/while-away', { body: { durable: true } })).status).toBeLessThan(300);
    await cluster.start('n3');
    const q = await http(port('n3'), 'GET', '/api/queues/shop/cart');
    expect(q.status).toBe(404);
    expect((await http(port('n3'), 'GET', '/api/queues/%2F/while-away')).status).toBe(200);
    await waitFor(async () => (await nodesOn(port('n1'))).find((n) => n.name === 'n3')?.running === true, 5000, 'n3 running again');
  });

  test('a node killed and restarted at once (as by a supervisor) takes its name back', async () => {
    await cluster.kill('n2');
    const again = await cluster.start('n2');
    await waitFor(async () => (await nodesOn(port('n1'))).find((n) => n.name === 'n2')?.running === true, 10_000, 'n2 running again');
    expect((await http(again.httpPort, 'GET', '/api/queues/%2F/billing')).status).toBe(200);
  });

  // On a loaded machine a node whose server was killed can take tens of seconds to reconnect and
  // resume its watch (docs/cluster.md): the waits allow for it.
  test('with one of three nats-servers killed, changes still reach every node', { timeout: 180_000 }, async () => {
    await cluster.nats.kill(0);
    try {
      // Nodes connected to s1 reconnect to another server; the buckets (3 replicas) keep a majority.
      await waitFor(
        async () => (await http(port('n2'), 'PUT', '/api/queues/%2F/after-s1', { body: { durable: true } })).status < 300,
        20_000,
        'a declare accepted without s1',
      );
      for (const n of ['n1', 'n3']) {
        await waitFor(async () => (await http(port(n), 'GET', '/api/queues/%2F/after-s1')).status === 200, 45_000, `after-s1 on ${n}`);
      }
    } finally {
      await cluster.nats.restart(0);
    }
    // Back to three servers: changes keep flowing (the later tests need a settled cluster).
    await waitFor(async () => (await http(port('n3'), 'PUT', '/api/queues/%2F/after-restart', { body: { durable: true } })).status < 300, 30_000, 'a declare after s1 is back');
    for (const n of ['n1', 'n2']) {
      await waitFor(async () => (await http(port(n), 'GET', '/api/queues/%2F/after-restart')).status === 200, 30_000, `after-restart on ${n}`);
    }
  });

  test('a node that joins later gets every definition', async () => {
    const n4 = await cluster.start('n4');
    for (const path of ['/api/queues/%2F/billing', '/api/exchanges/%2F/orders', '/api/vhosts/shop', '/api/users/carol', '/api/queues/%2F/while-away']) {
      expect([path, (await http(n4.httpPort, 'GET', path)).status]).toEqual([path, 200]);
    }
  });

  test('a publish on n2 to a classic queue declared on n4 is confirmed once n4 has it; with n4 down it is nacked', async () => {
    const c4 = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${port('n4', 'amqp')}`).connect();
    const ch4 = await c4.channel();
    await ch4.queueDeclare('home-n4', { durable: true });
    await waitFor(async () => (await http(port('n2'), 'GET', '/api/queues/%2F/home-n4')).status === 200, 5000, 'home-n4 on n2');
    await waitFor(
      async () => (await http<Array<{ name: string; running: boolean }>>(port('n2'), 'GET', '/api/nodes')).body.some((n) => n.name === 'n4' && n.running),
      10_000,
      'n4 running as n2 sees it',
    );
    const c2 = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${port('n2', 'amqp')}`).connect();
    const ch2 = await c2.channel();
    await ch2.confirmSelect();
    for (let i = 0; i < 5; i++) await ch2.basicPublish('', 'home-n4', `m${i}`, { deliveryMode: 2 });
    const got: string[] = [];
    for (let i = 0; i < 5; i++) got.push((await ch4.basicGet('home-n4', { noAck: true }))?.bodyToString() ?? '');
    expect(got).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect((await http<{ messages: number }>(port('n2'), 'GET', '/api/queues/%2F/home-n4')).body.messages).toBe(0);
    await c4.close();

    await cluster.kill('n4');
    const nacked = await ch2.basicPublish('', 'home-n4', 'lost', { deliveryMode: 2 }).then(
      () => 'ack',
      (e: unknown) => (e instanceof Error ? e.message : String(e)),
    );
    expect(nacked).not.toBe('ack');
    await c2.close();
  });

  test('the node warns that this nats-server cannot make acknowledgements durable', () => {
    expect(cluster.nodes.get('n1')!.stderr.join('')).toMatch(/before 2\.10 JetStream has no sync_interval/);
  });
});

describe('joining needs JetStream', { timeout: 30_000 }, () => {
  test('a node refuses to start against a nats-server without JetStream, saying why', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-nojs-'));
    const nats = await startNatsServers({ count: 1, dir: join(dir, 'nats'), jetstream: false });
    try {
      const err = await spawnNode(nats.url, 'n1', join(dir, 'n1')).then(
        () => undefined,
        (e: unknown) => (e instanceof Error ? e.message : String(e)),
      );
      expect(err).toMatch(/exited with 1 before it was ready/);
      expect(err).toMatch(/cannot join the cluster: NATS server s1 \(2\.9\.10\) .* has no JetStream/);
      expect(err).toMatch(/-js/);
    } finally {
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
