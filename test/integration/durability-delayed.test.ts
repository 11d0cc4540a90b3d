import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { connectAsync as mqttConnect } from 'mqtt';
import { afterAll, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

const dirs: string[] = [];
let proc: WarrenProcess | undefined;

afterAll(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('confirmed persistent delayed messages to a durable delayed exchange survive kill -9 and are routed when due', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-delayed-'));
  dirs.push(dir);
  proc = await spawnWarren(dir);
  let conn = await connect(`amqp://guest:guest@127.0.0.1:${proc.amqpPort}`);
  conn.on('error', () => undefined); // the broker is killed under it
  const cc = await conn.createConfirmChannel();
  cc.on('error', () => undefined);
  await cc.assertExchange('dx-durable', 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'direct' } });
  await cc.assertQueue('dx-durable-q', { durable: true });
  await cc.bindQueue('dx-durable-q', 'dx-durable', 'k');
  const publish = (body: string, delay: number, persistent: boolean): Promise<void> =>
    new Promise((resolve, reject) =>
      cc.publish('dx-durable', 'k', Buffer.from(body), { persistent, headers: { 'x-delay': delay } }, (err) => (err ? reject(err) : resolve())),
    );
  await publish('soon', 1500, true);
  await publish('later', 2500, true);
  await publish('transient', 1500, false);
  expect((await cc.checkQueue('dx-durable-q')).messageCount).toBe(0);
  proc.child.kill('SIGKILL');
  await proc.exited;

  proc = await spawnWarren(dir);
  conn = await connect(`amqp://guest:guest@127.0.0.1:${proc.amqpPort}`);
  const ch = await conn.createChannel();
  const got: string[] = [];
  await ch.consume('dx-durable-q', (m) => m && got.push(m.content.toString()), { noAck: true });
  await waitFor(() => got.length === 2, 10_000, 'both persistent delayed messages after the restart');
  expect(got).toEqual(['soon', 'later']);
  await ch.close();
  await conn.close();

  // Released messages are not released again after another restart.
  proc.child.kill('SIGTERM');
  await proc.exited;
  proc = await spawnWarren(dir);
  conn = await connect(`amqp://guest:guest@127.0.0.1:${proc.amqpPort}`);
  const ch2 = await conn.createChannel();
  expect((await ch2.checkQueue('dx-durable-q')).messageCount).toBe(0);
  await conn.close();
  proc.child.kill('SIGTERM');
  await proc.exited;
}, 60_000);

test('an MQTT QoS 1 publish to $delayed/<s>/<topic> acknowledged before kill -9 is routed after the restart', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-delayed-mqtt-'));
  dirs.push(dir);
  proc = await spawnWarren(dir, ['--mqtt-port', '0']);
  const mqttPort = Number(/mqtt=(\d+)/.exec(proc.stdout.join(''))?.[1]);
  let conn = await connect(`amqp://guest:guest@127.0.0.1:${proc.amqpPort}`);
  conn.on('error', () => undefined);
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  await ch.assertQueue('mqtt-delayed-q', { durable: true });
  await ch.bindQueue('mqtt-delayed-q', 'amq.topic', 'devices.#');
  const dev = await mqttConnect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'delayed-dev', reconnectPeriod: 0 });
  dev.on('error', () => undefined);
  await dev.publishAsync('$delayed/2/devices/d1/reboot', 'now', { qos: 1 });
  proc.child.kill('SIGKILL');
  await proc.exited;
  dev.end(true);

  proc = await spawnWarren(dir);
  conn = await connect(`amqp://guest:guest@127.0.0.1:${proc.amqpPort}`);
  const ch2 = await conn.createChannel();
  const m = await waitFor(async () => ch2.get('mqtt-delayed-q', { noAck: true }), 10_000, 'the delayed MQTT message after the restart');
  expect(m.content.toString()).toBe('now');
  expect(m.fields.routingKey).toBe('devices.d1.reboot');
  await conn.close();
  proc.child.kill('SIGTERM');
  await proc.exited;
}, 60_000);
