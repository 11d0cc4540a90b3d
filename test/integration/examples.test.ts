import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker, type Broker } from '../../src/broker.js';
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

describe('the dashboard service', () => {
  test('says why it lost the broker and reconnects when the broker restarts; it also waits for a broker that is not up yet', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-service-'));
    const first = await startBroker({ amqpPort: 0, bind: '127.0.0.1', logLevel: 'silent', dataDir });
    const port = first.ports.amqp!;
    await first.stop();
    // started with no broker listening
    const child = spawn(process.execPath, [join(DIR, '..', 'dashboard', 'service.mjs')], {
      env: { ...process.env, AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}`, RETRY_MS: '100' },
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    let broker: Broker | undefined;
    try {
      await waitFor(() => out.includes('cannot connect to'), 10_000, 'the service to report the missing broker');
      expect(out).toMatch(/cannot connect to amqp:\/\/guest:guest@127\.0\.0\.1:\d+: .*ECONNREFUSED.*retrying every 100 ms/);
      broker = await startBroker({ amqpPort: port, bind: '127.0.0.1', logLevel: 'silent', dataDir });
      await waitFor(() => out.match(/listening for commands/g)?.length === 1, 10_000, 'the service to connect');
      await broker.stop();
      await waitFor(() => out.includes('connection lost:'), 10_000, 'the service to notice the restart');
      expect(out).toMatch(/connection lost: .*(CONNECTION_FORCED|shutdown).*; reconnecting every 100 ms/);
      broker = await startBroker({ amqpPort: port, bind: '127.0.0.1', logLevel: 'silent', dataDir });
      await waitFor(() => out.match(/listening for commands/g)?.length === 2, 10_000, 'the service to reconnect');
      // and it serves again: a command gets its alert
      const conn = await connect(`amqp://guest:guest@127.0.0.1:${port}`);
      const ch = await conn.createChannel();
      const { queue } = await ch.assertQueue('', { exclusive: true });
      await ch.bindQueue(queue, 'amq.topic', 'alerts.fan');
      ch.publish('amq.topic', 'commands.fan', Buffer.from('on'));
      const alert = await waitFor(async () => (await ch.get(queue, { noAck: true })) || undefined, 5000, 'the alert');
      expect(alert.content.toString()).toBe('fan switched on');
      await ch.close();
      await conn.close();
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
      await broker?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 60_000);
});
