import { connect, type ChannelModel } from 'amqplib';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { collect, connectMqtt, mqttUrl, waitForCount } from '../helpers/mqtt.js';

let tb: TestBroker;
let amqp: ChannelModel;
const clients: MqttClient[] = [];

beforeAll(async () => {
  tb = await startTestBroker();
  amqp = await connect(tb.amqpUrl);
  const ch = await amqp.createChannel();
  await ch.assertQueue('sensor-log', { durable: true, arguments: { 'x-queue-type': 'stream' } });
  await ch.bindQueue('sensor-log', 'amq.topic', 'sensors.#');
  await ch.close();
  // Yesterday's readings, published over MQTT: a publish to a topic bound to the stream appends to it.
  const dev = await client('device');
  for (let i = 0; i < 10; i++) await dev.publishAsync(`sensors/${i % 2 === 0 ? 'kitchen' : 'hall'}/temp`, `t${i}`, { qos: 1 });
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync()));
  await amqp.close();
  await tb.stop();
});

async function client(clientId: string, protocolVersion: 4 | 5 = 5): Promise<MqttClient> {
  const c = await connectMqtt(mqttUrl(tb, 'ws'), { clientId, protocolVersion });
  clients.push(c);
  return c;
}

describe('MQTT replay of a stream ($stream/<name>/<filter>)', () => {
  test('stream-offset first replays the stream, then follows it live', async () => {
    const c = await client('replayer');
    const got = collect(c);
    await c.subscribeAsync('$stream/sensor-log/sensors/#', { qos: 1, properties: { userProperties: { 'stream-offset': 'first' } } });
    await waitForCount(got, 10);
    expect(got.map((m) => m.payload)).toEqual(Array.from({ length: 10 }, (_, i) => `t${i}`));
    expect(got[0]!.topic).toBe('sensors/kitchen/temp');
    expect(got[3]!.packet.properties?.userProperties?.['x-stream-offset']).toBe('3');
    const dev = await client('device-2');
    await dev.publishAsync('sensors/garage/temp', 'live', { qos: 1 });
    await waitForCount(got, 11);
    expect(got[10]!.payload).toBe('live');
  });

  test('the filter selects topics and a numeric offset starts there', async () => {
    const c = await client('kitchen-only');
    const got = collect(c);
    await c.subscribeAsync('$stream/sensor-log/sensors/kitchen/+', { qos: 0, properties: { userProperties: { 'stream-offset': '4' } } });
    await waitForCount(got, 3);
    expect(got.map((m) => m.payload)).toEqual(['t4', 't6', 't8']);
  });

  test('a $stream subscription to something that is not a stream is refused in SUBACK', async () => {
    const c = await client('wrong');
    await expect(c.subscribeAsync('$stream/no-such-stream/#', { qos: 1 })).rejects.toThrow('Unspecified error');
  });
});
