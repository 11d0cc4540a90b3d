import { describe, expect, test } from 'vitest';
import { BrokerError } from '../../../../src/core/errors.js';
import { resolveStreamOffset } from '../../../../src/core/queues/stream-queue.js';
import type { StreamStore } from '../../../../src/core/queues/stream-store.js';
import { STREAM, parseDuration, streamLimits } from '../../../../src/core/queues/stream.js';

/** A log holding offsets 10..99, chunks of 10 written one second apart from t=1000 s. */
const log: StreamStore = {
  first: 10,
  end: 100,
  bytes: 0,
  segments: 1,
  onCommit: undefined,
  append: () => Promise.resolve(),
  slice: () => undefined,
  lastChunkOffset: () => 90,
  offsetAt: (ms) => {
    for (let o = 10; o < 100; o += 10) if (1_000_000 + (o - 10) * 100 >= ms) return o;
    return 100;
  },
  setLimits: () => undefined,
  restartAt: () => undefined,
  deleted: () => undefined,
};
const WHAT = "queue 's' in vhost '/'";

describe('x-stream-offset', () => {
  test.each([
    ['first', 10],
    ['last', 90],
    ['next', 100],
    [undefined, 100],
    [42, 42],
    [42n, 42],
    [5, 10],
    [500, 100],
    ['offset=50', 50],
    ['77', 77],
    [new Date(1_000_200), 20],
    ['timestamp=1002', 30],
  ] as const)('%s resolves to %i', (spec, offset) => {
    expect(resolveStreamOffset(spec, log, WHAT)).toBe(offset);
  });

  test('an interval counts back from now', () => {
    expect(resolveStreamOffset('1h', log, WHAT)).toBe(100);
    expect(resolveStreamOffset('100000D', log, WHAT)).toBe(10);
  });

  test.each([['yesterday'], [-1], [1.5], [true]] as const)('%s is refused with 406', (spec) => {
    try {
      resolveStreamOffset(spec, log, WHAT);
      expect.unreachable();
    } catch (e) {
      expect((e as BrokerError).code).toBe(406);
    }
  });
});

test('an array or table offset is a 406, not a crash (even holding a bigint)', () => {
  expect(() => resolveStreamOffset([1n], log, WHAT)).toThrow(BrokerError);
  expect(() => resolveStreamOffset({ a: 1n }, log, WHAT)).toThrow("invalid arg 'x-stream-offset'");
});

describe('stream arguments', () => {
  test('durations in RabbitMQ units', () => {
    expect(parseDuration('7D')).toBe(7 * 86_400_000);
    expect(parseDuration('1h 30m')).toBe(5_400_000);
    expect(parseDuration('10s')).toBe(10_000);
    expect(parseDuration('1Y')).toBe(365 * 86_400_000);
    expect(parseDuration('soon')).toBeUndefined();
  });

  test('limits from arguments, with RabbitMQ defaults', () => {
    expect(streamLimits('/', 's', {})).toEqual({ maxBytes: undefined, maxAgeMs: undefined, segmentBytes: 500_000_000, filterBytes: 16 });
    expect(streamLimits('/', 's', { 'x-max-length-bytes': 1000, 'x-max-age': '1m', 'x-stream-max-segment-size-bytes': 100, 'x-stream-filter-size-bytes': 32 })).toEqual({
      maxBytes: 1000,
      maxAgeMs: 60_000,
      segmentBytes: 100,
      filterBytes: 32,
    });
  });

  test('a stream must be durable, named, not exclusive, not auto-delete', () => {
    const d = { vhost: '/', name: 's', durable: true, exclusive: false, autoDelete: false, args: {} };
    expect(() => STREAM.validate(d)).not.toThrow();
    expect(() => STREAM.validate({ ...d, durable: false })).toThrow("invalid property 'non-durable'");
    expect(() => STREAM.validate({ ...d, autoDelete: true })).toThrow("invalid property 'auto-delete'");
    expect(() => STREAM.validate({ ...d, args: { 'x-message-ttl': 5 } })).toThrow('of queue type rabbit_stream_queue');
  });
});
