import { describe, expect, test } from 'vitest';
import { Header } from '../../../../adapters/mqtt/constants.js';
import { publishQosOf, toAmqpProperties, toMqttProperties, wasRetained } from '../../../../adapters/mqtt/properties.js';

describe('MQTT -> AMQP properties', () => {
  test.each([
    [0, 1],
    [1, 2],
    [2, 2],
  ] as const)('QoS %i without properties -> delivery_mode %i and x-mqtt-publish-qos', (qos, mode) => {
    const p = toAmqpProperties(qos, false, undefined);
    expect(p).toEqual({ deliveryMode: mode, headers: { [Header.PUBLISH_QOS]: qos } });
    expect(publishQosOf(p)).toBe(qos);
    expect(toAmqpProperties(qos, false, undefined)).toBe(p); // shared, not allocated per message
  });

  test('v5 properties map onto AMQP properties and headers', () => {
    const p = toAmqpProperties(1, true, {
      contentType: 'application/json',
      messageExpiryInterval: 30,
      correlationData: Buffer.from('req-1'),
      responseTopic: 'replies/client-7',
      payloadFormatIndicator: true,
      userProperties: { site: 'kitchen', tags: ['a', 'b'] },
    });
    expect(p).toEqual({
      deliveryMode: 2,
      contentType: 'application/json',
      expiration: '30000',
      correlationId: 'req-1',
      headers: {
        site: 'kitchen',
        tags: ['a', 'b'],
        [Header.REPLY_TO_TOPIC]: 'replies.client-7',
        [Header.PAYLOAD_FORMAT]: 1,
        [Header.RETAIN]: true,
        [Header.PUBLISH_QOS]: 1,
      },
    });
    expect(wasRetained(p)).toBe(true);
  });

  test('binary or long correlation data goes to the x-correlation-id header', () => {
    const bin = Buffer.from([0xff, 0xfe, 0x00]);
    expect(toAmqpProperties(0, false, { correlationData: bin }).headers?.[Header.CORRELATION_ID]).toEqual(bin);
    const long = Buffer.alloc(256, 0x61);
    const p = toAmqpProperties(0, false, { correlationData: long });
    expect(p.correlationId).toBeUndefined();
    expect(p.headers?.[Header.CORRELATION_ID]).toEqual(long);
  });

  test('a publisher cannot override the QoS header with a user property', () => {
    expect(toAmqpProperties(0, false, { userProperties: { [Header.PUBLISH_QOS]: '2' } }).headers?.[Header.PUBLISH_QOS]).toBe(0);
  });
});

describe('AMQP -> MQTT properties', () => {
  test('a message without mappable properties has none', () => {
    expect(toMqttProperties(toAmqpProperties(1, false, undefined), 0, 0)).toBeUndefined();
    expect(toMqttProperties({ deliveryMode: 2 }, 0, 0)).toBeUndefined();
  });

  test('AMQP properties and string/number headers become v5 properties', () => {
    const now = 1_000_000;
    const p = toMqttProperties(
      {
        contentType: 'text/plain',
        correlationId: 'abc',
        expiration: '60000',
        headers: { [Header.REPLY_TO_TOPIC]: 'replies.x', n: 42, s: 'str', b: true, nested: { x: 1 }, [Header.PUBLISH_QOS]: 1 },
      },
      now + 59_500,
      now,
    );
    expect(p).toEqual({
      contentType: 'text/plain',
      correlationData: Buffer.from('abc'),
      messageExpiryInterval: 60,
      responseTopic: 'replies/x',
      userProperties: { n: '42', s: 'str', b: 'true' },
    });
  });

  test('remaining expiry counts down from the queue expiry and never reaches 0', () => {
    expect(toMqttProperties({ expiration: '10000' }, 5_000 + 2_100, 5_000)?.messageExpiryInterval).toBe(3);
    expect(toMqttProperties({ expiration: '10000' }, 5_000 + 10, 5_000)?.messageExpiryInterval).toBe(1);
  });

  test('binary x-correlation-id becomes correlation data', () => {
    const bin = Buffer.from([1, 2, 3]);
    expect(toMqttProperties({ headers: { [Header.CORRELATION_ID]: bin } }, 0, 0)).toEqual({ correlationData: bin });
  });

  test('publish QoS falls back to delivery_mode', () => {
    expect(publishQosOf({ deliveryMode: 2 })).toBe(1);
    expect(publishQosOf({ deliveryMode: 1 })).toBe(0);
    expect(publishQosOf({})).toBe(0);
    expect(publishQosOf({ deliveryMode: 2, headers: { [Header.PUBLISH_QOS]: 2 } })).toBe(2);
  });
});

describe('values that do not fit AMQP properties', () => {
  test('a user property named __proto__ becomes a header, not a prototype (both ways)', () => {
    const user = Object.create(null) as Record<string, string | string[]>;
    user['__proto__'] = ['a', 'b'];
    const p = toAmqpProperties(1, false, { userProperties: user });
    expect(Object.getPrototypeOf(p.headers)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(p.headers, '__proto__')?.value).toEqual(['a', 'b']);
    const back = toMqttProperties(p, 0, 0)!.userProperties!;
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(Object.getOwnPropertyDescriptor(back, '__proto__')?.value).toEqual(['a', 'b']);
  });

  test('a content type the core moved to x-content-type is the v5 content type again', () => {
    const ct = 't'.repeat(300);
    const out = toMqttProperties({ headers: { 'x-content-type': ct, other: 'o' } }, 0, 0)!;
    expect(out.contentType).toBe(ct);
    expect(out.userProperties).toEqual({ other: 'o' });
  });

  test('strings with U+0000 (legal in AMQP, forbidden in MQTT 5 strings) are left out, the rest kept', () => {
    const out = toMqttProperties(
      {
        contentType: 'text/plain\u0000x',
        headers: { 'a\u0000b': 'v', k: 'v\u0000', list: ['x', 'y\u0000'], ok: 'fine', [Header.REPLY_TO_TOPIC]: 'r\u0000' },
      },
      0,
      0,
    )!;
    expect(out.contentType).toBeUndefined();
    expect(out.responseTopic).toBeUndefined();
    expect(out.userProperties).toEqual({ ok: 'fine' });
  });
});
