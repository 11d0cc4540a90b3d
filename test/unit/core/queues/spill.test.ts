import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { Core, processMemory, type CoreChannel, type Delivery } from '../../../../src/core/index.js';
import { openStore, type MessageStore } from '../../../../src/store/index.js';
import { waitFor } from '../../../helpers/broker.js';
import { RecordingSink, testChannel } from '../../../helpers/memory-cluster.js';

/**
 * A memory-only queue past 16,384 ready messages spills the next ones off the heap (the store's
 * OffHeapSpill) and reads them back in order: nothing about the queue's behaviour changes.
 */

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const stores: MessageStore[] = [];

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function broker(): Promise<{ core: Core; ch: CoreChannel }> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-spill-'));
  dirs.push(dir);
  const core = new Core();
  const { store } = openStore(core, { dataDir: dir }, log);
  stores.push(store);
  return { core, ch: testChannel(core) };
}

const N = 40_000;
const body = (d: Delivery): string => d.message.body.toString();

function publishAll(ch: CoreChannel, queue: string, n: number, from = 0): void {
  for (let i = from; i < from + n; i++) {
    ch.publish({ exchange: '', routingKey: queue, properties: { headers: { i, tag: `t${i % 7}` }, messageId: `id${i}`, ...(i % 3 === 0 ? { deliveryMode: 2 } : {}) }, body: Buffer.from(`m${i}`) });
  }
}

describe('a memory-only queue that spills off the heap', () => {
  test('holds what it spilled in its counts and delivers everything in order, properties intact; the memory account ends where it began', async () => {
    const { core, ch } = await broker();
    const before = processMemory.messageBytes;
    ch.declareQueue('big', { durable: false });
    publishAll(ch, 'big', N);
    const q = core.vhosts.get('/')!.queues.get('big')!;
    expect(q.readyCount).toBe(N);
    expect(q.pagedCount).toBe(N - 16_384);
    const sink = new RecordingSink();
    const c = testChannel(core);
    c.qos(500, false);
    c.consume('big', { noAck: false }, sink);
    let acked = 0;
    await waitFor(
      () => {
        for (; acked < sink.got.length; acked++) c.ack(sink.got[acked]!.deliveryTag, false);
        return sink.got.length === N;
      },
      20_000,
      () => `delivered ${sink.got.length}`,
    );
    expect(sink.got.map(body)).toEqual(Array.from({ length: N }, (_, i) => `m${i}`));
    // 39,998 was published transient, 39,999 persistent (every third).
    expect(sink.got[N - 2]!.message.properties).toEqual({ headers: { i: N - 2, tag: `t${(N - 2) % 7}` }, messageId: `id${N - 2}` });
    expect([sink.got[N - 2]!.message.persistent, sink.got[N - 1]!.message.persistent]).toEqual([false, true]);
    expect(sink.got[N - 1]!.message.properties.deliveryMode).toBe(2);
    expect(sink.got.every((d) => !d.redelivered)).toBe(true);
    await waitFor(() => q.unackedCount === 0, 5000, 'all acked');
    expect([q.readyCount, q.pagedCount, q.readyBytes]).toEqual([0, 0, 0]);
    expect(processMemory.messageBytes).toBe(before);
  });

  test('a requeued message goes back ahead of the spilled ones, redelivered', async () => {
    const { core, ch } = await broker();
    ch.declareQueue('rq', { durable: false });
    publishAll(ch, 'rq', 20_000);
    const sink = new RecordingSink();
    const c = testChannel(core);
    c.qos(5, false);
    const tag = c.consume('rq', { noAck: false }, sink);
    await waitFor(() => sink.got.length === 5, 5000, 'five held');
    c.cancel(tag);
    c.nack(sink.got[4]!.deliveryTag, true, true);
    const after = new RecordingSink();
    testChannel(core).consume('rq', { noAck: true }, after);
    await waitFor(() => after.got.length === 20_000, 20_000, () => `delivered ${after.got.length}`);
    expect(after.got.slice(0, 6).map((d) => [body(d), d.redelivered])).toEqual([
      ['m0', true], ['m1', true], ['m2', true], ['m3', true], ['m4', true], ['m5', false],
    ]);
    expect(after.got.map(body)).toEqual(Array.from({ length: 20_000 }, (_, i) => `m${i}`));
  });

  test('x-max-length drops from the head through the spill; a TTL dead-letters spilled messages in order; purge and delete give the memory back', async () => {
    const { core, ch } = await broker();
    const before = processMemory.messageBytes;
    ch.declareQueue('capped', { durable: false, arguments: { 'x-max-length': 20_000 } });
    publishAll(ch, 'capped', 30_000);
    const capped = core.vhosts.get('/')!.queues.get('capped')!;
    expect(capped.readyCount).toBe(20_000);
    const first = ch.get('capped', true);
    expect(first === null ? undefined : body(first.delivery)).toBe('m10000');

    ch.declareQueue('dead', { durable: false });
    ch.declareQueue('ttl', { durable: false, arguments: { 'x-message-ttl': 50, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'dead' } });
    publishAll(ch, 'ttl', 20_000);
    const dead = core.vhosts.get('/')!.queues.get('dead')!;
    await waitFor(() => dead.readyCount === 20_000, 20_000, () => `dead-lettered ${dead.readyCount}`);
    expect(core.vhosts.get('/')!.queues.get('ttl')!.readyCount).toBe(0);
    const sink = new RecordingSink();
    testChannel(core).consume('dead', { noAck: true }, sink);
    await waitFor(() => sink.got.length === 20_000, 20_000, () => `delivered ${sink.got.length}`);
    expect(sink.got.map(body)).toEqual(Array.from({ length: 20_000 }, (_, i) => `m${i}`));
    expect(sink.got[0]!.message.properties.headers?.['x-death']).toBeDefined();

    expect(ch.purgeQueue('capped')).toBe(19_999);
    expect([capped.readyCount, capped.pagedCount]).toEqual([0, 0]);
    publishAll(ch, 'capped', 20_000);
    ch.deleteQueue('capped', false, false);
    await waitFor(() => processMemory.messageBytes === before, 5000, () => `memory account ${processMemory.messageBytes - before} above`);
  });

  test('without a spill (no store) the queue keeps every message on the heap', async () => {
    const core = new Core();
    const ch = testChannel(core);
    ch.declareQueue('heap', { durable: false });
    publishAll(ch, 'heap', 20_000);
    const q = core.vhosts.get('/')!.queues.get('heap')!;
    expect([q.readyCount, q.pagedCount]).toEqual([20_000, 0]);
    expect(ch.purgeQueue('heap')).toBe(20_000);
  });
});
