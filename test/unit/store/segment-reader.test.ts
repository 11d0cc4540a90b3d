import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { Core } from '../../../src/core/core.js';
import type { Queue } from '../../../src/core/queues/queue.js';
import type { Message } from '../../../src/core/types.js';
import type { VHost } from '../../../src/core/vhost.js';
import { FILE_HEADER, RECORD_HEADER, scanRecords } from '../../../src/store/format.js';
import { openStore, queueDirName, type MessageStore, type StoreTuning } from '../../../src/store/index.js';

// Paged messages read back (segment-reader.ts) after recovery (queue-recovery.ts) over many
// small segments: order, acknowledged records skipped, a record damaged on disk reported.

const dirs: string[] = [];
const stores: MessageStore[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

const TUNING: StoreTuning = { segmentSize: 4096, queueMemoryBudget: 10_000 };

function open(dataDir: string, tuning: StoreTuning, lines: string[] = []): { store: MessageStore; vhost: VHost } {
  const core = new Core();
  const log = pino({ level: 'warn' }, { write: (s: string) => void lines.push(s) });
  const { store } = openStore(core, { dataDir, ...tuning }, log);
  stores.push(store);
  return { store, vhost: core.vhosts.get('/')! };
}

async function close(store: MessageStore): Promise<void> {
  await store.flush();
  await store.close();
  stores.splice(stores.indexOf(store), 1);
}

const msg = (i: number): Message => ({ exchange: '', routingKey: 'q', properties: { deliveryMode: 2 }, body: Buffer.from(`m${i}-${'z'.repeat(200)}`) });
const name = (body: string): string => body.slice(0, body.indexOf('-'));

function takeAll(q: Queue): string[] {
  const out: string[] = [];
  for (let t = q.take(false); t; t = q.take(false)) {
    out.push(name(t.entry.msg.body.toString()));
    q.ack(t.entry);
  }
  return out;
}

async function filled(n: number): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-reader-'));
  dirs.push(dir);
  const { store, vhost } = open(dir, TUNING);
  vhost.declareQueue('q', { durable: true }, false, 0);
  for (let i = 0; i < n; i++) vhost.publish(msg(i), 0);
  await close(store);
  return dir;
}

test('acknowledged records inside the paged part are skipped when reading back, across segments', async () => {
  const dir = await filled(400);
  // Take the first 100 and acknowledge the even ones; the odd ones stay unacknowledged.
  let { store, vhost } = open(dir, TUNING);
  let q = vhost.getQueue('q');
  for (let i = 0; i < 100; i++) {
    const t = q.take(false)!;
    if (i % 2 === 0) q.ack(t.entry);
  }
  await close(store);
  const segments = readdirSync(join(dir, 'queues', queueDirName('/', 'q'))).filter((f) => f.endsWith('.seg'));
  expect(segments.length).toBeGreaterThan(10);
  // A budget of a few messages: most acknowledged records now lie in the paged part.
  ({ store, vhost } = open(dir, { ...TUNING, queueMemoryBudget: 2_000 }));
  q = vhost.getQueue('q');
  expect(q.readyCount).toBe(350);
  expect(q.pagedCount).toBeGreaterThan(300);
  const want = [...Array.from({ length: 50 }, (_, i) => `m${2 * i + 1}`), ...Array.from({ length: 300 }, (_, i) => `m${i + 100}`)];
  expect(takeAll(q)).toEqual(want);
  await close(store);
});

test('a paged record damaged on disk after recovery is reported; the rest of its segment is skipped, later segments are read', async () => {
  const dir = await filled(300);
  const lines: string[] = [];
  const { store, vhost } = open(dir, TUNING, lines);
  const q = vhost.getQueue('q');
  expect(q.pagedCount).toBeGreaterThan(200);
  // Damage the checksum of the 3rd record of a segment well inside the paged part.
  const qdir = join(dir, 'queues', queueDirName('/', 'q'));
  const segs = readdirSync(qdir).filter((f) => f.endsWith('.seg')).sort();
  const victim = join(qdir, segs[segs.length - 5]!);
  const buf = readFileSync(victim);
  const offsets: number[] = [];
  const bodies: string[] = [];
  scanRecords(buf, FILE_HEADER, (b, s, e, offset) => {
    offsets.push(offset);
    const text = b.subarray(s, e).toString('latin1');
    bodies.push(text.slice(text.lastIndexOf('m'), text.indexOf('-', text.lastIndexOf('m'))));
  });
  expect(offsets.length).toBeGreaterThan(4);
  buf[offsets[2]! + RECORD_HEADER + 2] ^= 0xff;
  writeFileSync(victim, buf);
  const got = takeAll(q);
  const lost = bodies.slice(2);
  expect(got).toEqual(Array.from({ length: 300 }, (_, i) => `m${i}`).filter((m) => !lost.includes(m)));
  expect(lines.some((l) => l.includes('a bad checksum while reading paged messages'))).toBe(true);
  await close(store);
});
