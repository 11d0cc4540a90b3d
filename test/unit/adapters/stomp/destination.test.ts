import { describe, expect, test } from 'vitest';
import { escapeName, formatDestination, parseDestination, replyToHeader, routeOf } from '../../../../adapters/stomp/destination.js';
import { StompError } from '../../../../adapters/stomp/errors.js';

describe('parseDestination', () => {
  test.each([
    ['/queue/orders', { kind: 'queue', name: 'orders' }],
    ['/amq/queue/existing', { kind: 'amqqueue', name: 'existing' }],
    ['/topic/sensors.*.temp', { kind: 'topic', key: 'sensors.*.temp' }],
    ['/exchange/logs', { kind: 'exchange', exchange: 'logs', key: undefined }],
    ['/exchange/logs/error.#', { kind: 'exchange', exchange: 'logs', key: 'error.#' }],
    ['/exchange/logs/', { kind: 'exchange', exchange: 'logs', key: '' }],
    ['/temp-queue/replies', { kind: 'temp-queue', name: 'replies' }],
    ['/reply-queue/amq.gen-abc', { kind: 'reply-queue', name: 'amq.gen-abc' }],
    ['/reply-queue/with/slashes', { kind: 'reply-queue', name: 'with/slashes' }],
    ['bare-name', { kind: 'queue', name: 'bare-name' }],
    ['/queue/a%2Fb', { kind: 'queue', name: 'a/b' }],
    ['/topic/a%2fb', { kind: 'topic', key: 'a/b' }],
    ['/queue/100%25', { kind: 'queue', name: '100%25' }],
  ])('%s', (dest, expected) => {
    expect(parseDestination(dest)).toEqual(expected);
  });

  test.each(['/queue/', '/queue/a/b', '/topic/', '/topic/a/b', '/exchange/', '/exchange//key', '/exchange/x/k/extra', '/amq/queue/', '/temp-queue/', '/reply-queue/', ''])(
    '%s is an invalid destination',
    (dest) => {
      expect(() => parseDestination(dest)).toThrow(StompError);
      try {
        parseDestination(dest);
      } catch (e) {
        expect((e as StompError).summary).toBe('Invalid destination');
      }
    },
  );

  test.each(['/foo/bar', '/amq/exchange/x', '/queues/x', 'a/b', '/reply-queue'])('%s has an unknown prefix', (dest) => {
    try {
      parseDestination(dest);
      expect.unreachable();
    } catch (e) {
      expect((e as StompError).summary).toBe('Unknown destination');
      expect((e as StompError).detail).toBe(
        `'${dest}' is not a valid destination.\nValid destination types are: /exchange, /topic, /queue, /amq/queue, /temp-queue, /reply-queue/.\n`,
      );
    }
  });

  // RabbitMQ's texts: the kind as its parser names it, and what follows the prefix, in quotes.
  test.each([
    ['/exchange//foo', "'//foo' is not a valid exchange destination\n"],
    ['/exchange/bah/baz/boo', "'/bah/baz/boo' is not a valid exchange destination\n"],
    ['/exchange', "'' is not a valid exchange destination\n"],
    ['/exchange/', "'/' is not a valid exchange destination\n"],
    ['/queue/bah/baz', "'/bah/baz' is not a valid queue destination\n"],
    ['/queue', "'' is not a valid queue destination\n"],
    ['/queue/', "'/' is not a valid queue destination\n"],
    ['/topic/bah/baz', "'/bah/baz' is not a valid topic destination\n"],
    ['/topic', "'' is not a valid topic destination\n"],
    ['/amq/queue', "'' is not a valid amqqueue destination\n"],
    ['/amq/queue/a/b', "'/a/b' is not a valid amqqueue destination\n"],
    ['/temp-queue/a/b', "'/a/b' is not a valid temp_queue destination\n"],
    ['/reply-queue/', "'/' is not a valid reply_queue destination\n"],
    ['', 'Destination cannot be blank'],
  ])('%s: the error body is RabbitMQ\'s', (dest, body) => {
    try {
      parseDestination(dest);
      expect.unreachable();
    } catch (e) {
      expect((e as StompError).summary).toBe('Invalid destination');
      expect((e as StompError).detail).toBe(body);
    }
  });
});

describe('routeOf', () => {
  test('every destination kind publishes to its exchange and routing key', () => {
    expect(routeOf(parseDestination('/queue/q'))).toEqual({ exchange: '', routingKey: 'q' });
    expect(routeOf(parseDestination('/amq/queue/q'))).toEqual({ exchange: '', routingKey: 'q' });
    expect(routeOf(parseDestination('/reply-queue/amq.gen-1'))).toEqual({ exchange: '', routingKey: 'amq.gen-1' });
    expect(routeOf(parseDestination('/topic/a.b'))).toEqual({ exchange: 'amq.topic', routingKey: 'a.b' });
    expect(routeOf(parseDestination('/exchange/x'))).toEqual({ exchange: 'x', routingKey: '' });
    expect(routeOf(parseDestination('/exchange/x/k'))).toEqual({ exchange: 'x', routingKey: 'k' });
  });
});

describe('formatDestination (the destination of a MESSAGE)', () => {
  test('default exchange -> /queue/, amq.topic -> /topic/, others -> /exchange/', () => {
    expect(formatDestination('', 'orders')).toBe('/queue/orders');
    expect(formatDestination('amq.topic', 'a.b')).toBe('/topic/a.b');
    expect(formatDestination('logs', '')).toBe('/exchange/logs');
    expect(formatDestination('logs', 'error.db')).toBe('/exchange/logs/error.db');
  });

  test('slashes, percent signs, control and non-ASCII bytes are %-escaped as RabbitMQ does', () => {
    expect(formatDestination('amq.topic', 'a/b')).toBe('/topic/a%2Fb');
    expect(escapeName('100%')).toBe('100%25');
    expect(escapeName('tab\there')).toBe('tab%09here');
    expect(escapeName('€')).toBe('%E2%82%AC');
  });

  test('a formatted destination parses back to the same route', () => {
    for (const [x, rk] of [
      ['', 'q/1'],
      ['amq.topic', 'a.b.c'],
      ['ex/1', 'k/2'],
    ] as const) {
      expect(routeOf(parseDestination(formatDestination(x, rk)))).toEqual({ exchange: x, routingKey: rk });
    }
  });
});

describe('replyToHeader', () => {
  test('a bare queue name becomes /reply-queue/<name>; STOMP destinations stay', () => {
    expect(replyToHeader('amq.gen-xyz')).toBe('/reply-queue/amq.gen-xyz');
    expect(replyToHeader('/queue/replies')).toBe('/queue/replies');
    expect(replyToHeader('/reply-queue/q')).toBe('/reply-queue/q');
    expect(replyToHeader('/exchange/x/k')).toBe('/exchange/x/k');
  });
});
