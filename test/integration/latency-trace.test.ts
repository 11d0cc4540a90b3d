import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

let dataDir: string;
let traceDir: string;
let warren: WarrenProcess;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-trace-data-'));
  traceDir = await mkdtemp(join(tmpdir(), 'warren-trace-out-'));
  process.env.WARREN_LATENCY_TRACE = traceDir;
  try {
    warren = await spawnWarren(dataDir);
  } finally {
    delete process.env.WARREN_LATENCY_TRACE;
  }
});

afterAll(async () => {
  warren.child.kill('SIGTERM');
  await warren.exited;
  await rm(dataDir, { recursive: true, force: true });
  await rm(traceDir, { recursive: true, force: true });
});

test('with WARREN_LATENCY_TRACE, SIGUSR2 records each message from socket read to flush, and SIGUSR2 again writes it', async () => {
  const amqp = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${warren.amqpPort}`).connect();
  const ch = await amqp.channel();
  const { name } = await ch.queueDeclare('', { exclusive: true });
  const got: string[] = [];
  await ch.basicConsume(name, { noAck: true }, (m) => {
    got.push(m.bodyToString() ?? '');
  });
  const logged = (text: string): boolean => (warren.stdout.join('') + warren.stderr.join('')).includes(text);
  warren.child.kill('SIGUSR2');
  await waitFor(() => logged('latency trace: recording"'), 5000, 'recording started');
  for (let i = 0; i < 20; i++) await ch.basicPublish('', name, `m${i}`);
  await waitFor(() => got.length === 20, 5000, 'deliveries');
  warren.child.kill('SIGUSR2');
  const file = join(traceDir, 'warren-trace.json');
  await waitFor(() => existsSync(file), 5000, 'trace file');
  const d = JSON.parse(await readFile(file, 'utf8')) as {
    counts: { routes: number; enqueues: number; dispatches: number; flushes: number };
    read: number[];
    route: number[];
    dispatch: number[];
    flush: number[];
  };
  expect(d.counts.routes).toBe(20);
  expect(d.counts.enqueues).toBe(20);
  expect(d.counts.dispatches).toBe(20);
  expect(d.counts.flushes).toBeGreaterThan(0);
  for (let i = 0; i < 20; i++) {
    expect(d.read[i]).toBeGreaterThan(0);
    expect(d.read[i]).toBeLessThanOrEqual(d.route[i]!);
    expect(d.route[i]).toBeLessThanOrEqual(d.dispatch[i]!);
  }
  // Every delivery left at a flush after its dispatch.
  expect(d.flush[d.flush.length - 1]).toBeGreaterThanOrEqual(d.dispatch[19]!);
  await amqp.close();
});
