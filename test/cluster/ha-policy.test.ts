import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { connectAmqp, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { http } from '../helpers/management.js';

/**
 * A mirroring policy set after a classic queue was declared and filled, on three Warren nodes and
 * three clustered nats-servers: the queue's messages move from its home node to a replicated log,
 * and the home's death then loses none of them.
 */

const ACK_WAIT_MS = 3000;

describe("an 'ha-mode' policy on a classic queue that already holds messages", { timeout: 90_000 }, () => {
  let cluster: TestCluster;
  const conns: amqp.ChannelModel[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    for (const n of ['n1', 'n2', 'n3']) await cluster.start(n, ['--cluster-ack-wait', String(ACK_WAIT_MS)]);
  }, 60_000);

  afterAll(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    await cluster?.stop();
  });

  const connect = (node: string): Promise<amqp.ChannelModel> => connectAmqp(cluster.nodes.get(node)!, conns);
  const httpPort = (node: string): number => cluster.nodes.get(node)!.httpPort;

  const publishConfirmed = async (node: string, queue: string, ids: string[]): Promise<void> => {
    const ch = await (await connect(node)).createConfirmChannel();
    for (const id of ids) ch.sendToQueue(queue, Buffer.from(id), { persistent: true });
    await ch.waitForConfirms();
    await ch.close();
  };

  test('its messages, and those a consumer on another node held, move to a replicated log; the home SIGKILLed, all are consumed on the others, once', async () => {
    const ch1 = await (await connect('n1')).createChannel();
    await ch1.assertQueue('late', { durable: true });
    for (const n of ['n2', 'n3']) {
      await waitFor(async () => (await http(httpPort(n), 'GET', '/api/queues/%2F/late')).status === 200, 10_000, `late on ${n}`);
    }
    const before = [...Array.from({ length: 50 }, (_, i) => `a${i}`), ...Array.from({ length: 20 }, (_, i) => `b${i}`)];
    await publishConfirmed('n1', 'late', before.slice(0, 50));
    await publishConfirmed('n2', 'late', before.slice(50)); // forwarded to n1, the home

    // A consumer on n3 holds 5 of them through n1.
    const ch3 = await (await connect('n3')).createChannel();
    await ch3.prefetch(5);
    const held: string[] = [];
    await ch3.consume('late', (m) => {
      if (m !== null) held.push(m.content.toString());
    });
    await waitFor(() => held.length === 5, 10_000, 'five held on n3');

    const put = await http(httpPort('n2'), 'PUT', '/api/policies/%2F/ha-late', { body: { pattern: '^late$', definition: { 'ha-mode': 'exactly', 'ha-params': 3 }, 'apply-to': 'queues' } });
    expect(put.status).toBeLessThan(300);
    const onN1 = async (): Promise<{ type?: string; messages?: number; members?: string[] }> => (await http(httpPort('n1'), 'GET', '/api/queues/%2F/late')).body as { type?: string; messages?: number; members?: string[] };
    await waitFor(async () => (await onN1()).messages === 65, 15_000, 'the 65 not held moved to the log');
    expect((await onN1()).type).toBe('quorum');
    expect((await onN1()).members?.length).toBe(3);
    // What n3 held goes back to n1 when its channel closes, and moves too.
    await ch3.close();
    await waitFor(async () => (await onN1()).messages === 70, 15_000, 'all 70 in the log');
    const after = Array.from({ length: 10 }, (_, i) => `c${i}`);
    await publishConfirmed('n2', 'late', after.slice(0, 5));
    await publishConfirmed('n1', 'late', after.slice(5));

    await cluster.kill('n1');
    const got = new Map<string, number>();
    const redelivered = new Set<string>();
    for (const node of ['n2', 'n3']) {
      const ch = await (await connect(node)).createChannel();
      await ch.prefetch(20);
      await ch.consume('late', (m) => {
        if (m === null) return;
        const id = m.content.toString();
        got.set(id, (got.get(id) ?? 0) + 1);
        if (m.fields.redelivered) redelivered.add(id);
        ch.ack(m);
      });
    }
    await waitFor(() => got.size === 80, 30_000, 'all 80 consumed on n2 and n3');
    expect([...got.keys()].sort()).toEqual([...before, ...after].sort());
    expect([...got.values()].every((n) => n === 1)).toBe(true);
    // Delivered before the move: redelivered after it, as RabbitMQ flags a requeued message.
    expect([...redelivered].sort()).toEqual([...held].sort());
  });

  test('the home SIGKILLed while it moves a large queue under load: after its restart every confirmed message is consumed, repeats only redelivered', async () => {
    const ch2 = await (await connect('n2')).createChannel();
    await ch2.assertQueue('late-big', { durable: true });
    await waitFor(async () => (await http(httpPort('n3'), 'GET', '/api/queues/%2F/late-big')).status === 200, 10_000, 'late-big on n3');
    // Homed on n2 this time (n1 was killed above and is not restarted).
    const ids = Array.from({ length: 20_000 }, (_, i) => `m${i}`);
    await publishConfirmed('n2', 'late-big', ids);

    // Publishers with confirms on n3 while the policy lands and the home dies.
    const confirmed = new Set(ids);
    const pub = await (await connect('n3')).createConfirmChannel();
    let stop = false;
    let k = 0;
    const publishing = (async () => {
      while (!stop) {
        const batch = Array.from({ length: 50 }, () => `p${k++}`);
        const done = batch.map(
          (id) =>
            new Promise<void>((resolve) => {
              pub.sendToQueue('late-big', Buffer.from(id), { persistent: true }, (err) => {
                if (err === null || err === undefined) confirmed.add(id);
                resolve();
              });
            }),
        );
        await Promise.all(done);
      }
    })().catch(() => undefined);

    await waitFor(() => confirmed.size > ids.length + 100, 10_000, 'publishing from n3 under way');
    const put = await http(httpPort('n3'), 'PUT', '/api/policies/%2F/ha-big', { body: { pattern: '^late-big$', definition: { 'ha-mode': 'all' }, 'apply-to': 'queues' } });
    expect(put.status).toBeLessThan(300);
    // n3 serves the queue from the log once it has switched: its listing then has the log's count.
    const logged = async (): Promise<number | undefined> => {
      const row = (await http(httpPort('n3'), 'GET', '/api/queues/%2F/late-big')).body as { type?: string; messages?: number };
      return row.type === 'quorum' ? row.messages : undefined;
    };
    // SIGKILL the home as soon as the move is under way.
    await waitFor(async () => ((await logged()) ?? 0) > 0, 20_000, 'the move under way');
    await cluster.kill('n2');
    const started = Date.now();
    await waitFor(() => Date.now() - started > 1000, 5000, 'publishing on after the kill');
    stop = true;
    await publishing;
    await cluster.start('n2', ['--cluster-ack-wait', String(ACK_WAIT_MS)]);

    const got = new Map<string, number>();
    let unflagged = 0;
    const ch = await (await connect('n3')).createChannel();
    await ch.prefetch(500);
    await ch.consume('late-big', (m) => {
      if (m === null) return;
      const id = m.content.toString();
      const n = (got.get(id) ?? 0) + 1;
      got.set(id, n);
      if (n > 1 && !m.fields.redelivered) unflagged++;
      ch.ack(m);
    });
    await waitFor(() => [...confirmed].every((id) => got.has(id)), 60_000, 'every confirmed message consumed');
    expect([...got.keys()].filter((id) => !id.startsWith('m') && !id.startsWith('p'))).toEqual([]);
    expect(unflagged).toBe(0);
  }, 120_000);
  test('the policy changed, then removed: the stream keeps that many copies, then one; a node restarted without the policy serves the queue from it', async () => {
    // n1 was killed in the first test; n2 and n3 run.
    const ch = await (await connect('n3')).createChannel();
    await ch.assertQueue('mirrored', { durable: true });
    const policy = (definition: Record<string, unknown>): Promise<{ status: number }> =>
      http(httpPort('n3'), 'PUT', '/api/policies/%2F/ha-mirrored', { body: { pattern: '^mirrored$', definition, 'apply-to': 'queues' } });
    const row = async (node: string): Promise<{ type?: string; messages?: number; members?: string[] }> =>
      (await http(httpPort(node), 'GET', '/api/queues/%2F/mirrored')).body as { type?: string; messages?: number; members?: string[] };
    expect((await policy({ 'ha-mode': 'exactly', 'ha-params': 3 })).status).toBeLessThan(300);
    await waitFor(async () => (await row('n3')).members?.length === 3, 15_000, 'three copies');
    const before = Array.from({ length: 10 }, (_, i) => `m${i}`);
    await publishConfirmed('n3', 'mirrored', before);

    expect((await policy({ 'ha-mode': 'exactly', 'ha-params': 2 })).status).toBeLessThan(300);
    await waitFor(async () => (await row('n3')).members?.length === 2, 15_000, 'two copies');
    expect((await http(httpPort('n3'), 'DELETE', '/api/policies/%2F/ha-mirrored')).status).toBeLessThan(300);
    await waitFor(async () => (await row('n2')).members?.length === 1, 15_000, 'one copy');
    expect(await row('n2')).toMatchObject({ type: 'quorum', messages: 10 });

    // Restarted without the policy, n2 still serves the queue from its stream.
    await cluster.kill('n2');
    await cluster.start('n2', ['--cluster-ack-wait', String(ACK_WAIT_MS)]);
    await waitFor(async () => (await row('n2')).type === 'quorum', 15_000, 'n2 serves the queue from its stream');
    expect((await row('n2')).messages).toBe(10);
    const after = Array.from({ length: 5 }, (_, i) => `p${i}`);
    await publishConfirmed('n2', 'mirrored', after);
    await waitFor(async () => (await row('n3')).messages === 15, 15_000, 'the publishes on n2 in the stream');

    const got = new Map<string, number>();
    const consumer = await (await connect('n3')).createChannel();
    await consumer.consume('mirrored', (m) => {
      if (m === null) return;
      const id = m.content.toString();
      got.set(id, (got.get(id) ?? 0) + 1);
      consumer.ack(m);
    });
    await waitFor(() => got.size === 15, 15_000, 'all 15 consumed on n3');
    expect([...got.keys()].sort()).toEqual([...before, ...after].sort());
    expect([...got.values()].every((n) => n === 1)).toBe(true);
  });
});
