import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

let proc: WarrenProcess | undefined;
const dirs: string[] = [];

afterAll(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function open(port: number): Promise<ChannelModel> {
  const c = await connect(`amqp://guest:guest@127.0.0.1:${port}`);
  c.on('error', () => undefined);
  return c;
}

/** Reads the whole stream from `first`; returns [offset, body] pairs. */
async function readAll(conn: ChannelModel, expectAtLeast: number): Promise<[number, string][]> {
  const ch = await conn.createChannel();
  await ch.prefetch(500);
  const got: [number, string][] = [];
  await ch.consume(
    'crash-stream',
    (m: ConsumeMessage | null) => {
      if (m === null) return;
      got.push([Number(m.properties.headers?.['x-stream-offset']), m.content.toString()]);
      ch.ack(m);
    },
    { arguments: { 'x-stream-offset': 'first' } },
  );
  await waitFor(() => got.length >= expectAtLeast, 20_000, `${expectAtLeast} messages`);
  // Let anything beyond the confirmed ones arrive too.
  const seen = got.length;
  await new Promise((r) => setTimeout(r, 300));
  await waitFor(() => got.length === seen || got.length > seen, 1000);
  await ch.close();
  return got;
}

test('confirmed stream messages and their offsets survive kill -9, round after round', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-stream-crash-'));
  dirs.push(dataDir);
  const confirmed = new Set<number>();
  let seq = 0;
  for (let round = 0; round < 3; round++) {
    proc = await spawnWarren(dataDir);
    const conn = await open(proc.amqpPort);
    const ch = await conn.createConfirmChannel();
    ch.on('error', () => undefined);
    await ch.assertQueue('crash-stream', { durable: true, arguments: { 'x-queue-type': 'stream', 'x-stream-max-segment-size-bytes': 20_000 } });
    if (round > 0) {
      // Everything confirmed before the kills is there, in order, with offsets 0.. without gaps.
      const all = await readAll(conn, confirmed.size);
      all.forEach(([offset], i) => expect(offset).toBe(i));
      const bodies = new Set(all.map(([, b]) => Number(b)));
      for (const n of confirmed) expect(bodies.has(n)).toBe(true);
      const order = all.map(([, b]) => Number(b));
      expect([...order].sort((a, b) => a - b)).toEqual(order);
    }
    // Publish with confirms and kill the broker while messages are in flight.
    const target = confirmed.size + 400;
    let stop = false;
    const pump = (async () => {
      while (!stop) {
        const n = seq++;
        ch.sendToQueue('crash-stream', Buffer.from(String(n)), { persistent: true }, (err) => {
          if (err === null || err === undefined) confirmed.add(n);
        });
        if (n % 50 === 0) await new Promise((r) => setImmediate(r));
      }
    })();
    await waitFor(() => confirmed.size >= target, 20_000, 'confirms');
    proc.child.kill('SIGKILL');
    stop = true;
    await proc.exited;
    await pump.catch(() => undefined);
    await conn.close().catch(() => undefined);
  }
  proc = await spawnWarren(dataDir);
  const conn = await open(proc.amqpPort);
  const all = await readAll(conn, confirmed.size);
  all.forEach(([offset], i) => expect(offset).toBe(i));
  const bodies = new Set(all.map(([, b]) => Number(b)));
  for (const n of confirmed) expect(bodies.has(n)).toBe(true);
  await conn.close();
  proc.child.kill('SIGKILL');
  await proc.exited;
}, 120_000);
