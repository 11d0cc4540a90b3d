import { readFileSync, statSync, truncateSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { RecordStore } from '../../../src/store/record-store.js';

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
