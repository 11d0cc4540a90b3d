import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';

const run = promisify(execFile);
const DIR = join(import.meta.dirname, '..', '..', 'examples', 'tutorials');
let tb: TestBroker;

beforeAll(async () => {
  tb = await startTestBroker();
});
afterAll(async () => {
  await tb.stop();
});

async function example(file: string, dir = DIR): Promise<string> {
  const env = { ...process.env, AMQP_URL: tb.amqpUrl, MQTT_URL: `mqtt://127.0.0.1:${tb.broker.ports.mqtt}` };
  const { stdout } = await run(process.execPath, [join(dir, file)], { env, timeout: 15_000 });
  return stdout;
}

describe('the tutorial examples run against Warren', () => {
  test('1 hello world', async () => {
    expect(await example('1-hello-world.mjs')).toContain("Received 'Hello World!'");
  });
  test('2 work queues', async () => {
    const out = await example('2-work-queues.mjs');
    expect(out.match(/done '/g)).toHaveLength(6);
    expect(out).toContain('[worker 1]');
    expect(out).toContain('[worker 2]');
  });
  test('3 publish/subscribe', async () => {
    const out = await example('3-publish-subscribe.mjs');
    expect(out).toContain('[subscriber A] warning: disk almost full');
    expect(out).toContain('[subscriber B] warning: disk almost full');
  });
  test('4 routing', async () => {
    const out = await example('4-routing.mjs');
    expect(out).toContain('[errors only] error: broken');
    expect(out).not.toContain('[errors only] info');
    expect(out).toContain('[all severities] info: all good');
  });
  test('5 topics', async () => {
    const out = await example('5-topics.mjs');
    expect(out).toContain('[kernel] kern.critical');
    expect(out).toContain('[critical] kern.critical');
    expect(out).toContain('[critical] cron.critical');
    expect(out).not.toContain('cron.info');
  });
  test('the IoT sensor feeds an AMQP worker, which answers over MQTT', async () => {
    const out = await example('iot-sensor-to-amqp-worker.mjs', join(DIR, '..'));
    expect(out).toContain('done: 6/6 readings handled');
    expect(out.match(/^worker: \w+ [\d.]+ °C \(MQTT QoS 1, application\/json\)$/gm)).toHaveLength(6);
  });
  test('6 rpc', async () => {
    const out = await example('6-rpc.mjs');
    expect(out).toContain('fib(10) = 55');
    expect(out).toContain('fib(30) = 832040');
  });
});
