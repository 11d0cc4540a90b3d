import { describe, expect, test } from 'vitest';
import { encodeProperties } from '../../../adapters/amqp/codec/properties.js';
import { Decimal, type FieldTable, type Message, type MessageProperties } from '../../../src/core/index.js';
import { MAX_PROPERTIES_BYTES, MessageRefusedError, checkMessage, propertyText } from '../../../src/core/message-check.js';

const msg = (properties: MessageProperties, routingKey = 'rk'): Message => ({ exchange: '', routingKey, properties, body: Buffer.from('b') });

function refusal(m: Message): MessageRefusedError {
  try {
    checkMessage(m);
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
    ['properties over 4076 bytes', msg({ headers: { a: 'x'.repeat(MAX_PROPERTIES_BYTES) } }), /message properties of \d+ bytes \(at most 4076\)/],
    ['moved values that push the block over 4076 bytes', msg({ contentType: 'c'.repeat(2100), type: 't'.repeat(2100) }), /message properties of/],
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
    expect(checkMessage(m)).toBe(m);
    expect(encodeProperties(m.properties).length).toBeLessThanOrEqual(MAX_PROPERTIES_BYTES);
    const moved = checkMessage(msg({ headers, contentType: 'c'.repeat(300) }));
    expect(moved.properties.headers?.['x-content-type']).toBe('c'.repeat(300));
    expect(encodeProperties(moved.properties).length).toBeLessThanOrEqual(MAX_PROPERTIES_BYTES);
  });

  test('the size limit matches the AMQP encoder: the largest accepted block is exactly 4076 bytes', () => {
    // flags (2) + table length (4) + key length (1) + 'a' + tag (1) + string length (4) = 13
    const fits = msg({ headers: { a: 'x'.repeat(MAX_PROPERTIES_BYTES - 13) } });
    expect(checkMessage(fits)).toBe(fits);
    expect(encodeProperties(fits.properties).length).toBe(MAX_PROPERTIES_BYTES);
    expect(refusal(msg({ headers: { a: 'x'.repeat(MAX_PROPERTIES_BYTES - 12) } })).code).toBe(406);
  });
});
