import { AMQPClient, AMQPSession } from '@cloudamqp/amqp-client';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { collect as collectMqtt, connectMqtt, mqttUrl, waitForCount } from '../helpers/mqtt.js';
import { collect as collectStomp, receiptFor, stompClient, wsUrl } from '../helpers/stomp.js';

const REPLY_TO = 'amq.rabbitmq.reply-to';

let tb: TestBroker;
let conn: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker();
  conn = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

/** A channel whose close (with its error) is recorded instead of thrown. */
async function channelWatchingClose(c: ChannelModel = conn): Promise<{ ch: Channel; closed: Promise<Error> }> {
  const ch = await c.createChannel();
  const closed = new Promise<Error>((resolve) => ch.once('error', resolve));
  return { ch, closed };
}

/** An amqplib responder on a fresh request queue: answers every request with `reply:<body>`. */
async function amqpResponder(): Promise<{ queue: string; requests: ConsumeMessage[]; ch: Channel }> {
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  const requests: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => {
    if (m === null) return;
    requests.push(m);
    ch.ack(m);
    ch.publish('', m.properties.replyTo as string, Buffer.from(`reply:${m.content.toString()}`), {
      correlationId: m.properties.correlationId as string,
    });
  });
  return { queue, requests, ch };
}

describe('AMQP requester', () => {
  test('amqplib: consume the pseudo-queue no-ack, publish with reply-to, the reply comes back on the same consumer', async () => {
    const responder = await amqpResponder();
    const ch = await conn.createChannel();
    const replies: ConsumeMessage[] = [];
    const { consumerTag } = await ch.consume(REPLY_TO, (m) => m && replies.push(m), { noAck: true });
    ch.sendToQueue(responder.queue, Buffer.from('ping'), { replyTo: REPLY_TO, correlationId: 'c1' });
    await waitFor(() => replies.length === 1, 5000, 'the reply');
    const req = responder.requests[0]!;
    expect(req.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to\.[A-Za-z0-9_-]{20,}$/);
    const r = replies[0]!;
    expect(r.content.toString()).toBe('reply:ping');
    expect(r.properties.correlationId).toBe('c1');
    expect(r.fields.consumerTag).toBe(consumerTag);
    expect(r.fields.exchange).toBe('');
    expect(r.fields.routingKey).toBe(req.properties.replyTo);
    await ch.close();
    await responder.ch.close();
  });

  test('the reply address is the same for every request of a channel and differs between channels', async () => {
    const responder = await amqpResponder();
    const a = await conn.createChannel();
    const b = await conn.createChannel();
    await a.consume(REPLY_TO, () => undefined, { noAck: true });
    await b.consume(REPLY_TO, () => undefined, { noAck: true });
    a.sendToQueue(responder.queue, Buffer.from('1'), { replyTo: REPLY_TO });
    a.sendToQueue(responder.queue, Buffer.from('2'), { replyTo: REPLY_TO });
    b.sendToQueue(responder.queue, Buffer.from('3'), { replyTo: REPLY_TO });
    await waitFor(() => responder.requests.length === 3, 5000, 'three requests');
    const by = new Map(responder.requests.map((m) => [m.content.toString(), m.properties.replyTo as string]));
    const [r1, r2, r3] = ['1', '2', '3'].map((k) => by.get(k));
    expect(r1).toBe(r2);
    expect(r3).not.toBe(r1);
    await a.close();
    await b.close();
    await responder.ch.close();
  });

  test('@cloudamqp/amqp-client rpcClient and rpcCall get their replies from an rpcServer', async () => {
    const session = await AMQPSession.connect(tb.amqpUrl);
    try {
      await session.queue('rpc-upper', { durable: false, autoDelete: true });
      await session.rpcServer('rpc-upper', (msg) => (msg.bodyString() ?? '').toUpperCase());
      const rpc = await session.rpcClient();
      const replies = await Promise.all(['a', 'b', 'c'].map((s) => rpc.call('rpc-upper', s, { timeout: 5000 })));
      expect(replies.map((m) => m.bodyString())).toEqual(['A', 'B', 'C']);
      const once = await session.rpcCall('rpc-upper', 'once', { timeout: 5000 });
      expect(once.bodyString()).toBe('ONCE');
      await rpc.close();
    } finally {
      await session.stop();
    }
  });

  test('consuming the pseudo-queue with acknowledgements is refused with 406, as RabbitMQ refuses it', async () => {
    const { ch, closed } = await channelWatchingClose();
    await expect(ch.consume(REPLY_TO, () => undefined, { noAck: false })).rejects.toThrow(
      /406 \(PRECONDITION-FAILED\) with message "PRECONDITION_FAILED - reply consumer cannot acknowledge"/,
    );
    expect((await closed).message).toMatch(/reply consumer cannot acknowledge/);
  });

  test('a second reply consumer on one channel is refused with 406', async () => {
    const { ch, closed } = await channelWatchingClose();
    await ch.consume(REPLY_TO, () => undefined, { noAck: true });
    await expect(ch.consume(REPLY_TO, () => undefined, { noAck: true })).rejects.toThrow(/reply consumer already set/);
    expect((await closed).message).toMatch(/406/);
  });

  test('publishing with reply-to amq.rabbitmq.reply-to without consuming it first closes the channel with 406', async () => {
    const { ch, closed } = await channelWatchingClose();
    ch.sendToQueue('anywhere', Buffer.from('x'), { replyTo: REPLY_TO });
    expect((await closed).message).toMatch(/406 \(PRECONDITION-FAILED\) with message "PRECONDITION_FAILED - fast reply consumer does not exist"/);
  });

  test('in a transaction, a request without the reply consumer is refused when it is published, not at commit', async () => {
    const client = await new AMQPClient(tb.amqpUrl).connect();
    try {
      const ch = await client.channel();
      const closed = new Promise<string>((resolve) => (ch.onerror = resolve));
      await ch.txSelect();
      await ch.basicPublish('', 'anywhere', 'x', { replyTo: REPLY_TO });
      expect(await closed).toMatch(/fast reply consumer does not exist/);
      expect(ch.closed).toBe(true);
    } finally {
      await client.close();
    }
  });

  test('a passive declare of the pseudo-queue succeeds without declaring anything; a reply address exists while its requester does', async () => {
    const ch = await conn.createChannel();
    const ok = await ch.checkQueue(REPLY_TO);
    expect(ok).toMatchObject({ queue: REPLY_TO, messageCount: 0 });
    const responder = await amqpResponder();
    const requester = await conn.createChannel();
    const { consumerTag } = await requester.consume(REPLY_TO, () => undefined, { noAck: true });
    requester.sendToQueue(responder.queue, Buffer.from('x'), { replyTo: REPLY_TO });
    await waitFor(() => responder.requests.length === 1, 5000, 'the request');
    const address = responder.requests[0]!.properties.replyTo as string;
    expect(await ch.checkQueue(address)).toEqual({ queue: address, messageCount: 0, consumerCount: 1 });
    await requester.cancel(consumerTag);
    const { ch: probe, closed } = await channelWatchingClose();
    await expect(probe.checkQueue(address)).rejects.toThrow(/404/);
    expect((await closed).message).toContain(`NOT_FOUND - no queue '${address}' in vhost '/'`);
    await ch.close();
    await requester.close();
    await responder.ch.close();
  });

  test('a reply to a requester that went away is dropped silently; with mandatory it comes back 312 NO_ROUTE', async () => {
    const responder = await conn.createChannel();
    const { queue } = await responder.assertQueue('', { exclusive: true });
    const c2 = await connect(tb.amqpUrl);
    const requester = await c2.createChannel();
    await requester.consume(REPLY_TO, () => undefined, { noAck: true });
    requester.sendToQueue(queue, Buffer.from('req'), { replyTo: REPLY_TO });
    const req = await waitFor(() => responder.get(queue, { noAck: true }), 5000, 'the request');
    const address = req.properties.replyTo as string;
    await c2.close();
    // Not mandatory: nothing happens, the responder's channel stays open.
    responder.publish('', address, Buffer.from('late'));
    const returned = new Promise<ConsumeMessage>((resolve) => responder.once('return', resolve));
    responder.publish('', address, Buffer.from('late'), { mandatory: true, correlationId: 'k' });
    const r = await returned;
    expect((r.fields as unknown as { replyCode: number }).replyCode).toBe(312);
    expect((r.fields as unknown as { replyText: string }).replyText).toBe('NO_ROUTE');
    expect(r.properties.correlationId).toBe('k');
    // An address no requester ever had is the same as a gone one.
    const unknown = new Promise<ConsumeMessage>((resolve) => responder.once('return', resolve));
    responder.publish('', `${REPLY_TO}.not-a-token`, Buffer.from('x'), { mandatory: true });
    expect((await unknown).fields.routingKey).toBe(`${REPLY_TO}.not-a-token`);
    await responder.close();
  });

  test('a mandatory reply that reaches its requester is not returned, and a confirm channel gets its ack', async () => {
    const requester = await conn.createChannel();
    const replies: ConsumeMessage[] = [];
    await requester.consume(REPLY_TO, (m) => m && replies.push(m), { noAck: true });
    const responder = await conn.createConfirmChannel();
    const { queue } = await responder.assertQueue('', { exclusive: true });
    requester.sendToQueue(queue, Buffer.from('req'), { replyTo: REPLY_TO });
    const req = await waitFor(() => responder.get(queue, { noAck: true }), 5000, 'the request');
    let returns = 0;
    responder.on('return', () => returns++);
    responder.publish('', req.properties.replyTo as string, Buffer.from('ans'), { mandatory: true, persistent: true });
    await responder.waitForConfirms();
    await waitFor(() => replies.length === 1, 5000, 'the reply');
    expect(replies[0]!.content.toString()).toBe('ans');
    expect(replies[0]!.properties.deliveryMode).toBe(2);
    expect(returns).toBe(0);
    await requester.close();
    await responder.close();
  });

  test('after basic.cancel of the reply consumer, replies to its address are dropped and the channel stays usable', async () => {
    const client = await new AMQPClient(tb.amqpUrl).connect();
    try {
      const ch = await client.channel();
      const got: string[] = [];
      const consumer = await ch.basicConsume(REPLY_TO, { noAck: true }, (m) => void got.push(m.bodyString() ?? ''));
      const q = await ch.queueDeclare('', { exclusive: true });
      await ch.basicPublish('', q.name, 'req', { replyTo: REPLY_TO });
      const req = await waitFor(() => ch.basicGet(q.name, { noAck: true }), 5000, 'the request');
      const address = req.properties.replyTo!;
      await ch.basicPublish('', address, 'one');
      await waitFor(() => got.length === 1, 5000, 'the first reply');
      await consumer.cancel();
      await ch.basicPublish('', address, 'two');
      await ch.basicPublish('', q.name, 'still open');
      expect((await waitFor(() => ch.basicGet(q.name, { noAck: true }), 5000, 'the message')).bodyString()).toBe('still open');
      expect(got).toEqual(['one']);
    } finally {
      await client.close();
    }
  });
});

describe('STOMP and MQTT 5 requesters, cross-protocol responders', () => {
  test('a STOMP requester subscribed to /amq/queue/amq.rabbitmq.reply-to gets the reply of an AMQP responder', async () => {
    const responder = await amqpResponder();
    const stomp = await stompClient(wsUrl(tb.broker.ports.http));
    try {
      const replies = collectStomp(stomp, `/amq/queue/${REPLY_TO}`, { id: 'replies' });
      const sent = receiptFor(stomp, 'r1');
      stomp.publish({
        destination: `/amq/queue/${responder.queue}`,
        body: 'from stomp',
        headers: { 'reply-to': `/amq/queue/${REPLY_TO}`, 'correlation-id': 's1', receipt: 'r1' },
      });
      await sent;
      await waitForCount(replies.messages, 1);
      const m = replies.messages[0]!;
      expect(m.body).toBe('reply:from stomp');
      expect(m.headers['correlation-id']).toBe('s1');
      expect(m.headers['subscription']).toBe('replies');
      expect(responder.requests[0]!.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to\.[A-Za-z0-9_-]+$/);
      expect(m.headers['destination']).toBe(`/queue/${responder.requests[0]!.properties.replyTo as string}`);
    } finally {
      await stomp.deactivate();
      await responder.ch.close();
    }
  });

  test('a STOMP SEND with reply-to amq.rabbitmq.reply-to and no reply subscription is refused with an ERROR', async () => {
    const stomp = await stompClient(wsUrl(tb.broker.ports.http));
    const error = new Promise<string>((resolve) => (stomp.onStompError = (f) => resolve(`${f.headers['message'] ?? ''}|${f.body}`)));
    stomp.publish({ destination: '/queue/anything', body: 'x', headers: { 'reply-to': `/amq/queue/${REPLY_TO}` } });
    expect(await error).toMatch(/precondition_failed\|.*fast reply consumer does not exist/);
    await stomp.deactivate();
  });

  test('a STOMP reply subscription with ack:client is refused with an ERROR, as the AMQP consumer would be', async () => {
    const stomp = await stompClient(wsUrl(tb.broker.ports.http));
    const error = new Promise<string>((resolve) => (stomp.onStompError = (f) => resolve(`${f.headers['message'] ?? ''}|${f.body}`)));
    stomp.subscribe(`/amq/queue/${REPLY_TO}`, () => undefined, { ack: 'client' });
    expect(await error).toMatch(/precondition_failed\|.*reply consumer cannot acknowledge/);
    await stomp.deactivate();
  });

  test('an MQTT 5 requester with Response Topic amq.rabbitmq.reply-to gets the reply of an AMQP responder', async () => {
    const responder = await amqpResponder();
    await responder.ch.bindQueue(responder.queue, 'amq.topic', 'rpc.mqtt');
    const client = await connectMqtt(mqttUrl(tb), { protocolVersion: 5, clientId: 'mqtt-requester' });
    try {
      const received = collectMqtt(client);
      await client.subscribeAsync(REPLY_TO, { qos: 0 });
      await client.publishAsync('rpc/mqtt', 'from mqtt', {
        qos: 1,
        properties: { responseTopic: REPLY_TO, correlationData: Buffer.from('m1') },
      });
      await waitForCount(received, 1);
      const r = received[0]!;
      expect(r.topic).toBe(REPLY_TO);
      expect(r.payload).toBe('reply:from mqtt');
      expect(r.packet.properties?.correlationData?.toString()).toBe('m1');
      const req = responder.requests[0]!;
      expect(req.properties.replyTo).toMatch(/^amq\.rabbitmq\.reply-to\.[A-Za-z0-9_-]+$/);
      expect(req.properties.headers?.['x-reply-to-topic']).toBeUndefined();
    } finally {
      await client.endAsync();
      await responder.ch.close();
    }
  });

  test('an MQTT 5 requester needs no SUBSCRIBE; its reply address goes when it disconnects', async () => {
    const vhost = tb.broker.core.vhosts.get('/')!;
    const before = vhost.directReply.size;
    const responder = await amqpResponder();
    await responder.ch.bindQueue(responder.queue, 'amq.topic', 'rpc.mqtt-nosub');
    const client = await connectMqtt(mqttUrl(tb), { protocolVersion: 5, clientId: 'mqtt-requester-nosub' });
    const received = collectMqtt(client);
    for (const n of ['1', '2']) {
      await client.publishAsync('rpc/mqtt-nosub', n, { qos: 0, properties: { responseTopic: REPLY_TO, correlationData: Buffer.from(n) } });
    }
    await waitForCount(received, 2);
    expect(received.map((r) => [r.topic, r.payload, r.packet.qos])).toEqual([
      [REPLY_TO, 'reply:1', 0],
      [REPLY_TO, 'reply:2', 0],
    ]);
    expect(new Set(responder.requests.map((m) => m.properties.replyTo as string)).size).toBe(1);
    expect(vhost.directReply.size).toBe(before + 1);
    await client.endAsync();
    await waitFor(() => vhost.directReply.size === before, 5000, 'the address to go');
    await responder.ch.close();
  });

  test('an AMQP requester gets the reply of a STOMP responder that SENDs to the reply-to it was given', async () => {
    const stomp = await stompClient(wsUrl(tb.broker.ports.http));
    const requester = await conn.createChannel();
    try {
      const sub = receiptFor(stomp, 'sub');
      stomp.subscribe(
        '/queue/rpc-stomp-responder',
        (m) => stomp.publish({ destination: m.headers['reply-to']!, body: `stomp:${m.body}`, headers: { 'correlation-id': m.headers['correlation-id']! } }),
        { 'auto-delete': 'true', durable: 'false', receipt: 'sub' },
      );
      await sub;
      const replies: ConsumeMessage[] = [];
      await requester.consume(REPLY_TO, (m) => m && replies.push(m), { noAck: true });
      requester.sendToQueue('rpc-stomp-responder', Buffer.from('ask'), { replyTo: REPLY_TO, correlationId: 'a1' });
      await waitFor(() => replies.length === 1, 5000, 'the STOMP reply');
      expect(replies[0]!.content.toString()).toBe('stomp:ask');
      expect(replies[0]!.properties.correlationId).toBe('a1');
    } finally {
      await requester.close();
      await stomp.deactivate();
    }
  });

  test('an AMQP requester gets the reply of an MQTT 5 responder that publishes to the Response Topic it was given', async () => {
    const client = await connectMqtt(mqttUrl(tb), { protocolVersion: 5, clientId: 'mqtt-responder' });
    const requester = await conn.createChannel();
    try {
      client.on('message', (_topic, payload, packet) => {
        const rt = packet.properties?.responseTopic;
        if (rt === undefined) return;
        void client.publishAsync(rt, `mqtt:${payload.toString()}`, { qos: 1, properties: { correlationData: packet.properties?.correlationData } });
      });
      await client.subscribeAsync('rpc/mqtt-responder', { qos: 1 });
      const replies: ConsumeMessage[] = [];
      await requester.consume(REPLY_TO, (m) => m && replies.push(m), { noAck: true });
      requester.publish('amq.topic', 'rpc.mqtt-responder', Buffer.from('ask'), { replyTo: REPLY_TO, correlationId: 'q1' });
      await waitFor(() => replies.length === 1, 5000, 'the MQTT reply');
      expect(replies[0]!.content.toString()).toBe('mqtt:ask');
      expect(replies[0]!.properties.correlationId).toBe('q1');
    } finally {
      await requester.close();
      await client.endAsync();
    }
  });

  test('a STOMP requester that disconnects leaves no reply address behind', async () => {
    const vhost = tb.broker.core.vhosts.get('/')!;
    const before = vhost.directReply.size;
    const stomp = await stompClient(wsUrl(tb.broker.ports.http));
    const sub = receiptFor(stomp, 'sub');
    stomp.subscribe(`/amq/queue/${REPLY_TO}`, () => undefined, { receipt: 'sub' });
    await sub;
    expect(vhost.directReply.size).toBe(before + 1);
    await stomp.deactivate();
    await waitFor(() => vhost.directReply.size === before, 5000, 'the address to go');
  });
});
