import { AMQPClient } from '@cloudamqp/amqp-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';
import { http } from '../helpers/management.js';

type Row = Record<string, unknown>;

/** The management name of a client's connection: its address as the broker sees it. */
const nameOf = (c: AMQPClient): string => `127.0.0.1:${c.socket!.localPort!}`;

describe('management across two cluster nodes (real nats-server, nodes as processes)', { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  const clients: AMQPClient[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(1);
    // n2 has a memory high watermark of 1000 bytes: its memory alarm is on from the start.
    await Promise.all([cluster.start('n1'), cluster.start('n2', ['--memory-high-watermark', '1000'])]);
  }, 60_000);

  afterAll(async () => {
    // Not awaited: a blocked connection is not read, so its close-ok never comes; stopping the nodes ends it.
    for (const c of clients) if (!c.closed) void c.close().catch(() => undefined);
    const n2 = cluster?.nodes.get('n2');
    if (n2 !== undefined && n2.child.exitCode === null) n2.child.kill('SIGCONT');
    await cluster?.stop();
  });

  const http1 = (): number => cluster.nodes.get('n1')!.httpPort;
  const connect = async (node: string): Promise<AMQPClient> => {
    const c = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${cluster.nodes.get(node)!.amqpPort}`).connect();
    clients.push(c);
    return c;
  };

  test('connections, channels, consumers and queues of both nodes are listed by one, each with its node', async () => {
    const a = await connect('n1');
    const b = await connect('n2');
    await a.channel();
    const chB = await b.channel();
    const q = await chB.queueDeclare('', { exclusive: true });
    await chB.basicConsume(q.name, { noAck: true }, () => undefined);

    const conns = await waitFor(async () => {
      const r = await http<Row[]>(http1(), 'GET', '/api/connections');
      return r.body.length >= 2 ? r : undefined;
    }, 10_000, 'both connections listed');
    expect(conns.headers['x-nodes-not-answering']).toBeUndefined();
    const byName = new Map(conns.body.map((r) => [r['name'], r['node']]));
    expect(byName.get(nameOf(a))).toBe('n1');
    expect(byName.get(nameOf(b))).toBe('n2');
    const inVhost = await http<Row[]>(http1(), 'GET', '/api/vhosts/%2F/connections');
    expect(inVhost.body.map((r) => r['name'])).toContain(nameOf(b));
    const one = await http<Row>(http1(), 'GET', `/api/connections/${encodeURIComponent(nameOf(b))}`);
    expect(one.status).toBe(200);
    expect(one.body['node']).toBe('n2');
    const ofConn = await http<Row[]>(http1(), 'GET', `/api/connections/${encodeURIComponent(nameOf(b))}/channels`);
    expect(ofConn.body).toHaveLength(1);

    const chans = await http<Row[]>(http1(), 'GET', '/api/channels');
    expect(chans.body.map((r) => r['node']).sort()).toEqual(['n1', 'n2']);
    const chName = chans.body.find((r) => r['node'] === 'n2')!['name'] as string;
    const ch = await http<Row>(http1(), 'GET', `/api/channels/${encodeURIComponent(chName)}`);
    expect(ch.status).toBe(200);
    expect((ch.body['consumer_details'] as unknown[]).length).toBe(1);

    const cons = await http<Row[]>(http1(), 'GET', '/api/consumers');
    const mine = cons.body.find((r) => (r['queue'] as Row)['name'] === q.name);
    expect(mine).toBeDefined();
    expect((mine!['channel_details'] as Row)['node']).toBe('n2');

    // The exclusive queue lives on n2 only; n1 lists it with its figures from there.
    const queues = await http<Row[]>(http1(), 'GET', '/api/queues');
    const row = queues.body.find((r) => r['name'] === q.name);
    expect(row?.['node']).toBe('n2');
    expect(row?.['consumers']).toBe(1);

    // A durable queue declared on n2 is listed once, from its home node, with its messages.
    const confirmed = await a.channel();
    await chB.queueDeclare('ops-durable', { durable: true });
    await waitFor(async () => (await http(http1(), 'GET', '/api/queues/%2F/ops-durable')).status === 200, 5000, 'ops-durable on n1');
    const single = await http<Row>(http1(), 'GET', '/api/queues/%2F/ops-durable');
    expect(single.body['node']).toBe('n2');
    const listed = (await http<Row[]>(http1(), 'GET', '/api/queues/%2F')).body.filter((r) => r['name'] === 'ops-durable');
    expect(listed).toHaveLength(1);
    expect(listed[0]!['node']).toBe('n2');
    await confirmed.close();

    const ov = await http<Row>(http1(), 'GET', '/api/overview');
    expect((ov.body['object_totals'] as Row)['connections']).toBeGreaterThanOrEqual(2);
    expect((ov.body['object_totals'] as Row)['consumers']).toBeGreaterThanOrEqual(1);
    expect(ov.body['nodes_not_answering']).toEqual([]);
    const listenerNodes = new Set((ov.body['listeners'] as Row[]).map((l) => l['node']));
    expect([...listenerNodes].sort()).toEqual(['n1', 'n2']);
  });

  test('DELETE /api/connections/NAME on n1 closes a connection that is on n2', async () => {
    const b = await connect('n2');
    const closed = new Promise<string>((resolve) => (b.onerror = (e) => resolve(e.message)));
    const del = await http(http1(), 'DELETE', `/api/connections/${encodeURIComponent(nameOf(b))}`, { headers: { 'x-reason': 'moved to n1' } });
    expect(del.status).toBe(204);
    expect(await closed).toMatch(/moved to n1/);
    expect((await http(http1(), 'DELETE', '/api/connections/127.0.0.1%3A1')).status).toBe(404);
    // A user without the administrator tag may not close another user's connection on n2 either.
    expect((await http(http1(), 'PUT', '/api/users/watcher', { body: { password: 'w', tags: 'monitoring' } })).status).toBeLessThan(300);
    const other = await connect('n2');
    await waitFor(async () => (await http(http1(), 'GET', `/api/connections/${encodeURIComponent(nameOf(other))}`)).status === 200, 5000, 'listed');
    const refused = await http(http1(), 'DELETE', `/api/connections/${encodeURIComponent(nameOf(other))}`, { auth: ['watcher', 'w'] });
    expect(refused.status).toBe(401);
    expect(other.closed).toBe(false);
  });

  test('POST /api/queues/VHOST/NAME/get on n2 reads a queue whose home is n1, and requeues what it read', async () => {
    const a = await connect('n1');
    const ch = await a.channel();
    await ch.queueDeclare('ops-get', { durable: true });
    await ch.confirmSelect();
    for (const body of ['one', 'two', 'three']) await ch.basicPublish('', 'ops-get', body);
    const http2 = cluster.nodes.get('n2')!.httpPort;
    const got = await http<Row[]>(http2, 'POST', '/api/queues/%2F/ops-get/get', { body: { count: 2, ackmode: 'ack_requeue_true', encoding: 'auto' } });
    expect(got.status).toBe(200);
    expect(got.body.map((r) => r['payload'])).toEqual(['one', 'two']);
    expect(got.body[0]!['message_count']).toBe(2);
    // Requeued at the home: all three are still there, the two read ones first, marked redelivered.
    const again = await http<Row[]>(http2, 'POST', '/api/queues/%2F/ops-get/get', { body: { count: 5, ackmode: 'ack_requeue_false', encoding: 'auto' } });
    expect(again.body.map((r) => r['payload'])).toEqual(['one', 'two', 'three']);
    expect(again.body.map((r) => r['redelivered'])).toEqual([true, true, false]);
    expect((await ch.queueDeclare('ops-get', { passive: true })).messageCount).toBe(0);
    await ch.queueDelete('ops-get');
  });

  test('/api/nodes has both nodes with memory, alarms and uptime; the alarm of n2 blocks only publishers on n2', async () => {
    const nodes = await waitFor(async () => {
      const r = await http<Row[]>(http1(), 'GET', '/api/nodes');
      const n2 = r.body.find((n) => n['name'] === 'n2');
      return n2?.['mem_alarm'] === true ? r.body : undefined;
    }, 10_000, 'the memory alarm of n2 seen from n1');
    const n1 = nodes.find((n) => n['name'] === 'n1')!;
    const n2 = nodes.find((n) => n['name'] === 'n2')!;
    for (const n of [n1, n2]) {
      expect(n['running']).toBe(true);
      expect(n['answering']).toBe(true);
      expect(n['uptime']).toBeGreaterThan(0);
      expect(n['mem_used']).toBeGreaterThan(0);
      expect(n['disk_free_alarm']).toBe(false);
    }
    expect(n1['mem_alarm']).toBe(false);
    expect(n2['mem_limit']).toBe(1000);

    // Publishing on n1 goes on (confirmed); on n2 the connection is blocked and nothing is confirmed.
    const p1 = await connect('n1');
    const ch1 = await p1.channel();
    await ch1.confirmSelect();
    await ch1.queueDeclare('alarm-q1', { durable: false });
    await ch1.basicPublish('', 'alarm-q1', 'on n1');
    // n2 says connection.blocked right after connection.open-ok, as the alarm is on.
    const p2 = await connect('n2');
    expect(await waitFor(() => p2.blocked, 5000, 'connection.blocked from n2')).toMatch(/low on/);
    const ch2 = await p2.channel();
    await ch2.confirmSelect();
    await ch2.queueDeclare('alarm-q2', { durable: false });
    let confirmed2 = false;
    void ch2.basicPublish('', 'alarm-q2', 'on n2').then(() => (confirmed2 = true), () => undefined);
    // n1 still confirms after n2 blocked its publisher.
    await ch1.basicPublish('', 'alarm-q1', 'on n1 again');
    expect(p1.blocked).toBeUndefined();
    expect(confirmed2).toBe(false);
    const q1 = await http<Row>(http1(), 'GET', '/api/queues/%2F/alarm-q1');
    expect(q1.body['messages']).toBe(2);
    const q2 = await http<Row>(cluster.nodes.get('n2')!.httpPort, 'GET', '/api/queues/%2F/alarm-q2');
    expect(q2.body['messages']).toBe(0);
  });

  test.skipIf(!haveChromium)('the UI of n1 lists the connections of both nodes with a Node column, and the nodes on the overview', async () => {
    const a = await connect('n1');
    const b = await connect('n2');
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${http1()}/`);
      await page.fill('#login-username', 'guest');
      await page.fill('#login-password', 'guest');
      await page.click('#login-submit');
      await page.locator('#nodes-table').locator('text=n2').waitFor();
      await page.click('#nav a[data-nav="connections"]');
      const table = page.locator('#connections-table');
      await table.locator(`text=${nameOf(b)}`).waitFor();
      expect(await table.locator('thead th').allInnerTexts()).toContain('Node');
      const rowOf = async (c: AMQPClient): Promise<string> => table.locator('tbody tr', { hasText: nameOf(c) }).innerText();
      expect(await rowOf(a)).toMatch(/\bn1\b/);
      expect(await rowOf(b)).toMatch(/\bn2\b/);
    } finally {
      await browser.close();
    }
  });

  test('a node that does not answer is skipped and named; the listing still comes', async () => {
    const n2 = cluster.nodes.get('n2')!;
    n2.child.kill('SIGSTOP');
    try {
      const started = Date.now();
      const r = await http<Row[]>(http1(), 'GET', '/api/connections');
      expect(r.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(5000);
      expect(r.body.every((c) => c['node'] === 'n1')).toBe(true);
      // Stopped just now: the registry still has it running (its heartbeat is within the TTL).
      expect(r.headers['x-nodes-not-answering']).toBe('n2');
      const nodes = await http<Row[]>(http1(), 'GET', '/api/nodes');
      const row = nodes.body.find((n) => n['name'] === 'n2')!;
      // Within the heartbeat TTL it is running but does not answer; after it, not running.
      expect(row['answering'] === false || row['running'] === false).toBe(true);
      const ov = await http<Row>(http1(), 'GET', '/api/overview');
      expect(ov.status).toBe(200);
    } finally {
      n2.child.kill('SIGCONT');
    }
  });
});
