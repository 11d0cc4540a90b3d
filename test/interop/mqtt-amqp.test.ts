import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { collect, connectCollecting, connectMqtt, mqttUrl, waitForCount } from '../helpers/mqtt.js';

let tb: TestBroker;
let url: string;
let conn: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  tb = await startTestBroker();
  url = mqttUrl(tb);
  conn = await amqp.connect(tb.amqpUrl);
  ch = await conn.createChannel();
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

async function boundQueue(key: string): Promise<string> {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'amq.topic', key);
  return queue;
}

describe('MQTT -> AMQP', () => {
  test('sensors/+/temp: an MQTT publish reaches an AMQP queue bound to amq.topic with sensors.*.temp', async () => {
    const q = await boundQueue('sensors.*.temp');
    const dev = await connectMqtt(url, { clientId: 'sensor-1' });
    await dev.publishAsync('sensors/kitchen/temp', '21.5', { qos: 1 });
    await dev.publishAsync('sensors/kitchen/humidity', '40', { qos: 1 });
    await dev.publishAsync('sensors/hall/temp', '19.0', { qos: 0 });
    const a = await ch.get(q, { noAck: true });
    const b = await ch.get(q, { noAck: true });
    expect(await ch.get(q, { noAck: true })).toBe(false);
    expect(a && [a.fields.exchange, a.fields.routingKey, a.content.toString(), a.properties.deliveryMode, a.properties.headers]).toEqual([
      'amq.topic',
      'sensors.kitchen.temp',
      '21.5',
      2,
      { 'x-mqtt-publish-qos': 1 },
    ]);
    expect(b && [b.fields.routingKey, b.content.toString(), b.properties.deliveryMode]).toEqual(['sensors.hall.temp', '19.0', 1]);
    await dev.endAsync();
  });

  test('MQTT 5 properties become AMQP properties and headers', async () => {
    const q = await boundQueue('props.amqp');
    const dev = await connectMqtt(url, { protocolVersion: 5 });
    await dev.publishAsync('props/amqp', 'body', {
      qos: 1,
      properties: {
        contentType: 'application/json',
        messageExpiryInterval: 30,
        correlationData: Buffer.from('corr-1'),
        responseTopic: 'replies/me',
        userProperties: { site: 'lab' },
      },
    });
    const m = await ch.get(q, { noAck: true });
    expect(m && m.properties).toMatchObject({
      contentType: 'application/json',
      expiration: '30000',
      correlationId: 'corr-1',
      deliveryMode: 2,
      headers: { site: 'lab', 'x-reply-to-topic': 'replies.me', 'x-mqtt-publish-qos': 1 },
    });
    await dev.endAsync();
  });

  test('the queues MQTT creates are ordinary queues: AMQP passive declare shows the message count', async () => {
    const dev = await connectMqtt(url, { clientId: 'inspect-me', clean: false });
    await dev.subscribeAsync('inspect/#', { qos: 1 });
    await dev.endAsync();
    const pub = await connectMqtt(url);
    for (let i = 0; i < 3; i++) await pub.publishAsync('inspect/x', `${i}`, { qos: 1 });
    await pub.endAsync();
    const ok = await ch.checkQueue('mqtt-subscription-inspect-me');
    expect([ok.queue, ok.messageCount, ok.consumerCount]).toEqual(['mqtt-subscription-inspect-me', 3, 0]);
    await ch.deleteQueue('mqtt-subscription-inspect-me');
  });
});

describe('AMQP -> MQTT', () => {
  test('an AMQP publish to amq.topic reaches MQTT subscribers; delivery_mode 2 -> QoS 1, else 0, capped by the subscription', async () => {
    const q2 = await connectMqtt(url, { clientId: 'amqp-in-2' });
    const q0 = await connectMqtt(url, { clientId: 'amqp-in-0' });
    const got2 = collect(q2);
    const got0 = collect(q0);
    await q2.subscribeAsync('from/amqp/+', { qos: 2 });
    await q0.subscribeAsync('from/amqp/+', { qos: 0 });
    ch.publish('amq.topic', 'from.amqp.persistent', Buffer.from('p'), { deliveryMode: 2 });
    ch.publish('amq.topic', 'from.amqp.transient', Buffer.from('t'));
    await waitForCount(got2, 2);
    await waitForCount(got0, 2);
    expect(got2.map((m) => [m.topic, m.payload, m.packet.qos, m.packet.retain])).toEqual([
      ['from/amqp/persistent', 'p', 1, false],
      ['from/amqp/transient', 't', 0, false],
    ]);
    expect(got0.map((m) => m.packet.qos)).toEqual([0, 0]);
    await Promise.all([q2.endAsync(), q0.endAsync()]);
  });

  test('AMQP properties and headers become MQTT 5 properties', async () => {
    const c = await connectMqtt(url, { protocolVersion: 5 });
    const got = collect(c);
    await c.subscribeAsync('amqp/props', { qos: 1 });
    ch.publish('amq.topic', 'amqp.props', Buffer.from('{}'), {
      contentType: 'application/json',
      correlationId: 'abc-123',
      expiration: '60000',
      headers: { 'x-reply-to-topic': 'replies.amqp', region: 'eu', count: 3, nested: { no: 'tables' } },
    });
    await waitForCount(got, 1);
    const p = got[0]!.packet.properties!;
    expect(p.contentType).toBe('application/json');
    expect(Buffer.from(p.correlationData!).toString()).toBe('abc-123');
    expect(p.responseTopic).toBe('replies/amqp');
    expect(p.userProperties).toEqual({ region: 'eu', count: '3' });
    expect(p.messageExpiryInterval).toBeGreaterThanOrEqual(59);
    expect(p.messageExpiryInterval).toBeLessThanOrEqual(60);
    await c.endAsync();
  });

  test('request/response: an MQTT 5 request with response topic and correlation data is answered by an AMQP worker', async () => {
    const { queue } = await ch.assertQueue('rpc-worker', { exclusive: true });
    await ch.bindQueue(queue, 'amq.topic', 'rpc.add');
    await ch.consume(queue, (m) => {
      if (!m) return;
      const replyTo = m.properties.headers?.['x-reply-to-topic'] as string;
      const [a, b] = JSON.parse(m.content.toString()) as [number, number];
      ch.publish('amq.topic', replyTo, Buffer.from(String(a + b)), { correlationId: m.properties.correlationId as string });
      ch.ack(m);
    });
    const client = await connectMqtt(url, { protocolVersion: 5, clientId: 'requester' });
    const got = collect(client);
    await client.subscribeAsync('replies/requester', { qos: 1 });
    await client.publishAsync('rpc/add', '[2,40]', { qos: 1, properties: { responseTopic: 'replies/requester', correlationData: Buffer.from('req-7') } });
    await waitForCount(got, 1);
    expect([got[0]!.topic, got[0]!.payload, Buffer.from(got[0]!.packet.properties!.correlationData!).toString()]).toEqual(['replies/requester', '42', 'req-7']);
    await client.endAsync();
  });

  test('a QoS 1 message published over AMQP to an offline persistent MQTT session is received after reconnect', async () => {
    const opts = { protocolVersion: 5 as const, clientId: 'offline-dev', clean: false, properties: { sessionExpiryInterval: 300 } };
    const dev = await connectMqtt(url, opts);
    await dev.subscribeAsync('commands/offline-dev', { qos: 1 });
    await dev.endAsync();
    ch.publish('amq.topic', 'commands.offline-dev', Buffer.from('reboot'), { deliveryMode: 2 });
    await waitFor(async () => (await ch.checkQueue('mqtt-subscription-offline-dev')).messageCount === 1);
    const { client, connack, received } = await connectCollecting(url, opts);
    expect(connack.sessionPresent).toBe(true);
    await waitForCount(received, 1);
    expect([received[0]!.topic, received[0]!.payload, received[0]!.packet.qos]).toEqual(['commands/offline-dev', 'reboot', 1]);
    await waitFor(async () => (await ch.checkQueue('mqtt-subscription-offline-dev')).messageCount === 0);
    await client.endAsync(false, { properties: { sessionExpiryInterval: 0 } });
    await waitFor(() => !tb.broker.core.vhosts.get('/')!.queues.has('mqtt-subscription-offline-dev'));
  });
});
