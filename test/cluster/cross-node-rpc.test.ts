import { AMQPClient } from '@cloudamqp/amqp-client';
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { http } from '../helpers/management.js';
import { collect as collectMqtt, connectMqtt, waitForCount } from '../helpers/mqtt.js';

const REPLY_TO = 'amq.rabbitmq.reply-to';

interface QueueRow {
  name: string;
  node: string;
  durable: boolean;
  consumers: number;
  messages_ready: number;
}

describe('direct reply-to and named transient queues across nodes (two nodes, one nats-server)', { timeout: 90_000 }, () => {
  let cluster: TestCluster;
  const conns: ChannelModel[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(1);
    await Promise.all([cluster.start('n1', ['--mqtt-port', '0']), cluster.start('n2')]);
  }, 60_000);

  afterAll(async () => {
    for (const c of conns) await c.close().catch(() => undefined);
    await cluster?.stop();
  });

  const node = (name: string) => cluster.nodes.get(name)!;
  const amqpUrl = (name: string): string => `amqp://guest:guest@127.0.0.1:${node(name).amqpPort}`;
  const open = async (name: string): Promise<ChannelModel> => {
    const c = await amqp.connect(amqpUrl(name));
    c.on('error', () => undefined);
    conns.push(c);
    return c;
  };
  const queueOn = async (name: string, queue: string) => http<QueueRow>(node(name).httpPort, 'GET', `/api/queues/%2F/${encodeURIComponent(queue)}`);
  const visibleOn = async (name: string, queue: string): Promise<void> => {
    await waitFor(async () => (await queueOn(name, queue)).status === 200, 5000, `${queue} on ${name}`);
  };

  /** An amqplib responder on n2 consuming `queue` (declared durable there): answers `reply:<body>`. */
  const responderOn = async (name: string, queue: string, durable: boolean): Promise<{ ch: Channel; requests: ConsumeMessage[] }> => {
    const ch = await (await open(name)).createChannel();
    await ch.assertQueue(queue, { durable });
    const requests: ConsumeMessage[] = [];
    await ch.consume(queue, (m) => {
      if (m === null) return;
      requests.push(m);
      ch.ack(m);
      ch.publish('', m.properties.replyTo as string, Buffer.from(`reply:${m.content.toString()}`), { correlationId: m.properties.correlationId as string });
    });
    return { ch, requests };
  };

  test('amqplib requester on n1, responder on n2: the reply comes back; 500 concurrent calls all answered once', async () => {
    const responder = await responderOn('n2', 'rpc.cross', true);
    await visibleOn('n1', 'rpc.cross');
    const ch = await (await open('n1')).createChannel();
    const replies: ConsumeMessage[] = [];
    const { consumerTag } = await ch.consume(REPLY_TO, (m) => m && replies.push(m), { noAck: true });
    ch.sendToQueue('rpc.cross', Buffer.from('ping'), { replyTo: REPLY_TO, correlationId: 'c1' });
    await waitFor(() => replies.length === 1, 5000, 'the reply');
    const address = responder.requests[0]!.properties.replyTo as string;
    // The token names the requester's node.
    expect(address).toMatch(/^amq\.rabbitmq\.reply-to\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]+$/);
    expect(Buffer.from(address.slice(address.lastIndexOf('.') + 1), 'base64url').toString()).toBe('n1');
    expect(replies[0]!.content.toString()).toBe('reply:ping');
    expect(replies[0]!.properties.correlationId).toBe('c1');
    expect(replies[0]!.fields.consumerTag).toBe(consumerTag);
    expect(replies[0]!.fields.routingKey).toBe(address);

    const n = 500;
    for (let i = 0; i < n; i++) ch.sendToQueue('rpc.cross', Buffer.from(`r${i}`), { replyTo: REPLY_TO, correlationId: `k${i}` });
    await waitFor(() => replies.length === n + 1, 15_000, `${n} replies`);
    const ids = new Set(replies.slice(1).map((m) => `${m.properties.correlationId as string}=${m.content.toString()}`));
    expect(ids.size).toBe(n);
    for (let i = 0; i < n; i++) expect(ids.has(`k${i}=reply:r${i}`)).toBe(true);
    await ch.close();
    await responder.ch.close();
  });

  test('@cloudamqp/amqp-client requester on n2, responder on n1 (an RPC queue declared durable:false on n1)', async () => {
    const responder = await responderOn('n1', 'rpc.transient-server', false);
    await visibleOn('n2', 'rpc.transient-server');
    const client = await new AMQPClient(amqpUrl('n2')).connect();
    try {
      const ch = await client.channel();
      const got: string[] = [];
      await ch.basicConsume(REPLY_TO, { noAck: true }, (m) => void got.push(`${m.properties.correlationId ?? ''}:${m.bodyString() ?? ''}`));
      await ch.confirmSelect();
      for (const id of ['a', 'b', 'c']) await ch.basicPublish('', 'rpc.transient-server', id, { replyTo: REPLY_TO, correlationId: id });
      await waitFor(() => got.length === 3, 5000, 'three replies');
      expect(got.sort()).toEqual(['a:reply:a', 'b:reply:b', 'c:reply:c']);
    } finally {
      await client.close();
      await responder.ch.close();
    }
  });

  test('a reply to the token of a requester that went away is dropped; the responder goes on', async () => {
    const responder = await (await open('n2')).createChannel();
    await responder.assertQueue('rpc.gone', { durable: true });
    await visibleOn('n1', 'rpc.gone');
    const requester = await (await open('n1')).createChannel();
    await requester.consume(REPLY_TO, () => undefined, { noAck: true });
    requester.sendToQueue('rpc.gone', Buffer.from('req'), { replyTo: REPLY_TO });
    const req = await waitFor(async () => (await responder.get('rpc.gone', { noAck: true })) || undefined, 5000, 'the request');
    const address = req.properties.replyTo as string;
    await requester.close();
    let errors = 0;
    responder.on('error', () => errors++);
    responder.publish('', address, Buffer.from('too late'));
    // The channel is still usable, and a new requester on n1 is answered.
    const again = await (await open('n1')).createChannel();
    const got: string[] = [];
    await again.consume(REPLY_TO, (m) => m && got.push(m.content.toString()), { noAck: true });
    again.sendToQueue('rpc.gone', Buffer.from('req2'), { replyTo: REPLY_TO });
    const req2 = await waitFor(async () => (await responder.get('rpc.gone', { noAck: true })) || undefined, 5000, 'the second request');
    responder.publish('', req2.properties.replyTo as string, Buffer.from('on time'));
    await waitFor(() => got.length === 1, 5000, 'the second reply');
    expect(got).toEqual(['on time']);
    expect(errors).toBe(0);
    await again.close();
    await responder.close();
  });

  test('an MQTT 5 requester on n1 with Response Topic amq.rabbitmq.reply-to is answered by an AMQP service on n2', async () => {
    const ch = await (await open('n2')).createChannel();
    await ch.assertQueue('rpc.mqtt-service', { durable: true });
    await ch.bindQueue('rpc.mqtt-service', 'amq.topic', 'rpc.mqtt');
    await ch.consume('rpc.mqtt-service', (m) => {
      if (m === null) return;
      ch.ack(m);
      ch.publish('', m.properties.replyTo as string, Buffer.from(`reply:${m.content.toString()}`), { correlationId: m.properties.correlationId as string });
    });
    await visibleOn('n1', 'rpc.mqtt-service');
    await waitFor(async () => {
      const r = await http<unknown[]>(node('n1').httpPort, 'GET', '/api/queues/%2F/rpc.mqtt-service/bindings');
      return r.status === 200 && r.body.length === 2;
    }, 5000, 'the binding on n1');
    const client = await connectMqtt(`mqtt://127.0.0.1:${node('n1').mqttPort!}`, { protocolVersion: 5, clientId: 'mqtt-requester' });
    try {
      const received = collectMqtt(client);
      await client.publishAsync('rpc/mqtt', 'from mqtt', { qos: 1, properties: { responseTopic: REPLY_TO, correlationData: Buffer.from('m1') } });
      await waitForCount(received, 1);
      expect(received[0]!.topic).toBe(REPLY_TO);
      expect(received[0]!.payload).toBe('reply:from mqtt');
      expect(received[0]!.packet.properties?.correlationData?.toString()).toBe('m1');
    } finally {
      await client.endAsync();
      await ch.close();
    }
  });

  test('a named transient queue declared on n1: passive declare, consume and listing on n2; publishes from n2 confirmed; gone when n1 dies', async () => {
    const ch1 = await (await open('n1')).createChannel();
    await ch1.assertQueue('tq.shared', { durable: false });
    await ch1.assertQueue('tq.exclusive', { exclusive: true });
    await visibleOn('n2', 'tq.shared');
    const row = (await queueOn('n2', 'tq.shared')).body;
    expect(row.node).toBe('n1');
    expect(row.durable).toBe(false);
    // Exclusive queues stay with their connection's node.
    expect((await queueOn('n2', 'tq.exclusive')).status).toBe(404);
    const listed = (await http<QueueRow[]>(node('n2').httpPort, 'GET', '/api/queues/%2F')).body.map((q) => q.name);
    expect(listed).toContain('tq.shared');

    const c2 = await open('n2');
    const ch2 = await c2.createChannel();
    const ok = await ch2.checkQueue('tq.shared');
    expect(ok.queue).toBe('tq.shared');
    const got: string[] = [];
    let lastReplyTo: string | undefined;
    await ch2.consume('tq.shared', (m) => {
      if (m === null) return;
      got.push(m.content.toString());
      lastReplyTo = m.properties.replyTo as string | undefined;
      ch2.ack(m);
    });
    await waitFor(async () => (await queueOn('n1', 'tq.shared')).body.consumers === 1, 5000, 'the consumer on n2 counted on n1');
    ch1.sendToQueue('tq.shared', Buffer.from('from n1'));
    const pub2 = await c2.createConfirmChannel();
    pub2.sendToQueue('tq.shared', Buffer.from('from n2'));
    await pub2.waitForConfirms();
    await waitFor(() => got.length === 2, 5000, 'both messages');
    expect(got.sort()).toEqual(['from n1', 'from n2']);

    // Deleting the queue at its home removes it everywhere.
    await ch1.assertQueue('tq.deleted', { durable: false });
    await visibleOn('n2', 'tq.deleted');
    await ch1.deleteQueue('tq.deleted');
    await waitFor(async () => (await queueOn('n2', 'tq.deleted')).status === 404, 5000, 'tq.deleted gone on n2');

    // Keep a direct-reply token of n1 to reply to once n1 is dead.
    const requester = await (await open('n1')).createChannel();
    await requester.consume(REPLY_TO, () => undefined, { noAck: true });
    requester.sendToQueue('tq.shared', Buffer.from('req'), { replyTo: REPLY_TO });
    await waitFor(() => got.length === 3, 5000, 'the request');

    await cluster.kill('n1');
    await waitFor(async () => (await queueOn('n2', 'tq.shared')).status === 404, 15_000, 'tq.shared gone on n2');
    expect((await http<QueueRow[]>(node('n2').httpPort, 'GET', '/api/queues/%2F')).body.map((q) => q.name)).not.toContain('tq.shared');
    const ch3 = await (await open('n2')).createChannel();
    ch3.on('error', () => undefined);
    await expect(ch3.checkQueue('tq.shared')).rejects.toThrow(/404/);

    // A mandatory reply to a token of the dead node is returned: nobody can take it.
    const address = lastReplyTo!;
    expect(address.startsWith(`${REPLY_TO}.`)).toBe(true);
    const ch4 = await c2.createChannel();
    const returned = new Promise<string>((resolve) => ch4.on('return', (m: ConsumeMessage) => resolve(m.fields.routingKey)));
    ch4.publish('', address, Buffer.from('late'), { mandatory: true });
    expect(await returned).toBe(address);
  });
});
