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

async function publish(topic: string, payloads: string[], qos: 0 | 1 | 2 = 1): Promise<void> {
  const pub = await connectMqtt(url);
  for (const p of payloads) await pub.publishAsync(topic, p, { qos });
  await pub.endAsync();
}

describe('clean and persistent sessions', () => {
  test('a clean session owns an exclusive queue that ends with the connection', async () => {
    const c = await connectMqtt(url, { clientId: 'clean-1', clean: true });
    await c.subscribeAsync('cs/#', { qos: 1 });
    const q = queue('mqtt-subscription-clean-1');
    expect([q?.exclusive, q?.durable]).toEqual([true, false]);
    await c.endAsync();
    await waitFor(() => queue('mqtt-subscription-clean-1') === undefined);
  });

  test.each([
    [4, {}],
    [5, { properties: { sessionExpiryInterval: 60 } }],
  ] as const)('level %i: a persistent session keeps its queue and receives QoS 1 messages published while offline', async (v, extra) => {
    const clientId = `persist-${v}`;
    const opts = { protocolVersion: v, clientId, clean: false, ...extra };
    const first = await connectMqtt(url, opts);
    await first.subscribeAsync('offline/t', { qos: 1 });
    await first.endAsync();
    const q = queue(`mqtt-subscription-${clientId}`)!;
    expect([q.durable, q.exclusive, q.consumerCount]).toEqual([true, false, 0]);
    await publish('offline/t', ['while', 'away']);
    expect(q.readyCount).toBe(2);
    const { client: again, connack, received: got } = await connectCollecting(url, opts);
    expect(connack.sessionPresent).toBe(true);
    await waitForCount(got, 2);
    expect(got.map((m) => [m.topic, m.payload, m.packet.qos])).toEqual([
      ['offline/t', 'while', 1],
      ['offline/t', 'away', 1],
    ]);
    await again.endAsync();
  });

  test('session present is false for a new session and after clean start, which also drops the old subscriptions', async () => {
    const r1 = await RawMqtt.open(port, 4);
    r1.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'sp', clean: false, keepalive: 0 });
    expect((await r1.next('connack')).sessionPresent).toBe(false);
    r1.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'sp/t', qos: 1 }] });
    await r1.next('suback');
    r1.send({ cmd: 'disconnect' });
    await r1.waitClosed();
    const r2 = await RawMqtt.open(port, 4);
    r2.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'sp', clean: false, keepalive: 0 });
    expect((await r2.next('connack')).sessionPresent).toBe(true);
    r2.send({ cmd: 'disconnect' });
    await r2.waitClosed();
    const r3 = await RawMqtt.open(port, 4);
    r3.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'sp', clean: true, keepalive: 0 });
    expect((await r3.next('connack')).sessionPresent).toBe(false);
    expect(queue('mqtt-subscription-sp')).toBeUndefined();
    await publish('sp/t', ['not for you']);
    await settle();
    expect(r3.packets).toEqual([]);
    r3.end();
  });

  test('v5: the session expires after its expiry interval and its queue is removed', async () => {
    const c = await connectMqtt(url, { protocolVersion: 5, clientId: 'expiring', clean: false, properties: { sessionExpiryInterval: 1 } });
    await c.subscribeAsync('exp/t', { qos: 1 });
    await c.endAsync();
    const gone = Date.now();
    expect(queue('mqtt-subscription-expiring')).toBeDefined();
    await waitFor(() => queue('mqtt-subscription-expiring') === undefined, 3000, 'session queue to expire');
    expect(Date.now() - gone).toBeGreaterThanOrEqual(900);
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'expiring', clean: false, keepalive: 0, properties: { sessionExpiryInterval: 1 } });
    expect((await r.next('connack')).sessionPresent).toBe(false);
    r.end();
  });

  test('v5: DISCONNECT can shorten the session expiry to 0, ending the session', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'short', clean: false, properties: { sessionExpiryInterval: 300 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'short/t', qos: 1, nl: false, rap: false, rh: 0 }] });
    await r.next('suback');
    expect(queue('mqtt-subscription-short')?.durable).toBe(true);
    r.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await r.waitClosed();
    await waitFor(() => queue('mqtt-subscription-short') === undefined);
  });

  test('v5: DISCONNECT setting an expiry after CONNECT asked for none is a protocol error', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'noexp' });
    r.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 60 } });
    expect((await r.next('disconnect')).reasonCode).toBe(0x82);
    await r.waitClosed();
  });

  test('a takeover of a persistent session keeps the session', async () => {
    const a = await RawMqtt.connected(port, 4, { clientId: 'keep-over', clean: false });
    a.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ko/t', qos: 1 }] });
    await a.next('suback');
    const b = await RawMqtt.open(port, 4);
    b.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'keep-over', clean: false, keepalive: 0 });
    expect((await b.next('connack')).sessionPresent).toBe(true);
    await a.waitClosed();
    await publish('ko/t', ['to the new connection']);
    const p = await b.next('publish');
    expect(p.payload.toString()).toBe('to the new connection');
    b.send({ cmd: 'puback', messageId: p.messageId! });
    b.send({ cmd: 'disconnect' });
    await b.waitClosed();
  });
});

describe('in-flight state across reconnects', () => {
  test('unacknowledged QoS 1 deliveries are resent with DUP and their original packet ids', async () => {
    const a = await RawMqtt.connected(port, 4, { clientId: 'resend1', clean: false });
    a.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rs1/t', qos: 1 }] });
    await a.next('suback');
    await publish('rs1/t', ['m1', 'm2', 'm3']);
    const p1 = await a.next('publish');
    const p2 = await a.next('publish');
    const p3 = await a.next('publish');
    a.send({ cmd: 'puback', messageId: p1.messageId! });
    await settle(50);
    a.end();
    await a.waitClosed();
    await publish('rs1/t', ['m4']);
    const b = await RawMqtt.connected(port, 4, { clientId: 'resend1', clean: false });
    const r2 = await b.next('publish');
    const r3 = await b.next('publish');
    const r4 = await b.next('publish');
    expect([r2.payload.toString(), r2.dup, r2.messageId]).toEqual(['m2', true, p2.messageId]);
    expect([r3.payload.toString(), r3.dup, r3.messageId]).toEqual(['m3', true, p3.messageId]);
    expect([r4.payload.toString(), r4.dup]).toEqual(['m4', false]);
    expect([p2.messageId, p3.messageId]).not.toContain(r4.messageId);
    for (const p of [r2, r3, r4]) b.send({ cmd: 'puback', messageId: p.messageId! });
    await waitFor(() => queue('mqtt-subscription-resend1')!.unackedCount === 0);
    expect(queue('mqtt-subscription-resend1')!.readyCount).toBe(0);
    b.send({ cmd: 'disconnect' });
    await b.waitClosed();
  });

  test('QoS 2 towards the client: PUBREL and un-PUBREC-ed PUBLISHes are resent after a reconnect, each message arrives once', async () => {
    const a = await RawMqtt.connected(port, 5, { clientId: 'resend2', clean: false, properties: { sessionExpiryInterval: 60 } });
    a.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rs2/t', qos: 2, nl: false, rap: false, rh: 0 }] });
    await a.next('suback');
    await publish('rs2/t', ['first', 'second'], 2);
    const p1 = await a.next('publish');
    const p2 = await a.next('publish');
    a.send({ cmd: 'pubrec', messageId: p1.messageId!, reasonCode: 0 });
    expect((await a.next('pubrel')).messageId).toBe(p1.messageId);
    a.end(); // neither PUBCOMP for the first nor PUBREC for the second
    await a.waitClosed();
    const b = await RawMqtt.connected(port, 5, { clientId: 'resend2', clean: false, properties: { sessionExpiryInterval: 60 } });
    expect((await b.next('pubrel')).messageId).toBe(p1.messageId);
    const again = await b.next('publish');
    expect([again.payload.toString(), again.dup, again.qos, again.messageId]).toEqual(['second', true, 2, p2.messageId]);
    b.send({ cmd: 'pubcomp', messageId: p1.messageId!, reasonCode: 0 });
    b.send({ cmd: 'pubrec', messageId: again.messageId!, reasonCode: 0 });
    expect((await b.next('pubrel')).messageId).toBe(again.messageId);
    b.send({ cmd: 'pubcomp', messageId: again.messageId!, reasonCode: 0 });
    await settle();
    expect(b.packets.filter((p) => p.cmd === 'publish')).toEqual([]);
    const q = queue('mqtt-subscription-resend2')!;
    expect([q.readyCount, q.unackedCount]).toEqual([0, 0]);
    b.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await b.waitClosed();
  });

  test('QoS 2 from the client: a PUBLISH resent after a reconnect is not routed again', async () => {
    const sub = await connectMqtt(url, { clientId: 'q2-reconnect-sub' });
    const got = collect(sub);
    await sub.subscribeAsync('q2r/t', { qos: 2 });
    const publish2 = { cmd: 'publish', topic: 'q2r/t', payload: Buffer.from('exactly once'), qos: 2, messageId: 5, dup: false, retain: false } as const;
    const a = await RawMqtt.connected(port, 4, { clientId: 'q2-reconnect-pub', clean: false });
    a.send(publish2);
    await a.next('pubrec');
    a.end(); // PUBREC lost as far as the client knows
    await a.waitClosed();
    const b = await RawMqtt.connected(port, 4, { clientId: 'q2-reconnect-pub', clean: false });
    b.send({ ...publish2, dup: true });
    expect((await b.next('pubrec')).messageId).toBe(5);
    b.send({ cmd: 'pubrel', messageId: 5 });
    expect((await b.next('pubcomp')).messageId).toBe(5);
    await waitForCount(got, 1);
    await settle();
    expect(got.map((m) => m.payload)).toEqual(['exactly once']);
    b.send({ cmd: 'disconnect' });
    await sub.endAsync();
  });

  test('receive maximum is the consumer prefetch: no more QoS 1 deliveries in flight than the client allows', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'recvmax', properties: { receiveMaximum: 2 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rm/t', qos: 1, nl: false, rap: false, rh: 0 }] });
    await r.next('suback');
    const q = queue('mqtt-subscription-recvmax')!;
    expect(q.consumers[0]?.prefetch).toBe(2);
    await publish('rm/t', ['1', '2', '3', '4', '5']);
    const a = await r.next('publish');
    const b = await r.next('publish');
    await settle();
    expect(r.packets.filter((p) => p.cmd === 'publish')).toEqual([]);
    expect([q.readyCount, q.unackedCount]).toEqual([3, 2]);
    r.send({ cmd: 'puback', messageId: a.messageId!, reasonCode: 0 });
    const c = await r.next('publish');
    expect(c.payload.toString()).toBe('3');
    await settle();
    expect(r.packets.filter((p) => p.cmd === 'publish')).toEqual([]);
    for (const p of [b, c]) r.send({ cmd: 'puback', messageId: p.messageId!, reasonCode: 0 });
    const rest = [await r.next('publish'), await r.next('publish')];
    expect(rest.map((p) => p.payload.toString())).toEqual(['4', '5']);
    r.end();
  });
});
