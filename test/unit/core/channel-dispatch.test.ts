import { describe, expect, test } from 'vitest';
import { BrokerError, Core, type CoreChannel, type Delivery, type DeliverySink, type VHost } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';

/** A sink that records deliveries and can report congestion, as a connection's link does. */
class Sink implements DeliverySink {
  readonly got: Delivery[] = [];
  congested = false;
  deliver(d: Delivery): void {
    this.got.push(d);
  }
  bodies(): string[] {
    return this.got.map((d) => d.message.body.toString());
  }
}

function setup(): { core: Core; ch: CoreChannel; vhost: VHost; publish: (q: string, body: string, expiration?: string) => void } {
  const core = new Core();
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  const publish = (q: string, body: string, expiration?: string): void =>
    void ch.publish({ exchange: '', routingKey: q, properties: expiration === undefined ? {} : { expiration }, body: Buffer.from(body) });
  return { core, ch, vhost: core.vhosts.get('/')!, publish };
}

const turns = async (n = 5): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

describe('queue dispatch and the core channel, in process', () => {
  test('two consumers of one queue get messages round-robin, in queue order', async () => {
    const { ch, publish } = setup();
    ch.declareQueue('rr', {});
    const a = new Sink();
    const b = new Sink();
    ch.consume('rr', { noAck: true }, a);
    ch.consume('rr', { noAck: true }, b);
    for (let i = 0; i < 6; i++) publish('rr', `m${i}`);
    await waitFor(() => a.got.length + b.got.length === 6);
    expect(a.bodies()).toEqual(['m0', 'm2', 'm4']);
    expect(b.bodies()).toEqual(['m1', 'm3', 'm5']);
  });

  test('prefetch bounds unacknowledged deliveries; acks (single and multiple) release more', async () => {
    const { ch, vhost, publish } = setup();
    ch.declareQueue('pf', {});
    const s = new Sink();
    ch.consume('pf', { prefetch: 2 }, s);
    for (let i = 0; i < 5; i++) publish('pf', `m${i}`);
    await waitFor(() => s.got.length === 2);
    await turns();
    expect(s.got.length).toBe(2);
    expect(vhost.getQueue('pf').readyCount).toBe(3);
    ch.ack(s.got[0]!.deliveryTag);
    await waitFor(() => s.got.length === 3);
    ch.ack(s.got[2]!.deliveryTag, true); // covers the 2nd and 3rd
    await waitFor(() => s.got.length === 5);
    expect(s.bodies()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(ch.unackedCount).toBe(2);
  });

  test('a congested sink gets nothing until it drains and the channel resumes; the messages wait in the queue', async () => {
    const { ch, vhost, publish } = setup();
    ch.declareQueue('cg', {});
    const s = new Sink();
    s.congested = true;
    ch.consume('cg', { noAck: true }, s);
    for (let i = 0; i < 3; i++) publish('cg', `m${i}`);
    await turns();
    expect(s.got).toEqual([]);
    expect(vhost.getQueue('cg').readyCount).toBe(3);
    s.congested = false;
    ch.resume();
    await waitFor(() => s.got.length === 3);
    expect(s.bodies()).toEqual(['m0', 'm1', 'm2']);
  });

  test('nack with requeue puts the message back at the head, redelivered, ahead of later ones', async () => {
    const { ch, publish } = setup();
    ch.declareQueue('nq', {});
    const s = new Sink();
    ch.consume('nq', { prefetch: 1 }, s);
    publish('nq', 'first');
    publish('nq', 'second');
    await waitFor(() => s.got.length === 1);
    ch.nack(s.got[0]!.deliveryTag, false, true);
    await waitFor(() => s.got.length === 2);
    expect(s.got[1]!.message.body.toString()).toBe('first');
    expect(s.got[1]!.redelivered).toBe(true);
    ch.ack(s.got[1]!.deliveryTag);
    await waitFor(() => s.got.length === 3);
    expect(s.got[2]!.message.body.toString()).toBe('second');
    expect(s.got[2]!.redelivered).toBe(false);
  });

  test('nack without requeue drops the message; an unknown delivery tag is a precondition failure', async () => {
    const { ch, vhost, publish } = setup();
    ch.declareQueue('nd', {});
    const s = new Sink();
    ch.consume('nd', {}, s);
    publish('nd', 'gone');
    await waitFor(() => s.got.length === 1);
    ch.nack(s.got[0]!.deliveryTag, false, false);
    const q = vhost.getQueue('nd');
    expect([q.readyCount, q.unackedCount]).toEqual([0, 0]);
    expect(() => ch.ack(999)).toThrow(BrokerError);
  });

  test('closing a channel requeues its unacknowledged deliveries in their original order', async () => {
    const { core, ch, publish } = setup();
    ch.declareQueue('cl', {});
    const s = new Sink();
    ch.consume('cl', {}, s);
    for (let i = 0; i < 3; i++) publish('cl', `m${i}`);
    await waitFor(() => s.got.length === 3);
    ch.close();
    const conn2 = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 2 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
    const ch2 = conn2.openChannel(1);
    const s2 = new Sink();
    ch2.consume('cl', { noAck: true }, s2);
    await waitFor(() => s2.got.length === 3);
    expect(s2.bodies()).toEqual(['m0', 'm1', 'm2']);
    expect(s2.got.every((d) => d.redelivered)).toBe(true);
  });

  test('TTL: expired messages (queue TTL and per-message expiration) are never delivered', async () => {
    const { ch, vhost, publish } = setup();
    ch.declareQueue('ttl', { arguments: { 'x-message-ttl': 30 } });
    publish('ttl', 'old');
    ch.declareQueue('exp', {});
    publish('exp', 'short', '20');
    publish('exp', 'long', '60000');
    await new Promise((r) => setTimeout(r, 60));
    const s = new Sink();
    ch.consume('ttl', { noAck: true }, s);
    ch.consume('exp', { noAck: true }, s);
    await waitFor(() => s.got.length === 1);
    await turns();
    expect(s.bodies()).toEqual(['long']);
    expect(vhost.getQueue('ttl').readyCount).toBe(0);
  });

  test('limits: x-max-length drops the oldest by default, reject-publish refuses the newest', async () => {
    const { ch, vhost, publish } = setup();
    ch.declareQueue('head', { arguments: { 'x-max-length': 2 } });
    ch.declareQueue('rej', { arguments: { 'x-max-length': 2, 'x-overflow': 'reject-publish' } });
    for (let i = 0; i < 4; i++) publish('head', `m${i}`);
    const results = [0, 1, 2].map((i) => ch.publish({ exchange: '', routingKey: 'rej', properties: {}, body: Buffer.from(`r${i}`) }));
    const outcomes = await Promise.all(results.map((r) => r.settled.then(() => 'ok', () => 'refused')));
    expect(outcomes).toEqual(['ok', 'ok', 'refused']);
    expect(vhost.getQueue('head').readyCount).toBe(2);
    const s = new Sink();
    ch.consume('head', { noAck: true }, s);
    ch.consume('rej', { noAck: true }, s);
    await waitFor(() => s.got.length === 4);
    expect(s.bodies().sort()).toEqual(['m2', 'm3', 'r0', 'r1']);
  });
});
