import { rm } from 'node:fs/promises';
import { afterEach, expect, test } from 'vitest';
import type { Broker } from '../../src/broker.js';
import { startOn, tempDataDir } from '../helpers/durability.js';
import { collect, connectCollecting, connectMqtt, settle, waitForCount } from '../helpers/mqtt.js';

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
