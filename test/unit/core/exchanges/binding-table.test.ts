import { describe, expect, test } from 'vitest';
import { Core } from '../../../../src/core/index.js';

function setup() {
  const v = new Core().vhosts.get('/')!;
  const topic = v.exchanges.get('amq.topic')!;
  const q = (name: string) => v.declareQueue(name, { durable: false }, false, 0);
  return { v, topic, q };
}

describe("an exchange's bindings", () => {
  test('one binding per routing key, several destinations on one key, and several arguments for one destination are told apart', () => {
    const { v, topic, q } = setup();
    const a = q('a');
    const b = q('b');
    v.bind(topic, a, 'dev.1.cmd', {});
    v.bind(topic, a, 'dev.1.cmd', {});
    v.bind(topic, b, 'dev.1.cmd', {});
    v.bind(topic, a, 'dev.1.cmd', { qos: 1 });
    v.bind(topic, a, 'dev.2.cmd', {});
    expect(topic.bindings.size).toBe(4);
    expect([...topic.bindings.values()].map((x) => `${x.destination.name} ${x.routingKey} ${JSON.stringify(x.args)}`).sort()).toEqual([
      'a dev.1.cmd {"qos":1}',
      'a dev.1.cmd {}',
      'a dev.2.cmd {}',
      'b dev.1.cmd {}',
    ]);
    expect(topic.bindings.find(a, 'dev.1.cmd', { qos: 1 })?.args).toEqual({ qos: 1 });
    expect(topic.bindings.find(b, 'dev.1.cmd', { qos: 1 })).toBeUndefined();
    expect(topic.bindings.find(b, 'dev.2.cmd', {})).toBeUndefined();
  });

  test('unbinding one at a time leaves the others, down to none', () => {
    const { v, topic, q } = setup();
    const a = q('a');
    const b = q('b');
    v.bind(topic, a, 'k', {});
    v.bind(topic, b, 'k', {});
    v.bind(topic, a, 'k', { x: 1 });
    v.unbind(topic, a, 'k', {});
    expect([...topic.bindings.values()].map((x) => x.destination.name).sort()).toEqual(['a', 'b']);
    v.unbind(topic, b, 'k', {});
    expect(topic.bindings.find(a, 'k', { x: 1 })).toBeDefined();
    v.unbind(topic, a, 'k', { x: 1 });
    expect(topic.bindings.size).toBe(0);
    expect([...topic.bindings.values()]).toEqual([]);
  });

  test("a binding is found by its key, also with a NUL in the destination's name", () => {
    const { v, topic, q } = setup();
    const plain = q('plain');
    const odd = q('with\u0000nul');
    v.bind(topic, plain, 'a.b', { 'x-opt': true });
    v.bind(topic, odd, 'a.b', {});
    for (const b of [...topic.bindings.values()]) expect(topic.bindings.get(b.key)).toBe(b);
    expect(topic.bindings.get(['q', 'plain', 'a.b', '{}'].join('\u0000'))).toBeUndefined();
    expect(topic.bindings.get(['e', 'plain', 'a.b', topic.bindings.find(plain, 'a.b', { 'x-opt': true })!.key.split('\u0000')[3]].join('\u0000'))).toBeUndefined();
  });
});
