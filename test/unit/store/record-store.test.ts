import { readFileSync, statSync, truncateSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { RecordStore } from '../../../src/store/record-store.js';
import { DurableRetained, type RetainedIndex, type RetainedRecord } from '../../../src/store/retained.js';

const log = pino({ level: 'silent' });
let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function file(): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'warren-rec-'));
  return join(dir, 'records', 'test.log');
}

test('values set and deleted are there after reopening', async () => {
  const f = await file();
  const a = RecordStore.open(f, log);
  await Promise.all([a.set('k1', Buffer.from('one')), a.set('k2', Buffer.from('two')), a.set('k1', Buffer.from('uno'))]);
  await a.delete('k2');
  await a.set('k3', Buffer.alloc(0));
  await a.close();
  const b = RecordStore.open(f, log);
  expect([...b.entries()].map(([k, v]) => [k, v.toString()])).toEqual([
    ['k1', 'uno'],
    ['k3', ''],
  ]);
  await b.close();
});

test('a torn last record is dropped and truncated; what came before stays', async () => {
  const f = await file();
  const a = RecordStore.open(f, log);
  await a.set('first', Buffer.from('kept'));
  await a.set('second', Buffer.from('torn away'));
  await a.close();
  truncateSync(f, statSync(f).size - 3);
  const b = RecordStore.open(f, log);
  expect([...b.keys()]).toEqual(['first']);
  await b.set('third', Buffer.from('after'));
  await b.close();
  const c = RecordStore.open(f, log);
  expect([...c.keys()]).toEqual(['first', 'third']);
  await c.close();
});

test('a file of mostly overwritten values is compacted to its live records', async () => {
  const f = await file();
  const a = RecordStore.open(f, log);
  const big = Buffer.alloc(64 * 1024, 1);
  for (let i = 0; i < 40; i++) await a.set('same', big);
  await a.set('other', Buffer.from('x'));
  // 2.5 MiB written; compaction keeps the file under its 1 MiB threshold plus the live value
  expect(statSync(f).size).toBeLessThan((1 << 20) + 2 * big.length);
  await a.close();
  const b = RecordStore.open(f, log);
  expect(b.get('same')?.equals(big)).toBe(true);
  expect(b.get('other')?.toString()).toBe('x');
  expect(readFileSync(f).toString('latin1', 0, 4)).toBe('WRNK');
  await b.close();
});

/** A stand-in for the MQTT adapter's in-memory index (exact-topic match only). */
class MapIndex implements RetainedIndex<RetainedRecord> {
  readonly m = new Map<string, RetainedRecord>();
  set(vhost: string, topic: string, msg: RetainedRecord | null): void {
    if (msg === null) this.m.delete(`${vhost}|${topic}`);
    else this.m.set(`${vhost}|${topic}`, msg);
  }
  get(vhost: string, topic: string): RetainedRecord | undefined {
    return this.m.get(`${vhost}|${topic}`);
  }
  match(vhost: string, filter: string): RetainedRecord[] {
    const m = this.get(vhost, filter);
    return m ? [m] : [];
  }
  count(): number {
    return this.m.size;
  }
}

test('retained messages written through the durable index come back into a fresh index; expired ones do not', async () => {
  const f = await file();
  let rs = RecordStore.open(f, log);
  const d = new DurableRetained(new MapIndex(), rs, log, (r) => r);
  d.set('/', 'a/b', { topic: 'a/b', qos: 1, properties: { contentType: 'text/plain', headers: { k: 'v' } }, body: Buffer.from('hello'), expiresAt: 0 });
  d.set('/', 'old', { topic: 'old', qos: 0, properties: {}, body: Buffer.from('x'), expiresAt: Date.now() + 50 });
  d.set('v2', 'gone', { topic: 'gone', qos: 0, properties: {}, body: Buffer.from('y'), expiresAt: 0 });
  d.set('v2', 'gone', null);
  await rs.close();
  await new Promise((r) => setTimeout(r, 60));
  rs = RecordStore.open(f, log);
  const fresh = new MapIndex();
  new DurableRetained(fresh, rs, log, (r) => r);
  expect([...fresh.m.keys()]).toEqual(['/|a/b']);
  expect(fresh.get('/', 'a/b')).toEqual({ topic: 'a/b', qos: 1, properties: { contentType: 'text/plain', headers: { k: 'v' } }, body: Buffer.from('hello'), expiresAt: 0 });
  await rs.close();
});
