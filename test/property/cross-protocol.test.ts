/**
 * Cross-protocol property test: random messages with random properties are published on every
 * protocol (AMQP, MQTT 3.1.1, MQTT 5, STOMP, the management HTTP API) and consumed on every protocol
 * (AMQP with frame_max 4096, MQTT 3.1.1, MQTT 5, STOMP 1.2). Each message must either be refused at
 * publish with the protocol's error, or reach every consumer intact as DESIGN.md's protocol mapping
 * defines it: never lost without a word, never a crash.
 *
 *   WARREN_FUZZ_SEED  the fast-check seed (an integer, or `random`); fixed by default
 *   WARREN_FUZZ_RUNS  how many messages (default 40)
 *
 * The seed in use is printed, so a failure found with a random seed can be replayed.
 */
import { connect, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import * as fc from 'fast-check';
import type { IPublishPacket, MqttClient } from 'mqtt';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { replyToHeader } from '../../adapters/stomp/destination.js';
import { OVERFLOW_HEADERS, type OverflowProperty } from '../../src/core/index.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';
import { RawMqtt, connectMqtt, mqttUrl } from '../helpers/mqtt.js';
import { RawStomp, type ReceivedFrame } from '../helpers/stomp.js';

const DEFAULT_SEED = 20_261_201;
const seedEnv = process.env['WARREN_FUZZ_SEED'];
const SEED = seedEnv === undefined || seedEnv === '' ? DEFAULT_SEED : seedEnv === 'random' ? Math.floor(Math.random() * 2 ** 31) : Number(seedEnv);
const RUNS = Number(process.env['WARREN_FUZZ_RUNS'] ?? 40);
if (!Number.isInteger(SEED) || !Number.isInteger(RUNS) || RUNS < 1) throw new Error('WARREN_FUZZ_SEED must be an integer or "random", WARREN_FUZZ_RUNS a positive integer');
console.log(`cross-protocol property test: WARREN_FUZZ_SEED=${SEED} WARREN_FUZZ_RUNS=${RUNS}`);

type Publisher = 'amqp' | 'mqtt3' | 'mqtt5' | 'stomp' | 'http';
const STRING_PROPS = ['contentType', 'contentEncoding', 'correlationId', 'replyTo', 'messageId', 'type', 'appId'] as const satisfies readonly OverflowProperty[];
type StringProp = (typeof STRING_PROPS)[number];

/** One generated message, limited to what its publisher's protocol can express. */
interface Spec {
  publisher: Publisher;
  body: Uint8Array;
  persistent: boolean;
  strings: Partial<Record<StringProp, string>>;
  priority?: number | undefined;
  /** ms; a multiple of 1000 for MQTT 5 (its expiry is in seconds). */
  expiration?: number | undefined;
  timestamp?: number | undefined;
  /** Strings on every protocol; numbers and booleans too where the protocol has them (AMQP, JSON). */
  headers: [string, HeaderValue][];
}

type HeaderValue = string | number | boolean;

// ---- generators ---------------------------------------------------------------------------------

/** Any code point but U+0000 (MQTT forbids it in strings [MQTT-1.5.4-2]). */
const text = (min: number, max: number): fc.Arbitrary<string> => fc.string({ unit: 'binary', minLength: min, maxLength: max }).map((s) => s.replaceAll('\u0000', ''));
const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
/** Mostly short, sometimes longer than an AMQP short string. */
const value = (allowLong: boolean): fc.Arbitrary<string> =>
  allowLong ? fc.oneof({ weight: 4, arbitrary: text(0, 30) }, { weight: 1, arbitrary: text(90, 300) }) : text(0, 60).filter((s) => bytes(s) <= 255);
const replyTo = (allowLong: boolean): fc.Arbitrary<string> =>
  fc.stringMatching(allowLong ? /^[a-z0-9.-]{1,300}$/ : /^[a-z0-9.-]{1,60}$/).filter((s) => !s.startsWith('/'));
/** Header names never collide with protocol-owned names: they all start with 'h'. */
const headerName = (allowLong: boolean): fc.Arbitrary<string> =>
  allowLong
    ? fc.oneof({ weight: 9, arbitrary: text(0, 20).map((s) => `h${s}`) }, { weight: 1, arbitrary: fc.integer({ min: 200, max: 300 }).map((n) => `h${'n'.repeat(n)}`) })
    : text(0, 20).map((s) => `h${s}`).filter((s) => bytes(s) <= 255);
const headers = (allowLong: boolean, typed = false): fc.Arbitrary<[string, HeaderValue][]> => {
  const scalar: fc.Arbitrary<HeaderValue> = typed
    ? fc.oneof(
        { weight: 3, arbitrary: value(allowLong) },
        fc.integer({ min: -(2 ** 40), max: 2 ** 40 }),
        // amqplib writes any integral number as int64 (and throws beyond it): those stay in range
        fc.double({ noNaN: true, noDefaultInfinity: true }).filter((d) => !Object.is(d, -0) && (!Number.isInteger(d) || Number.isSafeInteger(d))),
        fc.boolean(),
      )
    : value(allowLong);
  return fc.uniqueArray(fc.tuple(headerName(allowLong), scalar), { maxLength: 5, selector: ([k]) => k });
};
const body = fc.oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 2000 }));

function full(publisher: 'amqp' | 'stomp' | 'http'): fc.Arbitrary<Spec> {
  const long = publisher !== 'amqp';
  const strings = fc.record(
    {
      contentType: value(long),
      contentEncoding: value(long),
      correlationId: value(long),
      replyTo: replyTo(long),
      messageId: value(long),
      type: value(long),
      appId: value(long),
    },
    { requiredKeys: [] },
  );
  return fc.record({
    publisher: fc.constant(publisher),
    body,
    persistent: fc.boolean(),
    strings,
    priority: fc.option(fc.integer({ min: 0, max: 9 }), { nil: undefined }),
    expiration: fc.option(fc.integer({ min: 60_000, max: 1_000_000_000 }), { nil: undefined }),
    timestamp: fc.option(fc.integer({ min: 0, max: 2 ** 40 }), { nil: undefined }),
    headers: headers(long, publisher !== 'stomp'),
  });
}

const mqtt5: fc.Arbitrary<Spec> = fc.record({
  publisher: fc.constant('mqtt5' as const),
  body,
  persistent: fc.boolean(),
  strings: fc.record({ contentType: value(true), correlationId: value(true) }, { requiredKeys: [] }),
  expiration: fc.option(fc.integer({ min: 60, max: 1_000_000 }).map((s) => s * 1000), { nil: undefined }),
  headers: headers(true),
});

const mqtt3: fc.Arbitrary<Spec> = fc.record({ publisher: fc.constant('mqtt3' as const), body, persistent: fc.boolean(), strings: fc.constant({}), headers: fc.constant([]) });

const specs: fc.Arbitrary<Spec> = fc.oneof(full('amqp'), full('stomp'), full('http'), mqtt5, mqtt3);

/** Small enough that refusing it would be a bug: names fit, and the whole block is far below 4076 bytes. */
function mustBeAccepted(s: Spec): boolean {
  let total = 0;
  for (const v of Object.values(s.strings)) total += bytes(v) + 25;
  for (const [k, v] of s.headers) {
    if (bytes(k) > 255) return false;
    total += bytes(k) + bytes(String(v)) + 10;
  }
  return total < 3000;
}

// ---- the broker, consumers and publishers -------------------------------------------------------

let tb: TestBroker;
let amqp: ChannelModel;
let confirm: ConfirmChannel | undefined;
let stompPub: RawStomp | undefined;
let mqtt3Sub: MqttClient;
let mqtt5Sub: MqttClient;
let stompSub: RawStomp;
const amqpGot = new Map<string, ConsumeMessage>();
const mqtt3Got = new Map<string, IPublishPacket>();
const mqtt5Got = new Map<string, IPublishPacket>();
let stompSeen = 0;
const stompGot = new Map<string, ReceivedFrame>();

beforeAll(async () => {
  tb = await startTestBroker();
  // The smallest frame_max a client may negotiate: every accepted message must still fit.
  amqp = await connect(`${tb.amqpUrl}?frameMax=4096`);
  amqp.on('error', () => undefined);
  const ch = await amqp.createChannel();
  // Durable, so that persistent messages also go through the store's encoder.
  const q = await ch.assertQueue('prop-amqp', { durable: true, autoDelete: true });
  await ch.bindQueue(q.queue, 'amq.topic', 'prop.#');
  await ch.consume(q.queue, (m) => {
    if (m !== null) amqpGot.set(m.fields.routingKey, m);
  }, { noAck: true });
  mqtt3Sub = await connectMqtt(mqttUrl(tb), { protocolVersion: 4, clientId: 'prop-mqtt3' });
  mqtt5Sub = await connectMqtt(mqttUrl(tb), { protocolVersion: 5, clientId: 'prop-mqtt5' });
  mqtt3Sub.on('message', (topic, _p, packet) => mqtt3Got.set(topic, packet));
  mqtt5Sub.on('message', (topic, _p, packet) => mqtt5Got.set(topic, packet));
  await mqtt3Sub.subscribeAsync('prop/#', { qos: 1 });
  await mqtt5Sub.subscribeAsync('prop/#', { qos: 1 });
  stompSub = await RawStomp.connected(tb.broker.ports.stomp!);
  stompSub.send('SUBSCRIBE', { destination: '/topic/prop.#', id: 'prop', receipt: 'subscribed' });
  await stompSub.next('RECEIPT');
}, 30_000);

afterAll(async () => {
  stompPub?.destroy();
  stompSub?.destroy();
  await mqtt3Sub?.endAsync();
  await mqtt5Sub?.endAsync();
  await amqp?.close().catch(() => undefined);
  await tb?.stop();
});

/** MESSAGE frames the STOMP subscriber has received so far, by routing key. */
function drainStomp(): void {
  const frames = stompSub.frames;
  for (; stompSeen < frames.length; stompSeen++) {
    const f = frames[stompSeen]!;
    if (f.command === 'MESSAGE') stompGot.set(f.headers['destination']!.slice('/topic/'.length), f);
  }
}

function received(key: string): boolean {
  drainStomp();
  const topic = key.replaceAll('.', '/');
  return amqpGot.has(key) && mqtt3Got.has(topic) && mqtt5Got.has(topic) && stompGot.has(key);
}

function anyReceived(key: string): boolean {
  drainStomp();
  const topic = key.replaceAll('.', '/');
  return amqpGot.has(key) || mqtt3Got.has(topic) || mqtt5Got.has(topic) || stompGot.has(key);
}

/** Publishes on the spec's protocol; resolves to true when the broker accepted the message. */
async function publish(s: Spec, key: string): Promise<boolean> {
  const b = Buffer.from(s.body);
  const st = s.strings;
  switch (s.publisher) {
    case 'amqp': {
      confirm ??= await amqp.createConfirmChannel();
      const c = confirm;
      return new Promise<boolean>((resolve) => {
        const onError = (): void => {
          confirm = undefined;
          resolve(false);
        };
        c.once('error', onError);
        c.publish(
          'amq.topic',
          key,
          b,
          {
            persistent: s.persistent,
            ...st,
            priority: s.priority,
            expiration: s.expiration === undefined ? undefined : String(s.expiration),
            timestamp: s.timestamp,
            headers: Object.fromEntries(s.headers),
          },
          (err) => {
            c.off('error', onError);
            resolve(err === null || err === undefined);
          },
        );
      });
    }
    case 'stomp': {
      if (stompPub === undefined || stompPub.closed) stompPub = await RawStomp.connected(tb.broker.ports.stomp!);
      const h: [string, string][] = [['destination', `/topic/${key}`]];
      const names: Record<StringProp, string> = {
        contentType: 'content-type',
        contentEncoding: 'content-encoding',
        correlationId: 'correlation-id',
        replyTo: 'reply-to',
        messageId: 'amqp-message-id',
        type: 'type',
        appId: 'app-id',
      };
      for (const p of STRING_PROPS) if (st[p] !== undefined) h.push([names[p], st[p]]);
      if (s.persistent) h.push(['persistent', 'true']);
      if (s.priority !== undefined) h.push(['priority', String(s.priority)]);
      if (s.expiration !== undefined) h.push(['expiration', String(s.expiration)]);
      if (s.timestamp !== undefined) h.push(['timestamp', String(s.timestamp)]);
      for (const [k, v] of s.headers) h.push([k, String(v)]);
      h.push(['receipt', key]);
      stompPub.send('SEND', h, b);
      const f = await stompPub.next();
      if (f.command === 'RECEIPT') return true;
      expect(f.command).toBe('ERROR');
      stompPub = undefined;
      return false;
    }
    case 'http': {
      const props: Record<string, unknown> = { delivery_mode: s.persistent ? 2 : 1, headers: Object.fromEntries(s.headers) };
      const json: Record<StringProp, string> = {
        contentType: 'content_type',
        contentEncoding: 'content_encoding',
        correlationId: 'correlation_id',
        replyTo: 'reply_to',
        messageId: 'message_id',
        type: 'type',
        appId: 'app_id',
      };
      for (const p of STRING_PROPS) if (st[p] !== undefined && st[p] !== '') props[json[p]] = st[p];
      if (s.priority !== undefined) props['priority'] = s.priority;
      if (s.expiration !== undefined) props['expiration'] = String(s.expiration);
      if (s.timestamp !== undefined) props['timestamp'] = s.timestamp;
      const r = await mgmt(tb.broker.ports.http!).post('/exchanges/%2F/amq.topic/publish', {
        routing_key: key,
        payload: b.toString('base64'),
        payload_encoding: 'base64',
        properties: props,
      });
      if (r.status === 200) {
        expect(r.body).toEqual({ routed: true });
        return true;
      }
      expect(r.status).toBe(400);
      return false;
    }
    case 'mqtt3':
    case 'mqtt5': {
      const v5 = s.publisher === 'mqtt5';
      const r = await RawMqtt.connected(tb.broker.ports.mqtt!, v5 ? 5 : 4);
      try {
        const properties: NonNullable<IPublishPacket['properties']> = {};
        if (st.contentType !== undefined) properties.contentType = st.contentType;
        if (st.correlationId !== undefined) properties.correlationData = Buffer.from(st.correlationId);
        if (s.expiration !== undefined) properties.messageExpiryInterval = s.expiration / 1000;
        if (s.headers.length > 0) properties.userProperties = Object.fromEntries(s.headers.map(([k, v]) => [k, String(v)]));
        const qos = s.persistent ? 1 : 0;
        r.send({ cmd: 'publish', topic: key.replaceAll('.', '/'), payload: b, qos, messageId: qos === 1 ? 1 : undefined, dup: false, retain: false, ...(v5 ? { properties } : {}) } as IPublishPacket);
        if (qos === 1) {
          const ack = await waitFor(() => r.packets.find((p) => p.cmd === 'puback') ?? (r.isClosed ? 'closed' : undefined), 5000, 'PUBACK');
          if (ack === 'closed') return false;
          const code = ack.cmd === 'puback' ? (ack.reasonCode ?? 0) : -1;
          if (code === 0) return true;
          expect(code).toBe(0x83);
          return false;
        }
        // QoS 0 has no acknowledgement: PINGRESP after it means it was taken, a DISCONNECT that it was not.
        r.send({ cmd: 'pingreq' });
        const next = await waitFor(() => r.packets.find((p) => p.cmd === 'pingresp' || p.cmd === 'disconnect') ?? (r.isClosed ? 'closed' : undefined), 5000, 'PINGRESP');
        if (next !== 'closed' && next.cmd === 'pingresp') return true;
        if (next !== 'closed') expect(next.cmd === 'disconnect' && next.reasonCode).toBe(0x83);
        return false;
      } finally {
        r.end();
      }
    }
  }
}

// ---- what each consumer must see ----------------------------------------------------------------

const long = (v: string): boolean => bytes(v) > 255;

function checkAmqp(s: Spec, m: ConsumeMessage): void {
  const p = m.properties as unknown as Record<string, unknown>;
  const h = m.properties.headers ?? {};
  expect(m.content.equals(Buffer.from(s.body))).toBe(true);
  for (const k of STRING_PROPS) {
    const v = s.strings[k];
    if (v === undefined || (s.publisher === 'http' && v === '')) continue;
    if (!long(v)) expect(p[k], k).toBe(v);
    else {
      expect(p[k], k).toBeUndefined();
      const stored: unknown = h[OVERFLOW_HEADERS[k]];
      // MQTT correlation data that is no short string stays bytes.
      expect(Buffer.isBuffer(stored) ? stored.toString('utf8') : stored, OVERFLOW_HEADERS[k]).toBe(v);
    }
  }
  if (s.priority !== undefined) expect(m.properties.priority).toBe(s.priority);
  if (s.expiration !== undefined) expect(m.properties.expiration).toBe(String(s.expiration));
  if (s.timestamp !== undefined) expect(m.properties.timestamp).toBe(s.timestamp);
  expect(m.properties.deliveryMode === 2).toBe(s.persistent);
  for (const [k, v] of s.headers) expect(h[k], `header ${k}`).toBe(v);
}

function checkMqtt(s: Spec, p: IPublishPacket, v5: boolean): void {
  expect(Buffer.from(p.payload).equals(Buffer.from(s.body))).toBe(true);
  expect(p.qos).toBe(s.persistent ? 1 : 0);
  if (!v5) return;
  const props = p.properties ?? {};
  const st = s.strings;
  if (st.contentType !== undefined && !(s.publisher === 'http' && st.contentType === '')) expect(props.contentType).toBe(st.contentType);
  if (st.correlationId !== undefined && !(s.publisher === 'http' && st.correlationId === '')) {
    expect(Buffer.from(props.correlationData ?? []).toString('utf8')).toBe(st.correlationId);
  }
  if (s.expiration !== undefined) {
    const left = props.messageExpiryInterval ?? 0;
    expect(left).toBeGreaterThan(Math.ceil(s.expiration / 1000) - 30);
    expect(left).toBeLessThanOrEqual(Math.ceil(s.expiration / 1000));
  }
  const up = props.userProperties ?? {};
  for (const [k, v] of s.headers) expect(up[k], `user property ${k}`).toBe(String(v));
}

function checkStomp(s: Spec, f: ReceivedFrame): void {
  expect(f.body.equals(Buffer.from(s.body))).toBe(true);
  const h = f.headers;
  const names: Record<StringProp, string> = {
    contentType: 'content-type',
    contentEncoding: 'content-encoding',
    correlationId: 'correlation-id',
    replyTo: 'reply-to',
    messageId: 'amqp-message-id',
    type: 'type',
    appId: 'app-id',
  };
  for (const k of STRING_PROPS) {
    const v = s.strings[k];
    if (v === undefined || (s.publisher === 'http' && v === '')) continue;
    expect(h[names[k]], names[k]).toBe(k === 'replyTo' ? replyToHeader(v) : v);
  }
  if (s.priority !== undefined) expect(h['priority']).toBe(String(s.priority));
  if (s.expiration !== undefined) expect(h['expiration']).toBe(String(s.expiration));
  if (s.timestamp !== undefined) expect(h['timestamp']).toBe(String(s.timestamp));
  expect(h['persistent']).toBe(s.persistent ? 'true' : undefined);
  for (const [k, v] of s.headers) expect(Object.getOwnPropertyDescriptor(h, k)?.value, `header ${k}`).toBe(String(v));
}

// ---- the property -------------------------------------------------------------------------------

test(
  'every message published on any protocol reaches every protocol intact, or is refused at publish',
  async () => {
    let seq = 0;
    const refused: string[] = [];
    const tally: Record<string, number> = {};
    await fc.assert(
      fc.asyncProperty(specs, async (s) => {
        const key = `prop.${++seq}`;
        const accepted = await publish(s, key);
        const t = `${s.publisher} ${accepted ? 'delivered' : 'refused'}`;
        tally[t] = (tally[t] ?? 0) + 1;
        if (!accepted) {
          expect(mustBeAccepted(s), 'a small message was refused').toBe(false);
          refused.push(key);
          return;
        }
        await waitFor(() => received(key), 10_000, `${key} on every protocol`);
        const topic = key.replaceAll('.', '/');
        checkAmqp(s, amqpGot.get(key)!);
        checkMqtt(s, mqtt3Got.get(topic)!, false);
        checkMqtt(s, mqtt5Got.get(topic)!, true);
        checkStomp(s, stompGot.get(key)!);
      }),
      { seed: SEED, numRuns: RUNS, endOnFailure: true },
    );
    // A refused message never arrives: a later one has, on every consumer, so it would have come first.
    const last = `prop.${++seq}`;
    const ch = await amqp.createChannel();
    ch.publish('amq.topic', last, Buffer.from('end'));
    await waitFor(() => received(last), 10_000, 'the last message');
    await ch.close();
    for (const k of refused) expect(anyReceived(k), `refused ${k} was delivered`).toBe(false);
    console.log(`cross-protocol property test: ${JSON.stringify(tally)}`);
  },
  RUNS * 2_000 + 30_000,
);
