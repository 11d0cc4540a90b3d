import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FrameType } from '../../adapters/amqp/codec/constants.js';
import { encodeContentFrames, type Frame } from '../../adapters/amqp/codec/frames.js';
import { decodeMethod, encodeMethod, type AmqpMethod } from '../../adapters/amqp/codec/methods.js';
import { RawAmqp } from '../helpers/amqp-raw.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
let port: number;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.amqp!;
});
afterAll(async () => {
  await tb.stop();
});

/** Content header properties: none, or delivery-mode 2 (persistent). */
const NO_PROPS = Buffer.from([0, 0]);
const PERSISTENT = Buffer.from([0x10, 0x00, 2]);

/** basic.publish with its content, as one buffer. */
function publish(channel: number, routingKey: string, body: string, props = NO_PROPS): Buffer {
  const b = Buffer.from(body);
  return Buffer.concat([
    encodeMethod(channel, { kind: 'basic.publish', exchange: '', routingKey, mandatory: false, immediate: false }),
    encodeContentFrames(channel, 60, b.length, props, b, 131072),
  ]);
}

/** The method of a frame, or its type name for content and heartbeat frames. */
function describeFrame(f: Frame): string {
  if (f.type === FrameType.METHOD) return decodeMethod(f.payload).kind;
  return f.type === FrameType.HEADER ? 'header' : f.type === FrameType.BODY ? 'body' : 'heartbeat';
}

/** Every frame the broker sent on `channel`, in order, by name. */
function framesOn(c: RawAmqp, channel: number): string[] {
  return c.frames.filter((f) => f.channel === channel).map(describeFrame);
}

/** Waits until the broker has sent `kind` on `channel` (frames are kept, not consumed). */
async function sawOn(c: RawAmqp, channel: number, kind: AmqpMethod['kind'], times = 1): Promise<void> {
  await c.until(() => framesOn(c, channel).filter((k) => k === kind).length >= times);
}

/**
 * A synchronous method on `channel`, answered for the `n`th time: when the answer is in, what the
 * broker had to say about earlier input (acks due on a later tick, fsynced confirms) has had its
 * chance to be sent.
 */
async function roundTrip(c: RawAmqp, channel: number, n: number): Promise<void> {
  c.send(channel, { kind: 'basic.qos', prefetchSize: 0, prefetchCount: n, global: false });
  await sawOn(c, channel, 'basic.qos-ok', n);
}

describe('no frame on a channel after it is closed', () => {
  test('amqplib: publishing in confirm mode and closing at once never yields a frame on an unknown channel', async () => {
    const conn = await connect(tb.amqpUrl);
    const errors: Error[] = [];
    conn.on('error', (e: Error) => errors.push(e));
    const setup = await conn.createChannel();
    await setup.assertQueue('close-after-publish', { durable: true });
    for (let i = 0; i < 100; i++) {
      const ch = await conn.createConfirmChannel();
      ch.on('error', (e: Error) => errors.push(e));
      for (let j = 0; j < 5; j++) {
        ch.sendToQueue('close-after-publish', Buffer.from(`m${i}.${j}`), { persistent: i % 2 === 0 });
        ch.publish('', 'no-such-queue', Buffer.from('unroutable'));
      }
      await ch.close();
    }
    // The connection is still healthy: a fresh confirm channel works end to end.
    const last = await conn.createConfirmChannel();
    last.sendToQueue('close-after-publish', Buffer.from('last'));
    await last.waitForConfirms();
    await setup.deleteQueue('close-after-publish');
    await conn.close();
    expect(errors).toEqual([]);
  });

  test('after close-ok for a client channel.close, the channel is silent until it is reopened', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    c.send(1, { kind: 'confirm.select', noWait: false });
    c.send(1, { kind: 'queue.declare', queue: 'close-raw', passive: false, durable: true, exclusive: false, autoDelete: false, noWait: false, arguments: {} });
    await sawOn(c, 1, 'queue.declare-ok');
    // Transient ones settle at once (their ack is due on the next tick), persistent ones after
    // the fsync: both after the close that arrives in the same read.
    const burst: Buffer[] = [];
    for (let i = 0; i < 20; i++) burst.push(publish(1, 'close-raw', `m${i}`, i < 10 ? NO_PROPS : PERSISTENT));
    burst.push(encodeMethod(1, { kind: 'channel.close', replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 }));
    c.write(Buffer.concat(burst));
    await sawOn(c, 1, 'channel.close-ok');
    c.send(2, { kind: 'channel.open' });
    await sawOn(c, 2, 'channel.open-ok');
    await roundTrip(c, 2, 1);
    await roundTrip(c, 2, 2);
    const seen = framesOn(c, 1);
    expect(seen.slice(seen.indexOf('channel.close-ok') + 1)).toEqual([]);

    // The same number, reopened in confirm mode: its first publish is acked as tag 1, once, and
    // nothing of the old channel's confirms arrives.
    c.send(1, { kind: 'channel.open' });
    c.send(1, { kind: 'confirm.select', noWait: false });
    c.write(publish(1, 'close-raw', 'again', PERSISTENT));
    const reopened = (): Frame[] => {
      const on1 = c.frames.filter((f) => f.channel === 1);
      return on1.slice(on1.findIndex((f) => describeFrame(f) === 'channel.close-ok') + 1);
    };
    await c.until(() => reopened().some((f) => describeFrame(f) === 'basic.ack'));
    await roundTrip(c, 1, 1);
    const after = reopened();
    expect(after.map(describeFrame)).toEqual(['channel.open-ok', 'confirm.select-ok', 'basic.ack', 'basic.qos-ok']);
    const ack = decodeMethod(after[2]!.payload);
    expect(ack).toMatchObject({ kind: 'basic.ack', deliveryTag: 1, multiple: false });
    c.send(1, { kind: 'queue.delete', queue: 'close-raw', ifUnused: false, ifEmpty: false, noWait: false });
    await sawOn(c, 1, 'queue.delete-ok');
    c.end();
  });

  test('after the broker sends channel.close, nothing else is sent on the channel before close-ok', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    c.send(1, { kind: 'confirm.select', noWait: false });
    c.send(1, { kind: 'queue.declare', queue: 'close-raw-2', passive: false, durable: true, exclusive: false, autoDelete: false, noWait: false, arguments: {} });
    await sawOn(c, 1, 'queue.declare-ok');
    const burst: Buffer[] = [];
    for (let i = 0; i < 20; i++) burst.push(publish(1, 'close-raw-2', `m${i}`, i < 10 ? NO_PROPS : PERSISTENT));
    // A soft error in the same read: the broker closes the channel (404).
    burst.push(encodeMethod(1, { kind: 'queue.declare', queue: 'no-such-queue', passive: true, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: {} }));
    c.write(Buffer.concat(burst));
    await sawOn(c, 1, 'channel.close');
    c.send(2, { kind: 'channel.open' });
    await sawOn(c, 2, 'channel.open-ok');
    await roundTrip(c, 2, 1);
    await roundTrip(c, 2, 2);
    const seen = framesOn(c, 1);
    expect(seen.slice(seen.indexOf('channel.close') + 1)).toEqual([]);
    c.send(1, { kind: 'channel.close-ok' });
    c.send(1, { kind: 'channel.open' });
    await sawOn(c, 1, 'channel.open-ok');
    await roundTrip(c, 1, 1);
    const all = framesOn(c, 1);
    expect(all.slice(all.indexOf('channel.close') + 1)).toEqual(['channel.open-ok', 'basic.qos-ok']);
    c.send(1, { kind: 'queue.delete', queue: 'close-raw-2', ifUnused: false, ifEmpty: false, noWait: false });
    await sawOn(c, 1, 'queue.delete-ok');
    c.end();
  });

  test('deliveries stop with close-ok, and the unacked ones go back to the queue', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    c.send(1, { kind: 'queue.declare', queue: 'close-raw-3', passive: false, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: {} });
    await sawOn(c, 1, 'queue.declare-ok');
    const n = 2000;
    const burst: Buffer[] = [];
    for (let i = 0; i < n; i++) burst.push(publish(1, 'close-raw-3', `m${i}`));
    c.write(Buffer.concat(burst));
    await roundTrip(c, 1, 1);
    c.send(1, { kind: 'basic.consume', queue: 'close-raw-3', consumerTag: 'c1', noLocal: false, noAck: false, exclusive: false, noWait: false, arguments: {} });
    await sawOn(c, 1, 'basic.deliver');
    // Deliveries are flowing (in batches, one per turn) when the close arrives.
    c.send(1, { kind: 'channel.close', replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 });
    await sawOn(c, 1, 'channel.close-ok');
    c.send(2, { kind: 'channel.open' });
    await sawOn(c, 2, 'channel.open-ok');
    await roundTrip(c, 2, 1);
    await roundTrip(c, 2, 2);
    const seen = framesOn(c, 1);
    expect(seen.slice(seen.indexOf('channel.close-ok') + 1)).toEqual([]);
    expect(seen.filter((k) => k === 'basic.deliver').length).toBeLessThan(n);
    c.send(2, { kind: 'queue.declare', queue: 'close-raw-3', passive: true, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: {} });
    await sawOn(c, 2, 'queue.declare-ok');
    const ok = decodeMethod(c.frames.filter((f) => f.channel === 2 && describeFrame(f) === 'queue.declare-ok')[0]!.payload);
    expect(ok).toMatchObject({ messageCount: n });
    c.send(2, { kind: 'queue.delete', queue: 'close-raw-3', ifUnused: false, ifEmpty: false, noWait: false });
    await sawOn(c, 2, 'queue.delete-ok');
    c.end();
  });
});
