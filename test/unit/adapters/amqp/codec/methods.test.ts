import { describe, expect, test } from 'vitest';
import { ClassId, FRAME_END, FrameType, QueueMethod } from '../../../../../adapters/amqp/codec/constants.js';
import {
  METHOD_NAMES,
  decodeMethod,
  encodeMethod,
  methodHasContent,
  methodIdOf,
  methodNameOf,
} from '../../../../../adapters/amqp/codec/methods.js';
import type { AmqpMethod } from '../../../../../adapters/amqp/codec/methods.js';
import { BrokerError, ReplyCode } from '../../../../../src/core/errors.js';
import { SAMPLES } from './method-samples.js';

/** The payload of a single method frame produced by encodeMethod. */
function payloadOf(frame: Buffer): Buffer {
  const size = frame.readUInt32BE(3);
  expect(frame.length).toBe(size + 8);
  return frame.subarray(7, 7 + size);
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

describe('the method table', () => {
  test('the samples cover every method', () => {
    expect(SAMPLES.map((m) => m.kind).sort()).toEqual([...METHOD_NAMES].sort());
  });

  test('method ids match the spec and RabbitMQ numbering', () => {
    expect(methodIdOf('basic.publish')).toEqual({ classId: 60, methodId: 40 });
    expect(methodIdOf('exchange.unbind-ok')).toEqual({ classId: 40, methodId: 51 });
    expect(methodIdOf('connection.update-secret-ok')).toEqual({ classId: 10, methodId: 71 });
    const declare = SAMPLES.find((m) => m.kind === 'queue.declare')!;
    expect(methodIdOf(declare)).toEqual({ classId: ClassId.QUEUE, methodId: QueueMethod.DECLARE });
    expect(methodNameOf(60, 120)).toBe('basic.nack');
    expect(methodNameOf(60, 121)).toBeUndefined();
  });

  test('methodIdOf returns a shared frozen object', () => {
    expect(methodIdOf('tx.select')).toBe(methodIdOf({ kind: 'tx.select' }));
    expect(Object.isFrozen(methodIdOf('tx.select'))).toBe(true);
  });

  test('only the four content methods carry content', () => {
    expect(METHOD_NAMES.filter((n) => methodHasContent(n)).sort()).toEqual([
      'basic.deliver',
      'basic.get-ok',
      'basic.publish',
      'basic.return',
    ]);
  });
});

describe('encodeMethod / decodeMethod', () => {
  test.each(SAMPLES.map((m) => [m.kind, m] as const))('%s round-trips', (_kind, m) => {
    const frame = encodeMethod(7, m);
    expect(frame[0]).toBe(FrameType.METHOD);
    expect(frame.readUInt16BE(1)).toBe(7);
    expect(frame[frame.length - 1]).toBe(FRAME_END);
    const payload = payloadOf(frame);
    const id = methodIdOf(m);
    expect([payload.readUInt16BE(0), payload.readUInt16BE(2)]).toEqual([id.classId, id.methodId]);
    expect(decodeMethod(payload)).toEqual(m);
  });

  test('decoded values do not point into the payload', () => {
    const payload = Buffer.from(payloadOf(encodeMethod(0, SAMPLES[1]!)));
    const m = decodeMethod(payload);
    payload.fill(0);
    expect(m).toEqual(SAMPLES[1]);
  });

  test('basic.publish has its exact wire form', () => {
    const m: AmqpMethod = { kind: 'basic.publish', exchange: 'x', routingKey: 'rk', mandatory: true, immediate: true };
    const frame = encodeMethod(1, m);
    expect([...frame]).toEqual([1, 0, 1, 0, 0, 0, 12, 0, 60, 0, 40, 0, 0, 1, 0x78, 2, 0x72, 0x6b, 3, FRAME_END]);
  });

  test('consecutive bits share one octet, least significant first', () => {
    const frame = encodeMethod(0, {
      kind: 'queue.declare',
      queue: '',
      passive: true,
      durable: false,
      exclusive: true,
      autoDelete: false,
      noWait: true,
      arguments: {},
    });
    const payload = payloadOf(frame);
    // class, method, ticket, queue "", bits, empty table
    expect([...payload]).toEqual([0, 50, 0, 10, 0, 0, 0, 0b10101, 0, 0, 0, 0]);
  });

  test('a bit run is ended by a non-bit argument', () => {
    // basic.deliver: consumer-tag, delivery-tag, redelivered (bit), exchange, routing-key
    const m: AmqpMethod = {
      kind: 'basic.deliver',
      consumerTag: '',
      deliveryTag: 1,
      redelivered: true,
      exchange: '',
      routingKey: '',
    };
    const payload = payloadOf(encodeMethod(0, m));
    expect([...payload]).toEqual([0, 60, 0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0]);
  });

  test('reserved arguments are written as zero and not exposed', () => {
    const payload = payloadOf(encodeMethod(0, { kind: 'connection.open', virtualHost: '/' }));
    expect([...payload]).toEqual([0, 10, 0, 40, 1, 0x2f, 0, 0]);
    expect(decodeMethod(Buffer.from([0, 10, 0, 40, 1, 0x2f, 3, 0x61, 0x62, 0x63, 1]))).toEqual({
      kind: 'connection.open',
      virtualHost: '/',
    });
  });

  test('a shortstr longer than 255 bytes is refused, never truncated', () => {
    const rk = 'é'.repeat(128); // 256 bytes
    const m: AmqpMethod = { kind: 'basic.publish', exchange: '', routingKey: rk, mandatory: false, immediate: false };
    const e = errorOf(() => encodeMethod(1, m));
    expect(e.code).toBe(ReplyCode.SYNTAX_ERROR);
    expect(e.text).toContain('routingKey');
  });

  test('basic.publish: a repeated exchange or routing key decodes to the same string, a changed one to its own', () => {
    const publish = (exchange: string, routingKey: string): AmqpMethod => ({ kind: 'basic.publish', exchange, routingKey, mandatory: false, immediate: false });
    const decode = (m: AmqpMethod): AmqpMethod => decodeMethod(payloadOf(encodeMethod(1, m)));
    const keys = ['orders.eu', 'orders.eu', 'orders.us', 'orders.e', 'orders.eu', 'k'.repeat(255), 'k'.repeat(254) + 'j', 'é.ß', '', 'orders.eu'];
    for (const rk of keys) expect(decode(publish('amq.topic', rk))).toEqual(publish('amq.topic', rk));
    for (const ex of ['a', 'b', 'a', 'ab', '']) expect(decode(publish(ex, 'rk'))).toEqual(publish(ex, 'rk'));
    // Undecodable bytes read the same way whether or not the string was kept from the last publish.
    const bad = Buffer.from([0, 60, 0, 40, 0, 0, 0, 2, 0xff, 0xfe, 0]);
    const first = decodeMethod(bad);
    expect(decodeMethod(bad)).toEqual(first);
    expect(first).toMatchObject({ routingKey: Buffer.from([0xff, 0xfe]).toString('utf8') });
  });

  test('255 bytes is still fine', () => {
    const m: AmqpMethod = { kind: 'basic.consume-ok', consumerTag: 'x'.repeat(255) };
    expect(decodeMethod(payloadOf(encodeMethod(1, m)))).toEqual(m);
  });
});

describe('decodeMethod rejects bad input with BrokerErrors', () => {
  test('an unknown method id is 540 NOT_IMPLEMENTED naming the method', () => {
    const e = errorOf(() => decodeMethod(Buffer.from([0, 60, 0, 41])));
    expect(e.code).toBe(ReplyCode.NOT_IMPLEMENTED);
    expect(e.method).toEqual({ classId: 60, methodId: 41 });
  });

  test('an unknown class id is 540 NOT_IMPLEMENTED', () => {
    expect(errorOf(() => decodeMethod(Buffer.from([0, 99, 0, 10]))).code).toBe(ReplyCode.NOT_IMPLEMENTED);
  });

  test('a payload too short for the ids is a frame error', () => {
    expect(errorOf(() => decodeMethod(Buffer.from([0, 60, 0]))).code).toBe(ReplyCode.FRAME_ERROR);
  });

  test.each(SAMPLES.filter((m) => payloadOf(encodeMethod(0, m)).length > 4).map((m) => [m.kind, m] as const))(
    'every truncation of %s is a FRAME_ERROR naming the method',
    (_kind, m) => {
      const payload = payloadOf(encodeMethod(0, m));
      for (let n = 4; n < payload.length; n++) {
        const e = errorOf(() => decodeMethod(Buffer.from(payload.subarray(0, n))));
        expect(e.code).toBe(ReplyCode.FRAME_ERROR);
        expect(e.method).toEqual(methodIdOf(m));
      }
    },
  );

  test.each(SAMPLES.map((m) => [m.kind, m] as const))('trailing bytes after %s are a frame error', (_kind, m) => {
    const payload = Buffer.concat([payloadOf(encodeMethod(0, m)), Buffer.from([0])]);
    const e = errorOf(() => decodeMethod(payload));
    expect(e.code).toBe(ReplyCode.FRAME_ERROR);
    expect(e.method).toEqual(methodIdOf(m));
  });

  test('malformed UTF-8 in a queue name is a frame error, like RabbitMQ', () => {
    const payload = Buffer.from([0, 50, 0, 10, 0, 0, 2, 0xc3, 0x28, 0, 0, 0, 0, 0]);
    const e = errorOf(() => decodeMethod(payload));
    expect(e.code).toBe(ReplyCode.FRAME_ERROR);
    expect(e.method).toEqual({ classId: 50, methodId: 10 });
  });

  test('an unknown field type in queue.declare arguments is a syntax error naming the method', () => {
    // queue.declare: ticket, queue "", bits, table {k: <type Q>}
    const payload = Buffer.from([0, 50, 0, 10, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0x6b, 0x51]);
    const e = errorOf(() => decodeMethod(payload));
    expect(e.code).toBe(ReplyCode.SYNTAX_ERROR);
    expect(e.method).toEqual({ classId: 50, methodId: 10 });
  });

  test('random argument bytes after every known method id only produce BrokerErrors', () => {
    let seed = 1;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed >> 8;
    };
    for (const name of METHOD_NAMES) {
      const { classId, methodId } = methodIdOf(name);
      for (let i = 0; i < 60; i++) {
        const p = Buffer.alloc(4 + (rand() % 24));
        p.writeUInt16BE(classId, 0);
        p.writeUInt16BE(methodId, 2);
        for (let j = 4; j < p.length; j++) p[j] = rand() & (rand() % 2 ? 0x0f : 0xff);
        try {
          decodeMethod(p);
        } catch (e) {
          expect(e).toBeInstanceOf(BrokerError);
        }
      }
    }
  });
});
