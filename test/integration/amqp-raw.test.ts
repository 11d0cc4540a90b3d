import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { FrameType, PROTOCOL_HEADER } from '../../adapters/amqp/codec/constants.js';
import { encodeContentFrames } from '../../adapters/amqp/codec/frames.js';
import { encodeMethod } from '../../adapters/amqp/codec/methods.js';
import { RawAmqp } from '../helpers/amqp-raw.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
let port: number;
/** A well-behaved client that must not notice anything the raw peers do. */
let bystander: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker({ logLevel: 'silent' });
  port = tb.broker.ports.amqp!;
  bystander = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await bystander.close();
  await tb.stop();
});

async function bystanderStillWorks(): Promise<void> {
  const ch = await bystander.createChannel();
  const q = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(q.queue, Buffer.from('ok'));
  const m = await ch.get(q.queue, { noAck: true });
  expect(m && m.content.toString()).toBe('ok');
  await ch.close();
}

async function expectConnectionClose(c: RawAmqp, code: number, classId?: number, methodId?: number): Promise<void> {
  const close = await c.nextMethod('connection.close');
  expect(close.replyCode).toBe(code);
  if (classId !== undefined) expect([close.classId, close.methodId]).toEqual([classId, methodId]);
  c.send(0, { kind: 'connection.close-ok' });
  await c.waitClosed();
  await bystanderStillWorks();
}

describe('bad input on the wire', () => {
  test('a wrong protocol header is answered with AMQP 0-9-1 and the socket closed', async () => {
    const c = await RawAmqp.open(port);
    c.write(Buffer.from('AMQP\u0001\u0001\u0000\u000a'));
    await c.waitClosed();
    expect(Buffer.concat(c.raw).equals(PROTOCOL_HEADER)).toBe(true);
    await bystanderStillWorks();
  });

  test('HTTP sent to the AMQP port gets the protocol header back', async () => {
    const c = await RawAmqp.open(port);
    c.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await c.waitClosed();
    expect(Buffer.concat(c.raw).equals(PROTOCOL_HEADER)).toBe(true);
  });

  test('a frame larger than frame_max: 501 FRAME_ERROR, before its payload is buffered', async () => {
    const c = await RawAmqp.ready(port);
    const header = Buffer.alloc(7);
    header.writeUInt8(FrameType.METHOD, 0);
    header.writeUInt16BE(1, 1);
    header.writeUInt32BE(1 << 30, 3); // announces 1 GiB, sends nothing more
    c.write(header);
    await expectConnectionClose(c, 501);
  });

  test('a bad frame-end byte: 501 FRAME_ERROR', async () => {
    const c = await RawAmqp.ready(port);
    const open = encodeMethod(1, { kind: 'channel.open' });
    c.write(RawAmqp.frame(FrameType.METHOD, 1, open.subarray(7, open.length - 1), 0x00));
    await expectConnectionClose(c, 501);
  });

  test('an unknown method: 540 NOT_IMPLEMENTED', async () => {
    const c = await RawAmqp.ready(port);
    const payload = Buffer.from([0, 60, 0, 99]);
    c.write(RawAmqp.frame(FrameType.METHOD, 0, payload));
    await expectConnectionClose(c, 540);
  });

  test('a method on a channel that was never opened: 504 CHANNEL_ERROR', async () => {
    const c = await RawAmqp.ready(port);
    c.send(7, { kind: 'queue.declare', queue: 'x', passive: false, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: {} });
    await expectConnectionClose(c, 504, 50, 10);
  });

  test('a method on a channel after it was closed: 504 CHANNEL_ERROR', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    await c.nextMethod('channel.open-ok');
    c.send(1, { kind: 'channel.close', replyCode: 200, replyText: 'bye', classId: 0, methodId: 0 });
    await c.nextMethod('channel.close-ok');
    c.send(1, { kind: 'basic.qos', prefetchSize: 0, prefetchCount: 1, global: false });
    await expectConnectionClose(c, 504, 60, 10);
  });

  test('a body frame without a content header: 505 UNEXPECTED_FRAME', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    await c.nextMethod('channel.open-ok');
    c.write(RawAmqp.frame(FrameType.BODY, 1, Buffer.from('orphan body')));
    await expectConnectionClose(c, 505);
  });

  test('a method where a content header was due: 505 UNEXPECTED_FRAME', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    await c.nextMethod('channel.open-ok');
    c.send(1, { kind: 'basic.publish', exchange: '', routingKey: 'q', mandatory: false, immediate: false });
    c.send(1, { kind: 'basic.qos', prefetchSize: 0, prefetchCount: 1, global: false });
    await expectConnectionClose(c, 505);
  });

  test('a second channel.open on an open channel: 504', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    await c.nextMethod('channel.open-ok');
    c.send(1, { kind: 'channel.open' });
    await expectConnectionClose(c, 504, 20, 10);
  });

  test('connection.open of an unknown vhost: 530 NOT_ALLOWED', async () => {
    const { c, reply } = await RawAmqp.handshake(port, { vhost: 'nowhere' });
    expect(reply.kind).toBe('connection.close');
    if (reply.kind === 'connection.close') expect([reply.replyCode, reply.classId, reply.methodId]).toEqual([530, 10, 40]);
    c.end();
  });

  test('after a channel error, frames on that channel are dropped until channel.close-ok', async () => {
    const c = await RawAmqp.ready(port);
    c.send(1, { kind: 'channel.open' });
    await c.nextMethod('channel.open-ok');
    c.send(1, { kind: 'queue.declare', queue: 'missing', passive: true, durable: false, exclusive: false, autoDelete: false, noWait: false, arguments: {} });
    const close = await c.nextMethod('channel.close');
    expect([close.replyCode, close.classId, close.methodId]).toEqual([404, 50, 10]);
    // These are ignored, not answered, and do not raise a connection error.
    c.send(1, { kind: 'basic.qos', prefetchSize: 0, prefetchCount: 1, global: false });
    c.write(encodeContentFrames(1, 60, 3, Buffer.from([0, 0]), Buffer.from('abc'), 131072));
    c.send(1, { kind: 'channel.close-ok' });
    c.send(1, { kind: 'channel.open' });
    await c.nextMethod('channel.open-ok');
    c.end();
  });

  test('a client that goes silent past two heartbeat intervals is disconnected', async () => {
    const c = await RawAmqp.ready(port, { heartbeat: 1 });
    // the server heartbeats an idle connection...
    await c.until(() => c.frames.some((f) => f.type === FrameType.HEARTBEAT), 3000);
    // ...and drops one that sends nothing back
    await c.waitClosed(5000);
    expect(c.closed).toBe(true);
    await bystanderStillWorks();
  });

  test('a client that heartbeats stays connected', async () => {
    const c = await RawAmqp.ready(port, { heartbeat: 1 });
    const beat = RawAmqp.frame(FrameType.HEARTBEAT, 0, Buffer.alloc(0));
    const timer = setInterval(() => c.write(beat), 300);
    await c.until(() => c.frames.filter((f) => f.type === FrameType.HEARTBEAT).length >= 5, 6000);
    clearInterval(timer);
    expect(c.closed).toBe(false);
    c.end();
  });
});
