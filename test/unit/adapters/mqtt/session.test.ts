import { describe, expect, test } from 'vitest';
import { OutState, Session, optionsFromArgs, sharedQueueName, subscriptionArgs, type Subscription } from '../../../../adapters/mqtt/session.js';
import { parseFilter, type ParsedFilter } from '../../../../adapters/mqtt/topic.js';

function sub(s: Session, filter: string, qos: 0 | 1 | 2, opts: Partial<Subscription> = {}): void {
  const parsed = parseFilter(filter) as ParsedFilter;
  s.setSubscription({
    parsed,
    qos,
    noLocal: false,
    retainAsPublished: false,
    retainHandling: 0,
    id: 0,
    queue: s.queue,
    words: parsed.bindingKey.split('.'),
    args: {},
    ...opts,
  });
}

describe('Session', () => {
  test('owns queue mqtt-subscription-<client id>', () => {
    expect(new Session('/', 'dev-1').queue).toBe('mqtt-subscription-dev-1');
  });

  test('overlapping filters: highest QoS, every subscription identifier', () => {
    const s = new Session('/', 'c');
    sub(s, 'a/#', 0, { id: 1 });
    sub(s, 'a/b', 2, { id: 2 });
    sub(s, 'x/y', 1, { id: 3 });
    const m = s.match('a.b');
    expect([m.qos, m.ids, m.topic]).toEqual([2, [1, 2], 'a/b']);
    expect(s.match('q').qos).toBe(-1);
  });

  test('no-local subscriptions do not count for the session own publishes', () => {
    const s = new Session('/', 'c');
    sub(s, 'a/#', 1, { noLocal: true });
    sub(s, 'a/b', 0);
    const m = s.match('a.b');
    expect([m.qos, m.localQos]).toEqual([1, 0]);
    expect(s.match('a.c').localQos).toBe(-1);
  });

  test('$ topics are not matched by leading wildcards', () => {
    const s = new Session('/', 'c');
    sub(s, '#', 1);
    sub(s, '+/x', 1);
    expect(s.match('$SYS.x').qos).toBe(-1);
    sub(s, '$SYS/#', 0);
    expect(s.match('$SYS.x').qos).toBe(0);
  });

  test('the match cache is invalidated when subscriptions change', () => {
    const s = new Session('/', 'c');
    sub(s, 'a', 0);
    expect(s.match('a').qos).toBe(0);
    sub(s, 'a', 2);
    expect(s.match('a').qos).toBe(2);
  });

  test('packet ids skip ids in flight and wrap after 65535', () => {
    const s = new Session('/', 'c');
    const first = s.allocatePacketId();
    expect(first).toBe(1);
    s.addOutgoing({ packetId: 2, qos: 1, state: OutState.PUBLISH, tag: 0, msgId: 0, retained: undefined, shared: false });
    expect(s.allocatePacketId()).toBe(3);
    for (let i = 4; i <= 65535; i++) s.allocatePacketId();
    expect(s.allocatePacketId()).toBe(1);
    expect(s.allocatePacketId()).toBe(3);
  });
});

describe('binding arguments', () => {
  test('subscription options round-trip through x-mqtt-subscription-opts', () => {
    const args = subscriptionArgs(2, true, true, 1, 42);
    expect(args).toEqual({ 'x-mqtt-subscription-opts': { qos: 2, 'no-local': true, 'retain-as-published': true, 'retain-handling': 1, id: 42 } });
    expect(optionsFromArgs(args)).toEqual({ qos: 2, noLocal: true, rap: true, rh: 1, id: 42 });
    expect(optionsFromArgs({})).toBeUndefined();
  });

  test('shared queue names hold group and binding key, or a digest when too long', () => {
    expect(sharedQueueName('g', 'jobs.*', () => 'D')).toBe('mqtt-shared-g-jobs.*');
    expect(sharedQueueName('g', 'x'.repeat(250), () => 'D')).toBe('mqtt-shared-D');
  });
});
