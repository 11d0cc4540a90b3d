import type { Client } from '@stomp/stompjs';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawStomp, collect, receiptFor, stompClient, wsUrl } from '../helpers/stomp.js';

let tb: TestBroker;
let amqp: ChannelModel;
let ch: Channel;
let stomp: Client;

beforeAll(async () => {
  tb = await startTestBroker();
  amqp = await connect(tb.amqpUrl);
  ch = await amqp.createChannel();
  stomp = await stompClient(wsUrl(tb.broker.ports.http!));
});
afterAll(async () => {
  await stomp.deactivate();
  await amqp.close();
  await tb.stop();
});

async function subscribed(destination: string, headers: Record<string, string> = {}): Promise<ReturnType<typeof collect>> {
  const receipt = `s-${Math.random()}`;
  const done = receiptFor(stomp, receipt);
  const s = collect(stomp, destination, { ...headers, receipt });
  await done;
  return s;
}

async function sent(destination: string, body: string, headers: Record<string, string> = {}): Promise<void> {
  const receipt = `p-${Math.random()}`;
  const done = receiptFor(stomp, receipt);
  stomp.publish({ destination, body, headers: { ...headers, receipt } });
  await done;
}

/** The next message of `queue`, fetched with basic.get. */
async function consumeOne(queue: string): Promise<GetMessage> {
  return waitFor(async () => (await ch.get(queue, { noAck: true })) || undefined, 5000, `a message on ${queue}`);
}

describe('STOMP -> AMQP', () => {
  test('a SEND to /queue/ reaches an AMQP consumer with its headers mapped onto AMQP properties', async () => {
    await sent('/queue/stomp-to-amqp', '{"t":21.5}', {
      'content-type': 'application/json',
      'content-encoding': 'utf-8',
      'correlation-id': 'c-9',
      'reply-to': '/queue/answers',
      expiration: '60000',
      priority: '3',
      persistent: 'true',
      'amqp-message-id': 'id-9',
      timestamp: '1700000000',
      type: 'reading',
      'app-id': 'dashboard',
      'x-room': 'kitchen',
    });
    const m = await consumeOne('stomp-to-amqp');
    expect(m.content.toString()).toBe('{"t":21.5}');
    expect(m.fields.exchange).toBe('');
    expect(m.fields.routingKey).toBe('stomp-to-amqp');
    const p = m.properties;
    expect({
      contentType: p.contentType,
      contentEncoding: p.contentEncoding,
      correlationId: p.correlationId,
      replyTo: p.replyTo,
      expiration: p.expiration,
      priority: p.priority,
      deliveryMode: p.deliveryMode,
      messageId: p.messageId,
      timestamp: p.timestamp,
      type: p.type,
      appId: p.appId,
    }).toEqual({
      contentType: 'application/json',
      contentEncoding: 'utf-8',
      correlationId: 'c-9',
      replyTo: '/queue/answers',
      expiration: '60000',
      priority: 3,
      deliveryMode: 2,
      messageId: 'id-9',
      timestamp: 1700000000,
      type: 'reading',
      appId: 'dashboard',
    });
    expect(p.headers).toEqual({ 'x-room': 'kitchen' });
  });

  test('a SEND to /topic/ goes to amq.topic, to /exchange/ to that exchange', async () => {
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(q, 'amq.topic', 'sensors.*.temp');
    await ch.assertExchange('stomp-logs', 'direct', { durable: false });
    await ch.bindQueue(q, 'stomp-logs', 'error');
    await sent('/topic/sensors.hall.temp', 'topic');
    await sent('/exchange/stomp-logs/error', 'exchange');
    await sent('/exchange/stomp-logs/info', 'unrouted');
    const a = await consumeOne(q);
    const b = await consumeOne(q);
    expect([a.fields.exchange, a.fields.routingKey, a.content.toString()]).toEqual(['amq.topic', 'sensors.hall.temp', 'topic']);
    expect([b.fields.exchange, b.fields.routingKey, b.content.toString()]).toEqual(['stomp-logs', 'error', 'exchange']);
  });

  test('a binary body with NUL bytes arrives unchanged', async () => {
    const body = Buffer.from([0, 255, 0, 1, 2, 0]);
    const raw = await RawStomp.connected(tb.broker.ports.stomp!);
    raw.send('SEND', { destination: '/queue/stomp-binary', receipt: 'r' }, body);
    await raw.next('RECEIPT');
    raw.destroy();
    const m = await consumeOne('stomp-binary');
    expect(Buffer.compare(m.content, body)).toBe(0);
  });
});

describe('AMQP -> STOMP', () => {
  test('properties and headers become MESSAGE headers; the destination is rebuilt from exchange and key', async () => {
    await ch.assertExchange('amqp-events', 'topic', { durable: false });
    const viaQueue = await subscribed('/queue/amqp-to-stomp');
    const viaTopic = await subscribed('/topic/orders.*');
    const viaExchange = await subscribed('/exchange/amqp-events/user.#');
    ch.sendToQueue('amqp-to-stomp', Buffer.from('q'), {
      contentType: 'text/plain',
      correlationId: 'corr',
      replyTo: 'amq.gen-reply',
      priority: 2,
      persistent: true,
      messageId: 'mid',
      timestamp: 1700000001,
      type: 't',
      appId: 'svc',
      headers: { s: 'str', n: 42, b: true, nested: { x: 1 }, subscription: 'forged', 'message-id': 'forged', destination: '/queue/forged' },
    });
    ch.publish('amq.topic', 'orders.new', Buffer.from('t'));
    ch.publish('amqp-events', 'user.created', Buffer.from('e'));
    await waitFor(() => viaQueue.messages.length === 1 && viaTopic.messages.length === 1 && viaExchange.messages.length === 1);

    const h = viaQueue.messages[0]!.headers;
    expect(viaQueue.messages[0]!.body).toBe('q');
    expect(h['destination']).toBe('/queue/amqp-to-stomp');
    expect(h['content-type']).toBe('text/plain');
    expect(h['correlation-id']).toBe('corr');
    expect(h['reply-to']).toBe('/reply-queue/amq.gen-reply');
    expect(h['priority']).toBe('2');
    expect(h['persistent']).toBe('true');
    expect(h['amqp-message-id']).toBe('mid');
    expect(h['timestamp']).toBe('1700000001');
    expect(h['type']).toBe('t');
    expect(h['app-id']).toBe('svc');
    expect([h['s'], h['n'], h['b'], h['nested']]).toEqual(['str', '42', 'true', undefined]);
    expect(h['subscription']).not.toBe('forged');
    expect(h['message-id']).not.toBe('forged');

    expect(viaTopic.messages[0]!.headers['destination']).toBe('/topic/orders.new');
    expect(viaExchange.messages[0]!.headers['destination']).toBe('/exchange/amqp-events/user.created');
  });
});

describe('RPC through /temp-queue/', () => {
  test('an AMQP responder answers a reply-to:/temp-queue/ request and the reply reaches the requester', async () => {
    await ch.assertQueue('rpc-amqp', { durable: false });
    let seenReplyTo = '';
    await ch.consume('rpc-amqp', (m) => {
      if (m === null) return;
      seenReplyTo = m.properties.replyTo as string;
      ch.sendToQueue(seenReplyTo, Buffer.from(`pong: ${m.content.toString()}`), { correlationId: m.properties.correlationId as string });
      ch.ack(m);
    });
    const replies: { body: string; headers: Record<string, string> }[] = [];
    stomp.onUnhandledMessage = (m) => replies.push({ body: m.body, headers: m.headers });
    stomp.publish({ destination: '/queue/rpc-amqp', body: 'ping', headers: { 'reply-to': '/temp-queue/rpc', 'correlation-id': 'c1' } });
    await waitFor(() => replies.length === 1);
    expect(seenReplyTo).toMatch(/^amq\.gen-/);
    expect(replies[0]!.body).toBe('pong: ping');
    expect(replies[0]!.headers['subscription']).toBe('/temp-queue/rpc');
    expect(replies[0]!.headers['correlation-id']).toBe('c1');
    // The same temp queue serves every request of the session.
    stomp.publish({ destination: '/queue/rpc-amqp', body: 'again', headers: { 'reply-to': '/temp-queue/rpc' } });
    await waitFor(() => replies.length === 2);
    expect(replies[1]!.body).toBe('pong: again');
    const temp = tb.broker.core.vhosts.get('/')!.queues.get(seenReplyTo)!;
    expect([temp.exclusive, temp.autoDelete]).toEqual([true, true]);
  });

  test('a STOMP responder answers by SENDing to the /reply-queue/ it was given', async () => {
    const responder = await stompClient(wsUrl(tb.broker.ports.http!));
    try {
      const ready = receiptFor(responder, 'ready');
      responder.subscribe(
        '/queue/rpc-stomp',
        (m) => {
          responder.publish({ destination: m.headers['reply-to']!, body: m.body.toUpperCase(), headers: { 'correlation-id': m.headers['correlation-id']! } });
        },
        { receipt: 'ready' },
      );
      await ready;
      const requester = await RawStomp.connected(tb.broker.ports.stomp!);
      requester.send('SEND', { destination: '/queue/rpc-stomp', 'reply-to': '/temp-queue/answers', 'correlation-id': 'x7' }, 'hello');
      const reply = await requester.next('MESSAGE');
      expect(reply.body.toString()).toBe('HELLO');
      expect(reply.headers['subscription']).toBe('/temp-queue/answers');
      expect(reply.headers['correlation-id']).toBe('x7');
      expect(reply.headers['destination']).toMatch(/^\/queue\/amq\.gen-/);
      requester.destroy();
    } finally {
      await responder.deactivate();
    }
  });
});
