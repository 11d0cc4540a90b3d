import { appendFileSync, mkdtempSync, readdirSync, rmSync, statSync, truncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import type { StreamLimits } from '../../../src/core/queues/stream-store.js';
import type { StoredMessage } from '../../../src/core/types.js';
import { bloomAdd, bloomMayContain } from '../../../src/store/stream-bloom.js';
import { StreamLog } from '../../../src/store/stream-log.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const logs: StreamLog[] = [];

afterEach(() => {
  for (const l of logs.splice(0)) l.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'stream-log-'));
  dirs.push(d);
  return d;
}

const LIMITS: StreamLimits = { maxBytes: undefined, maxAgeMs: undefined, segmentBytes: 1 << 20, filterBytes: 16 };

function open(dir: string, limits: Partial<StreamLimits> = {}, logger = log): StreamLog {
  const l = new StreamLog(dir, { ...LIMITS, ...limits }, logger);
  logs.push(l);
  return l;
}

let nextId = 1;
function msg(body: string, headers: Record<string, string> = {}): StoredMessage {
  return {
    exchange: '',
    routingKey: 's',
    properties: { headers, deliveryMode: 2 },
    body: Buffer.from(body),
    rawProperties: undefined,
    id: nextId++,
    size: body.length + 64,
    persistent: true,
    refs: 0,
    publisherId: 0,
  };
}

/** Every committed record from `from`, in order. */
function readAll(l: StreamLog, from = l.first, filters?: string[], matchUnfiltered = false): { offset: number; body: string }[] {
  const out: { offset: number; body: string }[] = [];
  let at = from;
  while (at < l.end) {
    const s = l.slice(at, filters, matchUnfiltered);
    if (s === undefined) break;
    for (let i = s.start; i < s.records.length; i++) out.push({ offset: s.records[i]!.offset, body: s.records[i]!.msg.body.toString() });
    at = s.next;
  }
  return out;
}

async function appendEach(l: StreamLog, bodies: string[], headers: Record<string, string> = {}): Promise<void> {
  for (const b of bodies) await l.append(msg(b, headers), headers['x-stream-filter-value']);
}

describe('Bloom filter', () => {
  test('never misses a value it holds', () => {
    const bloom = Buffer.alloc(16);
    const values = Array.from({ length: 20 }, (_, i) => `v${i}`);
    for (const v of values) bloomAdd(bloom, v);
    for (const v of values) expect(bloomMayContain(bloom, v)).toBe(true);
  });

  test('rejects most values it does not hold when lightly filled', () => {
    const bloom = Buffer.alloc(16);
    bloomAdd(bloom, 'apple');
    let falsePositives = 0;
    for (let i = 0; i < 1000; i++) if (bloomMayContain(bloom, `other-${i}`)) falsePositives++;
    expect(falsePositives).toBeLessThan(20);
  });
});

describe('StreamLog', () => {
  test('offsets start at 0, one per message, readable once committed', async () => {
    const l = open(tempDir());
    const p = Promise.all([l.append(msg('a'), undefined), l.append(msg('b'), undefined)]);
    expect(l.end).toBe(0);
    await p;
    expect([l.first, l.end]).toEqual([0, 2]);
    expect(readAll(l)).toEqual([{ offset: 0, body: 'a' }, { offset: 1, body: 'b' }]);
  });

  test('every record carries header x-stream-offset', async () => {
    const l = open(tempDir());
    await appendEach(l, ['a', 'b', 'c']);
    const s = l.slice(1, undefined, false)!;
    expect(s.records[s.start]!.msg.properties.headers?.['x-stream-offset']).toBe(1);
  });

  test('data and offsets are recovered on reopen, from disk', async () => {
    const dir = tempDir();
    const l = open(dir);
    await appendEach(l, ['a', 'b', 'c']);
    l.close();
    const again = open(dir);
    expect([again.first, again.end]).toEqual([0, 3]);
    expect(readAll(again).map((r) => r.body)).toEqual(['a', 'b', 'c']);
    await again.append(msg('d'), undefined);
    expect(readAll(again).at(-1)).toEqual({ offset: 3, body: 'd' });
  });

  test('restartAt drops every record and starts the offsets there, also after a reopen', async () => {
    const dir = tempDir();
    const l = open(dir);
    await appendEach(l, ['a', 'b']);
    l.restartAt(40);
    expect([l.first, l.end, readAll(l)]).toEqual([40, 40, []]);
    l.close();
    // The empty log keeps its start across a restart.
    const empty = open(dir);
    expect([empty.first, empty.end]).toEqual([40, 40]);
    await appendEach(empty, ['c', 'd']);
    expect(readAll(empty)).toEqual([{ offset: 40, body: 'c' }, { offset: 41, body: 'd' }]);
    empty.close();
    const again = open(dir);
    expect([again.first, again.end]).toEqual([40, 42]);
    expect(readdirSync(dir).filter((n) => n.endsWith('.seg'))).toEqual([`${'40'.padStart(20, '0')}.seg`]);
  });

  test('restartAt is refused while appends are pending', async () => {
    const l = open(tempDir());
    const p = l.append(msg('a'), undefined);
    expect(() => l.restartAt(5)).toThrow(/pending/);
    await p;
  });

  test('a torn chunk at the end is cut off on recovery', async () => {
    const dir = tempDir();
    const l = open(dir);
    await appendEach(l, ['a', 'b']);
    await l.idle();
    l.close();
    const seg = join(dir, readdirSync(dir)[0]!);
    // The chunks' end (the file goes on with zeroes filled ahead of it).
    const size = l.bytes;
    // half a chunk: as if the broker died in the middle of a write
    truncateSync(seg, size - 3);
    const again = open(dir);
    expect(readAll(again).map((r) => r.body)).toEqual(['a']);
    again.close();
    appendFileSync(seg, Buffer.alloc(100, 0xab)); // garbage after the valid chunks
    const third = open(dir);
    expect(readAll(third).map((r) => r.body)).toEqual(['a']);
    await third.append(msg('c'), undefined);
    expect(readAll(third)).toEqual([{ offset: 0, body: 'a' }, { offset: 1, body: 'c' }]);
  });

  test('the segment is zero-filled ahead of its end; recovery stops at the zeroes quietly and appends go on over them', async () => {
    const dir = tempDir();
    const warnings: string[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const l = open(dir, {}, logger);
    await appendEach(l, ['a', 'b']);
    const seg = join(dir, readdirSync(dir)[0]!);
    await l.idle();
    // Filled up to the segment size (1 MiB here), the chunks far below it.
    for (let i = 0; i < 500 && statSync(seg).size < LIMITS.segmentBytes; i++) await new Promise((r) => setTimeout(r, 10));
    expect(statSync(seg).size).toBe(LIMITS.segmentBytes);
    expect(l.bytes).toBeLessThan(1000);
    l.close();
    const again = open(dir, {}, logger);
    expect(readAll(again).map((r) => r.body)).toEqual(['a', 'b']);
    expect(again.bytes).toBe(l.bytes);
    await again.append(msg('c'), undefined);
    again.close();
    const third = open(dir, {}, logger);
    expect(readAll(third)).toEqual([{ offset: 0, body: 'a' }, { offset: 1, body: 'b' }, { offset: 2, body: 'c' }]);
    expect(statSync(seg).size).toBe(LIMITS.segmentBytes);
    expect(warnings).toEqual([]);
  });

  test('segments roll at the segment size, and retention deletes whole oldest segments only', async () => {
    const dir = tempDir();
    const l = open(dir, { segmentBytes: 300, maxBytes: 1000 });
    const big = 'x'.repeat(100);
    for (let i = 0; i < 30; i++) await l.append(msg(`${i}${big}`), undefined);
    expect(l.segments).toBeGreaterThan(1);
    expect(l.first).toBeGreaterThan(0);
    expect(l.bytes).toBeLessThanOrEqual(1000 + 300 + 200);
    // The first kept offset is the first offset of a segment file.
    const files = readdirSync(dir).filter((f) => f.endsWith('.seg')).map((f) => Number(f.slice(0, 20)));
    expect(files[0]).toBe(l.first);
    expect(readAll(l).map((r) => r.offset)).toEqual(Array.from({ length: 30 - l.first }, (_, i) => l.first + i));
  });

  test('a reader before the first kept offset starts at the first kept one', async () => {
    const l = open(tempDir(), { segmentBytes: 200, maxBytes: 400 });
    for (let i = 0; i < 20; i++) await l.append(msg('y'.repeat(100)), undefined);
    expect(l.first).toBeGreaterThan(0);
    const s = l.slice(0, undefined, false)!;
    expect(s.records[s.start]!.offset).toBe(l.first);
  });

  test('a filtered reader skips chunks whose Bloom filter cannot match', async () => {
    const l = open(tempDir());
    await appendEach(l, ['a0', 'a1'], { 'x-stream-filter-value': 'apple' });
    await appendEach(l, ['b0', 'b1', 'b2'], { 'x-stream-filter-value': 'banana' });
    await appendEach(l, ['plain']);
    await appendEach(l, ['a2'], { 'x-stream-filter-value': 'apple' });
    // Only chunks that may hold 'apple' come back (one chunk per append here).
    const seen = readAll(l, 0, ['apple']).map((r) => r.body);
    expect(seen).toEqual(['a0', 'a1', 'a2']);
    const withUnfiltered = readAll(l, 0, ['apple'], true).map((r) => r.body);
    expect(withUnfiltered).toEqual(['a0', 'a1', 'plain', 'a2']);
  });

  test('offsetAt finds the first chunk written at or after a time; lastChunkOffset the last chunk', async () => {
    const l = open(tempDir());
    await appendEach(l, ['a', 'b']);
    const t = Date.now() + 5;
    await new Promise((r) => setTimeout(r, 20));
    await Promise.all([l.append(msg('c'), undefined), l.append(msg('d'), undefined)]);
    expect(l.offsetAt(0)).toBe(0);
    expect(l.offsetAt(t)).toBe(2);
    expect(l.offsetAt(Date.now() + 60_000)).toBe(4);
    expect(l.lastChunkOffset()).toBe(2);
  });

  test('readers of one chunk share one decoded copy', async () => {
    const dir = tempDir();
    const l = open(dir);
    await appendEach(l, ['a']);
    l.close();
    const again = open(dir);
    const a = again.slice(0, undefined, false)!;
    const b = again.slice(0, undefined, false)!;
    expect(a.records).toBe(b.records);
  });

  test('deleting removes the directory', async () => {
    const dir = tempDir();
    const l = open(dir);
    await appendEach(l, ['a']);
    l.deleted();
    expect(() => statSync(dir)).toThrow();
  });
});
