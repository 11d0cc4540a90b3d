import { describe, expect, test } from 'vitest';
import { Decimal, type MessageProperties } from '../../../src/core/index.js';
import { decodeMessage, encodeMessage, type MessageContent } from '../../../src/store/codec.js';

const ALL: MessageProperties = {
  contentType: 'application/json',
  contentEncoding: 'gzip',
  headers: {
    str: 'héllo',
    int: -42,
    big: 2 ** 40,
    float: 1.5,
    i64: -(2n ** 62n),
    u64: 2n ** 64n - 1n,
    yes: true,
    no: false,
    nothing: null,
    bytes: Buffer.from([0, 1, 2, 255]),
    when: new Date(1_700_000_000_000),
    dec: new Decimal(2, 12345),
    list: [1, 'two', [3], { four: 4 }],
    nested: { deeper: { deepest: 'yes' } },
    ['x'.repeat(300)]: 'a key longer than a shortstr',
  },
  deliveryMode: 2,
  priority: 7,
  correlationId: 'c'.repeat(1000),
  replyTo: 'amq.rabbitmq.reply-to',
  expiration: '60000',
  messageId: 'id-1',
  timestamp: 1_700_000_000,
  type: 'order.created',
  userId: 'guest',
  appId: 'app',
  clusterId: 'cluster',
};

describe('message encoding', () => {
  test('every property and field value type round-trips', () => {
    const m: MessageContent = { exchange: 'amq.topic', routingKey: 'a.b.c', properties: ALL, body: Buffer.from('body') };
    const back = decodeMessage(encodeMessage(m));
    expect(back).toEqual({ ...m, rawProperties: undefined });
    expect(back.properties.headers!['dec']).toBeInstanceOf(Decimal);
    expect(back.properties.headers!['when']).toBeInstanceOf(Date);
  });

  test('raw AMQP property bytes are kept as they were', () => {
    const raw = Buffer.from([0x10, 0x00, 0x02]);
    const m: MessageContent = { exchange: '', routingKey: 'q', properties: { deliveryMode: 2 }, rawProperties: raw, body: Buffer.alloc(0) };
    const back = decodeMessage(encodeMessage(m));
    expect(back.rawProperties).toEqual(raw);
    expect(back.body.length).toBe(0);
  });

  test('long MQTT-style routing keys and binary bodies survive', () => {
    const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i & 0xff));
    const m: MessageContent = { exchange: 'amq.topic', routingKey: 'sensor.'.repeat(2000), properties: {}, body };
    const back = decodeMessage(encodeMessage(m));
    expect(back.routingKey).toBe(m.routingKey);
    expect(back.body.equals(body)).toBe(true);
  });

  test('decoded buffers are copies that do not pin the record', () => {
    const enc = encodeMessage({ exchange: '', routingKey: 'q', properties: {}, body: Buffer.from('abc') });
    const back = decodeMessage(enc);
    enc.fill(0);
    expect(back.body.toString()).toBe('abc');
  });

  test('a truncated or garbled record is refused, never misread', () => {
    const enc = encodeMessage({ exchange: 'x', routingKey: 'q', properties: ALL, body: Buffer.from('abc') });
    for (const cut of [1, 5, 20, enc.length - 1]) expect(() => decodeMessage(enc.subarray(0, cut))).toThrow();
    const extra = Buffer.concat([enc, Buffer.from([0])]);
    expect(() => decodeMessage(extra)).toThrow(/stray bytes/);
  });
});
