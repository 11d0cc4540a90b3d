import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { AMQPClient } from '@cloudamqp/amqp-client';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
let conn: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker();
  conn = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

const STREAM = { 'x-queue-type': 'stream' };

/** Runs `fn` on a fresh channel of a fresh connection and returns the error that closed it. */
async function closeError(fn: (ch: Channel) => Promise<unknown>): Promise<string> {
  const c = await connect(tb.amqpUrl);
  let connErr = '';
  c.on('error', (e: Error) => (connErr = e.message));
  const ch = await c.createChannel();
  ch.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
  const err = await fn(ch).then(
    () => undefined,
    (e: unknown) => (e as Error).message,
  );
  await closed;
  await c.close().catch(() => undefined);
  return `${err ?? 'no error'} ${connErr}`;
}

async function declareStream(name: string, args: Record<string, unknown> = {}): Promise<void> {
  const ch = await conn.createChannel();
  await ch.assertQueue(name, { durable: true, arguments: { ...STREAM, ...args } });
  await ch.close();
}

/** Publishes `bodies` with confirms, one confirm round each when `separately` (one chunk each). */
async function publish(name: string, bodies: string[], headers: Record<string, unknown> = {}, separately = false): Promise<void> {
  const ch: ConfirmChannel = await conn.createConfirmChannel();
  for (const b of bodies) {
    ch.sendToQueue(name, Buffer.from(b), { headers, persistent: true });
    if (separately) await ch.waitForConfirms();
  }
  await ch.waitForConfirms();
  await ch.close();
}

/** Consumes with prefetch and `args` until `n` messages arrived (acking each); returns them. */
async function read(name: string, args: Record<string, unknown>, n: number, prefetch = 50): Promise<ConsumeMessage[]> {
  const ch = await conn.createChannel();
  await ch.prefetch(prefetch);
  const got: ConsumeMessage[] = [];
  await ch.consume(
    name,
    (m) => {
      if (m === null) return;
      got.push(m);
      ch.ack(m);
    },
    { arguments: args },
  );
  await waitFor(() => got.length >= n, 10_000, `${n} messages from ${name}`);
  await ch.close();
  return got;
}

const bodies = (ms: ConsumeMessage[]): string[] => ms.map((m) => m.content.toString());
const offsets = (ms: ConsumeMessage[]): unknown[] => ms.map((m) => m.properties.headers?.['x-stream-offset']);
const range = (from: number, to: number, p = 'm'): string[] => Array.from({ length: to - from }, (_, i) => `${p}${from + i}`);

describe('declaring a stream', () => {
  test('a non-durable stream is refused with RabbitMQ 406 text', async () => {
    const err = await closeError((ch) => ch.assertQueue('s-transient', { durable: false, arguments: STREAM }));
    expect(err).toContain("PRECONDITION_FAILED - invalid property 'non-durable' for queue 's-transient' in vhost '/'");
  });

  test('an exclusive stream is refused', async () => {
    const err = await closeError((ch) => ch.assertQueue('s-excl', { durable: true, exclusive: true, arguments: STREAM }));
    expect(err).toContain("invalid property 'exclusive-owner'");
  });

  test('x-max-length is refused on a stream', async () => {
    const err = await closeError((ch) => ch.assertQueue('s-maxlen', { durable: true, arguments: { ...STREAM, 'x-max-length': 10 } }));
    expect(err).toContain("invalid arg 'x-max-length' for queue 's-maxlen' in vhost '/' of queue type rabbit_stream_queue");
  });

  test('a bad x-max-age is refused', async () => {
    const err = await closeError((ch) => ch.assertQueue('s-age', { durable: true, arguments: { ...STREAM, 'x-max-age': '10 parsecs' } }));
    expect(err).toContain("invalid arg 'x-max-age'");
  });
});

describe('redeclaring a stream', () => {
  test('the same declaration is fine; a classic one of the same name is inequivalent', async () => {
    await declareStream('s-redeclare');
    await declareStream('s-redeclare');
    const err = await closeError((ch) => ch.assertQueue('s-redeclare', { durable: true }));
    expect(err).toContain("inequivalent arg 'x-queue-type'");
  });
});

describe('consuming a stream', () => {
  beforeAll(async () => {
    await declareStream('s-main');
    await publish('s-main', range(0, 100));
  });

  test('a consumer without basic.qos is refused (406)', async () => {
    const err = await closeError((ch) => ch.consume('s-main', () => undefined, { arguments: { 'x-stream-offset': 'first' } }));
    expect(err).toContain("PRECONDITION_FAILED - consumer prefetch count is not set for 'queue 's-main' in vhost '/''");
  });

  test('an automatic-ack consumer is refused (540)', async () => {
    const err = await closeError(async (ch) => {
      await ch.prefetch(10);
      return ch.consume('s-main', () => undefined, { noAck: true });
    });
    expect(err).toContain("NOT_IMPLEMENTED - automatic acknowledgement not supported by stream queues queue 's-main' in vhost '/'");
  });

  test('basic.get is refused as RabbitMQ refuses it (540)', async () => {
    const err = await closeError((ch) => ch.get('s-main'));
    expect(err).toContain("NOT_IMPLEMENTED - basic.get not supported by stream queues queue 's-main' in vhost '/'");
  });

  test('first reads every message with its x-stream-offset (a long)', async () => {
    const got = await read('s-main', { 'x-stream-offset': 'first' }, 100);
    expect(bodies(got)).toEqual(range(0, 100));
    expect(offsets(got)).toEqual(Array.from({ length: 100 }, (_, i) => i));
  });

  test('reading does not consume: a second reader from first gets the same messages', async () => {
    await read('s-main', { 'x-stream-offset': 'first' }, 100);
    const again = await read('s-main', { 'x-stream-offset': 'first' }, 100);
    expect(bodies(again)).toEqual(range(0, 100));
  });

  test('a numeric offset starts there', async () => {
    const got = await read('s-main', { 'x-stream-offset': 60 }, 40);
    expect(offsets(got)[0]).toBe(60);
    expect(bodies(got)).toEqual(range(60, 100));
  });

  test('next gets only messages published after the consumer started', async () => {
    await declareStream('s-next');
    await publish('s-next', ['old1', 'old2']);
    const ch = await conn.createChannel();
    await ch.prefetch(10);
    const got: string[] = [];
    const { consumerTag } = await ch.consume('s-next', (m) => {
      if (m === null) return;
      got.push(m.content.toString());
      ch.ack(m);
    }, { arguments: { 'x-stream-offset': 'next' } });
    await publish('s-next', ['new1']);
    await waitFor(() => got.length >= 1, 5000, 'new1');
    expect(got).toEqual(['new1']);
    await ch.cancel(consumerTag);
    await ch.close();
  });

  test('without x-stream-offset a consumer starts at next', async () => {
    await declareStream('s-default');
    await publish('s-default', ['before']);
    const ch = await conn.createChannel();
    await ch.prefetch(10);
    const got: string[] = [];
    await ch.consume('s-default', (m) => {
      if (m === null) return;
      got.push(m.content.toString());
      ch.ack(m);
    });
    await publish('s-default', ['after']);
    await waitFor(() => got.length >= 1, 5000, 'after');
    expect(got).toEqual(['after']);
    await ch.close();
  });

  test('last starts at the last chunk', async () => {
    await declareStream('s-last');
    await publish('s-last', ['a', 'b', 'c'], {}, true);
    const got = await read('s-last', { 'x-stream-offset': 'last' }, 1);
    expect(bodies(got)).toEqual(['c']);
  });

  test('acks only drive credit: prefetch 5 delivers 5 until acked, and nothing is removed', async () => {
    const ch = await conn.createChannel();
    await ch.prefetch(5);
    const got: ConsumeMessage[] = [];
    await ch.consume('s-main', (m) => {
      if (m !== null) got.push(m);
    }, { arguments: { 'x-stream-offset': 'first' } });
    await waitFor(() => got.length >= 5, 5000, '5 deliveries');
    // No more arrive while 5 are unacked.
    await new Promise((r) => setTimeout(r, 200));
    expect(got.length).toBe(5);
    ch.ack(got[4]!, true);
    await waitFor(() => got.length >= 10, 5000, '10 deliveries');
    ch.nack(got[9]!, true, true); // a nack gives credit back too; nothing is requeued
    await waitFor(() => got.length >= 15, 5000, '15 deliveries');
    expect(offsets(got.slice(0, 15))).toEqual(Array.from({ length: 15 }, (_, i) => i));
    await ch.close();
    const q = await conn.createChannel();
    const ok = await q.checkQueue('s-main');
    expect(ok.messageCount).toBe(100);
    await q.close();
  });

  test('ten consumers each read the whole stream', async () => {
    const ch = await conn.createChannel();
    await ch.prefetch(20);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 10; i++) {
      await ch.consume('s-main', (m) => {
        if (m === null) return;
        counts[i]!++;
        ch.ack(m);
      }, { arguments: { 'x-stream-offset': 'first' } });
    }
    await waitFor(() => counts.every((c) => c >= 100), 10_000, 'every consumer read 100');
    expect(counts).toEqual(new Array<number>(10).fill(100));
    await ch.close();
  });
});

describe('offsets by time (amqp-client)', () => {
  test('a timestamp and an interval start at the first chunk written since', async () => {
    await declareStream('s-time');
    await publish('s-time', ['early']);
    await new Promise((r) => setTimeout(r, 1100)); // chunk timestamps are ms; AMQP timestamps are seconds
    const since = new Date(Math.ceil(Date.now() / 1000) * 1000);
    await new Promise((r) => setTimeout(r, Math.max(0, since.getTime() - Date.now() + 10)));
    await publish('s-time', ['late']);
    const client = await new AMQPClient(tb.amqpUrl).connect();
    try {
      const ch = await client.channel();
      await ch.prefetch(10);
      const fromTs: string[] = [];
      const sub = await ch.basicConsume('s-time', { noAck: false, args: { 'x-stream-offset': since } }, (m) => {
        fromTs.push(m.bodyToString() ?? '');
        void m.ack();
      });
      await waitFor(() => fromTs.length >= 1, 5000, 'timestamp read');
      await sub.cancel();
      expect(fromTs).toEqual(['late']);
      const fromInterval: string[] = [];
      const sub2 = await ch.basicConsume('s-time', { noAck: false, args: { 'x-stream-offset': '1h' } }, (m) => {
        fromInterval.push(m.bodyToString() ?? '');
        void m.ack();
      });
      await waitFor(() => fromInterval.length >= 2, 5000, 'interval read');
      await sub2.cancel();
      expect(fromInterval).toEqual(['early', 'late']);
    } finally {
      await client.close();
    }
  });

  test('amqp-client reads from first with the offset header', async () => {
    await declareStream('s-ac');
    await publish('s-ac', range(0, 5));
    const client = await new AMQPClient(tb.amqpUrl).connect();
    try {
      const ch = await client.channel();
      await ch.prefetch(2);
      const got: [string, unknown][] = [];
      await ch.basicConsume('s-ac', { noAck: false, args: { 'x-stream-offset': 'first' } }, (m) => {
        got.push([m.bodyToString() ?? '', m.properties.headers?.['x-stream-offset']]);
        void m.ack();
      });
      await waitFor(() => got.length >= 5, 5000, '5 messages');
      expect(got).toEqual(range(0, 5).map((b, i) => [b, i]));
    } finally {
      await client.close();
    }
  });
});

describe('retention', () => {
  test('x-max-length-bytes deletes whole oldest segments', async () => {
    await declareStream('s-ret', { 'x-max-length-bytes': 4000, 'x-stream-max-segment-size-bytes': 1000 });
    const big = 'x'.repeat(200);
    for (let i = 0; i < 40; i++) await publish('s-ret', [`${i}:${big}`]);
    const got = await read('s-ret', { 'x-stream-offset': 'first' }, 1);
    const first = Number(offsets(got)[0]);
    expect(first).toBeGreaterThan(0);
    // Whole segments go: the first kept offset begins a segment and the newest is still there.
    const rest = await read('s-ret', { 'x-stream-offset': 'first' }, 40 - first);
    expect(bodies(rest).at(-1)).toBe(`39:${big}`);
    const ch = await conn.createChannel();
    expect((await ch.checkQueue('s-ret')).messageCount).toBe(40 - first);
    await ch.close();
  });

  test('x-max-age deletes segments older than the age when a segment fills', async () => {
    await declareStream('s-age-ok', { 'x-max-age': '1s', 'x-stream-max-segment-size-bytes': 500 });
    for (let i = 0; i < 5; i++) await publish('s-age-ok', [`old${i}-${'y'.repeat(200)}`]);
    await new Promise((r) => setTimeout(r, 1200));
    for (let i = 0; i < 5; i++) await publish('s-age-ok', [`new${i}-${'y'.repeat(200)}`]);
    // Segments of two chunks each: the two full segments of old messages go, the one that also
    // holds a new message stays.
    const got = await read('s-age-ok', { 'x-stream-offset': 'first' }, 1);
    expect(got[0]!.properties.headers?.['x-stream-offset']).toBe(4);
    expect(got[0]!.content.toString()).toMatch(/^old4/);
  });
});

describe('deleting a stream', () => {
  test('cancels its consumers and removes its files', async () => {
    await declareStream('s-del');
    await publish('s-del', ['a', 'b']);
    const dir = join(tb.dataDir, 'streams');
    const before = readdirSync(dir).length;
    const ch = await conn.createChannel();
    await ch.prefetch(10);
    let cancelled = false;
    await ch.consume('s-del', (m) => {
      if (m === null) cancelled = true;
      else ch.ack(m);
    }, { arguments: { 'x-stream-offset': 'first' } });
    const admin = await conn.createChannel();
    await admin.deleteQueue('s-del');
    await waitFor(() => cancelled, 5000, 'basic.cancel');
    expect(readdirSync(dir).length).toBe(before - 1);
    await admin.close();
    await ch.close();
  });
});

describe('retention by policy', () => {
  test('a max-length-bytes policy applies to a stream', async () => {
    const api = `http://127.0.0.1:${tb.broker.ports.http}/api/policies/%2F/stream-cap`;
    const res = await fetch(api, {
      method: 'PUT',
      headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ pattern: '^s-pol$', 'apply-to': 'queues', definition: { 'max-length-bytes': 3000 } }),
    });
    expect(res.status).toBeLessThan(300);
    await declareStream('s-pol', { 'x-stream-max-segment-size-bytes': 800 });
    for (let i = 0; i < 30; i++) await publish('s-pol', [`${i}:${'z'.repeat(200)}`]);
    const got = await read('s-pol', { 'x-stream-offset': 'first' }, 1);
    expect(Number(offsets(got)[0])).toBeGreaterThan(0);
  });
});

describe('filters', () => {
  beforeAll(async () => {
    await declareStream('s-filter');
    for (let i = 0; i < 5; i++) await publish('s-filter', [`a${i}`], { 'x-stream-filter-value': 'apple' }, true);
    for (let i = 0; i < 5; i++) await publish('s-filter', [`b${i}`], { 'x-stream-filter-value': 'banana' }, true);
    await publish('s-filter', ['plain'], {}, true);
    await publish('s-filter', ['a5'], { 'x-stream-filter-value': 'apple' }, true);
  });

  test('x-stream-filter delivers only matching messages', async () => {
    const got = await read('s-filter', { 'x-stream-offset': 'first', 'x-stream-filter': 'apple' }, 6);
    expect(bodies(got)).toEqual(['a0', 'a1', 'a2', 'a3', 'a4', 'a5']);
  });

  test('several filter values and x-stream-match-unfiltered', async () => {
    const got = await read('s-filter', { 'x-stream-offset': 'first', 'x-stream-filter': ['banana'], 'x-stream-match-unfiltered': true }, 6);
    expect(bodies(got)).toEqual(['b0', 'b1', 'b2', 'b3', 'b4', 'plain']);
  });
});
