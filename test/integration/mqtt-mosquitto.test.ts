import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import amqp from 'amqplib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { collect, connectMqtt, mqttUrl, waitForCount } from '../helpers/mqtt.js';

// Debian's mosquitto-clients: the reference command-line MQTT clients.
const run = promisify(execFile);
let tb: TestBroker;
let port: string;

beforeAll(async () => {
  tb = await startTestBroker();
  port = String(tb.broker.ports.mqtt);
});
afterAll(async () => {
  await tb.stop();
});

function queueBoundTo(key: string): boolean {
  const vh = tb.broker.core.vhosts.get('/')!;
  return [...vh.queues.values()].some((q) => q.name.startsWith('mqtt-subscription-') && q.consumerCount > 0 && vh.bindingsTo(q).some((b) => b.routingKey === key));
}

test('mosquitto_sub -t "sensors/#" -v and an AMQP worker both see what mosquitto_pub sends (MQTT 3.1, 3.1.1, 5)', async () => {
  const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-t', 'sensors/#', '-v', '-q', '1', '-C', '3', '-i', 'mosq-sub']);
  let out = '';
  sub.stdout.on('data', (b: Buffer) => (out += b.toString()));
  // 'close', not 'exit': the last line may still be in the pipe when the process has exited.
  const exited = new Promise<number | null>((r) => sub.on('close', r));
  await waitFor(() => queueBoundTo('sensors.#'), 5000, 'mosquitto_sub to subscribe');

  const conn = await amqp.connect(tb.amqpUrl);
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'amq.topic', 'sensors.*.temp');
  const worker: { key: string; body: string; mode: number | undefined }[] = [];
  await ch.consume(queue, (m) => m && worker.push({ key: m.fields.routingKey, body: m.content.toString(), mode: m.properties.deliveryMode }), { noAck: true });

  const sends: [string, string, string][] = [
    ['mqttv31', 'sensors/kitchen/temp', '21.5'],
    ['mqttv311', 'sensors/garage/temp', '12.0'],
    ['mqttv5', 'sensors/attic/temp', '30.1'],
  ];
  for (const [version, topic, value] of sends) {
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', version, '-q', '1', '-t', topic, '-m', value]);
  }
  expect(await exited).toBe(0);
  expect(out.trim().split('\n')).toEqual(sends.map(([, t, v]) => `${t} ${v}`));
  await waitFor(() => worker.length === 3);
  expect(worker).toEqual(sends.map(([, t, v]) => ({ key: t.replaceAll('/', '.'), body: v, mode: 2 })));
  await conn.close();
});

test('mosquitto_pub -r retains; mosquitto_sub -V mqttv5 receives it retained, and mqtt.js sees mosquitto publishes', async () => {
  const c = await connectMqtt(mqttUrl(tb), { protocolVersion: 5 });
  const got = collect(c);
  await c.subscribeAsync('mosq/#', { qos: 2 });
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv5', '-q', '2', '-r', '-t', 'mosq/status', '-m', 'online', '-D', 'publish', 'content-type', 'text/plain']);
  await waitForCount(got, 1);
  expect([got[0]!.payload, got[0]!.packet.qos, got[0]!.packet.properties?.contentType]).toEqual(['online', 2, 'text/plain']);
  const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv5', '-t', 'mosq/#', '-v', '-C', '1', '-W', '5', '-F', '%t %p retain=%r']);
  expect(stdout.trim()).toBe('mosq/status online retain=1');
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-r', '-n', '-t', 'mosq/status']);
  await c.endAsync();
});
