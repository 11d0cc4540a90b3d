import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { QueueStore } from '../../src/core/persistence.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawMqtt, collect, connectMqtt, mqttUrl, settle, waitForCount } from '../helpers/mqtt.js';

let tb: TestBroker;
let port: number;
let url: string;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.mqtt!;
  url = mqttUrl(tb);
  const auth = tb.broker.core.auth;
  auth.addUser('noread', 'pw');
  auth.setPermission('/', 'noread', { configure: '.*', write: '.*', read: '^$' });
  auth.addUser('nowrite', 'pw');
  auth.setPermission('/', 'nowrite', { configure: '.*', write: '^mqtt-', read: '.*' });
});
afterAll(async () => {
  await tb.stop();
});

function queue(name: string) {
  return tb.broker.core.vhosts.get('/')!.queues.get(name);
}

describe('QoS 0, 1 and 2 in both directions', () => {
  test.each([4, 5] as const)('level %i: delivered QoS = min(publish QoS, subscription QoS) for every pair', async (v) => {
    const subs = await Promise.all([0, 1, 2].map((q) => connectMqtt(url, { protocolVersion: v, clientId: `mx${v}-${q}` })));
    const got = subs.map((c) => collect(c));
    await Promise.all(subs.map((c, q) => c.subscribeAsync(`matrix${v}/#`, { qos: q as 0 | 1 | 2 })));
    const pub = await connectMqtt(url, { protocolVersion: v });
    for (const q of [0, 1, 2] as const) await pub.publishAsync(`matrix${v}/p${q}`, `p${q}`, { qos: q });
    for (const [s, list] of got.entries()) {
      await waitForCount(list, 3);
      const byPayload = Object.fromEntries(list.map((m) => [m.payload, m.packet.qos]));
      expect(byPayload).toEqual({ p0: 0, p1: Math.min(1, s), p2: Math.min(2, s) });
    }
    await Promise.all([...subs, pub].map((c) => c.endAsync()));
  });

  test('QoS 2 towards the client: PUBLISH, PUBREC, PUBREL, PUBCOMP; the message leaves the queue at PUBREC', async () => {
    const sub = await RawMqtt.connected(port, 4, { clientId: 'q2-out' });
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q2/out', qos: 2 }] });
    expect((await sub.next('suback')).granted).toEqual([2]);
    const pub = await connectMqtt(url);
    await pub.publishAsync('q2/out', 'exactly once', { qos: 2 });
    const p = await sub.next('publish');
    expect([p.qos, p.dup, p.payload.toString()]).toEqual([2, false, 'exactly once']);
    const q = queue('mqtt-subscription-q2-out')!;
    expect(q.unackedCount).toBe(1);
    sub.send({ cmd: 'pubrec', messageId: p.messageId! });
    expect((await sub.next('pubrel')).messageId).toBe(p.messageId);
    expect(q.unackedCount).toBe(0);
    sub.send({ cmd: 'pubcomp', messageId: p.messageId! });
    await settle();
    expect(sub.packets.filter((x) => x.cmd === 'publish')).toEqual([]);
    expect([q.readyCount, q.unackedCount]).toEqual([0, 0]);
    sub.end();
    await pub.endAsync();
  });

  test('QoS 2 from the client: a duplicate PUBLISH awaiting PUBREL is acknowledged but not routed twice', async () => {
    const sub = await connectMqtt(url, { clientId: 'q2-in-sub' });
    const got = collect(sub);
    await sub.subscribeAsync('q2/in', { qos: 2 });
    const pub = await RawMqtt.connected(port, 4, { clientId: 'q2-in-pub' });
    const publish = { cmd: 'publish', topic: 'q2/in', payload: Buffer.from('once'), qos: 2, messageId: 7, dup: false, retain: false } as const;
    pub.send(publish);
    expect((await pub.next('pubrec')).messageId).toBe(7);
    pub.send({ ...publish, dup: true });
    expect((await pub.next('pubrec')).messageId).toBe(7);
    pub.send({ cmd: 'pubrel', messageId: 7 });
    expect((await pub.next('pubcomp')).messageId).toBe(7);
    await waitForCount(got, 1);
    await settle();
    expect(got.map((m) => m.payload)).toEqual(['once']);
    // After PUBCOMP the packet id is free: the same id carries a new message.
    pub.send({ ...publish, payload: Buffer.from('again') });
    await pub.next('pubrec');
    await waitForCount(got, 2);
    expect(got.map((m) => m.payload)).toEqual(['once', 'again']);
    pub.end();
    await sub.endAsync();
  });

  test('PUBREL for an unknown packet id still gets PUBCOMP (v5: reason 0x92)', async () => {
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'pubrel', messageId: 99, reasonCode: 0 });
    expect((await r.next('pubcomp')).reasonCode).toBe(0x92);
    r.end();
  });

  test('PUBACK and PUBREC wait until the core has settled the publish, and keep arrival order', async () => {
    const core = tb.broker.core;
    const original = core.persistence;
    const waiting: (() => void)[] = [];
    const store: QueueStore = {
      memoryBudget: 0,
      frontier: Number.MAX_SAFE_INTEGER,
      enqueue: () => new Promise<void>((resolve) => waiting.push(resolve)),
      remove: () => undefined,
      delivering: () => undefined,
      pageIn: () => undefined,
      dropPaged: () => undefined,
      deleted: () => undefined,
    };
    core.persistence = {
      openQueue: () => store,
      definitionsChanged: (c) => original.definitionsChanged(c),
      definitionsSettled: () => original.definitionsSettled(),
    };
    const conn = await amqp.connect(tb.amqpUrl);
    try {
      const ch = await conn.createChannel();
      await ch.assertQueue('durable-sink', { durable: true });
      await ch.bindQueue('durable-sink', 'amq.topic', 'settle.durable');
      const r = await RawMqtt.connected(port, 5);
      r.send({ cmd: 'publish', topic: 'settle/durable', payload: Buffer.from('1'), qos: 1, messageId: 1, dup: false, retain: false });
      r.send({ cmd: 'publish', topic: 'settle/transient', payload: Buffer.from('2'), qos: 1, messageId: 2, dup: false, retain: false });
      r.send({ cmd: 'publish', topic: 'settle/durable', payload: Buffer.from('3'), qos: 2, messageId: 3, dup: false, retain: false });
      await waitFor(() => waiting.length === 2, 2000, `two store writes (have ${waiting.length})`);
      await settle();
      expect(r.packets).toEqual([]);
      waiting[0]!();
      const a1 = await r.next('puback');
      const a2 = await r.next('puback');
      expect([a1.messageId, a2.messageId, a2.reasonCode]).toEqual([1, 2, 0x10]);
      await settle(50);
      expect(r.packets.filter((p) => p.cmd === 'pubrec')).toEqual([]);
      waiting[1]!();
      expect((await r.next('pubrec')).messageId).toBe(3);
      r.end();
      await ch.deleteQueue('durable-sink');
    } finally {
      core.persistence = original;
      await conn.close();
    }
  });

  test('a QoS 1 publish is routed before its PUBACK: the AMQP queue already holds it', async () => {
    const conn = await amqp.connect(tb.amqpUrl);
    const ch = await conn.createChannel();
    const { queue: q } = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q, 'amq.topic', 'routed.before.ack');
    const c = await connectMqtt(url);
    await c.publishAsync('routed/before/ack', 'x', { qos: 1 });
    const m = await ch.get(q, { noAck: true });
    expect(m && m.content.toString()).toBe('x');
    await c.endAsync();
    await conn.close();
  });

  test.each([
    [1, 'puback'],
    [2, 'pubrec'],
  ] as const)('v5: QoS %i publish that matches no subscriber gets %s with reason 0x10', async (qos, cmd) => {
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'publish', topic: 'nobody/listens', payload: Buffer.from('x'), qos, messageId: 5, dup: false, retain: false });
    const ack = await r.next(cmd);
    expect([ack.messageId, ack.reasonCode]).toEqual([5, 0x10]);
    r.end();
  });

  test('v5: a publish refused by permissions gets PUBACK 0x87; at 3.1.1 the connection is closed', async () => {
    const r5 = await RawMqtt.connected(port, 5, { username: 'nowrite', password: Buffer.from('pw') });
    r5.send({ cmd: 'publish', topic: 'denied', payload: Buffer.from('x'), qos: 1, messageId: 1, dup: false, retain: false });
    expect((await r5.next('puback')).reasonCode).toBe(0x87);
    r5.end();
    const r4 = await RawMqtt.connected(port, 4, { username: 'nowrite', password: Buffer.from('pw') });
    r4.send({ cmd: 'publish', topic: 'denied', payload: Buffer.from('x'), qos: 1, messageId: 1, dup: false, retain: false });
    await r4.waitClosed();
    expect(r4.packets).toEqual([]);
  });
});

test('a resource alarm stops reading from publishing connections until it clears', async () => {
  const r = await RawMqtt.connected(port, 4);
  const publish = (id: number) => r.send({ cmd: 'publish', topic: 'alarm/t', payload: Buffer.from('x'), qos: 1, messageId: id, dup: false, retain: false });
  publish(1);
  await r.next('puback');
  const alarms = tb.broker.core.alarms;
  alarms.set('test', true);
  try {
    publish(2);
    await settle(200);
    expect(r.packets).toEqual([]);
  } finally {
    alarms.set('test', false);
  }
  expect((await r.next('puback')).messageId).toBe(2);
  r.end();
});

describe('SUBSCRIBE and UNSUBSCRIBE', () => {
  test('wildcards + and # match; $ topics are not matched by a leading wildcard', async () => {
    const filters = ['#', '+/status', 'dev/+', '$SYS/#', 'dev/#'];
    const clients = await Promise.all(filters.map((f, i) => connectMqtt(url, { clientId: `wc${i}` })));
    const got = clients.map((c) => collect(c));
    await Promise.all(clients.map((c, i) => c.subscribeAsync(filters[i]!, { qos: 1 })));
    const pub = await connectMqtt(url);
    for (const t of ['dev/status', '$SYS/status', 'dev', 'dev/a/b']) await pub.publishAsync(t, t, { qos: 1 });
    await pub.publishAsync('end', 'end', { qos: 1 });
    await waitForCount(got[0]!, 4);
    await settle();
    const topics = got.map((list) => list.map((m) => m.topic).sort());
    expect(topics).toEqual([
      ['dev', 'dev/a/b', 'dev/status', 'end'],
      ['dev/status'],
      ['dev/status'],
      ['$SYS/status'],
      ['dev', 'dev/a/b', 'dev/status'],
    ]);
    await Promise.all([...clients, pub].map((c) => c.endAsync()));
  });

  test('overlapping filters of one client deliver once, with the highest granted QoS', async () => {
    const c = await connectMqtt(url, { clientId: 'overlap' });
    const got = collect(c);
    await c.subscribeAsync({ 'ov/#': { qos: 0 }, 'ov/a': { qos: 2 }, 'ov/+': { qos: 1 } });
    const pub = await connectMqtt(url);
    await pub.publishAsync('ov/a', 'a', { qos: 2 });
    await pub.publishAsync('ov/b', 'b', { qos: 2 });
    await pub.publishAsync('ov/b/c', 'c', { qos: 2 });
    await waitForCount(got, 3);
    await settle();
    expect(got.map((m) => [m.payload, m.packet.qos])).toEqual([
      ['a', 2],
      ['b', 1],
      ['c', 0],
    ]);
    await Promise.all([c.endAsync(), pub.endAsync()]);
  });

  test.each([
    [4, [1, 0x80, 0x80, 0x80, 0]],
    [5, [1, 0x8f, 0x8f, 0x8f, 0]],
  ] as const)('level %i: SUBACK has one code per filter; bad filters fail alone', async (v, codes) => {
    const r = await RawMqtt.connected(port, v);
    r.send({
      cmd: 'subscribe',
      messageId: 3,
      subscriptions: ['good/t', 'bad/#/x', 'a+', '$share/g', 'also/good'].map((topic, i) => ({ topic, qos: i === 0 ? 1 : 0 })),
    });
    const ack = await r.next('suback');
    expect([ack.messageId, ack.granted]).toEqual([3, codes]);
    r.end();
  });

  test.each([
    [4, 0x80],
    [5, 0x87],
  ] as const)('level %i: a forbidden filter gets %i', async (v, code) => {
    const r = await RawMqtt.connected(port, v, { username: 'noread', password: Buffer.from('pw') });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'secret/#', qos: 1 }] });
    expect((await r.next('suback')).granted).toEqual([code]);
    r.end();
  });

  test('v5: subscriptions beyond the per-client limit get 0x97 (quota exceeded)', async () => {
    const r = await RawMqtt.connected(port, 5);
    const subscriptions = Array.from({ length: 1025 }, (_, i) => ({ topic: `many/${i}`, qos: 0 as const }));
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions });
    const granted = (await r.next('suback')).granted as number[];
    expect(granted.slice(0, 1024).every((g) => g === 0)).toBe(true);
    expect(granted[1024]).toBe(0x97);
    r.end();
  });

  test('UNSUBSCRIBE stops delivery; v5 UNSUBACK says which filters existed', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'unsub' });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'u/a', qos: 0 }, { topic: 'u/b', qos: 0 }] });
    await r.next('suback');
    r.send({ cmd: 'unsubscribe', messageId: 2, unsubscriptions: ['u/a', 'u/never'] });
    expect((await r.next('unsuback')).granted).toEqual([0x00, 0x11]);
    const pub = await connectMqtt(url);
    await pub.publishAsync('u/a', 'gone', { qos: 1 });
    await pub.publishAsync('u/b', 'kept', { qos: 1 });
    const p = await r.next('publish');
    expect([p.topic, p.payload.toString()]).toEqual(['u/b', 'kept']);
    await settle();
    expect(r.packets.filter((x) => x.cmd === 'publish')).toEqual([]);
    const bindings = tb.broker.core.vhosts.get('/')!.bindingsTo(queue('mqtt-subscription-unsub')!).map((b) => b.routingKey);
    expect(bindings).toEqual(['u.b']);
    r.end();
    await pub.endAsync();
  });

  test('each filter is one amq.topic binding that keeps its QoS and options in the arguments', async () => {
    const c = await connectMqtt(url, { protocolVersion: 5, clientId: 'bind-args' });
    await c.subscribeAsync('ba/+/x', { qos: 2, nl: true, rap: true, rh: 1, properties: { subscriptionIdentifier: 12 } });
    await c.subscribeAsync('ba/#', { qos: 0 });
    const b = tb.broker.core.vhosts.get('/')!.bindingsTo(queue('mqtt-subscription-bind-args')!);
    expect(b.map((x) => [x.source.name, x.routingKey, x.args]).sort()).toEqual([
      ['amq.topic', 'ba.#', { 'x-mqtt-subscription-opts': { qos: 0, 'no-local': false, 'retain-as-published': false, 'retain-handling': 0 } }],
      ['amq.topic', 'ba.*.x', { 'x-mqtt-subscription-opts': { qos: 2, 'no-local': true, 'retain-as-published': true, 'retain-handling': 1, id: 12 } }],
    ]);
    // Re-subscribing replaces the binding instead of adding one.
    await c.subscribeAsync('ba/#', { qos: 1 });
    expect(tb.broker.core.vhosts.get('/')!.bindingsTo(queue('mqtt-subscription-bind-args')!)).toHaveLength(2);
    await c.endAsync();
  });
});

describe('v5 subscription options', () => {
  test('no local: the session does not receive its own publishes', async () => {
    const c = await connectMqtt(url, { protocolVersion: 5, clientId: 'nl' });
    const got = collect(c);
    await c.subscribeAsync('nl/t', { qos: 1, nl: true });
    await c.publishAsync('nl/t', 'mine', { qos: 1 });
    const other = await connectMqtt(url, { protocolVersion: 5 });
    await other.publishAsync('nl/t', 'theirs', { qos: 1 });
    await waitForCount(got, 1);
    await settle();
    expect(got.map((m) => m.payload)).toEqual(['theirs']);
    await Promise.all([c.endAsync(), other.endAsync()]);
  });

  test('retain as published keeps the RETAIN flag on live deliveries', async () => {
    const keep = await connectMqtt(url, { protocolVersion: 5 });
    const plain = await connectMqtt(url, { protocolVersion: 5 });
    const gotKeep = collect(keep);
    const gotPlain = collect(plain);
    await keep.subscribeAsync('rap/t', { qos: 1, rap: true });
    await plain.subscribeAsync('rap/t', { qos: 1 });
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('rap/t', 'r', { qos: 1, retain: true });
    await pub.publishAsync('rap/t', 'n', { qos: 1 });
    await waitForCount(gotKeep, 2);
    await waitForCount(gotPlain, 2);
    expect(gotKeep.map((m) => [m.payload, m.packet.retain])).toEqual([
      ['r', true],
      ['n', false],
    ]);
    expect(gotPlain.map((m) => [m.payload, m.packet.retain])).toEqual([
      ['r', false],
      ['n', false],
    ]);
    await pub.publishAsync('rap/t', '', { qos: 1, retain: true });
    await Promise.all([keep.endAsync(), plain.endAsync(), pub.endAsync()]);
  });

  test('retain handling 0 sends retained messages on every SUBSCRIBE, 1 only for a new subscription, 2 never', async () => {
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('rh/t', 'kept', { qos: 1, retain: true });
    const results: number[][] = [];
    for (const rh of [0, 1, 2] as const) {
      const c = await connectMqtt(url, { protocolVersion: 5 });
      const got = collect(c);
      await c.subscribeAsync('rh/#', { qos: 1, rh });
      await settle(100);
      const first = got.length;
      await c.subscribeAsync('rh/#', { qos: 1, rh });
      await settle(100);
      results.push([first, got.length - first]);
      await c.endAsync();
    }
    expect(results).toEqual([
      [1, 1],
      [1, 0],
      [0, 0],
    ]);
    await pub.publishAsync('rh/t', '', { qos: 1, retain: true });
    await pub.endAsync();
  });

  test('subscription identifiers: each delivery carries the identifiers of every matching subscription', async () => {
    const c = await connectMqtt(url, { protocolVersion: 5 });
    const got = collect(c);
    await c.subscribeAsync('sid/#', { qos: 1, properties: { subscriptionIdentifier: 7 } });
    await c.subscribeAsync('sid/a', { qos: 1, properties: { subscriptionIdentifier: 9 } });
    await c.subscribeAsync('sid/+', { qos: 1 });
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    await pub.publishAsync('sid/a', 'a', { qos: 1 });
    await pub.publishAsync('sid/b', 'b', { qos: 1 });
    await waitForCount(got, 2);
    const ids = got.map((m) => m.packet.properties?.subscriptionIdentifier);
    expect(ids).toEqual([[7, 9], 7]);
    await Promise.all([c.endAsync(), pub.endAsync()]);
  });

  test('no local on a shared subscription is a protocol error (DISCONNECT 0x82)', async () => {
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/x', qos: 0, nl: true, rap: false, rh: 0 }] });
    expect((await r.next('disconnect')).reasonCode).toBe(0x82);
    await r.waitClosed();
  });
});
