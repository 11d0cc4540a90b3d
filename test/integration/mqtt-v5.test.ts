import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawMqtt, collect, connectCollecting, connectMqtt, mqttUrl, settle, waitForCount } from '../helpers/mqtt.js';

let tb: TestBroker;
let port: number;
let url: string;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.mqtt!;
  url = mqttUrl(tb);
});
afterAll(async () => {
  await tb.stop();
});

function queue(name: string) {
  return tb.broker.core.vhosts.get('/')!.queues.get(name);
}

describe('topic aliases', () => {
  test('from the client: an alias set with a topic is used by later PUBLISHes with an empty topic', async () => {
    const sub = await connectMqtt(url, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('alias/in', { qos: 1 });
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'publish', topic: 'alias/in', payload: Buffer.from('1'), qos: 1, messageId: 1, dup: false, retain: false, properties: { topicAlias: 3 } });
    r.send({ cmd: 'publish', topic: '', payload: Buffer.from('2'), qos: 1, messageId: 2, dup: false, retain: false, properties: { topicAlias: 3 } });
    await r.next('puback');
    await r.next('puback');
    await waitForCount(got, 2);
    expect(got.map((m) => [m.topic, m.payload])).toEqual([
      ['alias/in', '1'],
      ['alias/in', '2'],
    ]);
    r.end();
    await sub.endAsync();
  });

  test.each([
    [0, 0x94],
    [65, 0x94],
  ])('alias %i is outside 1..topic alias maximum: DISCONNECT 0x%s', async (alias, code) => {
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'publish', topic: 'a', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { topicAlias: alias } });
    expect((await r.next('disconnect')).reasonCode).toBe(code);
    await r.waitClosed();
  });

  test('an unknown alias with an empty topic is a protocol error (DISCONNECT 0x82)', async () => {
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'publish', topic: '', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { topicAlias: 9 } });
    expect((await r.next('disconnect')).reasonCode).toBe(0x82);
    await r.waitClosed();
  });

  test('to the client: the server assigns aliases up to the client topic alias maximum', async () => {
    const r = await RawMqtt.connected(port, 5, { properties: { topicAliasMaximum: 1 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'alias/out/#', qos: 0, nl: false, rap: false, rh: 0 }] });
    await r.next('suback');
    const pub = await connectMqtt(url);
    for (const t of ['alias/out/a', 'alias/out/a', 'alias/out/b', 'alias/out/a']) await pub.publishAsync(t, t, { qos: 1 });
    const seen = [];
    for (let i = 0; i < 4; i++) {
      const p = await r.next('publish');
      seen.push([p.topic, p.properties?.topicAlias, p.payload.toString()]);
    }
    expect(seen).toEqual([
      ['alias/out/a', 1, 'alias/out/a'],
      ['', 1, 'alias/out/a'],
      ['alias/out/b', undefined, 'alias/out/b'],
      ['', 1, 'alias/out/a'],
    ]);
    r.end();
    await pub.endAsync();
  });

  test('mqtt.js with automatic topic aliases in both directions', async () => {
    const sub = await connectMqtt(url, { protocolVersion: 5, properties: { topicAliasMaximum: 10 } });
    const got = collect(sub);
    await sub.subscribeAsync('auto/alias', { qos: 1 });
    const pub = await connectMqtt(url, { protocolVersion: 5, autoAssignTopicAlias: true });
    for (let i = 0; i < 3; i++) await pub.publishAsync('auto/alias', `m${i}`, { qos: 1 });
    await waitForCount(got, 3);
    expect(got.map((m) => [m.topic, m.payload])).toEqual([0, 1, 2].map((i) => ['auto/alias', `m${i}`]));
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });
});

describe('maximum packet size', () => {
  test('before CONNECT is accepted, packets are limited to 64 KiB', async () => {
    const r = await RawMqtt.open(port, 4);
    const will = { topic: 'big/will', payload: Buffer.alloc(60_000, 0x61), qos: 0 as const, retain: false };
    const connect = r.encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'big', clean: true, keepalive: 0, will, username: 'guest', password: Buffer.alloc(6_000, 0x61) });
    expect(connect.length).toBeGreaterThan(64 * 1024);
    r.send(connect);
    await r.waitClosed();
    expect(r.packets).toEqual([]);
  });

  test('a CONNECT just under 64 KiB is accepted', async () => {
    const will = { topic: 'big/will', payload: Buffer.alloc(60_000, 0x61), qos: 0 as const, retain: false };
    const r = await RawMqtt.connected(port, 4, { will });
    r.send({ cmd: 'disconnect' });
    await r.waitClosed();
  });

  test('a connected client may send packets far above 64 KiB', async () => {
    const sub = await connectMqtt(url);
    const got = collect(sub);
    await sub.subscribeAsync('big/payload', { qos: 1 });
    const pub = await connectMqtt(url);
    await pub.publishAsync('big/payload', Buffer.alloc(1_000_000, 0x62), { qos: 1 });
    await waitForCount(got, 1);
    expect(got[0]!.packet.payload.length).toBe(1_000_000);
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('a packet declaring more than 16 MiB is refused from its header (DISCONNECT 0x95)', async () => {
    const r = await RawMqtt.connected(port, 5);
    // PUBLISH header declaring 16 MiB + 1 of remaining length; the body is never sent.
    const remaining = 16 * 1024 * 1024 + 1;
    const len = [];
    for (let x = remaining; x > 0; x = Math.floor(x / 128)) len.push((x % 128) | (x >= 128 ? 0x80 : 0));
    r.send(Buffer.from([0x30, ...len]));
    expect((await r.next('disconnect')).reasonCode).toBe(0x95);
    await r.waitClosed();
  });

  test('messages larger than the client maximum packet size are not sent to it, and leave its queue', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'small-max', properties: { maximumPacketSize: 200 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'max/out', qos: 1, nl: false, rap: false, rh: 0 }] });
    await r.next('suback');
    const pub = await connectMqtt(url);
    await pub.publishAsync('max/out', Buffer.alloc(500, 0x61), { qos: 1 });
    await pub.publishAsync('max/out', 'small', { qos: 1 });
    const p = await r.next('publish');
    expect(p.payload.toString()).toBe('small');
    r.send({ cmd: 'puback', messageId: p.messageId!, reasonCode: 0 });
    await settle();
    expect(r.packets.filter((x) => x.cmd === 'publish')).toEqual([]);
    const q = queue('mqtt-subscription-small-max')!;
    await waitFor(() => q.readyCount === 0 && q.unackedCount === 0);
    r.end();
    await pub.endAsync();
  });
});

describe('message properties', () => {
  test('content type, payload format, response topic, correlation data and user properties reach a v5 subscriber', async () => {
    const sub = await connectMqtt(url, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('props/t', { qos: 1 });
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('props/t', '{"t":21.5}', {
      qos: 1,
      properties: {
        contentType: 'application/json',
        payloadFormatIndicator: true,
        responseTopic: 'props/reply',
        correlationData: Buffer.from([1, 2, 250]),
        userProperties: { unit: 'C', tag: ['a', 'b'] },
      },
    });
    await waitForCount(got, 1);
    const props = got[0]!.packet.properties!;
    expect(props.contentType).toBe('application/json');
    expect(props.payloadFormatIndicator).toBe(true);
    expect(props.responseTopic).toBe('props/reply');
    expect(Buffer.from(props.correlationData!)).toEqual(Buffer.from([1, 2, 250]));
    expect(props.userProperties).toEqual({ unit: 'C', tag: ['a', 'b'] });
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('a 3.1.1 subscriber receives the same message without properties', async () => {
    const sub = await connectMqtt(url, { protocolVersion: 4 });
    const got = collect(sub);
    await sub.subscribeAsync('props/v4', { qos: 1 });
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('props/v4', 'x', { qos: 1, properties: { contentType: 'text/plain', userProperties: { a: 'b' } } });
    await waitForCount(got, 1);
    expect([got[0]!.payload, got[0]!.packet.properties]).toEqual(['x', undefined]);
    await Promise.all([sub.endAsync(), pub.endAsync()]);
  });

  test('message expiry: the remaining interval is sent, and expired messages are not delivered', async () => {
    const opts = { protocolVersion: 5 as const, clientId: 'expiry-sub', clean: false, properties: { sessionExpiryInterval: 60 } };
    const sub = await connectMqtt(url, opts);
    await sub.subscribeAsync('msg/expiry', { qos: 1 });
    await sub.endAsync();
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('msg/expiry', 'short', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync('msg/expiry', 'long', { qos: 1, properties: { messageExpiryInterval: 30 } });
    await pub.endAsync();
    await settle(2100);
    const { client, received } = await connectCollecting(url, opts);
    await waitForCount(received, 1);
    await settle(100);
    expect(received.map((m) => m.payload)).toEqual(['long']);
    const left = received[0]!.packet.properties?.messageExpiryInterval ?? 0;
    expect(left).toBeGreaterThanOrEqual(27);
    expect(left).toBeLessThanOrEqual(28);
    await client.endAsync();
  });
});

describe('shared subscriptions', () => {
  test('members of $share/<group>/<filter> consume one queue round-robin; a plain subscriber gets everything', async () => {
    const members = await Promise.all([0, 1, 2].map((i) => connectMqtt(url, { protocolVersion: 5, clientId: `worker-${i}` })));
    const got = members.map((m) => collect(m));
    await Promise.all(members.map((m) => m.subscribeAsync('$share/workers/jobs/+', { qos: 1 })));
    const watcher = await connectMqtt(url, { protocolVersion: 5 });
    const all = collect(watcher);
    await watcher.subscribeAsync('jobs/+', { qos: 1 });
    const shared = [...tb.broker.core.vhosts.get('/')!.queues.values()].filter((q) => q.name.startsWith('mqtt-shared-'));
    expect(shared.map((q) => [q.name, q.consumerCount])).toEqual([['mqtt-shared-workers-jobs.*', 3]]);
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    for (let i = 0; i < 30; i++) await pub.publishAsync(`jobs/${i % 3}`, `job-${i}`, { qos: 1 });
    await waitForCount(all, 30);
    await waitFor(() => got.reduce((n, g) => n + g.length, 0) === 30);
    const payloads = got.flatMap((g) => g.map((m) => m.payload)).sort();
    expect(payloads).toEqual(Array.from({ length: 30 }, (_, i) => `job-${i}`).sort());
    for (const g of got) expect(g.length).toBe(10);
    await Promise.all([...members, watcher, pub].map((c) => c.endAsync()));
    await waitFor(() => !tb.broker.core.vhosts.get('/')!.queues.has('mqtt-shared-workers-jobs.*'), 3000, 'shared queue removal');
  });

  test('a member leaving with unacknowledged messages does not lose them: another member gets them', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'greedy', properties: { receiveMaximum: 5 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g2/tasks', qos: 1, nl: false, rap: false, rh: 0 }] });
    await r.next('suback');
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    for (let i = 0; i < 3; i++) await pub.publishAsync('tasks', `t${i}`, { qos: 1 });
    for (let i = 0; i < 3; i++) await r.next('publish');
    const steady = await connectMqtt(url, { protocolVersion: 5, clientId: 'steady' });
    const got = collect(steady);
    await steady.subscribeAsync('$share/g2/tasks', { qos: 1 });
    r.end(); // never acknowledged anything
    await waitForCount(got, 3);
    expect(got.map((m) => m.payload).sort()).toEqual(['t0', 't1', 't2']);
    await Promise.all([steady.endAsync(), pub.endAsync()]);
  });

  test('shared subscriptions get no retained messages', async () => {
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('shared/retained', 'r', { qos: 1, retain: true });
    const m = await connectMqtt(url, { protocolVersion: 5 });
    const got = collect(m);
    await m.subscribeAsync('$share/g3/shared/retained', { qos: 1 });
    await settle();
    expect(got).toEqual([]);
    await pub.publishAsync('shared/retained', '', { qos: 1, retain: true });
    await Promise.all([m.endAsync(), pub.endAsync()]);
  });
});
