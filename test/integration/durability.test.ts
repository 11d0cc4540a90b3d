import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import type { Broker } from '../../src/broker.js';
import { queueDirName } from '../../src/store/index.js';
import { waitFor } from '../helpers/broker.js';
import { client, drain, label, publishConfirmed, startOn, tempDataDir } from '../helpers/durability.js';

const dirs: string[] = [];
const brokers: Broker[] = [];

async function fresh(): Promise<string> {
  const d = await tempDataDir();
  dirs.push(d);
  return d;
}

async function start(dataDir: string, store?: { queueMemoryBudget?: number; segmentSize?: number }): Promise<Broker> {
  const b = await startOn(dataDir, store ? { store } : {});
  brokers.push(b);
  return b;
}

async function stop(b: Broker): Promise<void> {
  await b.stop();
  brokers.splice(brokers.indexOf(b), 1);
}

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function segFiles(dataDir: string, vhost: string, queue: string): string[] {
  const d = join(dataDir, 'queues', queueDirName(vhost, queue));
  return existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.seg')) : [];
}

describe('restart on the same data directory', () => {
  test('persistent messages in a durable queue come back in order; transient ones and non-durable queues do not', async () => {
    const dir = await fresh();
    let b = await start(dir);
    let c = await client(b);
    await c.ch.assertQueue('jobs', { durable: true });
    await c.ch.assertQueue('scratch', { durable: false });
    await publishConfirmed(c.cc, 'jobs', 50, { prefix: 'p' });
    await publishConfirmed(c.cc, 'jobs', 5, { prefix: 't', persistent: false });
    await publishConfirmed(c.cc, 'scratch', 5, { prefix: 's' });
    await c.close();
    await stop(b);

    b = await start(dir);
    c = await client(b);
    const got = await drain(c.ch, 'jobs');
    expect(got.map(label)).toEqual(Array.from({ length: 50 }, (_, i) => `p${i}`));
    expect(got.every((m) => !m.fields.redelivered)).toBe(true);
    expect(got[0]!.properties.deliveryMode).toBe(2);
    const probe = await c.conn.createChannel();
    await expect(probe.checkQueue('scratch')).rejects.toThrow(/404/);
    await c.close();
  });

  test('acknowledged messages stay gone; delivered but unacknowledged ones return flagged redelivered', async () => {
    const dir = await fresh();
    let b = await start(dir);
    let c = await client(b);
    await c.ch.assertQueue('work', { durable: true });
    await publishConfirmed(c.cc, 'work', 30);
    const first = await drain(c.ch, 'work', false);
    expect(first).toHaveLength(30);
    for (const m of first.slice(0, 10)) c.ch.ack(m);
    // a round trip after the acks: they have been processed
    await c.ch.checkQueue('work');
    await b.store.flush();
    await stop(b);
    await c.close();

    b = await start(dir);
    c = await client(b);
    const again = await drain(c.ch, 'work');
    expect(again.map(label)).toEqual(Array.from({ length: 20 }, (_, i) => `m${i + 10}`));
    expect(again.every((m) => m.fields.redelivered)).toBe(true);
    await c.close();
  });

  test('messages never delivered come back not redelivered even after others were delivered', async () => {
    const dir = await fresh();
    let b = await start(dir);
    let c = await client(b);
    await c.ch.assertQueue('mix', { durable: true });
    await publishConfirmed(c.cc, 'mix', 3000);
    const m = await c.ch.get('mix', { noAck: false });
    expect(m && label(m)).toBe('m0');
    await stop(b);
    await c.close();
    b = await start(dir);
    c = await client(b);
    const all = await drain(c.ch, 'mix');
    expect(all).toHaveLength(3000);
    expect(all[0]!.fields.redelivered).toBe(true);
    // the delivery frontier may flag a bounded number of later messages, never all of them
    expect(all.at(-1)!.fields.redelivered).toBe(false);
    await c.close();
  });

  test('durable exchanges, bindings, users and permissions survive; a fanout reaches all its durable queues', async () => {
    const dir = await fresh();
    let b = await start(dir);
    b.core.auth.addUser('alice', 's3cret', ['monitoring']);
    b.core.auth.setPermission('/', 'alice', { configure: '', write: '^ev$', read: '.*' });
    let c = await client(b);
    await c.ch.assertExchange('ev', 'fanout', { durable: true });
    await c.ch.assertExchange('tmp', 'fanout', { durable: false });
    for (const q of ['a', 'b', 'c']) {
      await c.ch.assertQueue(q, { durable: true });
      await c.ch.bindQueue(q, 'ev', '');
    }
    await publishConfirmed(c.cc, '', 40, { exchange: 'ev', size: 2000 });
    expect(readdirSync(join(dir, 'messages')).filter((f) => f.endsWith('.seg')).length).toBeGreaterThan(0);
    await c.close();
    await stop(b);

    b = await start(dir);
    expect(b.core.auth.users.get('alice')?.tags).toEqual(['monitoring']);
    expect(b.core.auth.authenticate('alice', 's3cret', '127.0.0.1').name).toBe('alice');
    expect(b.core.auth.getPermission('/', 'alice')?.write).toBe('^ev$');
    c = await client(b);
    for (const q of ['a', 'b', 'c']) {
      const got = await drain(c.ch, q);
      expect(got.map(label)).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`));
      expect(got[5]!.content.length).toBe(2000);
    }
    // a new publish still reaches every queue through the recovered binding
    await publishConfirmed(c.cc, '', 1, { exchange: 'ev', prefix: 'after' });
    for (const q of ['a', 'b', 'c']) expect((await c.ch.checkQueue(q)).messageCount).toBe(1);
    for (const q of ['a', 'b', 'c']) await drain(c.ch, q);
    await waitFor(async () => {
      await b.store.flush();
      return readdirSync(join(dir, 'messages')).filter((f) => f.endsWith('.seg')).length <= 1;
    }, 5000, 'shared message segments to be deleted');
    await expect(c.ch.checkExchange('tmp')).rejects.toThrow(/404/);
    await c.close();
  });

  test('message TTL and priorities are kept across a restart', async () => {
    const dir = await fresh();
    let b = await start(dir);
    let c = await client(b);
    await c.ch.assertQueue('ttl', { durable: true, arguments: { 'x-message-ttl': 400 } });
    await c.ch.assertQueue('prio', { durable: true, arguments: { 'x-max-priority': 5 } });
    await publishConfirmed(c.cc, 'ttl', 5);
    for (let i = 0; i < 6; i++) c.cc.sendToQueue('prio', Buffer.from(`p${i}`), { persistent: true, priority: i % 3 });
    await c.cc.waitForConfirms();
    await stop(b);
    await c.close();
    b = await start(dir);
    c = await client(b);
    const prio = await drain(c.ch, 'prio');
    expect(prio.map(label)).toEqual(['p2', 'p5', 'p1', 'p4', 'p0', 'p3']);
    await waitFor(async () => (await c.ch.checkQueue('ttl')).messageCount === 0, 5000, 'the TTL to expire recovered messages');
    await c.close();
  });
});

describe('segments', () => {
  test('segments roll over and are deleted once every message in them is acknowledged', async () => {
    const dir = await fresh();
    const b = await start(dir, { segmentSize: 16 * 1024 });
    const c = await client(b);
    await c.ch.assertQueue('roll', { durable: true });
    await publishConfirmed(c.cc, 'roll', 200, { size: 1000 });
    expect(segFiles(dir, '/', 'roll').length).toBeGreaterThan(5);
    const got = await drain(c.ch, 'roll');
    expect(got).toHaveLength(200);
    await waitFor(async () => {
      await b.store.flush();
      return segFiles(dir, '/', 'roll').length <= 1;
    }, 5000, 'acknowledged segments to be deleted');
    await c.close();
  });

  test('a deleted queue leaves no files; one declared again under the same name starts empty', async () => {
    const dir = await fresh();
    let b = await start(dir);
    let c = await client(b);
    await c.ch.assertQueue('gone', { durable: true });
    await publishConfirmed(c.cc, 'gone', 10);
    expect(segFiles(dir, '/', 'gone').length).toBe(1);
    await c.ch.deleteQueue('gone');
    await c.ch.assertQueue('gone', { durable: true });
    await publishConfirmed(c.cc, 'gone', 2, { prefix: 'new' });
    await waitFor(() => readdirSync(join(dir, 'queues')).every((n) => !n.includes('.deleted-')), 5000, 'the old directory to go');
    await stop(b);
    await c.close();
    b = await start(dir);
    c = await client(b);
    expect((await drain(c.ch, 'gone')).map(label)).toEqual(['new0', 'new1']);
    await c.close();
  });

  test('a purged queue stays empty after a restart', async () => {
    const dir = await fresh();
    let b = await start(dir);
    let c = await client(b);
    await c.ch.assertQueue('p', { durable: true });
    await publishConfirmed(c.cc, 'p', 100);
    await c.ch.purgeQueue('p');
    await publishConfirmed(c.cc, 'p', 3, { prefix: 'x' });
    await stop(b);
    await c.close();
    b = await start(dir);
    c = await client(b);
    expect((await drain(c.ch, 'p')).map(label)).toEqual(['x0', 'x1', 'x2']);
    await c.close();
  });
});

describe('paging', () => {
  test('a backlog beyond the memory budget is paged out and read back in order, also after a restart', async () => {
    const dir = await fresh();
    let b = await start(dir, { queueMemoryBudget: 64 * 1024, segmentSize: 256 * 1024 });
    let c = await client(b);
    await c.ch.assertQueue('big', { durable: true });
    await publishConfirmed(c.cc, 'big', 2000, { size: 1024 });
    const q = b.core.vhosts.get('/')!.queues.get('big')!;
    expect(q.pagedCount).toBeGreaterThan(1500);
    expect(q.readyCount).toBe(2000);
    // transient messages that arrive meanwhile wait behind the paged ones
    await publishConfirmed(c.cc, 'big', 3, { prefix: 't', persistent: false });
    const firstHalf: string[] = [];
    for (let i = 0; i < 1000; i++) {
      const m = await c.ch.get('big', { noAck: false });
      if (!m) throw new Error('queue ran dry');
      firstHalf.push(label(m));
      c.ch.ack(m);
    }
    expect(firstHalf).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i}`));
    await c.ch.checkQueue('big'); // a round trip: every ack has been processed
    await stop(b);
    await c.close();

    b = await start(dir, { queueMemoryBudget: 64 * 1024, segmentSize: 256 * 1024 });
    c = await client(b);
    const q2 = b.core.vhosts.get('/')!.queues.get('big')!;
    expect(q2.readyCount).toBe(1000);
    expect(q2.pagedCount).toBeGreaterThan(500);
    const rest = await drain(c.ch, 'big');
    expect(rest.map(label)).toEqual(Array.from({ length: 1000 }, (_, i) => `m${i + 1000}`));
    expect(rest[999]!.content.length).toBe(1024);
    await c.close();
  });

  test('a consumer drains a paged queue in order while publishers keep adding', async () => {
    const dir = await fresh();
    const b = await start(dir, { queueMemoryBudget: 32 * 1024, segmentSize: 128 * 1024 });
    const c = await client(b);
    await c.ch.assertQueue('flow', { durable: true });
    await publishConfirmed(c.cc, 'flow', 1500, { size: 512, prefix: 'a' });
    const seen: string[] = [];
    await c.ch.prefetch(50);
    await c.ch.consume('flow', (m) => {
      if (!m) return;
      seen.push(label(m));
      c.ch.ack(m);
    });
    await publishConfirmed(c.cc, 'flow', 1500, { size: 512, prefix: 'b' });
    await waitFor(() => seen.length === 3000, 15000, 'every message');
    expect(seen).toEqual([...Array.from({ length: 1500 }, (_, i) => `a${i}`), ...Array.from({ length: 1500 }, (_, i) => `b${i}`)]);
    await c.close();
  });

  test('purging a paged queue drops what is on disk too', async () => {
    const dir = await fresh();
    let b = await start(dir, { queueMemoryBudget: 16 * 1024, segmentSize: 64 * 1024 });
    let c = await client(b);
    await c.ch.assertQueue('pp', { durable: true });
    await publishConfirmed(c.cc, 'pp', 500, { size: 300 });
    expect((await c.ch.purgeQueue('pp')).messageCount).toBe(500);
    await publishConfirmed(c.cc, 'pp', 2, { prefix: 'after' });
    expect((await c.ch.checkQueue('pp')).messageCount).toBe(2);
    await stop(b);
    await c.close();
    b = await start(dir, { queueMemoryBudget: 16 * 1024, segmentSize: 64 * 1024 });
    c = await client(b);
    expect((await drain(c.ch, 'pp')).map(label)).toEqual(['after0', 'after1']);
    await c.close();
  });
});
