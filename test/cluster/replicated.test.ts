import { AMQPClient } from '@cloudamqp/amqp-client';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { connectMqtt } from '../helpers/mqtt.js';
import { RawStomp } from '../helpers/stomp.js';
import { http } from '../helpers/management.js';
import { haveChromium, launchChromium } from '../helpers/browser.js';

/**
 * Replicated (quorum) queues across three Warren nodes on three clustered nats-servers: every
 * confirmed message is delivered wherever it was published and consumed, and what a node held
 * when it died comes back, redelivered, on another.
 */

/** Short, so a killed node's deliveries come back within the test. */
const ACK_WAIT_MS = 3000;

interface QueueRow {
  type: string;
  leader: string;
  members: string[];
  online: string[];
  replica_details: Array<{ server: string; leader: boolean; online: boolean; lag: number }>;
}

describe('replicated queues on three nodes', { timeout: 90_000 }, () => {
  let cluster: TestCluster;
  const conns: amqp.ChannelModel[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    const extra = ['--cluster-ack-wait', String(ACK_WAIT_MS)];
    await cluster.start('n1', [...extra, '--mqtt-port', '0', '--stomp-port', '0']);
    await Promise.all([cluster.start('n2', extra), cluster.start('n3', extra)]);
  }, 60_000);

  afterAll(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    await cluster?.stop();
  });

  const connect = async (node: string): Promise<amqp.ChannelModel> => {
    const c = await amqp.connect(`amqp://guest:guest@127.0.0.1:${cluster.nodes.get(node)!.amqpPort}`);
    c.on('error', () => undefined);
    conns.push(c);
    return c;
  };
  const httpPort = (node: string): number => cluster.nodes.get(node)!.httpPort;
  const onEveryNode = async (queue: string, nodes: string[]): Promise<void> => {
    for (const n of nodes) {
      await waitFor(async () => (await http(httpPort(n), 'GET', `/api/queues/%2F/${queue}`)).status === 200, 10_000, `${queue} on ${n}`);
    }
  };

  /** Publishes `ids` with confirms; resolves with the ids the broker confirmed. */
  const publishConfirmed = async (node: string, queue: string, ids: string[]): Promise<string[]> => {
    const c = await connect(node);
    const ch = await c.createConfirmChannel();
    const confirmed: string[] = [];
    await Promise.all(
      ids.map(
        (id) =>
          new Promise<void>((resolve) => {
            ch.sendToQueue(queue, Buffer.from(id), { persistent: true, messageId: id }, (err) => {
              if (err === null || err === undefined) confirmed.push(id);
              resolve();
            });
          }),
      ),
    );
    await ch.close();
    return confirmed;
  };

  test('publishes confirmed on n1 and n2 are all delivered to a consumer on n3; the management API shows the quorum fields', async () => {
    const c1 = await connect('n1');
    const ch1 = await c1.createChannel();
    await ch1.assertQueue('orders', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await onEveryNode('orders', ['n2', 'n3']);

    const ids1 = Array.from({ length: 150 }, (_, i) => `a${i}`);
    const ids2 = Array.from({ length: 150 }, (_, i) => `b${i}`);
    const [conf1, conf2] = await Promise.all([publishConfirmed('n1', 'orders', ids1), publishConfirmed('n2', 'orders', ids2)]);
    expect(conf1.length).toBe(150);
    expect(conf2.length).toBe(150);

    const c3 = await connect('n3');
    const ch3 = await c3.createChannel();
    await ch3.prefetch(20);
    const got = new Set<string>();
    await ch3.consume('orders', (m) => {
      if (m === null) return;
      got.add(m.content.toString());
      ch3.ack(m);
    });
    await waitFor(() => got.size === 300, 20_000, () => `delivered ${got.size} of 300`);
    expect([...got].sort()).toEqual([...conf1, ...conf2].sort());

    const q = await http<QueueRow>(httpPort('n2'), 'GET', '/api/queues/%2F/orders');
    expect(q.body.type).toBe('quorum');
    expect(q.body.members.length).toBe(3);
    expect(q.body.members).toContain(q.body.leader);
    expect([...q.body.online].sort()).toEqual([...q.body.members].sort());
    // Each copy with its lag behind the leader: every copy catches up once nothing is published.
    expect(q.body.replica_details.map((r) => r.server)).toEqual(q.body.members);
    expect(q.body.replica_details.filter((r) => r.leader).map((r) => r.server)).toEqual([q.body.leader]);
    await waitFor(
      async () => (await http<QueueRow>(httpPort('n2'), 'GET', '/api/queues/%2F/orders')).body.replica_details.every((r) => r.online && r.lag === 0),
      10_000,
      'every copy current',
    );
    // The listing has them too.
    const listed = (await http<Array<QueueRow & { name: string }>>(httpPort('n3'), 'GET', '/api/queues')).body.find((r) => r.name === 'orders');
    expect(listed?.replica_details.map((r) => r.server).sort()).toEqual([...q.body.members].sort());
  });

  test.skipIf(!haveChromium)("the web UI's page of a replicated queue shows its leader and each copy with its lag", async () => {
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${httpPort('n3')}/`);
      await page.fill('#login-username', 'guest');
      await page.fill('#login-password', 'guest');
      await page.click('#login-submit');
      await page.waitForSelector('#whoami:has-text("guest")');
      await page.goto(`http://127.0.0.1:${httpPort('n3')}/#/queues/%2F/orders`);
      const copies = page.locator('#queue-copies');
      await copies.waitFor();
      await page.waitForSelector('#queue-copies:has-text("(leader): online, lag 0")');
      const row = await http<QueueRow>(httpPort('n3'), 'GET', '/api/queues/%2F/orders');
      const text = (await copies.textContent()) ?? '';
      for (const m of row.body.members) expect(text).toContain(m);
    } finally {
      await browser.close();
    }
  });

  test('at a steady rate for longer than the ack wait, a consumer on n2 that starts right after the declare on n1 gets every message once, promptly, none redelivered', async () => {
    const RATE = 200;
    const COUNT = 5 * RATE;
    const ch1 = await (await connect('n1')).createConfirmChannel();
    const declaredAt = Date.now();
    await ch1.assertQueue('steady', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await onEveryNode('steady', ['n2']);
    const ch2 = await (await connect('n2')).createChannel();
    await ch2.prefetch(100);
    const deliveries = new Map<string, number>();
    let redelivered = 0;
    let slowest = 0;
    let lastAt = 0;
    await ch2.consume('steady', (m) => {
      if (m === null) return;
      const [id = '', sentAt = '0'] = m.content.toString().split(' ');
      deliveries.set(id, (deliveries.get(id) ?? 0) + 1);
      if (m.fields.redelivered) redelivered++;
      slowest = Math.max(slowest, Date.now() - Number(sentAt));
      lastAt = Date.now();
      ch2.ack(m);
    });
    // Message i is due at start + i / RATE: a schedule, not a wait for a condition.
    const start = Date.now();
    const confirmed: string[] = [];
    const confirms: Promise<void>[] = [];
    for (let i = 0; i < COUNT; i++) {
      const due = start + (i * 1000) / RATE;
      if (due > Date.now()) await new Promise((resolve) => setTimeout(resolve, due - Date.now()));
      const id = `s${i}`;
      confirms.push(
        new Promise<void>((resolve) =>
          ch1.sendToQueue('steady', Buffer.from(`${id} ${Date.now()}`), { persistent: true }, (err) => {
            if (err === null || err === undefined) confirmed.push(id);
            resolve();
          }),
        ),
      );
    }
    await Promise.all(confirms);
    expect(confirmed.length).toBe(COUNT);
    await waitFor(() => deliveries.size === COUNT, 20_000, () => `delivered ${deliveries.size} of ${COUNT}`);
    // A message handed out again would come within one more ack wait: only waiting shows that none does.
    await new Promise((resolve) => setTimeout(resolve, ACK_WAIT_MS + 1000));
    expect([...deliveries.keys()].sort()).toEqual([...confirmed].sort());
    expect([...deliveries.values()].filter((n) => n !== 1)).toEqual([]);
    expect(redelivered).toBe(0);
    // The queue is ready on both nodes soon after the declare, and the consuming node pulls at
    // once: no message waits seconds for it, and the last one comes soon after its schedule ends.
    expect(slowest).toBeLessThan(2000);
    expect(lastAt - declaredAt).toBeLessThan((COUNT * 1000) / RATE + 2500);
  });

  test('an MQTT QoS 1 publish on n1 to a topic bound to a replicated queue is PUBACKed and consumed over AMQP on n2', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('readings', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch1.bindQueue('readings', 'amq.topic', 'sensors.#');
    await onEveryNode('readings', ['n2']);
    const mqtt = await connectMqtt(`mqtt://127.0.0.1:${cluster.nodes.get('n1')!.mqttPort!}`, { clientId: 'sensor-1' });
    try {
      for (let i = 0; i < 5; i++) await mqtt.publishAsync(`sensors/t${i}`, `r${i}`, { qos: 1 });
    } finally {
      await mqtt.endAsync();
    }
    const ch2 = await (await connect('n2')).createChannel();
    const got: string[] = [];
    await ch2.consume('readings', (m) => {
      if (m === null) return;
      got.push(`${m.fields.routingKey}=${m.content.toString()}`);
      ch2.ack(m);
    });
    await waitFor(() => got.length === 5, 10_000, () => `delivered ${got.length} of 5`);
    expect(got.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `sensors.t${i}=r${i}`));
  });

  test('a STOMP SEND with a receipt on n1 to a replicated queue gets its RECEIPT and is consumed over AMQP on n3', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('tickets', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await onEveryNode('tickets', ['n3']);
    const stomp = await RawStomp.connected(cluster.nodes.get('n1')!.stompPort!, { login: 'guest', passcode: 'guest' });
    try {
      stomp.send('SEND', { destination: '/amq/queue/tickets', persistent: 'true', receipt: 'r1' }, 'ticket-1');
      const receipt = await stomp.next('RECEIPT', 10_000);
      expect(receipt.headers['receipt-id']).toBe('r1');
    } finally {
      stomp.end();
    }
    const ch3 = await (await connect('n3')).createChannel();
    let got: amqp.GetMessage | false = false;
    await waitFor(async () => (got = await ch3.get('tickets', { noAck: true })) !== false, 10_000, 'ticket on n3');
    expect((got as amqp.GetMessage).content.toString()).toBe('ticket-1');
  });

  test('nack with requeue redelivers on another node with x-delivery-count; past x-delivery-limit the message is dead-lettered', async () => {
    const c1 = await connect('n1');
    const ch1 = await c1.createChannel();
    await ch1.assertQueue('poison-dlq', { durable: true });
    await ch1.assertQueue('poison', {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-delivery-limit': 2, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'poison-dlq' },
    });
    await onEveryNode('poison', ['n2', 'n3']);
    await onEveryNode('poison-dlq', ['n2', 'n3']);
    expect(await publishConfirmed('n1', 'poison', ['p1'])).toEqual(['p1']);

    const seen: Array<{ node: string; redelivered: boolean; count: unknown }> = [];
    for (const node of ['n2', 'n3']) {
      const ch = await (await connect(node)).createChannel();
      await ch.prefetch(1);
      await ch.consume('poison', (m) => {
        if (m === null) return;
        seen.push({ node, redelivered: m.fields.redelivered, count: m.properties.headers?.['x-delivery-count'] });
        ch.nack(m, false, true);
      });
    }
    const dlq = await c1.createChannel();
    let dead: amqp.GetMessage | false = false;
    await waitFor(async () => (dead = await dlq.get('poison-dlq', { noAck: true })) !== false, 20_000, () => `dead-lettered (deliveries ${seen.length})`);
    expect(seen.length).toBe(3);
    expect(seen.map((s) => [s.redelivered, s.count ?? 0])).toEqual([
      [false, 0],
      [true, 1],
      [true, 2],
    ]);
    const d = dead as amqp.GetMessage;
    expect(d.content.toString()).toBe('p1');
    const death = (d.properties.headers?.['x-death'] as Array<{ reason: string; queue: string }> | undefined)?.[0];
    expect([death?.reason, death?.queue]).toEqual(['delivery_limit', 'poison']);
  });

  test('x-max-length, x-overflow and x-message-ttl hold for the queue as a whole, whichever node publishes', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    const quorum = { 'x-queue-type': 'quorum' };
    await ch1.assertQueue('capped-reject', { durable: true, arguments: { ...quorum, 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
    await ch1.assertQueue('capped-drop', { durable: true, arguments: { ...quorum, 'x-max-length': 2 } });
    await ch1.assertQueue('short-lived', { durable: true, arguments: { ...quorum, 'x-message-ttl': 300 } });
    for (const q of ['capped-reject', 'capped-drop', 'short-lived']) await onEveryNode(q, ['n2', 'n3']);
    const logMessages = async (q: string): Promise<number> => ((await http(httpPort('n3'), 'GET', `/api/queues/%2F/${q}`)).body as { messages: number }).messages;

    // reject-publish: the third publish is nacked, on either node, and nothing is dropped.
    const confirmed: string[] = [];
    for (const [node, id] of [['n1', 'r1'], ['n2', 'r2'], ['n2', 'r3'], ['n1', 'r4']] as const) confirmed.push(...(await publishConfirmed(node, 'capped-reject', [id])));
    expect(confirmed).toEqual(['r1', 'r2']);
    // drop-head: every publish is confirmed, the oldest go.
    for (const [node, id] of [['n1', 'd1'], ['n2', 'd2'], ['n1', 'd3']] as const) expect(await publishConfirmed(node, 'capped-drop', [id])).toEqual([id]);
    // The TTL: what waited longer than 300 ms is gone.
    expect(await publishConfirmed('n2', 'short-lived', ['stale'])).toEqual(['stale']);
    await waitFor(async () => (await logMessages('short-lived')) === 0, 10_000, 'the expired message dropped');
    expect(await publishConfirmed('n1', 'short-lived', ['fresh'])).toEqual(['fresh']);

    const ch3 = await (await connect('n3')).createChannel();
    const got = new Map<string, string[]>();
    for (const q of ['capped-reject', 'capped-drop', 'short-lived']) {
      got.set(q, []);
      await ch3.consume(q, (m) => {
        if (m === null) return;
        got.get(q)!.push(m.content.toString());
        ch3.ack(m);
      });
    }
    await waitFor(() => got.get('capped-reject')!.length === 2 && got.get('capped-drop')!.length === 2 && got.get('short-lived')!.length === 1, 10_000, () => JSON.stringify([...got]));
    expect(got.get('capped-reject')).toEqual(['r1', 'r2']);
    expect(got.get('capped-drop')).toEqual(['d2', 'd3']);
    expect(got.get('short-lived')).toEqual(['fresh']);
  });

  test('x-max-length counts the ready messages, whichever node publishes: what a consumer holds unacked does not fill the queue', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('held-limit', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
    await onEveryNode('held-limit', ['n2', 'n3']);
    expect(await publishConfirmed('n1', 'held-limit', ['a', 'b'])).toEqual(['a', 'b']);
    // A consumer on n2 with a prefetch of 2 holds both and takes no more.
    const ch2 = await (await connect('n2')).createChannel();
    await ch2.prefetch(2);
    const held: string[] = [];
    await ch2.consume('held-limit', (m) => {
      if (m !== null) held.push(m.content.toString());
    });
    await waitFor(() => held.length === 2, 10_000, 'both held on n2');
    expect(await publishConfirmed('n1', 'held-limit', ['c'])).toEqual(['c']);
    expect(await publishConfirmed('n3', 'held-limit', ['d'])).toEqual(['d']);
    expect(await publishConfirmed('n3', 'held-limit', ['e'])).toEqual([]);
    expect(await publishConfirmed('n1', 'held-limit', ['f'])).toEqual([]);
  });

  test('a per-message expiration counts from the log: expired there, a message is dead-lettered by the node that pulls it; x-max-length 0 refuses every publish', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('expiring-dlq', { durable: true });
    await ch1.assertQueue('expiring', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'expiring-dlq' } });
    await ch1.assertQueue('holds-none', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-max-length': 0, 'x-overflow': 'reject-publish' } });
    for (const q of ['expiring', 'expiring-dlq', 'holds-none']) await onEveryNode(q, ['n2', 'n3']);
    const pub = await (await connect('n2')).createConfirmChannel();
    pub.sendToQueue('expiring', Buffer.from('short'), { persistent: true, expiration: '200' });
    pub.sendToQueue('expiring', Buffer.from('long'), { persistent: true, expiration: '60000' });
    await pub.waitForConfirms();
    expect(await publishConfirmed('n1', 'holds-none', ['refused'])).toEqual([]);
    const since = Date.now();
    await waitFor(() => Date.now() - since > 300, 5000, 'the short expiration past');

    const ch3 = await (await connect('n3')).createChannel();
    const got: string[] = [];
    await ch3.consume('expiring', (m) => {
      if (m === null) return;
      got.push(m.content.toString());
      ch3.ack(m);
    });
    let dead: amqp.GetMessage | false = false;
    await waitFor(async () => (dead = await ch1.get('expiring-dlq', { noAck: true })) !== false, 10_000, 'the expired message dead-lettered');
    await waitFor(() => got.length === 1, 10_000, 'the other one delivered');
    expect(got).toEqual(['long']);
    const d = dead as amqp.GetMessage;
    expect(d.content.toString()).toBe('short');
    expect((d.properties.headers?.['x-death'] as Array<{ reason: string }> | undefined)?.[0]?.reason).toBe('expired');
  });

  test('a delay queue (x-message-ttl with a dead-letter exchange, no consumer anywhere): every message reaches its work queue after its TTL, none dropped', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('retry-work', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await ch1.assertQueue('retry-delay', { durable: true, arguments: { 'x-queue-type': 'quorum', 'x-message-ttl': 300, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'retry-work' } });
    for (const q of ['retry-work', 'retry-delay']) await onEveryNode(q, ['n2', 'n3']);
    const ids = Array.from({ length: 20 }, (_, i) => `r${i}`);
    const sent = Date.now();
    expect((await publishConfirmed('n1', 'retry-delay', ids.slice(0, 10))).length).toBe(10);
    expect((await publishConfirmed('n2', 'retry-delay', ids.slice(10))).length).toBe(10);
    const ch3 = await (await connect('n3')).createChannel();
    const got = new Map<string, { reason: string | undefined; at: number }>();
    await ch3.consume('retry-work', (m) => {
      if (m === null) return;
      got.set(m.content.toString(), { reason: (m.properties.headers?.['x-death'] as Array<{ reason: string }> | undefined)?.[0]?.reason, at: Date.now() });
      ch3.ack(m);
    });
    await waitFor(() => got.size === 20, 20_000, 'all twenty through the delay');
    expect([...got.keys()].sort()).toEqual([...ids].sort());
    expect([...got.values()].every((g) => g.reason === 'expired' && g.at - sent >= 300)).toBe(true);
  });

  test('a purge on a node without consumers drops the ready messages of every node and of the log; what a consumer holds stays', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('purged', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await onEveryNode('purged', ['n2', 'n3']);
    const ids = Array.from({ length: 100 }, (_, i) => `m${i}`);
    expect((await publishConfirmed('n1', 'purged', ids)).length).toBe(100);

    // n2: a consumer holds 10 unacked.
    const c2 = await connect('n2');
    const ch2 = await c2.createChannel();
    await ch2.prefetch(10);
    const held: string[] = [];
    await ch2.consume('purged', (m) => {
      if (m !== null) held.push(m.content.toString());
    });
    await waitFor(() => held.length === 10, 10_000, () => `n2 holds ${held.length}`);
    // n3: a consumer with its flow stopped: n3 pulls 20 for it and keeps them ready.
    const client3 = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${cluster.nodes.get('n3')!.amqpPort}`).connect();
    try {
      const ch3 = await client3.channel();
      await ch3.basicQos(20);
      await ch3.basicFlow(false);
      const got3: Array<{ id: string; redelivered: boolean }> = [];
      await ch3.basicConsume('purged', { noAck: false }, (m) => {
        got3.push({ id: m.bodyToString() ?? '', redelivered: m.redelivered });
        void m.ack();
      });
      // n3's own figure (the management API shows the queue's home's).
      const readyOnN3 = async (): Promise<number> => {
        const text = (await http(httpPort('n3'), 'GET', '/metrics/per-object')).text;
        const line = text.split('\n').find((l) => l.startsWith('warren_queue_messages_ready{vhost="/",queue="purged"} '));
        return Number(line?.split(' ')[1]);
      };
      await waitFor(async () => (await readyOnN3()) === 20, 10_000, 'n3 pulled 20');

      const { messageCount } = await ch1.purgeQueue('purged');
      expect(messageCount).toBe(90);
      expect(await readyOnN3()).toBe(0);
      // What n2 held goes back when its channel closes, and is all that is left.
      await ch2.close();
      await ch3.basicFlow(true);
      await waitFor(() => got3.length >= 10, 10_000, () => `n3 got ${got3.length}`);
      expect(await publishConfirmed('n1', 'purged', ['after'])).toEqual(['after']);
      await waitFor(() => got3.some((g) => g.id === 'after'), 10_000, 'the message published after the purge');
      expect(got3.filter((g) => g.id !== 'after').map((g) => g.id).sort()).toEqual([...held].sort());
      expect(got3.every((g) => g.redelivered || g.id === 'after')).toBe(true);
    } finally {
      await client3.close().catch(() => undefined);
    }
  });

  test('a durable classic queue purged through another node is purged on its home, over AMQP and the management API', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('classic-purged', { durable: true });
    await onEveryNode('classic-purged', ['n2', 'n3']);
    expect((await publishConfirmed('n1', 'classic-purged', ['a', 'b', 'c'])).length).toBe(3);
    const ch2 = await (await connect('n2')).createChannel();
    expect((await ch2.purgeQueue('classic-purged')).messageCount).toBe(3);
    expect(await ch1.checkQueue('classic-purged')).toMatchObject({ messageCount: 0 });
    expect((await publishConfirmed('n1', 'classic-purged', ['d'])).length).toBe(1);
    expect((await http(httpPort('n3'), 'DELETE', '/api/queues/%2F/classic-purged/contents')).status).toBe(204);
    expect(await ch1.checkQueue('classic-purged')).toMatchObject({ messageCount: 0 });
  });

  test('one nats-server of three killed: publishing and consuming go on', async () => {
    const c1 = await connect('n1');
    const ch1 = await c1.createChannel();
    await ch1.assertQueue('survives', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await onEveryNode('survives', ['n2']);
    expect((await publishConfirmed('n1', 'survives', ['before'])).length).toBe(1);
    await cluster.nats.kill(0);
    try {
      const ids = Array.from({ length: 20 }, (_, i) => `after${i}`);
      let confirmed: string[] = [];
      // Streams the killed server led elect a new leader; clients reconnect to another server.
      await waitFor(async () => (confirmed = [...confirmed, ...(await publishConfirmed('n1', 'survives', ids.filter((id) => !confirmed.includes(id))))]).length === 20, 30_000, 'confirms after the kill');
      const ch2 = await (await connect('n2')).createChannel();
      const got = new Set<string>();
      await ch2.consume('survives', (m) => {
        if (m === null) return;
        got.add(m.content.toString());
        ch2.ack(m);
      });
      await waitFor(() => ['before', ...ids].every((id) => got.has(id)), 30_000, () => `delivered ${got.size} of 21`);
    } finally {
      await cluster.nats.restart(0);
    }
  });

  let handoverRound = 0;
  test('the consuming node SIGKILLed mid-stream: its unacked messages are redelivered (redelivered=true) to a consumer on another node', async () => {
    // A retry starts from a clean state: its own queue, and n3 running again if a try killed it.
    const queue = `handover-${++handoverRound}`;
    const n3 = cluster.nodes.get('n3')!;
    if (n3.child.exitCode !== null || n3.child.signalCode !== null) await cluster.start('n3', ['--cluster-ack-wait', String(ACK_WAIT_MS)]);
    const c1 = await connect('n1');
    const ch1 = await c1.createChannel();
    await ch1.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await onEveryNode(queue, ['n2', 'n3']);
    const ids = Array.from({ length: 40 }, (_, i) => `h${i}`);
    expect((await publishConfirmed('n1', queue, ids)).length).toBe(40);

    // n3 takes 10 and never acks them.
    const c3 = await connect('n3');
    const ch3 = await c3.createChannel();
    await ch3.prefetch(10);
    const heldOnN3 = new Set<string>();
    await ch3.consume(queue, (m) => {
      if (m !== null) heldOnN3.add(m.content.toString());
    });
    await waitFor(() => heldOnN3.size === 10, 10_000, 'ten held on n3');
    await cluster.kill('n3');

    const ch2 = await (await connect('n2')).createChannel();
    await ch2.prefetch(50);
    const got = new Map<string, boolean>();
    await ch2.consume(queue, (m) => {
      if (m === null) return;
      got.set(m.content.toString(), m.fields.redelivered);
      ch2.ack(m);
    });
    await waitFor(() => got.size === 40, 30_000, () => `delivered ${got.size} of 40 on n2`);
    for (const id of heldOnN3) expect(got.get(id), id).toBe(true);
    expect([...got.keys()].sort()).toEqual([...ids].sort());
  });
});
