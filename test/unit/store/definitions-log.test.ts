import { copyFileSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { DEFINITIONS_LOG, DEFINITIONS_SNAPSHOT, DefinitionsLog, definitionKey, type DefinitionEntry, type DefinitionOp } from '../../../src/store/definitions-log.js';

const log = pino({ level: 'silent' });
let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function fresh(): Promise<string> {
  dir = await mkdtemp(join(tmpdir(), 'warren-defslog-'));
  return dir;
}

function queue(name: string, vhost = '/'): DefinitionOp {
  const entry: DefinitionEntry = { kind: 'q', vhost, json: JSON.stringify({ name, vhost, durable: true, auto_delete: false, arguments: {} }) };
  return { key: definitionKey('q', vhost, name), entry };
}

function gone(name: string, vhost = '/'): DefinitionOp {
  return { key: definitionKey('q', vhost, name), entry: null };
}

function user(name: string): DefinitionOp {
  return { key: definitionKey('u', name), entry: { kind: 'u', vhost: '', json: JSON.stringify({ name, tags: [] }) } };
}

async function write(l: DefinitionsLog, ops: DefinitionOp[]): Promise<boolean> {
  const w = l.prepare(ops);
  try {
    await w.run();
  } catch (e) {
    w.done(false);
    throw e;
  }
  w.done(true);
  return w.snapshot;
}

function opened(d: string, compactBytes?: number): DefinitionsLog {
  const l = new DefinitionsLog(d, log, compactBytes);
  l.load(false);
  return l;
}

function queueNames(l: DefinitionsLog): string[] {
  return (l.toDefinitions().queues as { name: string }[]).map((q) => q.name).sort();
}

test('changes written to the log are there after reopening', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('a'), queue('b'), user('alice')]);
  await write(a, [gone('a'), queue('c')]);
  a.close();
  const b = opened(d);
  expect(queueNames(b)).toEqual(['b', 'c']);
  expect((b.toDefinitions().users as { name: string }[]).map((u) => u.name)).toEqual(['alice']);
  b.close();
});

test('a torn last record is dropped, the file truncated before it, and appending continues', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('kept')]);
  const before = statSync(join(d, DEFINITIONS_LOG)).size;
  await write(a, [queue('torn-away')]);
  a.close();
  truncateSync(join(d, DEFINITIONS_LOG), statSync(join(d, DEFINITIONS_LOG)).size - 5);
  const b = new DefinitionsLog(d, log);
  const loaded = b.load(false);
  expect(loaded.issues.some((i) => /torn or corrupt record/.test(i))).toBe(true);
  expect(queueNames(b)).toEqual(['kept']);
  expect(statSync(join(d, DEFINITIONS_LOG)).size).toBe(before);
  await write(b, [queue('after')]);
  b.close();
  const c = opened(d);
  expect(queueNames(c)).toEqual(['after', 'kept']);
  c.close();
});

test('replay stops at the first corrupt record: nothing after it is applied', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('one')]);
  const at = statSync(join(d, DEFINITIONS_LOG)).size;
  await write(a, [queue('two')]);
  await write(a, [queue('three')]);
  a.close();
  const buf = readFileSync(join(d, DEFINITIONS_LOG));
  buf[at + 12] = buf[at + 12]! ^ 0xff; // inside the payload of 'two'
  writeFileSync(join(d, DEFINITIONS_LOG), buf);
  const b = new DefinitionsLog(d, log);
  b.load(true);
  expect(queueNames(b)).toEqual(['one']);
});

test('a read-only load truncates nothing', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('x')]);
  a.close();
  const size = statSync(join(d, DEFINITIONS_LOG)).size;
  writeFileSync(join(d, DEFINITIONS_LOG), Buffer.concat([readFileSync(join(d, DEFINITIONS_LOG)), Buffer.from([1, 2, 3])]));
  const b = new DefinitionsLog(d, log);
  b.load(true);
  expect(queueNames(b)).toEqual(['x']);
  expect(statSync(join(d, DEFINITIONS_LOG)).size).toBe(size + 3);
});

test('once the log outgrows the live definitions, a batch compacts it into a snapshot', async () => {
  const d = await fresh();
  const a = opened(d, 4096);
  let snapshots = 0;
  for (let i = 0; i < 300; i++) {
    // Each queue is declared and deleted again: the log grows, the live set stays small.
    if (await write(a, [queue(`q${i}`), ...(i > 0 ? [gone(`q${i - 1}`)] : [])])) snapshots++;
  }
  expect(snapshots).toBeGreaterThan(0);
  expect(a.snapshots).toBe(snapshots);
  expect(a.logSize).toBeLessThan(8192);
  a.close();
  const b = opened(d, 4096);
  expect(queueNames(b)).toEqual(['q299']);
  b.close();
});

test('a crash between the new snapshot and the new log: the older log is ignored', async () => {
  const d = await fresh();
  const a = opened(d, 1024);
  await write(a, [queue('old')]);
  copyFileSync(join(d, DEFINITIONS_LOG), join(d, 'stale.log'));
  let compacted = false;
  for (let i = 0; !compacted; i++) compacted = await write(a, [queue(`t${i}`), gone(`t${i}`), gone('old')]);
  a.close();
  // The log of the previous generation is back, as if the second rename never happened.
  copyFileSync(join(d, 'stale.log'), join(d, DEFINITIONS_LOG));
  const b = opened(d, 1024);
  expect(queueNames(b)).toEqual([]);
  // The next batch writes a snapshot (appending to the stale log would be lost).
  expect(await write(b, [queue('next')])).toBe(true);
  b.close();
  const c = opened(d, 1024);
  expect(queueNames(c)).toEqual(['next']);
  c.close();
});

test('rewriteSync replaces everything with the given entries', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('a'), queue('b')]);
  const entries = new Map<string, DefinitionEntry>();
  for (const op of [queue('b'), queue('c')]) entries.set(op.key, op.entry!);
  a.rewriteSync(entries);
  expect(queueNames(a)).toEqual(['b', 'c']);
  a.close();
  expect(statSync(join(d, DEFINITIONS_SNAPSHOT)).size).toBeGreaterThan(0);
  const b = opened(d);
  expect(queueNames(b)).toEqual(['b', 'c']);
  b.close();
});

test('a failed append is undone: the file ends where it did and the change is not applied', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('a')]);
  const size = statSync(join(d, DEFINITIONS_LOG)).size;
  const w = a.prepare([queue('b')]);
  await w.run();
  w.done(false);
  expect(statSync(join(d, DEFINITIONS_LOG)).size).toBe(size);
  expect(queueNames(a)).toEqual(['a']);
  a.close();
});

test('names with quotes, NUL bytes and separators keep their keys apart', async () => {
  const d = await fresh();
  const a = opened(d);
  await write(a, [queue('a\u0000b', 'v'), queue('b', 'v\u0000a'), queue('"x"', '/')]);
  a.close();
  const b = opened(d);
  expect(b.count).toBe(3);
  b.close();
});
