/**
 * Python frameworks written for RabbitMQ, unchanged, against Warren: kombu (a quorum queue, global
 * QoS over a classic and a quorum queue, a transient non-exclusive queue: what RabbitMQ 4.3 denies
 * by default; and an x-delayed-message exchange), pika's direct reply-to RPC (RabbitMQ tutorial 6
 * with amq.rabbitmq.reply-to), and a Celery worker round trip with the rpc:// result backend plus
 * Celery's remote control. The scripts live in test/fixtures/frameworks; Debian's python3-kombu,
 * python3-celery and python3-pika provide the libraries (see .ci/run).
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';

const run = promisify(execFile);
// Debian's python3-* packages live in the system interpreter's dist-packages.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const fixtures = join(import.meta.dirname, '..', 'fixtures', 'frameworks');

let tb: TestBroker;
let port: number;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.amqp!;
});
afterAll(async () => {
  await tb.stop();
});

async function pyJson(script: string, args: string[], env: Record<string, string> = {}): Promise<Record<string, unknown>> {
  const { stdout } = await run(python, [join(fixtures, script), ...args], {
    timeout: 60_000,
    cwd: fixtures,
    env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env },
  });
  return JSON.parse(stdout.trim()) as Record<string, unknown>;
}

describe('kombu', () => {
  test('a quorum queue, global QoS, a transient non-exclusive queue and an x-delayed-message exchange', async () => {
    const out = await pyJson('kombu_checks.py', [`amqp://guest:guest@127.0.0.1:${port}//`, 'kombu']);
    expect(out).toEqual({
      quorum: { received: [{ n: 0 }, { n: 1 }, { n: 2 }] },
      // prefetch 3 with global=True is shared by the channel's two consumers; all 8 arrive as acks free credit.
      global_qos: { unacked_at_once: 3, received: 8 },
      transient: { passive_from_other_connection: { messages: 1, consumers: 0 }, received: [{ hello: 'transient' }] },
      // x-delay 400 ms: held, then routed as its x-delayed-type (direct) routes it.
      delayed: { received: [{ late: true }], after_delay: true },
      // confirm_publish: 50 confirmed persistent publishes, and 312 NO_ROUTE for a mandatory one.
      confirms: { confirmed_and_queued: 50, mandatory_unroutable: 312 },
    });
    const api = mgmt(tb.broker.ports.http!);
    expect((await api.get('/queues/%2F/kombu.quorum')).body['type']).toBe('quorum');
    const transient = (await api.get('/queues/%2F/kombu.transient')).body;
    expect([transient['durable'], transient['exclusive'], transient['auto_delete']]).toEqual([false, false, false]);
  }, 90_000);
});

describe('pika', () => {
  test('direct reply-to RPC (tutorial 6 with amq.rabbitmq.reply-to)', async () => {
    const out = await pyJson('pika_rpc.py', ['127.0.0.1', String(port), 'rpc_queue']);
    expect(out).toEqual({
      consume_with_acks: { code: 406, text: 'PRECONDITION_FAILED - reply consumer cannot acknowledge' },
      results: [1, 55, 832040],
      reply_routing_keys: [true],
      server_error: null,
    });
  }, 90_000);
});

describe('Celery', () => {
  test.each([
    ['a classic queue', 'celery-classic', '0'],
    ['a quorum queue', 'celery-quorum', '1'],
  ])('a worker (--pool=solo) answers over rpc:// with tasks on %s', async (_what, queue, quorum) => {
    const env = {
      WARREN_AMQP_URL: `amqp://guest:guest@127.0.0.1:${port}//`,
      WARREN_CELERY_QUEUE: queue,
      WARREN_CELERY_QUORUM: quorum,
    };
    let log = '';
    const w = spawn(
      python,
      // Mingle, gossip and heartbeats stay on (Celery's defaults), with task events (-E).
      ['-m', 'celery', '-A', 'celery_app', 'worker', '--pool=solo', '--loglevel=INFO', '-E', '-n', `${queue}@%h`],
      { cwd: fixtures, env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    w.stdout.on('data', (d: Buffer) => (log += d.toString()));
    w.stderr.on('data', (d: Buffer) => (log += d.toString()));
    try {
      await waitFor(() => log.includes(' ready.') || w.exitCode !== null, 60_000, `celery worker ready:\n${log}`);
      expect(w.exitCode, log).toBeNull();
      expect(await pyJson('celery_call.py', [], env)).toEqual({ results: [100, 101, 102] });
      // Remote control: a broadcast over the celery.pidbox fanout exchange, answered through reply.celery.pidbox.
      const ping = await run(python, ['-m', 'celery', '-A', 'celery_app', 'inspect', 'ping', '--timeout', '5'], {
        timeout: 60_000,
        cwd: fixtures,
        env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1', ...env },
      });
      expect(ping.stdout).toMatch(new RegExp(`${queue}@\\S+: OK\\s+pong`));
      expect((await mgmt(tb.broker.ports.http!).get(`/queues/%2F/${queue}`)).body['type']).toBe(quorum === '1' ? 'quorum' : 'classic');
    } finally {
      const exited = new Promise<number | null>((resolve) => {
        if (w.exitCode !== null) resolve(w.exitCode);
        else w.once('exit', (code) => resolve(code));
      });
      w.kill('SIGTERM');
      const timer = setTimeout(() => w.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    expect(log).not.toMatch(/Traceback|ERROR\//);
  }, 120_000);
});
