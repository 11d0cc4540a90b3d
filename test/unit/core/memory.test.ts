import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { Alarms, Core, MemoryAccount, memoryBase, processMemory, type MemorySource } from '../../../src/core/index.js';
import { Duplex } from 'node:stream';
import { ByteQueue } from '../../../src/transport/byte-queue.js';
import { Link, type LinkOwner } from '../../../src/transport/link.js';
import { pino } from 'pino';

class Held implements MemorySource {
  constructor(public heldBytes: number) {}
}

function core() {
  const c = new Core();
  const conn = c.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  return { c, ch };
}

const publish = (ch: ReturnType<typeof core>['ch'], rk: string, bytes: number, exchange = ''): void =>
  void ch.publish({ exchange, routingKey: rk, properties: {}, body: Buffer.alloc(bytes) });

describe('MemoryAccount', () => {
  test('polls tracked sources and forgets those that hold nothing', () => {
    const a = new MemoryAccount();
    const x = new Held(100);
    const y = new Held(50);
    a.track(x);
    a.track(y);
    a.track(x);
    expect(a.poll()).toBe(150);
    y.heldBytes = 0;
    expect(a.poll()).toBe(100);
    expect(a.trackedSources).toBe(1);
    a.untrack(x);
    expect(a.poll()).toBe(0);
  });

  test('calls back once when held message bytes reach the threshold', () => {
    const a = new MemoryAccount();
    let calls = 0;
    a.notifyAt(1000, () => calls++);
    a.hold(600);
    expect(calls).toBe(0);
    a.hold(600);
    a.hold(600);
    expect(calls).toBe(1);
    a.release(1800);
    expect(a.messageBytes).toBe(0);
  });
});

describe('queued message bytes', () => {
  test('a message routed to several queues is counted once, until the last queue lets it go', () => {
    const { ch } = core();
    ch.declareExchange('fan', 'fanout', {});
    for (const q of ['a', 'b', 'c']) {
      ch.declareQueue(q, {});
      ch.bindQueue(q, 'fan', '');
    }
    const before = processMemory.messageBytes;
    publish(ch, '', 1000, 'fan');
    expect(processMemory.messageBytes - before).toBe(1064);
    ch.purgeQueue('a');
    ch.purgeQueue('b');
    expect(processMemory.messageBytes - before).toBe(1064);
    ch.get('c', false);
    expect(processMemory.messageBytes - before).toBe(1064); // unacked: still held
    ch.ack(1, false);
    expect(processMemory.messageBytes - before).toBe(0);
  });

  test('purge and queue deletion take the bytes out', () => {
    const { ch } = core();
    ch.declareQueue('p', {});
    ch.declareQueue('d', {});
    const before = processMemory.messageBytes;
    for (let i = 0; i < 100; i++) {
      publish(ch, 'p', 500);
      publish(ch, 'd', 500);
    }
    expect(processMemory.messageBytes - before).toBe(200 * 564);
    ch.purgeQueue('p');
    ch.deleteQueue('d');
    expect(processMemory.messageBytes - before).toBe(0);
  });
});

describe('ByteQueue', () => {
  test('unread bytes are polled until consumed or cleared', () => {
    const base = processMemory.poll();
    const q = new ByteQueue();
    q.push(Buffer.alloc(300));
    expect(processMemory.poll() - base).toBe(300);
    q.consume(100);
    expect(processMemory.poll() - base).toBe(200);
    q.clear();
    expect(processMemory.poll() - base).toBe(0);
  });
});

describe('Link', () => {
  test('bytes a stream has not taken yet are polled until they drain', async () => {
    const base = processMemory.poll();
    let release: (() => void) | undefined;
    // A peer that takes its first write only when told to (a socket whose peer does not read).
    const stream = new Duplex({
      highWaterMark: 1 << 30,
      read() {},
      write(_chunk: Buffer, _enc, done) {
        release = () => done();
      },
    });
    const owner: LinkOwner = { onInput: () => undefined, failInternal: () => undefined, linkDrained: () => undefined, linkClosed: () => undefined, linkExpired: () => false };
    const link = new Link(stream, owner, pino({ level: 'silent' }), 'memory');
    link.write(Buffer.alloc(1000));
    link.write(Buffer.alloc(500));
    await new Promise((r) => process.nextTick(r)); // the tick's writes are uncorked
    expect(processMemory.poll() - base).toBe(1500);
    release?.();
    await new Promise((r) => setImmediate(r));
    release?.();
    await new Promise((r) => setImmediate(r));
    expect(stream.writableLength).toBe(0);
    expect(processMemory.poll() - base).toBe(0);
    link.write(Buffer.alloc(10));
    stream.destroy();
    await new Promise((r) => process.nextTick(r));
    expect(processMemory.poll() - base).toBe(0); // a destroyed stream holds nothing
  });
});

describe('memory alarm', () => {
  test('raises at the watermark and clears only below 90 % of it', () => {
    const a = new MemoryAccount();
    const probe = new Alarms(1e12, a);
    probe.checkMemory();
    const floor = probe.memoryUsed; // heap and other external memory of this process
    const limit = floor + 10_000_000;
    const alarms = new Alarms(limit, a);
    const seen: boolean[] = [];
    alarms.on((b) => seen.push(b));
    a.hold(10_500_000);
    alarms.checkMemory();
    expect(alarms.active).toEqual(['memory']);
    a.release(1_000_000); // 9.5 MB of messages: above 90 % of the watermark once the floor is added
    alarms.checkMemory();
    expect(alarms.blocked).toBe(true);
    a.release(9_500_000);
    alarms.checkMemory();
    expect(alarms.blocked).toBe(false);
    expect(seen).toEqual([true, false]);
  });

  test('queued messages crossing the watermark between samples raise it without waiting for the timer', async () => {
    const a = new MemoryAccount();
    const probe = new Alarms(1e12, a);
    probe.checkMemory();
    const alarms = new Alarms(probe.memoryUsed + 50_000_000, a);
    alarms.start(60_000); // the timer would not sample again during this test
    try {
      expect(alarms.blocked).toBe(false);
      for (let i = 0; i < 60; i++) a.hold(1_000_000);
      await new Promise((r) => process.nextTick(r));
      expect(alarms.active).toEqual(['memory']);
    } finally {
      alarms.stop();
      a.release(60_000_000);
    }
  });

  test('a memory alarm set by hand stays until cleared by hand', () => {
    const alarms = new Alarms(1e12, new MemoryAccount());
    alarms.set('memory', true);
    alarms.checkMemory();
    expect(alarms.blocked).toBe(true);
    alarms.set('memory', false);
    expect(alarms.blocked).toBe(false);
  });
});

const GiB8 = 8 * 2 ** 30;

describe('memory base', () => {
  test('a fraction applies to the cgroup limit when there is one below the RAM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-cgroup-'));
    try {
      const file = join(dir, 'memory.max');
      await writeFile(file, '536870912\n');
      expect(memoryBase(0, [file], GiB8)).toEqual({ bytes: 536870912, source: 'cgroup' });
      expect(memoryBase(2 ** 30, [file], GiB8)).toEqual({ bytes: 2 ** 30, source: 'cgroup' });
      await writeFile(file, 'max\n');
      expect(memoryBase(0, [file], GiB8)).toEqual({ bytes: GiB8, source: 'host' });
      // Node reports 2^64 without a limit (0 when it cannot tell); a limit above the RAM is no limit either.
      expect(memoryBase(2 ** 64, [join(dir, 'missing')], GiB8)).toEqual({ bytes: GiB8, source: 'host' });
      expect(memoryBase(2 * GiB8, [join(dir, 'missing')], GiB8).source).toBe('host');
      const alarms = new Alarms(0.5, new MemoryAccount(), memoryBase(0, [join(dir, 'missing'), file], GiB8));
      expect(alarms.memoryLimit).toBe(GiB8 / 2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
