import { copyFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import {
  DurableRetainedStore,
  MemoryRetainedStore,
  ReplicatedRetainedStore,
  decodeRetained,
  encodeRetained,
  type RetainedMessage,
  type RetainedReplica,
} from '../../../../adapters/mqtt/retained.js';
import { RecordStore } from '../../../../src/store/index.js';

function msg(topic: string, expiresAt = 0): RetainedMessage {
  return { topic, qos: 1, properties: {}, body: Buffer.from(topic), expiresAt };
}

function topics(list: RetainedMessage[]): string[] {
  return list.map((m) => m.topic).sort();
}

describe('MemoryRetainedStore', () => {
  const all = ['a', 'a/b', 'a/b/c', 'a/c', 'b/b', '/x', '$SYS/load', '$SYS/a/b'];
  function filled(): MemoryRetainedStore {
    const s = new MemoryRetainedStore();
    for (const t of all) s.set('/', t, msg(t));
    return s;
  }

  test.each([
    ['a/b', ['a/b']],
    ['a/+', ['a/b', 'a/c']],
    ['a/#', ['a', 'a/b', 'a/b/c', 'a/c']],
    ['+/b', ['a/b', 'b/b']],
    ['#', ['/x', 'a', 'a/b', 'a/b/c', 'a/c', 'b/b']],
    ['+', ['a']],
    ['+/+', ['/x', 'a/b', 'a/c', 'b/b']],
    ['$SYS/#', ['$SYS/a/b', '$SYS/load']],
    ['$SYS/+', ['$SYS/load']],
    ['+/load', []],
    ['nothing/#', []],
  ])('filter %s replays %j', (filter, expected) => {
    expect(topics(filled().match('/', filter))).toEqual([...expected].sort());
  });

  test('setting null deletes, and empty branches are pruned', () => {
    const s = filled();
    s.set('/', 'a/b/c', null);
    s.set('/', 'a/b', null);
    expect(topics(s.match('/', 'a/#'))).toEqual(['a', 'a/c']);
    expect(s.count('/')).toBe(all.length - 2);
    for (const t of all) s.set('/', t, null);
    expect(s.count('/')).toBe(0);
    expect(s.match('/', '#')).toEqual([]);
  });

  test('vhosts are separate', () => {
    const s = filled();
    expect(s.match('other', '#')).toEqual([]);
    s.set('other', 'a', msg('a'));
    expect(s.count('other')).toBe(1);
    expect(s.count('/')).toBe(all.length);
  });

  test('replacing a message keeps one per topic', () => {
    const s = new MemoryRetainedStore();
    s.set('/', 't', msg('t'));
    s.set('/', 't', { ...msg('t'), body: Buffer.from('new') });
    expect(s.count('/')).toBe(1);
    expect(s.get('/', 't')?.body.toString()).toBe('new');
  });

  test('expired messages are neither replayed nor kept', () => {
    const s = new MemoryRetainedStore();
    s.set('/', 'old', msg('old', Date.now() - 1));
    s.set('/', 'new', msg('new', Date.now() + 60_000));
    expect(topics(s.match('/', '#'))).toEqual(['new']);
    expect(s.count('/')).toBe(1);
    expect(s.get('/', 'old')).toBeUndefined();
  });
});

describe('DurableRetainedStore', () => {
  const log = pino({ level: 'silent' });
  let dir: string | undefined;
  afterEach(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
    dir = undefined;
  });

  async function file(): Promise<string> {
    dir = await mkdtemp(join(tmpdir(), 'warren-retained-'));
    return join(dir, 'records', 'retained.log');
  }

  test('a record decodes to the message it was encoded from', () => {
    const m: RetainedMessage = { topic: 'a/b', qos: 2, properties: { contentType: 'text/plain', headers: { k: 'v', n: 3 } }, body: Buffer.from('hello'), expiresAt: 1234.5 };
    expect(decodeRetained('a/b', encodeRetained(m))).toEqual(m);
    const bad = encodeRetained(m);
    bad[0] = 9;
    expect(() => decodeRetained('a/b', bad)).toThrow(/version/);
  });

  test('changes come back into a fresh store after reopening; expired and unreadable records are dropped', async () => {
    const f = await file();
    let rs = RecordStore.open(f, log);
    const d = new DurableRetainedStore(new MemoryRetainedStore(), rs, log);
    d.set('/', 'a/b', { topic: 'a/b', qos: 1, properties: { contentType: 'text/plain', headers: { k: 'v' } }, body: Buffer.from('hello'), expiresAt: 0 });
    d.set('/', 'old', { topic: 'old', qos: 0, properties: {}, body: Buffer.from('x'), expiresAt: Date.now() - 1 });
    d.set('v2', 'gone', { topic: 'gone', qos: 0, properties: {}, body: Buffer.from('y'), expiresAt: 0 });
    d.set('v2', 'gone', null);
    await rs.set('/\u0000junk', Buffer.from([7, 7, 7]));
    await rs.close();
    rs = RecordStore.open(f, log);
    const fresh = new MemoryRetainedStore();
    const again = new DurableRetainedStore(fresh, rs, log);
    expect(again.match('/', '#')).toEqual([{ topic: 'a/b', qos: 1, properties: { contentType: 'text/plain', headers: { k: 'v' } }, body: Buffer.from('hello'), expiresAt: 0 }]);
    expect(again.count('v2')).toBe(0);
    await rs.flush();
    expect([...rs.keys()]).toEqual(['/\u0000a/b']);
    await rs.close();
  });

  test('reads the retained log written by the store-side implementation of earlier versions', async () => {
    const f = await file();
    mkdirSync(join(dir!, 'records'));
    copyFileSync(join(import.meta.dirname, '../../../fixtures/retained-v1/records/retained.log'), f);
    const rs = RecordStore.open(f, log);
    const d = new DurableRetainedStore(new MemoryRetainedStore(), rs, log);
    const got = d.match('/', '#').map((m) => [m.topic, m.qos, m.body.toString(), m.properties.contentType]);
    expect(got.sort()).toEqual([
      ['home/hall/temp', 0, '19.0', undefined],
      ['home/kitchen/temp', 1, '21.5', 'text/plain'],
    ]);
    expect(d.get('/', '$SYS/uptime')?.body.toString()).toBe('7');
    expect(d.get('/', 'home/kitchen/temp')?.properties.headers?.['unit']).toBe('C');
    await rs.close();
  });
});

describe('ReplicatedRetainedStore', () => {
  /** A replica whose writes resolve when the test says so, and whose changes the test sends. */
  function replica(): RetainedReplica & { writes: Array<{ topic: string; record: Uint8Array | null; done: () => void; fail: (e: Error) => void }>; send: (topic: string, r: Uint8Array | undefined) => void } {
    let on: ((vhost: string, topic: string, record: Uint8Array | undefined) => void) | undefined;
    const writes: Array<{ topic: string; record: Uint8Array | null; done: () => void; fail: (e: Error) => void }> = [];
    return {
      writes,
      send: (topic, r) => on?.('/', topic, r),
      write(_vhost, topic, record) {
        if (record !== null && record.length > 1000) throw new Error('too large');
        return new Promise<void>((resolve, reject) => writes.push({ topic, record, done: resolve, fail: reject }));
      },
      listen(cb) {
        on = cb;
      },
    };
  }
  const log = pino({ level: 'silent' });

  test('a set is seen here at once and resolves only when the replica has it; changes from the replica are applied', async () => {
    const r = replica();
    const s = new ReplicatedRetainedStore(new MemoryRetainedStore(), r, log);
    let resolved = false;
    const p = s.set('/', 'a/b', msg('a/b')).then(() => (resolved = true));
    expect(s.get('/', 'a/b')?.body.toString()).toBe('a/b');
    await Promise.resolve();
    expect(resolved).toBe(false);
    expect(decodeRetained('a/b', Buffer.from(r.writes[0]!.record!)).body.toString()).toBe('a/b');
    r.writes[0]!.done();
    await p;
    expect(resolved).toBe(true);
    // From another node: a new message, then its deletion; an expired one is not kept.
    r.send('x/y', encodeRetained(msg('x/y')));
    expect(s.match('/', 'x/#').map((m) => m.topic)).toEqual(['x/y']);
    r.send('x/y', undefined);
    expect(s.count('/')).toBe(1);
    r.send('old', encodeRetained(msg('old', Date.now() - 1)));
    expect(s.get('/', 'old')).toBeUndefined();
    r.send('bad', Buffer.from([9, 9, 9]));
    expect(s.get('/', 'bad')).toBeUndefined();
  });

  test('a set the replica refuses rejects and leaves the store as it was; a failed write rejects', async () => {
    const r = replica();
    const s = new ReplicatedRetainedStore(new MemoryRetainedStore(), r, log);
    const big: RetainedMessage = { ...msg('big'), body: Buffer.alloc(2000) };
    await expect(s.set('/', 'big', big)).rejects.toThrow(/too large/);
    expect(s.get('/', 'big')).toBeUndefined();
    const p = s.set('/', 't', null);
    r.writes[0]!.fail(new Error('engine unavailable'));
    await expect(p).rejects.toThrow(/unavailable/);
  });
});
