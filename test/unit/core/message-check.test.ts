import { describe, expect, test } from 'vitest';
import { encodeProperties } from '../../../adapters/amqp/codec/properties.js';
import { Decimal, type FieldTable, type Message, type MessageProperties } from '../../../src/core/index.js';
import { MAX_PROPERTIES_BYTES, MessageRefusedError, checkMessage, propertiesLimit, propertyText } from '../../../src/core/message-check.js';

/** The limit of a broker configured with AMQP's smallest frame_max. */
const LIMIT_4K = propertiesLimit(4096);

const msg = (properties: MessageProperties, routingKey = 'rk'): Message => ({ exchange: '', routingKey, properties, body: Buffer.from('b') });

function refusal(m: Message, limit = MAX_PROPERTIES_BYTES): MessageRefusedError {
  try {
    checkMessage(m, limit);
  } catch (e) {
    if (e instanceof MessageRefusedError) return e;
    throw e;
  }
  throw new Error('not refused');
}

function nested(depth: number): FieldTable {
  let t: FieldTable = { leaf: 1 };
  for (let i = 0; i < depth; i++) t = { t };
  return t;
}

describe('messages that need nothing', () => {
  test('are returned as they are (same object: nothing allocated)', () => {
    for (const p of [{}, { contentType: 'text/plain', headers: { a: 1, b: 'x', c: [1, 'y'], d: { e: null } } }, { priority: 9, deliveryMode: 2, timestamp: 1 }]) {
      const m = msg(p);
      expect(checkMessage(m)).toBe(m);
    }
  });

  test('an AMQP message (raw properties) is only checked for size', () => {
    const m: Message = { ...msg({ contentType: 'a' }), rawProperties: encodeProperties({ contentType: 'a' }) };
    expect(checkMessage(m)).toBe(m);
    const big: Message = { ...msg({}), rawProperties: Buffer.alloc(MAX_PROPERTIES_BYTES + 1) };
    expect(refusal(big).code).toBe(406);
  });

  test('a 255-byte value fits; multi-byte characters count as bytes', () => {
    const m = msg({ contentType: 'a'.repeat(255) });
    expect(checkMessage(m)).toBe(m);
    const moved = checkMessage(msg({ contentType: 'é'.repeat(128) })); // 256 bytes
    expect(moved.properties.headers?.['x-content-type']).toBe('é'.repeat(128));
  });
});

describe('short-string properties that are too long move to headers', () => {
  test.each([
    ['contentType', 'x-content-type'],
    ['contentEncoding', 'x-content-encoding'],
    ['correlationId', 'x-correlation-id'],
    ['replyTo', 'x-reply-to'],
    ['messageId', 'x-message-id'],
    ['type', 'x-type'],
    ['appId', 'x-app-id'],
    ['clusterId', 'x-cluster-id'],
  ] as const)('%s -> %s, and the result encodes as an AMQP content header', (prop, header) => {
    const value = 'v'.repeat(300);
    const p: MessageProperties = { [prop]: value, headers: { keep: 'me' } };
    const out = checkMessage(msg(p));
    expect(out.properties[prop]).toBeUndefined();
    expect(out.properties.headers).toEqual({ keep: 'me', [header]: value });
    expect(p[prop]).toBe(value); // the publisher's object is not changed
    expect(propertyText(out.properties, prop)).toBe(value);
    expect(() => encodeProperties(out.properties)).not.toThrow();
  });

  test('a header named __proto__ survives the copy as a header', () => {
    const headers: FieldTable = {};
    Object.defineProperty(headers, '__proto__', { value: 'h', enumerable: true, writable: true, configurable: true });
    const out = checkMessage(msg({ type: 't'.repeat(256), headers }));
    expect(Object.getPrototypeOf(out.properties.headers)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(out.properties.headers, '__proto__')?.value).toBe('h');
  });
});

describe('what AMQP cannot carry is refused', () => {
  test.each<[string, Message, RegExp]>([
    ['a routing key over 255 bytes', msg({}, 'k'.repeat(256)), /routing key of 256 bytes/],
    ['a header name over 255 bytes', msg({ headers: { ['n'.repeat(256)]: 1 } }), /header name of 256 bytes/],
    ['a nested header name over 255 bytes', msg({ headers: { a: [{ ['n'.repeat(300)]: 1 }] } }), /header name of 300 bytes/],
    ['tables nested 65 deep', msg({ headers: nested(65) }), /nested more than 64 deep/],
    ['arrays nested 65 deep', msg({ headers: { a: JSON.parse('['.repeat(66) + ']'.repeat(66)) as FieldTable[] } }), /nested more than 64 deep/],
    ['a priority of 256', msg({ priority: 256 }), /priority 256/],
    ['a delivery mode of -1', msg({ deliveryMode: -1 }), /delivery_mode -1/],
    ['a timestamp that is no u64', msg({ timestamp: 2 ** 60 }), /timestamp/],
    ['a user id over 255 bytes', msg({ userId: 'u'.repeat(256) }), /user_id of 256 bytes/],
    ['a bigint beyond 64 bits', msg({ headers: { b: 1n << 64n } }), /64-bit/],
    ['an invalid date', msg({ headers: { d: new Date(NaN) } }), /timestamp/],
    ['a decimal that does not fit', msg({ headers: { d: new Decimal(300, 1) } }), /decimal/],
    ['properties over 131052 bytes (frame_max 131072)', msg({ headers: { a: 'x'.repeat(MAX_PROPERTIES_BYTES) } }), /message properties of \d+ bytes \(at most 131052\)/],
    ['moved values that push the block over the limit', msg({ contentType: 'c'.repeat(66000), type: 't'.repeat(66000) }), /message properties of/],
  ])('%s', (_name, m, text) => {
    const e = refusal(m);
    expect(e.code).toBe(406);
    expect(e.text).toMatch(text);
  });

  test('64 levels of nesting are accepted, and encode', () => {
    const out = checkMessage(msg({ headers: nested(64) }));
    expect(() => encodeProperties(out.properties)).not.toThrow();
  });

  test('short strings are counted exactly when their quick bound is over the limit', () => {
    // 50 headers of 60 ASCII characters: ~3400 bytes, though three bytes a unit would be ~9000.
    const headers: FieldTable = {};
    for (let i = 0; i < 50; i++) headers[`k${i}`] = 'a'.repeat(60);
    const m = msg({ headers, contentType: 'c'.repeat(80) });
    expect(checkMessage(m, LIMIT_4K)).toBe(m);
    expect(encodeProperties(m.properties).length).toBeLessThanOrEqual(LIMIT_4K);
    const moved = checkMessage(msg({ headers, contentType: 'c'.repeat(300) }), LIMIT_4K);
    expect(moved.properties.headers?.['x-content-type']).toBe('c'.repeat(300));
    expect(encodeProperties(moved.properties).length).toBeLessThanOrEqual(LIMIT_4K);
  });

  test.each([
    ['the default frame_max', MAX_PROPERTIES_BYTES],
    ['frame_max 4096', LIMIT_4K],
  ])('the size limit matches the AMQP encoder at %s: the largest accepted block fills one content header frame', (_name, limit) => {
    // flags (2) + table length (4) + key length (1) + 'a' + tag (1) + string length (4) = 13
    const fits = msg({ headers: { a: 'x'.repeat(limit - 13) } });
    expect(checkMessage(fits, limit)).toBe(fits);
    expect(encodeProperties(fits.properties).length).toBe(limit);
    expect(refusal(msg({ headers: { a: 'x'.repeat(limit - 12) } }), limit).code).toBe(406);
  });

  test('the limit follows the frame_max the broker offers, never below what fits AMQP\'s smallest frame', () => {
    expect(propertiesLimit(131072)).toBe(MAX_PROPERTIES_BYTES);
    expect(propertiesLimit(4096)).toBe(4076);
    expect(propertiesLimit(1024)).toBe(4076);
  });
});
