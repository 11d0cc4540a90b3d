import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqp from 'amqplib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { WARREN_BIN } from '../helpers/warren-process.js';

/**
 * After a backlog, steady traffic stays in the young generation: `warren start` turns off V8's
 * allocation-site pretenuring (src/engine-tuning.ts). With it on, a queue filled with 200,000
 * messages makes the publish path allocate in the old generation for good, and every later
 * message is promoted (hundreds of bytes each). Read from V8's own trace of each young
 * collection (`--trace-gc-nvp`: `promoted=<bytes>`).
 */

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-tuning-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

/** Bytes promoted by the young collections traced in `out` from character `from` on. */
function promotedSince(out: string, from: number): { bytes: number; collections: number } {
  let bytes = 0;
  let collections = 0;
  for (const line of out.slice(from).split('\n')) {
    if (!line.includes(' gc=s ')) continue;
    const m = / promoted=(\d+) /.exec(line);
    if (m === null) continue;
    bytes += Number(m[1]);
    collections++;
  }
  return { bytes, collections };
}

test('a purged backlog of 200,000 messages leaves later messages young: nearly nothing promoted per message', { timeout: 120_000 }, async () => {
  const args = ['--trace-gc-nvp', WARREN_BIN, 'start', '--data-dir', dataDir, '--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off', '--bind', '127.0.0.1', '--log-level', 'warn'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.resume();
  try {
    const port = Number(await waitFor(() => /warren ready amqp=(\d+)/.exec(stdout)?.[1], 15_000, 'the ready line'));
    const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${port}`);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('backlog', { durable: false });
    await ch.assertQueue('flow', { durable: false });
    const body = Buffer.alloc(16, 0x62);
    for (let sent = 0; sent < 200_000; sent += 10_000) {
      for (let i = 0; i < 10_000; i++) ch.publish('', 'backlog', body);
      await ch.waitForConfirms();
    }
    await ch.purgeQueue('backlog');

    const consumer = await conn.createChannel();
    await consumer.prefetch(100);
    let got = 0;
    await consumer.consume('flow', (m) => {
      if (m === null) return;
      got++;
      consumer.ack(m);
    });
    const flow = async (count: number): Promise<void> => {
      const until = got + count;
      // Each batch is consumed before the next: messages live for a moment, as in steady traffic.
      for (let sent = 0; sent < count; sent += 100) {
        const batchEnd = got + 100;
        for (let i = 0; i < 100; i++) ch.publish('', 'flow', body);
        await waitFor(() => got >= batchEnd, 10_000, 'a batch consumed');
      }
      await waitFor(() => got === until, 30_000, 'every message consumed');
    };
    // The backlog's last young objects reach the old generation over the next collections: not counted.
    await flow(40_000);
    const n = 40_000;
    const from = stdout.length;
    await flow(n);
    const p = promotedSince(stdout, from);
    await conn.close();
    expect(p.collections).toBeGreaterThan(0);
    // With pretenuring on: ~400 B per message here.
    expect(p.bytes / n).toBeLessThan(40);
  } finally {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
});
