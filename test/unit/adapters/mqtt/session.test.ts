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
    args: {},
    ...opts,
  });
}

describe('Session', () => {
  test('one subscription, then more, then one again: the map view stays consistent', () => {
    const s = new Session('/', 'c');
    expect(s.subscriptions.size).toBe(0);
    sub(s, 'a/b', 1);
    expect(s.subscriptions.size).toBe(1);
    expect(s.subscriptions.get('a/b')?.qos).toBe(1);
    expect(s.subscriptions.has('a/c')).toBe(false);
    expect([...s.subscriptions.keys()]).toEqual(['a/b']);
    expect([...s.subscriptions].map(([k, v]) => [k, v.qos])).toEqual([['a/b', 1]]);
    sub(s, 'a/b', 2); // replaces the one
    expect([...s.subscriptions.values()].map((x) => x.qos)).toEqual([2]);
    sub(s, 'x/#', 0);
    expect([...s.subscriptions.keys()]).toEqual(['a/b', 'x/#']);
    expect(s.match('x.y').qos).toBe(0);
    s.deleteSubscription('a/b');
    expect([...s.subscriptions.keys()]).toEqual(['x/#']);
    s.deleteSubscription('x/#');
    expect(s.subscriptions.size).toBe(0);
    expect(s.match('x.y').qos).toBe(-1);
    sub(s, 'q', 1);
    s.deleteSubscription('other');
    expect(s.subscriptions.size).toBe(1);
    s.deleteSubscription('q');
    expect(s.subscriptions.size).toBe(0);
  });

  test('binding arguments without a subscription identifier are shared and frozen; with one they are not', () => {
    const a = subscriptionArgs(1, false, true, 0, 0);
    expect(subscriptionArgs(1, false, true, 0, 0)).toBe(a);
    expect(Object.isFrozen(a)).toBe(true);
    expect(optionsFromArgs(a)).toEqual({ qos: 1, noLocal: false, rap: true, rh: 0, id: 0 });
    expect(subscriptionArgs(1, false, true, 1, 0)).not.toBe(a);
    const withId = subscriptionArgs(1, false, true, 0, 7);
    expect(withId).not.toBe(subscriptionArgs(1, false, true, 0, 7));
    expect(optionsFromArgs(withId)?.id).toBe(7);
  });

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
