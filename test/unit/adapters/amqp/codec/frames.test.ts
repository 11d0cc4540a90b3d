import { describe, expect, test } from 'vitest';
import { ClassId, FRAME_END, FrameType, PROTOCOL_HEADER } from '../../../../../adapters/amqp/codec/constants.js';
import {
  FrameDecoder,
  encodeContentFrames,
  encodeDelivery,
  encodeGetOk,
  encodeHeartbeat,
  encodeReturn,
} from '../../../../../adapters/amqp/codec/frames.js';
import type { Content, Frame } from '../../../../../adapters/amqp/codec/frames.js';
import { decodeMethod, encodeMethod } from '../../../../../adapters/amqp/codec/methods.js';
import { decodeContentHeader, encodeProperties } from '../../../../../adapters/amqp/codec/properties.js';
import { BrokerError, ReplyCode } from '../../../../../src/core/errors.js';
import type { MessageProperties } from '../../../../../src/core/types.js';

interface Decoded {
  type: number;
  channel: number;
  payload: string;
}

function decodeAll(parts: Buffer[], frameMax = 131072): Decoded[] {
  const d = new FrameDecoder(frameMax);
  const out: Decoded[] = [];
  for (const p of parts) {
    d.push(p);
    for (let f = d.next(); f !== null; f = d.next()) {
      out.push({ type: f.type, channel: f.channel, payload: f.payload.toString('hex') });
    }
  }
  expect(d.buffered).toBe(0);
  return out;
}

function frames(wire: Buffer, frameMax = 131072): Frame[] {
  const d = new FrameDecoder(frameMax);
  d.push(wire);
  const out: Frame[] = [];
  for (let f = d.next(); f !== null; f = d.next()) out.push(f);
  expect(d.buffered).toBe(0);
  return out;
}

function errorOf(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (e) {
    if (e instanceof BrokerError) return e;
    throw new Error(`expected a BrokerError, got ${String(e)}`);
  }
  throw new Error('expected an error');
}

const PROPS: MessageProperties = { contentType: 'text/plain', deliveryMode: 2, headers: { a: 1 }, messageId: 'm1' };

function body(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31) & 0xff;
  return b;
}

const wire = Buffer.concat([
  encodeMethod(0, { kind: 'connection.tune-ok', channelMax: 10, frameMax: 4096, heartbeat: 60 }),
  encodeMethod(1, { kind: 'basic.publish', exchange: 'x', routingKey: 'k', mandatory: false, immediate: false }),
  encodeContentFrames(1, ClassId.BASIC, 10000, encodeProperties(PROPS), body(10000), 4096),
  encodeHeartbeat(),
  encodeMethod(2, { kind: 'basic.ack', deliveryTag: 5, multiple: true }),
  encodeContentFrames(3, ClassId.BASIC, 0, encodeProperties({}), Buffer.alloc(0), 4096),
]);

describe('FrameDecoder', () => {
  test('decodes a stream of frames in order', () => {
    const got = decodeAll([wire]);
    expect(got.map((f) => [f.type, f.channel])).toEqual([
      [FrameType.METHOD, 0],
      [FrameType.METHOD, 1],
      [FrameType.HEADER, 1],
      [FrameType.BODY, 1],
      [FrameType.BODY, 1],
      [FrameType.BODY, 1],
      [FrameType.HEARTBEAT, 0],
      [FrameType.METHOD, 2],
      [FrameType.HEADER, 3],
    ]);
  });

  // STYLE P4: fragmentation must be invisible
  test.each([1, 2, 3, 6, 7, 8, 13, 64, 4096])('split every %i bytes == unsplit', (step) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < wire.length; i += step) parts.push(Buffer.from(wire.subarray(i, i + step)));
    expect(decodeAll(parts)).toEqual(decodeAll([wire]));
  });

  test('a frame inside one chunk is returned as a view, a split one as a copy', () => {
    const frame = encodeMethod(1, { kind: 'basic.ack', deliveryTag: 1, multiple: false });
    const d = new FrameDecoder(4096);
    d.push(frame);
    const f = d.next()!;
    expect(f.payload.buffer).toBe(frame.buffer);
    d.push(frame.subarray(0, 10));
    d.push(Buffer.from(frame.subarray(10)));
    const g = d.next()!;
    expect(g.payload).toEqual(f.payload);
    frame.fill(0);
    expect(decodeMethod(g.payload)).toEqual({ kind: 'basic.ack', deliveryTag: 1, multiple: false });
  });

  test('returns null until a frame is complete', () => {
    const frame = encodeMethod(1, { kind: 'basic.qos', prefetchSize: 0, prefetchCount: 10, global: false });
    const d = new FrameDecoder(4096);
    for (let i = 0; i < frame.length - 1; i++) {
      d.push(frame.subarray(i, i + 1));
      expect(d.next()).toBeNull();
    }
    d.push(frame.subarray(frame.length - 1));
    expect(d.next()).not.toBeNull();
    expect(d.next()).toBeNull();
  });

  test('an oversize frame is rejected from its 7-byte header alone', () => {
    const d = new FrameDecoder(131072);
    d.push(Buffer.from([1, 0, 1, 0x40, 0, 0, 0])); // declares a 1 GiB payload
    const e = errorOf(() => d.next());
    expect(e.code).toBe(ReplyCode.FRAME_ERROR);
    expect(e.text).toBe('type 1, all octets = <<>>: {frame_too_large,1073741824,131064}');
  });

  test('frame_max counts header and frame-end: size + 8 == frameMax passes, one more fails', () => {
    const ok = Buffer.concat([Buffer.from([3, 0, 1, 0, 0, 0x0f, 0xf8]), Buffer.alloc(4088), Buffer.from([FRAME_END])]);
    expect(frames(ok, 4096)).toHaveLength(1);
    const tooBig = Buffer.from([3, 0, 1, 0, 0, 0x0f, 0xf9]);
    const d = new FrameDecoder(4096);
    d.push(tooBig);
    expect(errorOf(() => d.next()).code).toBe(ReplyCode.FRAME_ERROR);
  });

  test('frameMax can be raised after tuning', () => {
    const big = encodeContentFrames(1, ClassId.BASIC, 8000, encodeProperties({}), body(8000), 0);
    const d = new FrameDecoder(4096);
    d.push(big);
    expect(d.next()?.type).toBe(FrameType.HEADER);
    expect(() => d.next()).toThrow(BrokerError);
    const e = new FrameDecoder(4096);
    e.frameMax = 131072;
    e.push(big);
    expect(e.next()?.type).toBe(FrameType.HEADER);
    expect(e.next()?.payload.equals(body(8000))).toBe(true);
  });

  test('a bad frame-end octet is a frame error', () => {
    const frame = Buffer.from(encodeMethod(1, { kind: 'tx.select' }));
    frame[frame.length - 1] = 0xcd;
    const d = new FrameDecoder(4096);
    d.push(frame);
    const e = errorOf(() => d.next());
    expect(e.code).toBe(ReplyCode.FRAME_ERROR);
    expect(e.text).toContain('invalid_frame_end_marker,205');
  });

  test('takeProtocolHeader returns the first 8 bytes once they have arrived', () => {
    const d = new FrameDecoder(4096);
    d.push(PROTOCOL_HEADER.subarray(0, 5));
    expect(d.takeProtocolHeader()).toBeNull();
    d.push(Buffer.concat([PROTOCOL_HEADER.subarray(5), encodeHeartbeat()]));
    expect(d.takeProtocolHeader()).toEqual(Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'));
    expect(d.next()).toEqual({ type: FrameType.HEARTBEAT, channel: 0, payload: Buffer.alloc(0) });
  });
});

describe('encoders', () => {
  test('heartbeat', () => {
    expect([...encodeHeartbeat()]).toEqual([8, 0, 0, 0, 0, 0, 0, FRAME_END]);
  });

  test('content is split into body frames of at most frameMax - 8 bytes', () => {
    const raw = encodeProperties(PROPS);
    const fs = frames(encodeContentFrames(5, ClassId.BASIC, 10000, raw, body(10000), 4096));
    expect(fs.map((f) => [f.type, f.channel, f.payload.length])).toEqual([
      [FrameType.HEADER, 5, 12 + raw.length],
      [FrameType.BODY, 5, 4088],
      [FrameType.BODY, 5, 4088],
      [FrameType.BODY, 5, 1824],
    ]);
    const h = decodeContentHeader(fs[0]!.payload);
    expect(h).toEqual({ classId: 60, bodySize: 10000, properties: PROPS, rawProperties: raw });
    expect(Buffer.concat(fs.slice(1).map((f) => f.payload)).equals(body(10000))).toBe(true);
  });

  test('an empty body has no body frame', () => {
    const fs = frames(encodeContentFrames(1, ClassId.BASIC, 0, encodeProperties({}), Buffer.alloc(0), 4096));
    expect(fs.map((f) => f.type)).toEqual([FrameType.HEADER]);
  });

  test('a body that fills frames exactly has no empty trailing frame', () => {
    const fs = frames(encodeContentFrames(1, ClassId.BASIC, 8176, encodeProperties({}), body(8176), 4096));
    expect(fs.map((f) => f.payload.length)).toEqual([14, 4088, 4088]);
  });

  const msg: Content = {
    exchange: 'amq.topic',
    routingKey: 'sensors.kitchen.temp',
    properties: PROPS,
    body: body(5000),
  };

  describe.each([
    ['encoded from properties', msg],
    ['copied from rawProperties', { ...msg, rawProperties: encodeProperties(PROPS) }],
  ])('content methods with properties %s', (_how, m) => {
    const contentOf = (fm: number): Buffer =>
      encodeContentFrames(9, ClassId.BASIC, m.body.length, encodeProperties(m.properties), m.body, fm);

    test('encodeDelivery equals encodeMethod(basic.deliver) + content frames', () => {
      const out = encodeDelivery(9, 4096, 'ctag', 2 ** 33 + 1, true, m);
      const expected = Buffer.concat([
        encodeMethod(9, {
          kind: 'basic.deliver',
          consumerTag: 'ctag',
          deliveryTag: 2 ** 33 + 1,
          redelivered: true,
          exchange: m.exchange,
          routingKey: m.routingKey,
        }),
        contentOf(4096),
      ]);
      expect(out.equals(expected)).toBe(true);
      const fs = frames(out);
      expect(decodeMethod(fs[0]!.payload)).toMatchObject({ kind: 'basic.deliver', deliveryTag: 2 ** 33 + 1 });
      expect(decodeContentHeader(fs[1]!.payload).properties).toEqual(PROPS);
      expect(Buffer.concat(fs.slice(2).map((f) => f.payload)).equals(m.body)).toBe(true);
    });

    test('encodeGetOk equals encodeMethod(basic.get-ok) + content frames', () => {
      const expected = Buffer.concat([
        encodeMethod(9, {
          kind: 'basic.get-ok',
          deliveryTag: 3,
          redelivered: false,
          exchange: m.exchange,
          routingKey: m.routingKey,
          messageCount: 17,
        }),
        contentOf(0),
      ]);
      expect(encodeGetOk(9, 0, 3, false, 17, m).equals(expected)).toBe(true);
    });

    test('encodeReturn equals encodeMethod(basic.return) + content frames', () => {
      const expected = Buffer.concat([
        encodeMethod(9, {
          kind: 'basic.return',
          replyCode: 312,
          replyText: 'NO_ROUTE',
          exchange: m.exchange,
          routingKey: m.routingKey,
        }),
        contentOf(131072),
      ]);
      expect(encodeReturn(9, 131072, 312, 'NO_ROUTE', m).equals(expected)).toBe(true);
    });
  });

  test('a delivery with an empty body and no properties', () => {
    const empty: Content = { exchange: '', routingKey: 'q', properties: {}, body: Buffer.alloc(0) };
    const out = encodeDelivery(1, 4096, '', 1, false, empty);
    const fs = frames(out);
    expect(fs.map((f) => f.type)).toEqual([FrameType.METHOD, FrameType.HEADER]);
    expect(decodeContentHeader(fs[1]!.payload)).toEqual({
      classId: 60,
      bodySize: 0,
      properties: {},
      rawProperties: Buffer.from([0, 0]),
    });
  });

  test('a routing key longer than a shortstr is refused', () => {
    const e = errorOf(() =>
      encodeDelivery(1, 4096, 'c', 1, false, {
        exchange: '',
        routingKey: 'k'.repeat(256),
        properties: {},
        body: Buffer.alloc(0),
      }),
    );
    expect(e.code).toBe(ReplyCode.SYNTAX_ERROR);
  });
});

describe('a content header larger than the peer frame_max', () => {
  test('is an encode error, not a frame the client cannot read', () => {
    const msg: Content = { exchange: '', routingKey: 'q', properties: { headers: { pad: 'p'.repeat(4100) } }, body: Buffer.from('x') };
    expect(() => encodeDelivery(1, 4096, 'ctag', 1, false, msg)).toThrow(/content header of \d+ bytes exceeds frame_max 4096/);
    expect(() => encodeGetOk(1, 4096, 1, false, 0, msg)).toThrow(/exceeds frame_max 4096/);
    expect(encodeDelivery(1, 8192, 'ctag', 1, false, msg).length).toBeGreaterThan(4100);
  });
});
