import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import type { IMessage } from '@stomp/stompjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';
import { connectMqtt, mqttUrl } from '../helpers/mqtt.js';
import { stompClient } from '../helpers/stomp.js';

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

async function delayedExchange(ch: Channel, name: string, type = 'direct', durable = false): Promise<string> {
  await ch.assertExchange(name, 'x-delayed-message', { durable, arguments: { 'x-delayed-type': type } });
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.bindQueue(q, name, 'k');
  return q;
}

function collect(ch: Channel, q: string): Promise<{ got: Array<{ body: string; at: number; msg: ConsumeMessage }> }> {
  const got: Array<{ body: string; at: number; msg: ConsumeMessage }> = [];
  return ch.consume(q, (m) => m && got.push({ body: m.content.toString(), at: Date.now(), msg: m }), { noAck: true }).then(() => ({ got }));
}

describe('x-delayed-message exchange (AMQP)', () => {
  test('a message with x-delay is held, then routed as the x-delayed-type routes; shorter delays come first', async () => {
    const ch = await conn.createChannel();
    const q = await delayedExchange(ch, 'dx-order');
    const { got } = await collect(ch, q);
    const t0 = Date.now();
    ch.publish('dx-order', 'k', Buffer.from('late'), { headers: { 'x-delay': 600 } });
    ch.publish('dx-order', 'k', Buffer.from('early'), { headers: { 'x-delay': 200 } });
    ch.publish('dx-order', 'other', Buffer.from('unbound key'), { headers: { 'x-delay': 100 } });
    await waitFor(() => got.length === 2, 5000, 'two delayed messages');
    expect(got.map((g) => g.body)).toEqual(['early', 'late']);
    expect(got[0]!.at - t0).toBeGreaterThanOrEqual(190);
    expect(got[1]!.at - t0).toBeGreaterThanOrEqual(590);
    expect(got[0]!.msg.fields.exchange).toBe('dx-order');
    await ch.close();
  });

  test('no x-delay, zero or a negative delay routes at once', async () => {
    const ch = await conn.createChannel();
    const q = await delayedExchange(ch, 'dx-now');
    ch.publish('dx-now', 'k', Buffer.from('none'));
    ch.publish('dx-now', 'k', Buffer.from('negative'), { headers: { 'x-delay': -5000 } });
    ch.publish('dx-now', 'k', Buffer.from('zero'), { headers: { 'x-delay': 0 } });
    await waitFor(async () => (await ch.checkQueue(q)).messageCount === 3, 2000);
    await ch.close();
  });

  test('a topic x-delayed-type routes by pattern once due', async () => {
    const ch = await conn.createChannel();
    await ch.assertExchange('dx-topic', 'x-delayed-message', { durable: false, arguments: { 'x-delayed-type': 'topic' } });
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(q, 'dx-topic', 'orders.*');
    const { got } = await collect(ch, q);
    ch.publish('dx-topic', 'orders.created', Buffer.from('o1'), { headers: { 'x-delay': 100 } });
    await waitFor(() => got.length === 1);
    expect(got[0]!.msg.fields.routingKey).toBe('orders.created');
    await ch.close();
  });

  test('a mandatory delayed publish comes back at once (the plugin does not support mandatory), and is still delivered later', async () => {
    const ch = await conn.createChannel();
    const q = await delayedExchange(ch, 'dx-mandatory');
    const returned = new Promise<ConsumeMessage>((resolve) => ch.once('return', resolve));
    ch.publish('dx-mandatory', 'k', Buffer.from('m'), { mandatory: true, headers: { 'x-delay': 100 } });
    expect((await returned).content.toString()).toBe('m');
    await waitFor(async () => (await ch.checkQueue(q)).messageCount === 1);
    await ch.close();
  });

  test('declaring without x-delayed-type fails as the plugin does', async () => {
    const ch = await conn.createChannel();
    ch.on('error', () => undefined);
    const err = await ch.assertExchange('dx-bad', 'x-delayed-message').then(
      () => 'declared',
      (e: unknown) => (e as Error).message,
    );
    expect(err).toContain("PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing exchange type");
  });

  test('the management API counts held messages per exchange (messages_delayed) and lists the type', async () => {
    const ch = await conn.createChannel();
    await delayedExchange(ch, 'dx-count');
    for (let i = 0; i < 5; i++) ch.publish('dx-count', 'k', Buffer.from(String(i)), { headers: { 'x-delay': 60_000 } });
    const api = mgmt(tb.broker.ports.http!);
    const row = await waitFor(async () => {
      const r = await api.get('/exchanges/%2F/dx-count');
      return r.body['messages_delayed'] === 5 ? r.body : undefined;
    });
    expect(row['type']).toBe('x-delayed-message');
    const types = (await api.get<{ exchange_types: Array<{ name: string }> }>('/overview')).body.exchange_types.map((t) => t.name);
    expect(types).toContain('x-delayed-message');
    await ch.deleteExchange('dx-count');
    await ch.close();
  });

  test('a confirm for a delayed persistent message to a durable exchange arrives before the message is routed', async () => {
    const cc = await conn.createConfirmChannel();
    await cc.assertExchange('dx-confirm', 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'direct' } });
    await cc.assertQueue('dx-confirm-q', { durable: true });
    await cc.bindQueue('dx-confirm-q', 'dx-confirm', 'k');
    await new Promise<void>((resolve, reject) =>
      cc.publish('dx-confirm', 'k', Buffer.from('p'), { persistent: true, headers: { 'x-delay': 400 } }, (err) => (err ? reject(err) : resolve())),
    );
    expect((await cc.checkQueue('dx-confirm-q')).messageCount).toBe(0);
    await waitFor(async () => (await cc.checkQueue('dx-confirm-q')).messageCount === 1);
    await cc.deleteQueue('dx-confirm-q');
    await cc.deleteExchange('dx-confirm');
    await cc.close();
  });
});

describe('delayed publishes from MQTT and STOMP', () => {
  test('MQTT $delayed/<seconds>/<topic> reaches subscribers of <topic> after the delay', async () => {
    const sub = await connectMqtt(mqttUrl(tb), { clientId: 'delayed-sub' });
    const got: Array<{ topic: string; at: number }> = [];
    sub.on('message', (topic) => got.push({ topic, at: Date.now() }));
    await sub.subscribeAsync('alarms/#', { qos: 1 });
    const pub = await connectMqtt(mqttUrl(tb), { clientId: 'delayed-pub', protocolVersion: 5 });
    const t0 = Date.now();
    await pub.publishAsync('$delayed/1/alarms/wake', 'up', { qos: 1 });
    expect(got).toHaveLength(0);
    await waitFor(() => got.length === 1, 5000, 'the delayed MQTT message');
    expect(got[0]!.topic).toBe('alarms/wake');
    expect(got[0]!.at - t0).toBeGreaterThanOrEqual(950);
    await pub.endAsync();
    await sub.endAsync();
  });

  test('MQTT: an invalid delay interval is refused', async () => {
    const pub = await connectMqtt(mqttUrl(tb), { clientId: 'delayed-bad', protocolVersion: 5 });
    const closed = new Promise<void>((resolve) => pub.once('close', () => resolve()));
    pub.publish('$delayed/soon/alarms/x', 'x', { qos: 1 });
    await closed;
    pub.end(true);
  });

  test('STOMP SEND with an x-delay header is routed after the delay, to any destination', async () => {
    const client = await stompClient(`ws://127.0.0.1:${tb.broker.ports.http}/ws`);
    const got: Array<{ msg: IMessage; at: number }> = [];
    const ch = await conn.createChannel();
    await ch.assertQueue('stomp-delayed', { durable: true });
    client.subscribe('/amq/queue/stomp-delayed', (m) => got.push({ msg: m, at: Date.now() }));
    const t0 = Date.now();
    client.publish({ destination: '/amq/queue/stomp-delayed', body: 'later', headers: { 'x-delay': '500' } });
    client.publish({ destination: '/amq/queue/stomp-delayed', body: 'now' });
    await waitFor(() => got.length === 2, 5000, 'both STOMP messages');
    expect(got.map((g) => g.msg.body)).toEqual(['now', 'later']);
    expect(got[1]!.at - t0).toBeGreaterThanOrEqual(490);
    await client.deactivate();
    await ch.deleteQueue('stomp-delayed');
    await ch.close();
  });
});
