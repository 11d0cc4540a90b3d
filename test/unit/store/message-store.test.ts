import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { Core } from '../../../src/core/core.js';
import { BrokerError, ReplyCode } from '../../../src/core/errors.js';
import type { Queue } from '../../../src/core/queues/queue.js';
import { SETTLED, type Message, type PublishResult } from '../../../src/core/types.js';
import type { VHost } from '../../../src/core/vhost.js';
import { FILE_HEADER, scanRecords } from '../../../src/store/format.js';
import { openStore, queueDirName, type MessageStore, type StoreTuning } from '../../../src/store/index.js';
import { T_ENQ, T_REF } from '../../../src/store/records.js';
import { waitFor } from '../../helpers/broker.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const stores: MessageStore[] = [];

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function fresh(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'warren-store-'));
  dirs.push(d);
  return d;
}

function open(dataDir: string, tuning: StoreTuning = {}): { core: Core; store: MessageStore; vhost: VHost } {
  const core = new Core();
  const { store } = openStore(core, { dataDir, ...tuning }, log);
  stores.push(store);
  return { core, store, vhost: core.vhosts.get('/')! };
}

async function close(store: MessageStore): Promise<void> {
  await store.close();
  stores.splice(stores.indexOf(store), 1);
}

function msg(routingKey: string, body: string, persistent = true, exchange = ''): Message {
  return { exchange, routingKey, properties: persistent ? { deliveryMode: 2 } : {}, body: Buffer.from(body) };
}

/** Record types in a queue's segments, in order. */
function recordTypes(dataDir: string, queue: string): number[] {
  const dir = join(dataDir, 'queues', queueDirName('/', queue));
  if (!existsSync(dir)) return [];
  const out: number[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.seg')).sort()) {
    scanRecords(readFileSync(join(dir, f)), FILE_HEADER, (b, s) => out.push(b[s]!));
  }
  return out;
}

function sharedSegments(dataDir: string): string[] {
  return readdirSync(join(dataDir, 'messages')).filter((n) => n.endsWith('.seg'));
}

function takeAll(q: Queue): string[] {
  const out: string[] = [];
  for (let t = q.take(false); t; t = q.take(false)) {
    out.push(t.entry.msg.body.toString());
    q.ack(t.entry);
  }
  return out;
}

describe('group commit', () => {
  test('every publish of one tick shares one batch; once it settles the records are on disk', async () => {
    const dir = await fresh();
    const { store, vhost } = open(dir);
    vhost.declareQueue('q', { durable: true }, false, 0);
    const results: PublishResult[] = [];
    for (let i = 0; i < 1000; i++) results.push(vhost.publish(msg('q', `m${i}`), 0));
    const batches = new Set(results.map((r) => r.settled));
    expect(batches.size).toBe(1);
    expect([...batches][0]).not.toBe(SETTLED);
    await results[0]!.settled;
    expect(recordTypes(dir, 'q')).toHaveLength(1000);
    await close(store);
  });

  test('transient messages and non-durable queues settle at once and never touch the disk', async () => {
    const dir = await fresh();
    const { store, vhost } = open(dir);
    vhost.declareQueue('durable', { durable: true }, false, 0);
    vhost.declareQueue('memory', { durable: false }, false, 0);
    expect(vhost.publish(msg('durable', 'transient', false), 0).settled).toBe(SETTLED);
    expect(vhost.publish(msg('memory', 'persistent'), 0).settled).toBe(SETTLED);
    await store.flush();
    expect(existsSync(join(dir, 'queues', queueDirName('/', 'durable')))).toBe(false);
    expect(existsSync(join(dir, 'queues', queueDirName('/', 'memory')))).toBe(false);
    await close(store);
  });
});

describe('shared bodies', () => {
  test('a message routed to several durable queues is stored once, with a reference in each queue', async () => {
    const dir = await fresh();
    const { store, vhost } = open(dir);
    const ex = vhost.declareExchange('fan', 'fanout', { durable: true }, false);
    for (const name of ['a', 'b', 'c']) vhost.bind(ex, vhost.declareQueue(name, { durable: true }, false, 0), '', {});
    vhost.declareQueue('solo', { durable: true }, false, 0);
    await vhost.publish(msg('', 'x'.repeat(5000), true, 'fan'), 0).settled;
    await vhost.publish(msg('solo', 'only here'), 0).settled;
    for (const name of ['a', 'b', 'c']) expect(recordTypes(dir, name)).toEqual([T_REF]);
    expect(recordTypes(dir, 'solo')).toEqual([T_ENQ]);
    const shared = sharedSegments(dir);
    expect(shared).toHaveLength(1);
    // The body is in the shared segment once, not three times.
    const size = readFileSync(join(dir, 'messages', shared[0]!)).length;
    expect(size).toBeGreaterThan(5000);
    expect(size).toBeLessThan(10000);
    await close(store);
  });

  test('the shared segment goes once every queue has acknowledged the message, and survives until then', async () => {
    const dir = await fresh();
    let { store, vhost } = open(dir, { segmentSize: 4096 });
    const ex = vhost.declareExchange('fan', 'fanout', { durable: true }, false);
    for (const name of ['a', 'b']) vhost.bind(ex, vhost.declareQueue(name, { durable: true }, false, 0), '', {});
    for (let i = 0; i < 20; i++) await vhost.publish(msg('', `shared-${i}-${'y'.repeat(500)}`, true, 'fan'), 0).settled;
    expect(sharedSegments(dir).length).toBeGreaterThan(1);
    takeAll(vhost.getQueue('a'));
    await store.flush();
    await close(store);
    ({ store, vhost } = open(dir, { segmentSize: 4096 }));
    expect(vhost.getQueue('a').readyCount).toBe(0);
    const b = takeAll(vhost.getQueue('b'));
    expect(b).toHaveLength(20);
    expect(b[19]).toMatch(/^shared-19-/);
    await store.flush();
    expect(sharedSegments(dir).length).toBeLessThanOrEqual(1);
    await close(store);
  });
});

describe('failed writes', () => {
  test('a batch whose write fails is refused; the store keeps working and recovery has only what was confirmed', async () => {
    const dir = await fresh();
    let { store, vhost } = open(dir);
    const q = vhost.declareQueue('q', { durable: true }, false, 0);
    await vhost.publish(msg('q', 'before'), 0).settled;
    // Give the segment a descriptor that is not open: the next write fails (EBADF).
    const qlog = q.store as unknown as { cur: { fd: number } };
    const realFd = qlog.cur.fd;
    qlog.cur.fd = 1 << 20;
    const failed = vhost.publish(msg('q', 'lost'), 0).settled;
    await expect(failed).rejects.toThrow(/message store write failed/);
    // A later batch goes to a fresh segment.
    await vhost.publish(msg('q', 'after'), 0).settled;
    expect(q.readyCount).toBe(3);
    await close(store);
    closeSync(realFd);
    ({ store, vhost } = open(dir));
    expect(takeAll(vhost.getQueue('q'))).toEqual(['before', 'after']);
    await close(store);
  });
});

describe('recovery', () => {
  test('sequence numbers continue after the recovered ones, so order holds across restarts', async () => {
    const dir = await fresh();
    let { store, vhost } = open(dir);
    vhost.declareQueue('q', { durable: true }, false, 0);
    for (let i = 0; i < 3; i++) await vhost.publish(msg('q', `first-${i}`), 0).settled;
    await close(store);
    ({ store, vhost } = open(dir));
    for (let i = 0; i < 2; i++) await vhost.publish(msg('q', `second-${i}`), 0).settled;
    await close(store);
    ({ store, vhost } = open(dir));
    expect(takeAll(vhost.getQueue('q'))).toEqual(['first-0', 'first-1', 'first-2', 'second-0', 'second-1']);
    await close(store);
  });

  test('the delivery frontier is written before a delivery; recovery flags messages below it redelivered', async () => {
    const dir = await fresh();
    let { store, vhost } = open(dir);
    const q = vhost.declareQueue('q', { durable: true }, false, 0);
    for (let i = 0; i < 5000; i++) vhost.publish(msg('q', `m${i}`), 0);
    await store.flush();
    const t = q.take(false)!;
    expect(t.redelivered).toBe(false);
    const frontier = readFileSync(join(dir, 'queues', queueDirName('/', 'q'), 'frontier')).readDoubleLE(0);
    expect(frontier).toBeGreaterThanOrEqual(t.entry.seq);
    // no clean shutdown: nothing more is written
    await close(store);
    ({ store, vhost } = open(dir));
    const back = vhost.getQueue('q');
    const first = back.take(false)!;
    expect(first.entry.msg.body.toString()).toBe('m0');
    expect(first.redelivered).toBe(true);
    let last = first;
    for (let x = back.take(false); x; x = back.take(false)) last = x;
    expect(last.entry.msg.body.toString()).toBe('m4999');
    expect(last.redelivered).toBe(false);
    await close(store);
  });

  test('recovery keeps the memory budget: the rest of a backlog stays on disk until needed', async () => {
    const dir = await fresh();
    let { store, vhost } = open(dir, { queueMemoryBudget: 10_000 });
    vhost.declareQueue('q', { durable: true }, false, 0);
    for (let i = 0; i < 300; i++) vhost.publish(msg('q', `m${i}-${'z'.repeat(200)}`), 0);
    await store.flush();
    await close(store);
    ({ store, vhost } = open(dir, { queueMemoryBudget: 10_000 }));
    const q = vhost.getQueue('q');
    expect(q.readyCount).toBe(300);
    expect(q.pagedCount).toBeGreaterThan(250);
    expect(takeAll(q).map((s) => s.slice(0, s.indexOf('-')))).toEqual(Array.from({ length: 300 }, (_, i) => `m${i}`));
    await close(store);
  });
});

describe('definitions', () => {
  test('a definition change resolves once on disk; a failed write rejects with 541 and the change is written with a later batch', async () => {
    const dir = await fresh();
    const { core, store, vhost } = open(dir);
    vhost.declareQueue('first', { durable: true }, false, 0);
    expect(core.persistence.definitionsSettled()).not.toBe(SETTLED);
    await core.persistence.definitionsSettled();
    expect(core.persistence.definitionsSettled()).toBe(SETTLED);

    // Writes to the log fail (its descriptor is now a read-only one), and so does the snapshot a
    // retry would write.
    const internals = store.definitionsLog as unknown as { fd: number };
    const writable = internals.fd;
    internals.fd = openSync(join(dir, 'definitions.log'), 'r');
    mkdirSync(join(dir, 'definitions.snap.tmp'));
    vhost.declareQueue('second', { durable: true }, false, 0);
    const err = await core.persistence.definitionsSettled().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe(ReplyCode.INTERNAL_ERROR);
    // Until the retry is on disk, a redeclare has something to wait for.
    expect(core.persistence.definitionsSettled()).not.toBe(SETTLED);

    // The disk is fine again: the retry writes a snapshot with everything.
    rmdirSync(join(dir, 'definitions.snap.tmp'));
    await waitFor(() => store.definitionsLog.get(JSON.stringify(['q', '/', 'second'])) !== undefined, 10_000);
    await close(store);
    closeSync(writable);
    const again = open(dir);
    expect([...again.vhost.queues.keys()].sort()).toEqual(['first', 'second']);
  });

  test('non-durable declares leave nothing to wait for', async () => {
    const dir = await fresh();
    const { core, vhost } = open(dir);
    await core.persistence.definitionsSettled();
    vhost.declareQueue('t', { durable: false }, false, 0);
    vhost.declareQueue('x', { durable: true, exclusive: true }, false, 1);
    vhost.declareExchange('tx', 'fanout', { durable: false }, false);
    vhost.bind(vhost.getExchange('tx'), vhost.getQueue('t'), '', {});
    expect(core.persistence.definitionsSettled()).toBe(SETTLED);
  });
});
