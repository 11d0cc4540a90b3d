import { describe, expect, test } from 'vitest';
import {
  bindingKeyToFilter,
  checkTopicName,
  filterMatches,
  parseDelayedTopic,
  filterToBindingKey,
  matchWords,
  parseFilter,
  routingKeyOf,
  routingKeyToTopic,
  topicToRoutingKey,
} from '../../../../adapters/mqtt/topic.js';
import { Reason } from '../../../../adapters/mqtt/constants.js';

describe('topic <-> routing key', () => {
  test.each([
    ['sensors/kitchen/temp', 'sensors.kitchen.temp'],
    ['a', 'a'],
    ['/a', '.a'],
    ['a//b', 'a..b'],
    ['/', '.'],
  ])('topic %s becomes routing key %s and back', (topic, key) => {
    expect(topicToRoutingKey(topic)).toBe(key);
    expect(routingKeyOf(topic)).toBe(key);
    expect(routingKeyToTopic(key)).toBe(topic);
  });

  test('a level containing a dot collides with a level boundary, as in RabbitMQ', () => {
    expect(topicToRoutingKey('a.b/c')).toBe(topicToRoutingKey('a/b/c'));
  });

  test.each([
    ['sensors/+/temp', 'sensors.*.temp'],
    ['sensors/#', 'sensors.#'],
    ['#', '#'],
    ['+', '*'],
    ['+/+/#', '*.*.#'],
    ['$SYS/broker/+', '$SYS.broker.*'],
  ])('filter %s becomes binding key %s and back', (filter, key) => {
    expect(filterToBindingKey(filter)).toBe(key);
    expect(bindingKeyToFilter(key)).toBe(filter);
  });
});

describe('topic name validation', () => {
  test.each(['a/b', 'a', '/', '$SYS/x', 'ü/ñ'])('%s is a valid topic name', (t) => {
    expect(checkTopicName(t)).toBeUndefined();
  });
  test.each([
    ['', 'empty'],
    ['a/+', 'single-level wildcard'],
    ['a/#', 'multi-level wildcard'],
    ['a+b', 'plus inside a level'],
    ['a\u0000b', 'U+0000'],
    ['x'.repeat(256), 'longer than 255 bytes'],
    ['é'.repeat(128), '256 bytes of two-byte characters'],
  ])('%j is refused (%s)', (t) => {
    expect(checkTopicName(t)?.reason).toBe(Reason.TOPIC_NAME_INVALID);
  });
  test('a topic of exactly 255 bytes is accepted', () => {
    expect(checkTopicName('x'.repeat(255))).toBeUndefined();
  });
});

describe('filter parsing', () => {
  test.each(['a/b', '#', '+', 'a/+/c', 'a/#', '+/+', '/+', '$SYS/#'])('%s is a valid filter', (f) => {
    const p = parseFilter(f);
    expect(typeof p).toBe('object');
    if (typeof p === 'object') expect([p.filter, p.group, p.bindingKey]).toEqual([f, undefined, filterToBindingKey(f)]);
  });
  test.each(['', 'a/#/b', 'a#', 'a/b#', 'a+', 'a/+b', '#/a', 'a\u0000', '$share/g', '$share//a', '$share/g+/a', '$share/g/', '$share/g/a/#/b'])(
    '%j is refused',
    (f) => {
      expect(typeof parseFilter(f)).toBe('string');
    },
  );
  test('a shared subscription is split into group and filter', () => {
    expect(parseFilter('$share/workers/jobs/+/new')).toEqual({
      raw: '$share/workers/jobs/+/new',
      filter: 'jobs/+/new',
      group: 'workers',
      bindingKey: 'jobs.*.new',
    });
  });
});

describe('matching', () => {
  test.each([
    ['a/b/c', 'a/b/c', true],
    ['a/+/c', 'a/b/c', true],
    ['a/+/c', 'a/b/d', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', 'a/b', true],
    ['+', 'a', true],
    ['+', 'a/b', false],
    ['+/+', '/a', true],
    ['/+', '/a', true],
    ['a/+', 'a/', true],
    ['#', '$SYS/x', false],
    ['+/x', '$SYS/x', false],
    ['$SYS/#', '$SYS/x', true],
    ['$SYS/+', '$SYS/x', true],
    ['a/b', 'a/b/c', false],
    ['a/b/c', 'a/b', false],
  ])('filter %s matches %s: %s', (filter, topic, expected) => {
    expect(filterMatches(filter, topic)).toBe(expected);
  });

  test('binding keys match routing keys with * and # (and # in the middle)', () => {
    expect(matchWords(['a', '#', 'z'], ['a', 'b', 'c', 'z'], '*')).toBe(true);
    expect(matchWords(['a', '#', 'z'], ['a', 'z'], '*')).toBe(true);
    expect(matchWords(['a', '#', 'z'], ['a', 'b'], '*')).toBe(false);
    expect(matchWords(['*', 'b'], ['$x', 'b'], '*')).toBe(false);
  });
});

describe('parseDelayedTopic', () => {
  test('$delayed/<seconds>/<topic> gives the topic and the delay in ms', () => {
    expect(parseDelayedTopic('$delayed/10/a/b')).toEqual({ topic: 'a/b', delayMs: 10_000 });
    expect(parseDelayedTopic('$delayed/0/x')).toEqual({ topic: 'x', delayMs: 0 });
  });

  test('other topics are not delayed', () => {
    expect(parseDelayedTopic('a/b')).toBeUndefined();
    expect(parseDelayedTopic('$SYS/x')).toBeUndefined();
  });

  test('a bad interval or a missing topic is an error text', () => {
    expect(parseDelayedTopic('$delayed/soon/a')).toMatch(/invalid delay interval/);
    expect(parseDelayedTopic('$delayed/-1/a')).toMatch(/invalid delay interval/);
    expect(parseDelayedTopic('$delayed/4294968/a')).toMatch(/invalid delay interval/);
    expect(parseDelayedTopic('$delayed/5')).toMatch(/invalid delay interval/);
    expect(parseDelayedTopic('$delayed/5/')).toMatch(/no topic/);
  });
});
