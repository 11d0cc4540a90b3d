/**
 * fast-check arbitraries of messages as publishers may hand them to the core: strings around the
 * short-string limit, every field value type, tables nested around the depth limit, property values
 * in and out of range. The core's message check refuses some of them.
 */
import * as fc from 'fast-check';
import { Decimal, type FieldTable, type FieldValue, type Message, type MessageProperties } from '../../src/core/index.js';

export const text = (max: number): fc.Arbitrary<string> => fc.string({ unit: 'binary', maxLength: max });
/** Mostly short strings, sometimes around and beyond the 255-byte short-string limit. */
export const str = fc.oneof({ weight: 6, arbitrary: text(20) }, { weight: 1, arbitrary: text(120) }, { weight: 1, arbitrary: fc.integer({ min: 250, max: 300 }).map((n) => 'é'.repeat(n >> 1) + 'a'.repeat(n & 1)) });

export const { value } = fc.letrec<{ value: FieldValue; table: FieldTable }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    str,
    fc.integer(),
    fc.double(),
    fc.oneof({ weight: 9, arbitrary: fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }) }, fc.bigInt({ min: -(1n << 64n), max: 1n << 64n })),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 40 }).map((b) => Buffer.from(b)),
    fc.integer({ min: -1, max: 2 ** 40 }).map((s) => new Date(s * 1000)),
    fc.oneof(
      { weight: 9, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: -(2 ** 31), max: 2 ** 32 - 1 })) },
      fc.tuple(fc.integer({ min: -1, max: 300 }), fc.integer({ min: -(2 ** 32), max: 2 ** 33 })),
    ).map(([s, v]) => new Decimal(s, v)),
    fc.array(tie('value'), { maxLength: 4 }),
    tie('table'),
  ),
  table: fc.dictionary(str, tie('value'), { maxKeys: 5 }) as fc.Arbitrary<FieldTable>,
}));

/** A chain of `n` nested tables: around the 64-level limit. */
const deep = fc.integer({ min: 60, max: 70 }).map((n) => {
  let t: FieldTable = { leaf: 'x' };
  for (let i = 0; i < n; i++) t = { t };
  return t;
});

export const properties: fc.Arbitrary<MessageProperties> = fc.record(
  {
    contentType: str,
    contentEncoding: str,
    headers: fc.oneof({ weight: 8, arbitrary: fc.dictionary(str, value, { maxKeys: 8 }) as fc.Arbitrary<FieldTable> }, { weight: 1, arbitrary: deep }),
    deliveryMode: fc.integer({ min: -1, max: 256 }),
    priority: fc.integer({ min: -1, max: 256 }),
    correlationId: str,
    replyTo: str,
    expiration: fc.integer({ min: 0, max: 9_999_999_999 }).map(String),
    messageId: str,
    timestamp: fc.oneof({ weight: 9, arbitrary: fc.integer({ min: 0, max: 2 ** 40 }) }, fc.constant(2 ** 60)),
    type: str,
    userId: str,
    appId: str,
    clusterId: str,
  },
  { requiredKeys: [] },
);

export const messages: fc.Arbitrary<Message> = fc.record({
  exchange: fc.constant('amq.topic'),
  routingKey: fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[a-z]{1,8}(\.[a-z]{1,8}){0,3}$/) }, text(100)),
  properties,
  body: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
});
