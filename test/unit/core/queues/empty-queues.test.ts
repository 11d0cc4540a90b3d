import { describe, expect, test } from 'vitest';
import { Core } from '../../../../src/core/index.js';

function setup() {
  const core = new Core();
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  const publish = (q: string, body: string): void => void ch.publish({ exchange: '', routingKey: q, properties: {}, body: Buffer.from(body) });
  const body = (r: ReturnType<typeof ch.get>): string | undefined => r?.delivery.message.body.toString();
  return { ch, vhost: core.vhosts.get('/')!, publish, body };
}

describe('queues that never held a message', () => {
  test('each keeps its own messages once it gets some: the others stay empty', () => {
    const { ch, vhost, publish, body } = setup();
    for (const q of ['a', 'b', 'c']) ch.declareQueue(q, {});
    expect([...vhost.queues.get('a')!.entries()]).toEqual([]);
    expect(ch.purgeQueue('b')).toBe(0);
    expect(ch.get('a', true)).toBeNull();

    publish('a', 'a1');
    publish('a', 'a2');
    publish('b', 'b1');
    expect(vhost.queues.get('c')!.readyCount).toBe(0);
    expect([...vhost.queues.get('c')!.entries()]).toEqual([]);
    expect(ch.get('c', true)).toBeNull();
    expect([...vhost.queues.get('a')!.entries()].map((e) => e.msg.body.toString())).toEqual(['a1', 'a2']);

    const first = ch.get('a', false);
    expect(body(first)).toBe('a1');
    ch.nack(first!.delivery.deliveryTag, false, true);
    // the requeued message goes back in front, in its own queue only
    expect(body(ch.get('a', true))).toBe('a1');
    expect(body(ch.get('a', true))).toBe('a2');
    expect(body(ch.get('b', true))).toBe('b1');
    expect(ch.get('b', true)).toBeNull();
    expect(ch.get('c', true)).toBeNull();
  });

  test('a priority queue and an empty one with a message TTL work as before', () => {
    const { ch, publish, body } = setup();
    ch.declareQueue('p', { arguments: { 'x-max-priority': 5 } });
    ch.declareQueue('ttl', { arguments: { 'x-message-ttl': 60_000 } });
    ch.declareQueue('other', {});
    void ch.publish({ exchange: '', routingKey: 'p', properties: { priority: 1 }, body: Buffer.from('low') });
    void ch.publish({ exchange: '', routingKey: 'p', properties: { priority: 5 }, body: Buffer.from('high') });
    publish('ttl', 't1');
    expect(body(ch.get('p', true))).toBe('high');
    expect(body(ch.get('p', true))).toBe('low');
    expect(body(ch.get('ttl', true))).toBe('t1');
    expect(ch.get('other', true)).toBeNull();
  });
});
