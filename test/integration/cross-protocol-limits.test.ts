import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';
import { RawMqtt, collect as collectMqtt, connectMqtt, mqttUrl, waitForCount } from '../helpers/mqtt.js';
import { RawStomp } from '../helpers/stomp.js';

let tb: TestBroker;
let amqp: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  tb = await startTestBroker();
  amqp = await connect(tb.amqpUrl);
  amqp.on('error', () => undefined);
  ch = await amqp.createChannel();
});
afterAll(async () => {
  await amqp.close().catch(() => undefined);
  await tb.stop();
});

const long = (c: string, n = 300): string => c.repeat(n);

/** Consumes `queue` with amqplib (push deliveries, the path that used to throw) and collects messages. */
async function amqpConsumer(queue: string, c: Channel = ch): Promise<ConsumeMessage[]> {
  const got: ConsumeMessage[] = [];
  await c.consume(queue, (m) => {
    if (m !== null) got.push(m);
  }, { noAck: true });
  return got;
}

/** The broker still answers a fresh AMQP connection. */
async function alive(): Promise<void> {
  const c = await connect(tb.amqpUrl);
  const cc = await c.createChannel();
  const q = await cc.assertQueue('', { exclusive: true });
  cc.sendToQueue(q.queue, Buffer.from('ping'));
  const m = await waitFor(async () => (await cc.get(q.queue, { noAck: true })) || undefined);
  expect(m.content.toString()).toBe('ping');
  await c.close();
}

async function stompSend(headers: Record<string, string>, body = 'x'): Promise<RawStomp> {
  const s = await RawStomp.connected(tb.broker.ports.stomp!);
  s.send('SEND', { ...headers, receipt: 'r1' }, body);
  return s;
}

describe('STOMP values too long for an AMQP short string move to the headers table', () => {
  test.each([
    ['content-type', 'contentType', 'x-content-type'],
    ['content-encoding', 'contentEncoding', 'x-content-encoding'],
    ['correlation-id', 'correlationId', 'x-correlation-id'],
    ['reply-to', 'replyTo', 'x-reply-to'],
    ['type', 'type', 'x-type'],
    ['app-id', 'appId', 'x-app-id'],
    ['amqp-message-id', 'messageId', 'x-message-id'],
  ] as const)('a 300-byte %s reaches an AMQP consumer as header %s', async (header, prop, overflow) => {
    const queue = `long-${header}`;
    await ch.assertQueue(queue, { durable: false });
    const got = await amqpConsumer(queue);
    const value = long('v');
    const s = await stompSend({ destination: `/amq/queue/${queue}`, [header]: value });
    expect((await s.next()).command).toBe('RECEIPT');
    const [m] = await waitForCount(got, 1);
    expect((m!.properties as unknown as Record<string, unknown>)[prop]).toBeUndefined();
    expect(m!.properties.headers?.[overflow]).toBe(value);
    s.end();
    await alive();
  });

  test('a STOMP subscriber gets the long value back under its STOMP name', async () => {
    const sub = await RawStomp.connected(tb.broker.ports.stomp!);
    sub.send('SUBSCRIBE', { destination: '/queue/long-roundtrip', id: 's1', receipt: 'sub' });
    await sub.next('RECEIPT');
    const value = `application/${long('é', 200)}`;
    const s = await stompSend({ destination: '/queue/long-roundtrip', 'content-type': value, 'correlation-id': long('c') });
    await s.next('RECEIPT');
    const m = await sub.next('MESSAGE');
    expect(m.headers['content-type']).toBe(value);
    expect(m.headers['correlation-id']).toBe(long('c'));
    expect(m.headers['x-content-type']).toBeUndefined();
    s.end();
    sub.end();
  });
});

describe('publishes AMQP could not deliver are refused with the protocol error', () => {
  test('a STOMP header name longer than 255 bytes: ERROR, nothing enqueued', async () => {
    await ch.assertQueue('long-name', { durable: false });
    const s = await stompSend({ destination: '/amq/queue/long-name', [long('n')]: 'v' });
    const err = await s.expectError('precondition_failed');
    expect(err.body.toString()).toMatch(/header name of 300 bytes/);
    expect((await ch.checkQueue('long-name')).messageCount).toBe(0);
    await alive();
  });

  test('a routing key longer than 255 bytes: STOMP ERROR, management 400', async () => {
    const s = await stompSend({ destination: `/topic/${long('k')}` });
    expect((await s.expectError('precondition_failed')).body.toString()).toMatch(/routing key of 300 bytes/);
    const r = await mgmt(tb.broker.ports.http!).post('/exchanges/%2F/amq.topic/publish', { routing_key: long('k'), payload: 'x', properties: {} });
    expect(r.status).toBe(400);
    await alive();
  });

  test('a STOMP SEND whose headers would not fit one AMQP frame at the broker\'s frame_max: ERROR', async () => {
    const headers: Record<string, string> = { destination: '/queue/too-many-headers' };
    for (let i = 0; i < 600; i++) headers[`h${i}`] = long('x', 250);
    const s = await stompSend(headers);
    const err = await s.expectError('precondition_failed');
    expect(err.body.toString()).toMatch(/message properties of \d+ bytes \(at most 131052\)/);
    await alive();
  });

  test('an AMQP publish with a 20,000-byte header (as frameworks put stack traces in) reaches a consumer at the default frame_max', async () => {
    const c = await connect(tb.amqpUrl);
    const pc = await c.createChannel();
    await pc.assertQueue('big-headers', { durable: false });
    pc.sendToQueue('big-headers', Buffer.from('x'), { headers: { 'x-exception-stacktrace': long('b', 20000) } });
    const m = await waitFor(async () => (await pc.get('big-headers', { noAck: true })) || undefined);
    expect(String(m.properties.headers?.['x-exception-stacktrace']).length).toBe(20000);
    await c.close();
  });

  test('an MQTT 5 user property name longer than 255 bytes: PUBACK 0x83 at QoS 1', async () => {
    const r = await RawMqtt.connected(tb.broker.ports.mqtt!, 5);
    r.send({ cmd: 'publish', topic: 'limits/up', payload: Buffer.from('x'), qos: 1, messageId: 7, dup: false, retain: false, properties: { userProperties: { [long('k')]: 'v' } } });
    const ack = await r.next('puback');
    expect([ack.messageId, ack.reasonCode]).toEqual([7, 0x83]);
    r.end();
    await alive();
  });

  test('an MQTT 5 user property name longer than 255 bytes: DISCONNECT 0x83 at QoS 0', async () => {
    const r = await RawMqtt.connected(tb.broker.ports.mqtt!, 5);
    r.send({ cmd: 'publish', topic: 'limits/up0', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { userProperties: { [long('k')]: 'v' } } });
    expect((await r.next('disconnect')).reasonCode).toBe(0x83);
    await r.waitClosed();
  });

  test('a management publish with headers nested deeper than 64 levels: 400', async () => {
    await ch.assertQueue('deep', { durable: false });
    const got = await amqpConsumer('deep');
    const nest = (n: number): Record<string, unknown> => {
      let h: Record<string, unknown> = { leaf: 1 };
      for (let i = 0; i < n; i++) h = { h };
      return h;
    };
    const api = mgmt(tb.broker.ports.http!);
    const deep = await api.post('/exchanges/%2F/amq.default/publish', { routing_key: 'deep', payload: 'x', properties: { headers: nest(70) } });
    expect(deep.status).toBe(400);
    expect(JSON.stringify(deep.body)).toMatch(/nested more than 64 deep/);
    const ok = await api.post('/exchanges/%2F/amq.default/publish', { routing_key: 'deep', payload: 'y', properties: { headers: nest(10) } });
    expect(ok.status).toBe(200);
    const [m] = await waitForCount(got, 1);
    expect(m!.content.toString()).toBe('y');
    await alive();
  });
});

describe('MQTT 5 values longer than a short string', () => {
  test('a 300-byte content type reaches AMQP as x-content-type and MQTT 5 unchanged', async () => {
    await ch.assertQueue('mqtt-long-ct', { durable: false });
    await ch.bindQueue('mqtt-long-ct', 'amq.topic', 'limits.ct');
    const got = await amqpConsumer('mqtt-long-ct');
    const sub = await connectMqtt(mqttUrl(tb), { protocolVersion: 5 });
    const received = collectMqtt(sub);
    await sub.subscribeAsync('limits/ct', { qos: 1 });
    const pub = await connectMqtt(mqttUrl(tb), { protocolVersion: 5 });
    const ct = `text/${long('t')}`;
    await pub.publishAsync('limits/ct', 'reading', { qos: 1, properties: { contentType: ct } });
    const [m] = await waitForCount(got, 1);
    expect(m!.properties.contentType).toBeUndefined();
    expect(m!.properties.headers?.['x-content-type']).toBe(ct);
    const [r] = await waitForCount(received, 1);
    expect(r!.packet.properties?.contentType).toBe(ct);
    await pub.endAsync();
    await sub.endAsync();
  });
});

describe('MQTT 5 wills pass the same check', () => {
  test('a will with a 300-byte content type reaches AMQP with x-content-type; one with a 300-byte user property name is not published', async () => {
    await ch.assertQueue('wills', { durable: false });
    await ch.bindQueue('wills', 'amq.topic', 'limits.will.*');
    const got = await amqpConsumer('wills');
    const bad = await RawMqtt.connected(tb.broker.ports.mqtt!, 5, {
      will: { topic: 'limits/will/bad', payload: Buffer.from('bad'), qos: 0, retain: false, properties: { userProperties: { [long('k')]: 'v' } } },
    });
    bad.end();
    const good = await RawMqtt.connected(tb.broker.ports.mqtt!, 5, {
      will: { topic: 'limits/will/good', payload: Buffer.from('good'), qos: 0, retain: false, properties: { contentType: long('w') } },
    });
    good.end();
    const [m] = await waitForCount(got, 1);
    expect(m!.content.toString()).toBe('good');
    expect(m!.properties.headers?.['x-content-type']).toBe(long('w'));
    await alive();
    expect(got.map((x) => x.content.toString())).toEqual(['good']);
  });
});

describe('a header named __proto__ is a header, not a prototype', () => {
  test('STOMP SEND -> stored headers -> STOMP MESSAGE', async () => {
    const sub = await RawStomp.connected(tb.broker.ports.stomp!);
    sub.send('SUBSCRIBE', { destination: '/queue/proto-header', id: 's1', receipt: 'sub' });
    await sub.next('RECEIPT');
    const s = await stompSend({ destination: '/queue/proto-header', ['__proto__']: 'kept' });
    await s.next('RECEIPT');
    const m = await sub.next('MESSAGE');
    expect(Object.getOwnPropertyDescriptor(m.headers, '__proto__')?.value).toBe('kept');
    s.end();
    sub.end();
  });
});

describe('a delivery that cannot be encoded for its consumer is rejected, never a crash', () => {
  test('an AMQP routing key that is no MQTT topic dead-letters from an MQTT subscription', async () => {
    const api = mgmt(tb.broker.ports.http!);
    await ch.assertExchange('lastline-dlx', 'fanout', { durable: false });
    await ch.assertQueue('lastline-dlq', { durable: false });
    await ch.bindQueue('lastline-dlq', 'lastline-dlx', '');
    const pol = await api.put('/policies/%2F/lastline', { pattern: '^mqtt-subscription-lastline', definition: { 'dead-letter-exchange': 'lastline-dlx' }, 'apply-to': 'queues' });
    expect(pol.status).toBeLessThan(300);
    const sub = await connectMqtt(mqttUrl(tb), { clientId: 'lastline', protocolVersion: 5 });
    const received = collectMqtt(sub);
    await sub.subscribeAsync('lastline/#', { qos: 1 });
    ch.publish('amq.topic', 'lastline.#', Buffer.from('bad'), { persistent: true });
    ch.publish('amq.topic', 'lastline.ok', Buffer.from('good'), { persistent: true });
    const [r] = await waitForCount(received, 1);
    expect([r!.topic, r!.payload]).toEqual(['lastline/ok', 'good']);
    const dead = await waitFor(async () => (await ch.get('lastline-dlq', { noAck: true })) || undefined);
    expect(dead.content.toString()).toBe('bad');
    const death = (dead.properties.headers?.['x-death'] as unknown as Record<string, unknown>[])[0]!;
    expect([death['reason'], death['queue']]).toEqual(['rejected', 'mqtt-subscription-lastline']);
    await sub.endAsync();
    await api.del('/policies/%2F/lastline');
  });

  test('properties larger than the consumer frame_max: rejected to the DLX, the consumer carries on', async () => {
    // A header block under the publish limit grows past a 4096-byte frame when dead-lettering adds x-death.
    await ch.assertQueue('grow-c', { durable: false });
    await ch.assertQueue('grow-b', { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'grow-c' } });
    await ch.assertQueue('grow-a', { durable: false, arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'grow-b', 'x-message-ttl': 0 } });
    const small = await connect(`${tb.amqpUrl}?frameMax=4096`);
    small.on('error', () => undefined);
    const sc = await small.createChannel();
    const got: ConsumeMessage[] = [];
    await sc.consume('grow-b', (m) => {
      if (m !== null) {
        got.push(m);
        sc.ack(m);
      }
    });
    ch.sendToQueue('grow-a', Buffer.from('big'), { headers: { pad: long('p', 3950) } });
    ch.sendToQueue('grow-b', Buffer.from('small'));
    const [m] = await waitForCount(got, 1);
    expect(m!.content.toString()).toBe('small');
    const dead = await waitFor(async () => (await ch.get('grow-c', { noAck: true })) || undefined);
    expect(dead.content.toString()).toBe('big');
    const deaths = (dead.properties.headers?.['x-death'] as unknown as Record<string, unknown>[]).map((d) => [d['queue'], d['reason']]);
    expect(deaths).toEqual([
      ['grow-b', 'rejected'],
      ['grow-a', 'expired'],
    ]);
    await small.close();
  });
});
