import { describe, expect, test } from 'vitest';
import { BasicFlag } from '../../../../../adapters/amqp/codec/constants.js';
import {
  decodeContentHeader,
  decodeProperties,
  encodeProperties,
} from '../../../../../adapters/amqp/codec/properties.js';
import { BrokerError, ReplyCode } from '../../../../../src/core/errors.js';
import { Decimal } from '../../../../../src/core/types.js';
import type { MessageProperties } from '../../../../../src/core/types.js';

const ALL: MessageProperties = {
  contentType: 'application/json',
  contentEncoding: 'gzip',
  headers: { 'x-death': [{ count: 1, reason: 'expired' }], n: 2 ** 40, d: new Decimal(2, 5), flag: true },
  deliveryMode: 2,
  priority: 9,
  correlationId: 'corr-1',
  replyTo: 'amq.rabbitmq.reply-to',
  expiration: '60000',
  messageId: 'msg-ü',
  timestamp: 1700000000,
  type: 'order.created',
  userId: 'guest',
  appId: 'shop',
  clusterId: 'c1',
};

/** A content header payload: class 60, weight 0, body size, then the property bytes. */
function headerPayload(bodySize: bigint, props: Buffer, classId = 60, weight = 0): Buffer {
  const fixed = Buffer.alloc(12);
  fixed.writeUInt16BE(classId, 0);
  fixed.writeUInt16BE(weight, 2);
  fixed.writeBigUInt64BE(bodySize, 4);
  return Buffer.concat([fixed, props]);
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

describe('basic properties', () => {
  test('all fourteen properties round-trip', () => {
    expect(decodeProperties(encodeProperties(ALL))).toEqual(ALL);
  });

  test('no properties encode as a zero flag word', () => {
    expect([...encodeProperties({})]).toEqual([0, 0]);
    expect(decodeProperties(Buffer.from([0, 0]))).toEqual({});
  });

  test('flags follow the spec order, most significant bit first', () => {
    expect(encodeProperties({ contentType: 'a' }).readUInt16BE(0)).toBe(0x8000);
    expect(encodeProperties({ clusterId: 'a' }).readUInt16BE(0)).toBe(0x0004);
    const flags = encodeProperties(ALL).readUInt16BE(0);
    expect(flags).toBe(0xfffc);
  });

  test('values follow in the spec order', () => {
    const wire = encodeProperties({ deliveryMode: 2, contentType: 'a', timestamp: 1 });
    expect([...wire]).toEqual([
      (BasicFlag.CONTENT_TYPE | BasicFlag.DELIVERY_MODE | BasicFlag.TIMESTAMP) >> 8,
      (BasicFlag.CONTENT_TYPE | BasicFlag.DELIVERY_MODE | BasicFlag.TIMESTAMP) & 0xff,
      1, 0x61, // content-type "a"
      2, // delivery-mode
      0, 0, 0, 0, 0, 0, 0, 1, // timestamp
    ]);
  });

  test('undefined and null values are absent', () => {
    const p = { contentType: undefined, priority: null } as unknown as MessageProperties;
    expect([...encodeProperties(p)]).toEqual([0, 0]);
  });

  test('a shortstr property longer than 255 bytes is refused, not truncated', () => {
    expect(errorOf(() => encodeProperties({ correlationId: 'x'.repeat(256) })).code).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('the continuation bit is ignored like RabbitMQ does', () => {
    expect(decodeProperties(Buffer.from([0x10, 0x01, 2]))).toEqual({ deliveryMode: 2 });
  });
});

describe('decodeContentHeader', () => {
  test('reads class, body size, properties and the raw property bytes', () => {
    const props = encodeProperties(ALL);
    const h = decodeContentHeader(headerPayload(123456789012n, props));
    expect(h.classId).toBe(60);
    expect(h.bodySize).toBe(123456789012);
    expect(h.properties).toEqual(ALL);
    expect(h.rawProperties).toEqual(props);
  });

  test('a header without properties', () => {
    const h = decodeContentHeader(headerPayload(0n, Buffer.from([0, 0])));
    expect(h).toEqual({ classId: 60, bodySize: 0, properties: {}, rawProperties: Buffer.from([0, 0]) });
  });

  test('rawProperties owns its memory', () => {
    const payload = headerPayload(5n, encodeProperties({ contentType: 'text/plain' }));
    const h = decodeContentHeader(payload);
    payload.fill(0);
    expect(decodeProperties(h.rawProperties)).toEqual({ contentType: 'text/plain' });
  });

  test('the same property bytes as the previous header share its properties; other bytes do not', () => {
    const first = decodeContentHeader(headerPayload(5n, encodeProperties(ALL)));
    const same = decodeContentHeader(headerPayload(7n, encodeProperties(ALL)), first);
    expect(same.bodySize).toBe(7);
    expect(same.properties).toBe(first.properties);
    expect(same.rawProperties).toBe(first.rawProperties);

    const changed = decodeContentHeader(headerPayload(5n, encodeProperties({ ...ALL, priority: 8 })), same);
    expect(changed.properties).not.toBe(first.properties);
    expect(changed.properties).toEqual({ ...ALL, priority: 8 });
    // Same length, one byte different (the last of the cluster id).
    const raw = encodeProperties(ALL);
    raw[raw.length - 1] = raw[raw.length - 1]! ^ 1;
    const flipped = decodeContentHeader(headerPayload(5n, raw), first);
    expect(flipped.properties).not.toBe(first.properties);
    expect(flipped.properties.clusterId).not.toBe(ALL.clusterId);
    // Still validated as any header: a truncation after a shared one is an error.
    expect(() => decodeContentHeader(headerPayload(5n, encodeProperties(ALL)).subarray(0, 20), first)).toThrow(BrokerError);
  });

  test('a body size beyond Number.MAX_SAFE_INTEGER is a frame error', () => {
    const e = errorOf(() => decodeContentHeader(headerPayload(2n ** 53n, Buffer.from([0, 0]))));
    expect(e.code).toBe(ReplyCode.FRAME_ERROR);
    expect(e.text).toContain('9007199254740992');
  });

  test('a class other than basic is an unexpected frame', () => {
    expect(errorOf(() => decodeContentHeader(headerPayload(0n, Buffer.from([0, 0]), 50))).code).toBe(
      ReplyCode.UNEXPECTED_FRAME,
    );
  });

  test('a non-zero weight is a frame error', () => {
    expect(errorOf(() => decodeContentHeader(headerPayload(0n, Buffer.from([0, 0]), 60, 1))).code).toBe(
      ReplyCode.FRAME_ERROR,
    );
  });

  test('every truncation is a BrokerError, never a RangeError', () => {
    const full = headerPayload(10n, encodeProperties(ALL));
    for (let n = 0; n < full.length; n++) {
      const e = errorOf(() => decodeContentHeader(Buffer.from(full.subarray(0, n))));
      expect(e.code).toBe(ReplyCode.FRAME_ERROR);
    }
  });

  test('trailing bytes after the last property are a frame error', () => {
    const payload = headerPayload(1n, Buffer.concat([encodeProperties({ priority: 1 }), Buffer.from([9])]));
    expect(errorOf(() => decodeContentHeader(payload)).code).toBe(ReplyCode.FRAME_ERROR);
  });

  test('flags announcing absent values are a frame error', () => {
    expect(errorOf(() => decodeContentHeader(headerPayload(1n, Buffer.from([0xff, 0xfc])))).code).toBe(
      ReplyCode.FRAME_ERROR,
    );
  });
});
