import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { RawMqtt, collect, connectMqtt, mqttUrl, settle, waitForCount, type Received } from '../helpers/mqtt.js';

let tb: TestBroker;
let port: number;
let url: string;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.mqtt!;
  url = mqttUrl(tb);
  tb.broker.core.auth.addUser('nowrite', 'pw');
  tb.broker.core.auth.setPermission('/', 'nowrite', { configure: '.*', write: '^mqtt-', read: '.*' });
});
afterAll(async () => {
  await tb.stop();
});

async function subscribeAndCollect(filter: string, opts: { qos?: 0 | 1 | 2; protocolVersion?: 3 | 4 | 5 } = {}, waitMs = 60): Promise<Received[]> {
  const v = opts.protocolVersion ?? 4;
  const c = await connectMqtt(url, { protocolVersion: v, protocolId: v === 3 ? 'MQIsdp' : 'MQTT' });
  const got = collect(c);
  await c.subscribeAsync(filter, { qos: opts.qos ?? 1 });
  await settle(waitMs);
  await c.endAsync();
  return got;
}

describe('retained messages', () => {
  beforeAll(async () => {
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('rt/a/1', 'a1', { qos: 1, retain: true });
    await pub.publishAsync('rt/b', 'b', { qos: 0, retain: true });
    await pub.publishAsync('rt/c', 'c-old', { qos: 1, retain: true });
    await pub.publishAsync('rt/c', 'c-new', { qos: 2, retain: true });
    await pub.publishAsync('$SYS/rt', 'sys', { qos: 1, retain: true });
    await pub.endAsync();
  });

  test.each([
    ['rt/a/1', [['rt/a/1', 'a1']]],
    ['rt/#', [['rt/a/1', 'a1'], ['rt/b', 'b'], ['rt/c', 'c-new']]],
    ['rt/+/1', [['rt/a/1', 'a1']]],
    ['rt/+', [['rt/b', 'b'], ['rt/c', 'c-new']]],
    ['#', [['rt/a/1', 'a1'], ['rt/b', 'b'], ['rt/c', 'c-new']]],
    ['$SYS/#', [['$SYS/rt', 'sys']]],
    ['+/rt', []],
  ] as const)('SUBSCRIBE %s replays the matching retained messages, wildcards included', async (filter, expected) => {
    const got = await subscribeAndCollect(filter);
    const seen = got.filter((m) => m.topic.startsWith('rt/') || m.topic.startsWith('$SYS/')).map((m) => [m.topic, m.payload]);
    expect(seen.sort()).toEqual([...expected].map((e) => [...e]).sort());
    expect(got.every((m) => m.packet.retain)).toBe(true);
  });

  test.each([3, 4, 5] as const)('level %i subscribers get retained messages with QoS min(message, subscription)', async (v) => {
    const got = await subscribeAndCollect('rt/#', { qos: 1, protocolVersion: v });
    const byTopic = Object.fromEntries(got.map((m) => [m.topic, m.packet.qos]));
    expect(byTopic).toEqual({ 'rt/a/1': 1, 'rt/b': 0, 'rt/c': 1 });
  });

  test('a retained QoS 1 replay is acknowledged like any delivery', async () => {
    const r = await RawMqtt.connected(port, 4);
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rt/a/1', qos: 1 }] });
    await r.next('suback');
    const p = await r.next('publish');
    expect([p.topic, p.retain, p.qos, p.payload.toString()]).toEqual(['rt/a/1', true, 1, 'a1']);
    r.send({ cmd: 'puback', messageId: p.messageId! });
    r.send({ cmd: 'pingreq' });
    await r.next('pingresp');
    r.end();
  });

  test('an empty retained payload clears the topic, and is delivered to current subscribers', async () => {
    const pub = await connectMqtt(url);
    await pub.publishAsync('clear/me', 'kept', { qos: 1, retain: true });
    expect((await subscribeAndCollect('clear/#')).map((m) => m.payload)).toEqual(['kept']);
    const live = await connectMqtt(url);
    const liveGot = collect(live);
    await live.subscribeAsync('clear/me', { qos: 1 });
    await waitForCount(liveGot, 1);
    await pub.publishAsync('clear/me', '', { qos: 1, retain: true });
    await waitForCount(liveGot, 2);
    expect([liveGot[1]!.payload, liveGot[1]!.packet.retain]).toEqual(['', false]);
    expect(await subscribeAndCollect('clear/#')).toEqual([]);
    await Promise.all([pub.endAsync(), live.endAsync()]);
  });

  test('v5: a retained message expires with its message expiry interval', async () => {
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('expiring/short', 'gone soon', { qos: 1, retain: true, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync('expiring/long', 'stays', { qos: 1, retain: true, properties: { messageExpiryInterval: 600 } });
    await settle(1100);
    const got = await subscribeAndCollect('expiring/#', { protocolVersion: 5 });
    expect(got.map((m) => m.payload)).toEqual(['stays']);
    const left = got[0]!.packet.properties?.messageExpiryInterval ?? 0;
    expect(left).toBeGreaterThan(590);
    expect(left).toBeLessThanOrEqual(600);
    await pub.endAsync();
  });
});

describe('will messages', () => {
  async function watcher(filter: string, v: 4 | 5 = 5) {
    const c = await connectMqtt(url, { protocolVersion: v });
    const got = collect(c);
    await c.subscribeAsync(filter, { qos: 2 });
    return { c, got };
  }

  test('the will is published when the connection drops without DISCONNECT', async () => {
    const { c, got } = await watcher('will/drop');
    const r = await RawMqtt.connected(port, 4, { will: { topic: 'will/drop', payload: Buffer.from('gone'), qos: 1, retain: false } });
    r.end();
    await waitForCount(got, 1);
    expect([got[0]!.payload, got[0]!.packet.qos]).toEqual(['gone', 1]);
    await c.endAsync();
  });

  test('the will is not published after a clean DISCONNECT', async () => {
    const { c, got } = await watcher('will/clean');
    const r = await RawMqtt.connected(port, 4, { will: { topic: 'will/clean', payload: Buffer.from('no'), qos: 1, retain: false } });
    r.send({ cmd: 'disconnect' });
    await r.waitClosed();
    await settle(200);
    expect(got).toEqual([]);
    await c.endAsync();
  });

  test('a retained will is stored as the retained message', async () => {
    const r = await RawMqtt.connected(port, 4, { will: { topic: 'will/retained', payload: Buffer.from('offline'), qos: 0, retain: true } });
    r.end();
    await r.waitClosed();
    await settle(50);
    const got = await subscribeAndCollect('will/retained');
    expect(got.map((m) => [m.payload, m.packet.retain])).toEqual([['offline', true]]);
  });

  test('v5: DISCONNECT with reason 0x04 publishes the will', async () => {
    const { c, got } = await watcher('will/asked');
    const r = await RawMqtt.connected(port, 5, { will: { topic: 'will/asked', payload: Buffer.from('asked for'), qos: 0, retain: false } });
    r.send({ cmd: 'disconnect', reasonCode: 0x04 });
    await waitForCount(got, 1);
    expect(got[0]!.payload).toBe('asked for');
    await c.endAsync();
  });

  test('v5: the will waits for its delay interval, and carries its properties', async () => {
    const { c, got } = await watcher('will/delayed');
    const r = await RawMqtt.connected(port, 5, {
      clientId: 'delayed-will',
      properties: { sessionExpiryInterval: 10 },
      will: {
        topic: 'will/delayed',
        payload: Buffer.from('late'),
        qos: 1,
        retain: false,
        properties: { willDelayInterval: 1, contentType: 'text/plain', userProperties: { reason: 'lost' } },
      },
    });
    r.end();
    const dropped = Date.now();
    await waitForCount(got, 1, 4000);
    expect(Date.now() - dropped).toBeGreaterThanOrEqual(900);
    const props = got[0]!.packet.properties;
    expect([got[0]!.payload, props?.contentType, props?.userProperties]).toEqual(['late', 'text/plain', { reason: 'lost' }]);
    await c.endAsync();
  });

  test('v5: reconnecting within the will delay cancels the will', async () => {
    const { c, got } = await watcher('will/cancelled');
    const will = { topic: 'will/cancelled', payload: Buffer.from('never'), qos: 0 as const, retain: false, properties: { willDelayInterval: 1 } };
    const r = await RawMqtt.connected(port, 5, { clientId: 'comeback', clean: false, properties: { sessionExpiryInterval: 10 }, will });
    r.end();
    await r.waitClosed();
    const again = await RawMqtt.connected(port, 5, { clientId: 'comeback', clean: false, properties: { sessionExpiryInterval: 10 } });
    await settle(1300);
    expect(got).toEqual([]);
    again.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await c.endAsync();
  });

  test('v5: the will is published when the session ends before the will delay', async () => {
    const { c, got } = await watcher('will/session-end');
    const r = await RawMqtt.connected(port, 5, {
      clientId: 'short-session',
      properties: { sessionExpiryInterval: 0 },
      will: { topic: 'will/session-end', payload: Buffer.from('session over'), qos: 0, retain: false, properties: { willDelayInterval: 30 } },
    });
    r.end();
    await waitForCount(got, 1, 1000);
    expect(got[0]!.payload).toBe('session over');
    await c.endAsync();
  });

  test('a will to a topic the user may not publish to is dropped', async () => {
    const { c, got } = await watcher('will/denied');
    const r = await RawMqtt.connected(port, 4, {
      username: 'nowrite',
      password: Buffer.from('pw'),
      will: { topic: 'will/denied', payload: Buffer.from('x'), qos: 0, retain: false },
    });
    r.end();
    await settle(200);
    expect(got).toEqual([]);
    await c.endAsync();
  });
});
