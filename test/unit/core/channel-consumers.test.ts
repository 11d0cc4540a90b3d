import { describe, expect, test } from 'vitest';
import { BrokerError, Core, type Delivery, type DeliverySink } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';

class Sink implements DeliverySink {
  readonly got: Delivery[] = [];
  readonly cancelledTags: string[] = [];
  congested = false;
  deliver(d: Delivery): void {
    this.got.push(d);
  }
  cancelled(tag: string): void {
    this.cancelledTags.push(tag);
  }
}

function setup() {
  const core = new Core();
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  const publish = (q: string, body: string): void => void ch.publish({ exchange: '', routingKey: q, properties: {}, body: Buffer.from(body) });
  return { core, conn, ch, vhost: core.vhosts.get('/')!, publish };
}

describe("a channel's consumers: one held as is, a map from the second", () => {
  test('one consumer, then a second and a third, cancelled in any order: the consumers view, tags and deliveries stay right', async () => {
    const { ch, vhost, publish } = setup();
    for (const q of ['qa', 'qb', 'qc']) ch.declareQueue(q, {});
    expect(ch.consumers.size).toBe(0);
    const a = new Sink();
    const b = new Sink();
    const c = new Sink();
    ch.consume('qa', { consumerTag: 'a', noAck: true }, a);
    expect([...ch.consumers.keys()]).toEqual(['a']);
    expect(ch.consumers.get('a')?.queue.name).toBe('qa');
    expect(() => ch.consume('qb', { consumerTag: 'a', noAck: true }, b)).toThrow(BrokerError);
    ch.consume('qb', { consumerTag: 'b', noAck: true }, b);
    ch.consume('qc', { consumerTag: 'c', noAck: true }, c);
    expect([...ch.consumers.keys()]).toEqual(['a', 'b', 'c']);
    publish('qa', 'x');
    publish('qb', 'y');
    publish('qc', 'z');
    await waitFor(() => a.got.length + b.got.length + c.got.length === 3);
    expect([a.got[0]!.consumerTag, b.got[0]!.consumerTag, c.got[0]!.consumerTag]).toEqual(['a', 'b', 'c']);

    expect(ch.cancel('nope')).toBe(false);
    expect(ch.cancel('a')).toBe(true);
    expect(ch.cancel('a')).toBe(false);
    expect([...ch.consumers.keys()]).toEqual(['b', 'c']);
    expect(vhost.getQueue('qa').consumerCount).toBe(0);
    // Deleting a consumed queue cancels that consumer only.
    vhost.deleteQueue('qb', false, false, 0);
    expect(b.cancelledTags).toEqual(['b']);
    expect([...ch.consumers.keys()]).toEqual(['c']);
    // The tag of a cancelled consumer can be used again.
    ch.consume('qa', { consumerTag: 'a', noAck: true }, a);
    expect([...ch.consumers.keys()]).toEqual(['c', 'a']);
    ch.close();
    expect(ch.consumers.size).toBe(0);
    expect([vhost.getQueue('qa').consumerCount, vhost.getQueue('qc').consumerCount]).toEqual([0, 0]);
  });

  test('a single consumer: cancel, queue deletion and channel close each remove it from its queue', () => {
    const { ch, vhost } = setup();
    ch.declareQueue('q1', {});
    ch.consume('q1', { consumerTag: 't', noAck: true }, new Sink());
    expect(vhost.getQueue('q1').consumerCount).toBe(1);
    expect(ch.cancel('other')).toBe(false);
    expect(ch.consumers.size).toBe(1);
    expect(ch.cancel('t')).toBe(true);
    expect(ch.consumers.size).toBe(0);
    expect(vhost.getQueue('q1').consumerCount).toBe(0);

    const s = new Sink();
    ch.consume('q1', { consumerTag: 't', noAck: true }, s);
    vhost.deleteQueue('q1', false, false, 0);
    expect(s.cancelledTags).toEqual(['t']);
    expect(ch.consumers.size).toBe(0);

    ch.declareQueue('q2', {});
    ch.consume('q2', { noAck: true }, new Sink());
    expect(ch.consumers.size).toBe(1);
    // No arguments given: the consumer's are empty.
    expect(ch.consumers.values().next().value?.args).toEqual({});
    ch.close();
    expect(vhost.getQueue('q2').consumerCount).toBe(0);
  });
});
