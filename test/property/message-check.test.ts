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
import type { Message } from '../../src/core/index.js';
import { MAX_PROPERTIES_BYTES, MessageRefusedError, checkMessage } from '../../src/core/message-check.js';
import { decodeMessage, encodeMessage } from '../../src/store/codec.js';
import { messages } from '../helpers/message-arbitraries.js';

const seedEnv = process.env['WARREN_FUZZ_SEED'];
const SEED = seedEnv === undefined || seedEnv === '' ? 20_261_202 : seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv);
const RUNS = Number(process.env['WARREN_FUZZ_RUNS'] ?? 40) * 25;
console.log(`message-check property test: WARREN_FUZZ_SEED=${SEED} (${RUNS} messages)`);

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
