import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

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

/** Every queue of the broker with its depth (ready + unacked), once every client has gone. */
async function queuesAfter(): Promise<Record<string, number>> {
  await waitFor(() => tb.broker.core.connections.size === 0, 5000, 'the example to disconnect');
  const out: Record<string, number> = {};
  for (const v of tb.broker.core.vhosts.values()) for (const q of v.queues.values()) out[`${v.name} ${q.name}`] = q.readyCount + q.unackedCount;
  return out;
}

/**
 * Runs an example twice, checking its output each time; after each run every queue must be empty
 * (nothing left unacknowledged or unread), and the second run must leave the same queues as the
 * first (nothing piles up from run to run).
 */
async function twice(file: string, check: (out: string) => void, dir = DIR): Promise<void> {
  const after: Array<Record<string, number>> = [];
  for (let i = 0; i < 2; i++) {
    check(await example(file, dir));
    const qs = await queuesAfter();
    for (const [name, depth] of Object.entries(qs)) expect(depth, `${file} run ${i + 1} left messages in ${name}`).toBe(0);
    after.push(qs);
  }
  expect(Object.keys(after[1]!).sort()).toEqual(Object.keys(after[0]!).sort());
}

describe('the examples run against Warren, twice each, and leave their queues empty', () => {
  test('1 hello world', async () => {
    await twice('1-hello-world.mjs', (out) => expect(out).toContain("Received 'Hello World!'"));
  });
  test('2 work queues: every task acknowledged, none left on task_queue', async () => {
    await twice('2-work-queues.mjs', (out) => {
      expect(out.match(/done '/g)).toHaveLength(6);
      expect(out).toContain('[worker 1]');
      expect(out).toContain('[worker 2]');
    });
  });
  test('3 publish/subscribe', async () => {
    await twice('3-publish-subscribe.mjs', (out) => {
      expect(out).toContain('[subscriber A] warning: disk almost full');
      expect(out).toContain('[subscriber B] warning: disk almost full');
    });
  });
  test('4 routing', async () => {
    await twice('4-routing.mjs', (out) => {
      expect(out).toContain('[errors only] error: broken');
      expect(out).not.toContain('[errors only] info');
      expect(out).toContain('[all severities] info: all good');
    });
  });
  test('5 topics', async () => {
    await twice('5-topics.mjs', (out) => {
      expect(out).toContain('[kernel] kern.critical');
      expect(out).toContain('[critical] kern.critical');
      expect(out).toContain('[critical] cron.critical');
      expect(out).not.toContain('cron.info');
    });
  });
  test('6 rpc', async () => {
    await twice('6-rpc.mjs', (out) => {
      expect(out).toContain('fib(10) = 55');
      expect(out).toContain('fib(30) = 832040');
    });
  });
  test('the IoT sensor feeds an AMQP worker, which answers over MQTT', async () => {
    await twice(
      'iot-sensor-to-amqp-worker.mjs',
      (out) => {
        expect(out).toContain('done: 6/6 readings handled');
        expect(out.match(/^worker: \w+ [\d.]+ °C \(MQTT QoS 1, application\/json\)$/gm)).toHaveLength(6);
      },
      join(DIR, '..'),
    );
  });
});
