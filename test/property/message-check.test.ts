/**
 * In-process property test of the core's message check against every encoder: any message the
 * check accepts can be encoded for an AMQP consumer at frame_max 4096, an MQTT 5 and an MQTT 3.1.1
 * subscriber, a STOMP 1.0/1.1/1.2 subscriber and the store, and comes back from the store equal;
 * anything it refuses is refused with MessageRefusedError, never another error.
 * Seed and runs: WARREN_FUZZ_SEED / WARREN_FUZZ_RUNS as in cross-protocol.test.ts.
 */
import * as fc from 'fast-check';
import { expect, test } from 'vitest';
import { encodeDelivery } from '../../adapters/amqp/codec/frames.js';
import { decodeProperties, encodeProperties } from '../../adapters/amqp/codec/properties.js';
import { encodePublish } from '../../adapters/mqtt/codec.js';
import { toMqttProperties } from '../../adapters/mqtt/properties.js';
import { Escaping } from '../../adapters/stomp/codec/constants.js';
import { propertyLines } from '../../adapters/stomp/headers.js';
import { Decimal, type FieldTable, type FieldValue, type Message, type MessageProperties } from '../../src/core/index.js';
import { MAX_PROPERTIES_BYTES, MessageRefusedError, checkMessage } from '../../src/core/message-check.js';
import { decodeMessage, encodeMessage } from '../../src/store/codec.js';

const seedEnv = process.env['WARREN_FUZZ_SEED'];
const SEED = seedEnv === undefined || seedEnv === '' ? 20_261_202 : seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv);
const RUNS = Number(process.env['WARREN_FUZZ_RUNS'] ?? 40) * 25;
console.log(`message-check property test: WARREN_FUZZ_SEED=${SEED} (${RUNS} messages)`);

const text = (max: number): fc.Arbitrary<string> => fc.string({ unit: 'binary', maxLength: max });
/** Mostly short strings, sometimes around and beyond the 255-byte short-string limit. */
const str = fc.oneof({ weight: 6, arbitrary: text(20) }, { weight: 1, arbitrary: text(120) }, { weight: 1, arbitrary: fc.integer({ min: 250, max: 300 }).map((n) => 'é'.repeat(n >> 1) + 'a'.repeat(n & 1)) });

const { value } = fc.letrec<{ value: FieldValue; table: FieldTable }>((tie) => ({
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

const properties: fc.Arbitrary<MessageProperties> = fc.record(
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

const messages: fc.Arbitrary<Message> = fc.record({
  exchange: fc.constant('amq.topic'),
  routingKey: fc.oneof({ weight: 4, arbitrary: fc.stringMatching(/^[a-z]{1,8}(\.[a-z]{1,8}){0,3}$/) }, text(100)),
  properties,
  body: fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
});

test('a message the core accepts can be encoded for every protocol and the store; a refusal is a MessageRefusedError', () => {
  let accepted = 0;
  let refused = 0;
  fc.assert(
    fc.property(messages, (m) => {
      let checked: Message;
      try {
        checked = checkMessage(m);
      } catch (e) {
        expect(e).toBeInstanceOf(MessageRefusedError);
        refused++;
        return;
      }
      accepted++;
      const p = checked.properties;
      const raw = encodeProperties(p);
      expect(raw.length).toBeLessThanOrEqual(MAX_PROPERTIES_BYTES);
      // An AMQP consumer at the smallest frame_max.
      encodeDelivery(1, 4096, 'amq.ctag-x', 1, false, checked);
      expect(decodeProperties(raw).correlationId).toBe(p.correlationId);
      // MQTT 5 and 3.1.1 (the routing key is the topic when it is a valid MQTT topic; any will do for the encoder).
      encodePublish(5, 't', checked.body, 1, 1, false, false, toMqttProperties(p, 0, 0));
      encodePublish(4, 't', checked.body, 1, 1, false, false, undefined);
      for (const esc of [Escaping.NONE, Escaping.V11, Escaping.V12]) propertyLines(p, esc);
      // The store: what recovery reads back is what was written.
      const back = decodeMessage(encodeMessage(checked));
      expect(back.properties).toEqual(p);
      expect(back.routingKey).toBe(checked.routingKey);
    }),
    { seed: SEED, numRuns: RUNS },
  );
  console.log(`message-check property test: ${accepted} accepted, ${refused} refused`);
  expect(accepted).toBeGreaterThan(RUNS / 10);
});
