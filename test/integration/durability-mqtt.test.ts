import { copyFileSync, mkdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, expect, test } from 'vitest';
import type { Packet } from 'mqtt-packet';
import type { MqttAdapter } from '../../adapters/mqtt/index.js';
import { sessionQueueName } from '../../adapters/mqtt/session.js';
import type { Broker } from '../../src/broker.js';
import { waitFor } from '../helpers/broker.js';
import { startOn, tempDataDir } from '../helpers/durability.js';
import { RawMqtt, collect, connectCollecting, connectMqtt, settle, waitForCount } from '../helpers/mqtt.js';

const dirs: string[] = [];
const brokers: Broker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function start(dir: string): Promise<{ b: Broker; url: string }> {
  const b = await startOn(dir, { mqttPort: 0 });
  brokers.push(b);
  return { b, url: `mqtt://127.0.0.1:${b.ports.mqtt}` };
}

async function stop(b: Broker): Promise<void> {
  await b.stop();
  brokers.splice(brokers.indexOf(b), 1);
}

test('retained messages survive a restart; a cleared one stays cleared', async () => {
  const dir = await tempDataDir();
  dirs.push(dir);
  let { b, url } = await start(dir);
  const pub = await connectMqtt(url, { clientId: 'sensor' });
  await pub.publishAsync('home/kitchen/temp', '21.5', { qos: 1, retain: true });
  await pub.publishAsync('home/hall/temp', '19.0', { qos: 1, retain: true });
  await pub.publishAsync('home/hall/temp', '', { qos: 1, retain: true });
  await pub.endAsync();
  await stop(b);

  ({ b, url } = await start(dir));
  const sub = await connectMqtt(url, { clientId: 'dashboard' });
  const got = collect(sub);
  await sub.subscribeAsync('home/+/temp', { qos: 1 });
  await waitForCount(got, 1);
  await settle();
  expect(got.map((m) => [m.topic, m.payload, m.packet.retain])).toEqual([['home/kitchen/temp', '21.5', true]]);
  await sub.endAsync();
});

test('retained messages in a data directory written by earlier versions come back', async () => {
  const dir = await tempDataDir();
  dirs.push(dir);
  mkdirSync(join(dir, 'records'));
  copyFileSync(join(import.meta.dirname, '../fixtures/retained-v1/records/retained.log'), join(dir, 'records', 'retained.log'));
  const { url } = await start(dir);
  const sub = await connectMqtt(url, { clientId: 'dashboard', protocolVersion: 5 });
  const got = collect(sub);
  await sub.subscribeAsync('home/+/temp', { qos: 1 });
  await waitForCount(got, 2);
  await settle();
  expect(got.map((m) => [m.topic, m.payload, m.packet.retain, m.packet.properties?.contentType]).sort()).toEqual([
    ['home/hall/temp', '19.0', true, undefined],
    ['home/kitchen/temp', '21.5', true, 'text/plain'],
  ]);
  await sub.endAsync();
});

test('a persistent session keeps its subscription and the QoS 1 messages queued while offline across a restart', async () => {
  const dir = await tempDataDir();
  dirs.push(dir);
  let { b, url } = await start(dir);
  const worker = await connectMqtt(url, { clientId: 'worker-1', clean: false });
  await worker.subscribeAsync('jobs/#', { qos: 1 });
  await worker.endAsync();
  const pub = await connectMqtt(url, { clientId: 'producer' });
  for (let i = 0; i < 5; i++) await pub.publishAsync(`jobs/${i}`, `job-${i}`, { qos: 1 });
  await pub.endAsync();
  await stop(b);

  ({ b, url } = await start(dir));
  const { client, connack, received } = await connectCollecting(url, { clientId: 'worker-1', clean: false });
  expect(connack.sessionPresent).toBe(true);
  await waitForCount(received, 5);
  expect(received.map((m) => m.payload)).toEqual(['job-0', 'job-1', 'job-2', 'job-3', 'job-4']);
  // The subscription itself came back too.
  const pub2 = await connectMqtt(url, { clientId: 'producer' });
  await pub2.publishAsync('jobs/late', 'job-late', { qos: 1 });
  await waitForCount(received, 6);
  expect(received[5]!.payload).toBe('job-late');
  await pub2.endAsync();
  await client.endAsync();
});

const v5 = (clientId: string, expiry: number) => ({ clientId, clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: expiry } });

function mqttPort(b: Broker): number {
  return b.ports.mqtt!;
}

function sessionQueueExists(b: Broker, clientId: string): boolean {
  return b.core.vhosts.get('/')?.queues.has(sessionQueueName(clientId)) ?? false;
}

test('delayed wills survive a restart: overdue ones are published at start, others when due, none after the client came back', async () => {
  const dir = await tempDataDir();
  dirs.push(dir);
  let { b, url } = await start(dir);
  const watcher = await connectMqtt(url, v5('watcher', 300));
  await watcher.subscribeAsync('status/#', { qos: 1 });
  await watcher.endAsync();

  const withWill = (clientId: string, delay: number, extra: Record<string, unknown> = {}) =>
    RawMqtt.connected(mqttPort(b), 5, {
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 60 },
      will: { topic: `status/${clientId}`, payload: Buffer.from(`${clientId} gone`), qos: 1, retain: false, properties: { willDelayInterval: delay }, ...extra },
    } as Partial<Extract<Packet, { cmd: 'connect' }>>);
  const overdue = await withWill('overdue', 1, { retain: true, properties: { willDelayInterval: 1, contentType: 'text/plain' } });
  const back = await withWill('back', 3);
  const later = await withWill('later', 3);
  // Abnormal disconnects (no DISCONNECT): the wills wait for their delay.
  const droppedAt = Date.now();
  for (const c of [overdue, back, later]) c.end();
  await waitFor(() => (b.adapters.get('mqtt') as MqttAdapter).connectionCount === 0, 3000, 'connections gone');
  await stop(b);
  // The broker is down while the first will falls due.
  await waitFor(() => Date.now() >= droppedAt + 1100, 3000, 'first will due');

  ({ b, url } = await start(dir));
  const resumed = await RawMqtt.connected(mqttPort(b), 5, { clientId: 'back', clean: false, properties: { sessionExpiryInterval: 60 } });
  const { client, connack, received } = await connectCollecting(url, v5('watcher', 300));
  expect(connack.sessionPresent).toBe(true);
  const arrivedAt = new Map<string, number>();
  client.on('message', (topic) => arrivedAt.set(topic, Date.now()));
  await waitForCount(received, 1);
  expect(received[0]!.topic).toBe('status/overdue');
  expect(received[0]!.payload).toBe('overdue gone');
  expect(received[0]!.packet.properties?.contentType).toBe('text/plain');
  // 'later' is re-armed, not published at start: it arrives once its 3 s delay has passed.
  await waitForCount(received, 2, 5000);
  expect(arrivedAt.get('status/later')).toBeGreaterThanOrEqual(droppedAt + 2950);
  await settle(300);
  // 'back' reconnected within its delay: its will is never sent.
  expect(received.map((m) => m.topic)).toEqual(['status/overdue', 'status/later']);
  // The retained will came back as retained.
  const fresh = await connectMqtt(url, { clientId: 'fresh' });
  const retained = collect(fresh);
  await fresh.subscribeAsync('status/overdue', { qos: 1 });
  await waitForCount(retained, 1);
  expect(retained[0]!.packet.retain).toBe(true);
  await fresh.endAsync();
  resumed.end();
  await client.endAsync();
});

test('QoS 2 in-flight packet ids of persistent sessions survive a restart', async () => {
  const dir = await tempDataDir();
  dirs.push(dir);
  let { b, url } = await start(dir);
  const sub = await connectMqtt(url, v5('q2-sub', 300));
  const got = collect(sub);
  await sub.subscribeAsync('q2/in', { qos: 1 });

  // Inbound: PUBLISH stored and PUBREC sent, PUBREL not yet.
  const pubConnect = { clientId: 'q2-pub', clean: false, properties: { sessionExpiryInterval: 300 } };
  let pub = await RawMqtt.connected(mqttPort(b), 5, pubConnect);
  const publish7 = { cmd: 'publish', topic: 'q2/in', payload: Buffer.from('once'), qos: 2, messageId: 7, retain: false, dup: false } as const;
  pub.send(publish7 as Packet);
  expect((await pub.next('pubrec')).messageId).toBe(7);
  await waitForCount(got, 1);

  // Outbound: PUBLISH received and PUBREC answered, the broker's PUBREL not completed.
  const recvConnect = { clientId: 'q2-recv', clean: false, properties: { sessionExpiryInterval: 300 } };
  let recv = await RawMqtt.connected(mqttPort(b), 5, recvConnect);
  recv.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q2/out', qos: 2 }] } as Packet);
  await recv.next('suback');
  const producer = await connectMqtt(url, { clientId: 'q2-producer' });
  await producer.publishAsync('q2/out', 'exactly-once', { qos: 2 });
  await producer.endAsync();
  const delivered = await recv.next('publish');
  expect(delivered.qos).toBe(2);
  recv.send({ cmd: 'pubrec', messageId: delivered.messageId } as Packet);
  expect((await recv.next('pubrel')).messageId).toBe(delivered.messageId);

  pub.end();
  recv.end();
  await sub.endAsync();
  await stop(b);

  ({ b, url } = await start(dir));
  const again = await connectCollecting(url, v5('q2-sub', 300));
  expect(again.connack.sessionPresent).toBe(true);
  pub = await RawMqtt.open(mqttPort(b), 5);
  pub.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, keepalive: 0, ...pubConnect } as Packet);
  expect((await pub.next('connack')).sessionPresent).toBe(true);
  // The client did not see the PUBREC: it resends the PUBLISH with DUP. It is acknowledged, not routed again.
  pub.send({ ...publish7, dup: true } as Packet);
  expect((await pub.next('pubrec')).messageId).toBe(7);
  pub.send({ cmd: 'pubrel', messageId: 7 } as Packet);
  const comp = await pub.next('pubcomp');
  expect(comp.messageId).toBe(7);
  expect(comp.reasonCode ?? 0).toBe(0); // the id was known: not 0x92 (packet identifier not found)
  pub.send({ cmd: 'publish', topic: 'q2/in', payload: Buffer.from('control'), qos: 1, messageId: 8, retain: false, dup: false } as Packet);
  await pub.next('puback');
  await waitForCount(again.received, 1);
  await settle();
  expect(again.received.map((m) => m.payload)).toEqual(['control']);

  // The PUBREL owed to the receiver is sent again after it reconnects; the message is not.
  recv = await RawMqtt.open(mqttPort(b), 5);
  recv.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, keepalive: 0, ...recvConnect } as Packet);
  expect((await recv.next('connack')).sessionPresent).toBe(true);
  expect((await recv.next('pubrel')).messageId).toBe(delivered.messageId);
  recv.send({ cmd: 'pubcomp', messageId: delivered.messageId } as Packet);
  await settle();
  expect(recv.packets.filter((p) => p.cmd === 'publish')).toEqual([]);
  pub.end();
  recv.end();
  await again.client.endAsync();
});

test('offline session expiry survives a restart: passed deadlines expire at start, others when due', async () => {
  const dir = await tempDataDir();
  dirs.push(dir);
  let { b, url } = await start(dir);
  for (const [id, expiry] of [['short', 1], ['rearm', 3], ['long', 300]] as const) {
    const c = await connectMqtt(url, v5(id, expiry));
    await c.subscribeAsync('exp/#', { qos: 1 });
    await c.endAsync();
  }
  const leftAt = Date.now();
  expect(['short', 'rearm', 'long'].map((id) => sessionQueueExists(b, id))).toEqual([true, true, true]);
  await stop(b);
  await waitFor(() => Date.now() >= leftAt + 1100, 3000, 'short expiry passed');

  ({ b, url } = await start(dir));
  // 'short' expired while the broker was down; 'rearm' is re-armed and expires later.
  expect(['short', 'rearm', 'long'].map((id) => sessionQueueExists(b, id))).toEqual([false, true, true]);
  await waitFor(() => !sessionQueueExists(b, 'rearm'), 5000, 'rearm session expired');
  expect(Date.now()).toBeGreaterThanOrEqual(leftAt + 2900);
  const long = await connectCollecting(url, v5('long', 300));
  expect(long.connack.sessionPresent).toBe(true);
  const short = await connectCollecting(url, v5('short', 300));
  expect(short.connack.sessionPresent).toBe(false);
  await long.client.endAsync();
  await short.client.endAsync();
});
