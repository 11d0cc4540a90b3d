import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { http } from '../helpers/management.js';
import { stompClient, wsUrl } from '../helpers/stomp.js';

interface QueueRow {
  node: string;
  consumers: number;
  messages_ready: number;
  messages_unacknowledged: number;
}

describe('consumers on any node for a classic queue (three nodes, three nats-servers)', { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  const conns: ChannelModel[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    await cluster.start('n1');
    await Promise.all([cluster.start('n2'), cluster.start('n3')]);
  }, 60_000);

  afterAll(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    await cluster?.stop();
  });

  const node = (name: string) => cluster.nodes.get(name)!;
  const open = async (name: string): Promise<ChannelModel> => {
    const c = await amqp.connect(`amqp://guest:guest@127.0.0.1:${node(name).amqpPort}`);
    c.on('error', () => undefined);
    conns.push(c);
    return c;
  };
  const queueOn = async (name: string, queue: string): Promise<QueueRow> => (await http<QueueRow>(node(name).httpPort, 'GET', `/api/queues/%2F/${encodeURIComponent(queue)}`)).body;
  const declareOnN1 = async (queue: string, others = ['n2', 'n3']): Promise<void> => {
    const ch = await (await open('n1')).createChannel();
    await ch.assertQueue(queue, { durable: true });
    await ch.close();
    for (const n of others) {
      await waitFor(async () => (await http(node(n).httpPort, 'GET', `/api/queues/%2F/${queue}`)).status === 200, 5000, `${queue} on ${n}`);
    }
  };
  const publishAll = async (ch: ConfirmChannel, queue: string, bodies: string[]): Promise<void> => {
    for (const b of bodies) ch.sendToQueue(queue, Buffer.from(b), { persistent: true });
    await ch.waitForConfirms();
  };

  test('a consumer on n2 gets what is published on n1 and n3 in order, never more than its prefetch unacked; nack requeues, reject drops', async () => {
    await declareOnN1('rc.work');
    const ch2 = await (await open('n2')).createChannel();
    await ch2.prefetch(3);
    const got: ConsumeMessage[] = [];
    await ch2.consume('rc.work', (m) => {
      if (m !== null) got.push(m);
    });
    // The home counts the consumer on n2 as one of its own.
    await waitFor(async () => (await queueOn('n1', 'rc.work')).consumers === 1, 5000, 'consumer counted on n1');

    const p1 = await (await open('n1')).createConfirmChannel();
    const p3 = await (await open('n3')).createConfirmChannel();
    await publishAll(p1, 'rc.work', ['a0', 'a1', 'a2', 'a3', 'a4']);
    await publishAll(p3, 'rc.work', ['b0', 'b1', 'b2', 'b3', 'b4']);
    await waitFor(() => got.length === 3, 5000, 'three deliveries');
    await waitFor(async () => {
      const q = await queueOn('n1', 'rc.work');
      return q.messages_ready === 7 && q.messages_unacknowledged === 3;
    }, 5000, 'seven ready and three unacked on n1');
    expect(got.length).toBe(3);

    const seen: string[] = [];
    let maxInFlight = 0;
    while (seen.length < 10) {
      await waitFor(() => got.length > seen.length, 5000, `delivery ${seen.length + 1}`);
      maxInFlight = Math.max(maxInFlight, got.length - seen.length);
      const m = got[seen.length]!;
      seen.push(m.content.toString());
      ch2.ack(m);
    }
    expect(seen).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'b0', 'b1', 'b2', 'b3', 'b4']);
    expect(maxInFlight).toBeLessThanOrEqual(3);

    await publishAll(p1, 'rc.work', ['again']);
    await waitFor(() => got.length === 11, 5000, 'one more');
    expect(got[10]!.fields.redelivered).toBe(false);
    ch2.nack(got[10]!, false, true);
    await waitFor(() => got.length === 12, 5000, 'redelivered');
    expect(got[11]!.content.toString()).toBe('again');
    expect(got[11]!.fields.redelivered).toBe(true);
    ch2.reject(got[11]!, false);
    await waitFor(async () => {
      const q = await queueOn('n1', 'rc.work');
      return q.messages_ready === 0 && q.messages_unacknowledged === 0;
    }, 5000, 'n1 empty');
    await ch2.close();
    await waitFor(async () => (await queueOn('n1', 'rc.work')).consumers === 0, 5000, 'consumer gone on n1');
  });

  test('a STOMP subscriber on n3 of /amq/queue/<q> homed on n1 gets its messages and acks them', async () => {
    await declareOnN1('rc.stomp');
    const client = await stompClient(wsUrl(node('n3').httpPort), { connectHeaders: { login: 'guest', passcode: 'guest', host: '/' } });
    const bodies: string[] = [];
    client.subscribe('/amq/queue/rc.stomp', (m) => {
      bodies.push(m.body);
      m.ack();
    }, { ack: 'client-individual', 'prefetch-count': '2' });
    await waitFor(async () => (await queueOn('n1', 'rc.stomp')).consumers === 1, 5000, 'subscriber counted on n1');
    const p1 = await (await open('n1')).createConfirmChannel();
    await publishAll(p1, 'rc.stomp', ['s1', 's2', 's3', 's4']);
    await waitFor(() => bodies.length === 4, 5000, 'four messages over STOMP');
    expect(bodies).toEqual(['s1', 's2', 's3', 's4']);
    await waitFor(async () => (await queueOn('n1', 'rc.stomp')).messages_unacknowledged === 0, 5000, 'acked on n1');
    await client.deactivate();
  });

  test('basic.get on n2 takes the messages of a queue homed on n1; ack and nack settle them there', async () => {
    await declareOnN1('rc.get');
    const p1 = await (await open('n1')).createConfirmChannel();
    await publishAll(p1, 'rc.get', ['g1', 'g2']);
    const ch2 = await (await open('n2')).createChannel();
    const m1 = await ch2.get('rc.get');
    expect(m1 && [m1.content.toString(), m1.fields.messageCount]).toEqual(['g1', 1]);
    ch2.ack(m1 as ConsumeMessage);
    const m2 = await ch2.get('rc.get');
    expect(m2 && m2.content.toString()).toBe('g2');
    ch2.nack(m2 as ConsumeMessage, false, true);
    const m3 = await ch2.get('rc.get', { noAck: true });
    expect(m3 && [m3.content.toString(), m3.fields.redelivered]).toEqual(['g2', true]);
    expect(await ch2.get('rc.get')).toBe(false);
    const q = await queueOn('n1', 'rc.get');
    expect([q.messages_ready, q.messages_unacknowledged]).toEqual([0, 0]);
  });

  test("SIGKILL of n2 returns its consumer's unacknowledged messages to n1, redelivered", async () => {
    await declareOnN1('rc.kill2');
    const ch2 = await (await open('n2')).createChannel();
    await ch2.prefetch(10);
    const got2: string[] = [];
    await ch2.consume('rc.kill2', (m) => {
      if (m !== null) got2.push(m.content.toString()); // never acked
    });
    await waitFor(async () => (await queueOn('n1', 'rc.kill2')).consumers === 1, 5000, 'consumer counted on n1');
    const p1 = await (await open('n1')).createConfirmChannel();
    await publishAll(p1, 'rc.kill2', ['k1', 'k2']);
    await waitFor(() => got2.length === 2, 5000, 'delivered on n2');

    await cluster.kill('n2');
    const ch1 = await (await open('n1')).createChannel();
    const got1: ConsumeMessage[] = [];
    await ch1.consume('rc.kill2', (m) => {
      if (m !== null) got1.push(m);
    }, { noAck: true });
    await waitFor(() => got1.length === 2, 15_000, 'redelivered on n1');
    expect(got1.map((m) => [m.content.toString(), m.fields.redelivered])).toEqual([
      ['k1', true],
      ['k2', true],
    ]);
  });

  test('SIGKILL of n1 cancels the consumer on n3 (basic.cancel); a mandatory publish to its queue is returned and nacked; once n1 is back the queue can be consumed again', async () => {
    await declareOnN1('rc.kill1', ['n3']); // n2 is gone
    const c3 = await open('n3');
    const ch3 = await c3.createChannel();
    let cancelled = false;
    await ch3.consume('rc.kill1', (m) => {
      if (m === null) cancelled = true;
    });
    await waitFor(async () => (await queueOn('n1', 'rc.kill1')).consumers === 1, 5000, 'consumer counted on n1');

    await cluster.kill('n1');
    await waitFor(() => cancelled, 10_000, 'basic.cancel on n3');

    // Once n3 lists n1 as not running, the queue is no route.
    await waitFor(async () => {
      const rows = (await http<{ name: string; running: boolean }[]>(node('n3').httpPort, 'GET', '/api/nodes')).body;
      return rows.some((r) => r.name === 'n1' && !r.running);
    }, 15_000, 'n1 not running');
    const pc = await c3.createConfirmChannel();
    const returned: string[] = [];
    pc.on('return', (m: ConsumeMessage) => returned.push(`${(m.fields as unknown as { replyCode: number }).replyCode} ${m.content.toString()}`));
    const confirm = new Promise<'ack' | 'nack'>((resolve) => {
      pc.publish('', 'rc.kill1', Buffer.from('lost'), { mandatory: true }, (err) => resolve(err === null || err === undefined ? 'ack' : 'nack'));
    });
    expect(await confirm).toBe('nack');
    await waitFor(() => returned.length === 1, 5000, 'basic.return');
    expect(returned).toEqual(['312 lost']);

    await cluster.start('n1');
    const ch3b: Channel = await c3.createChannel();
    const again: string[] = [];
    await waitFor(async () => {
      const rows = (await http<{ name: string; running: boolean }[]>(node('n3').httpPort, 'GET', '/api/nodes')).body;
      return rows.some((r) => r.name === 'n1' && r.running);
    }, 15_000, 'n1 running again');
    await ch3b.consume('rc.kill1', (m) => {
      if (m !== null) {
        again.push(m.content.toString());
        ch3b.ack(m);
      }
    });
    await waitFor(async () => (await queueOn('n1', 'rc.kill1')).consumers === 1, 5000, 'consumer counted on the restarted n1');
    const p1 = await (await open('n1')).createConfirmChannel();
    await publishAll(p1, 'rc.kill1', ['back']);
    await waitFor(() => again.length === 1, 5000, 'consumed again');
    expect(again).toEqual(['back']);
  });
});
