import { describe, expect, test } from 'vitest';
import { Core, type CoreLog, type Delivery, type DeliverySink, type FieldTable } from '../../../../src/core/index.js';
import { waitFor } from '../../../helpers/broker.js';

/** A sink that throws for messages whose body is 'poison', as an encoder would. */
class PickySink implements DeliverySink {
  readonly got: Delivery[] = [];
  readonly congested = false;
  deliver(d: Delivery): void {
    if (d.message.body.toString() === 'poison') throw new Error('cannot encode');
    this.got.push(d);
  }
}

function setup(noAck: boolean) {
  const lines: { fields: Record<string, unknown>; message: string }[] = [];
  const log: CoreLog = { warn: (fields, message) => lines.push({ fields, message }) };
  const core = new Core({ log });
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  ch.declareExchange('dlx', 'fanout', {});
  ch.declareQueue('dead', {});
  ch.bindQueue('dead', 'dlx', '');
  ch.declareQueue('work', { arguments: { 'x-dead-letter-exchange': 'dlx' } });
  ch.declareQueue('nodlx', {});
  const sink = new PickySink();
  ch.consume('work', { noAck }, sink);
  ch.consume('nodlx', { noAck }, sink);
  const publish = (q: string, body: string): void => void ch.publish({ exchange: '', routingKey: q, properties: {}, body: Buffer.from(body) });
  const vhost = core.vhosts.get('/')!;
  return { ch, sink, lines, publish, vhost };
}

describe.each([false, true])('a sink that cannot encode a delivery (noAck %s)', (noAck) => {
  test('the message is rejected to the dead-letter exchange and the consumer gets the next one', async () => {
    const { ch, sink, lines, publish, vhost } = setup(noAck);
    publish('work', 'poison');
    publish('work', 'fine');
    await waitFor(() => sink.got.length === 1);
    expect(sink.got[0]!.message.body.toString()).toBe('fine');
    const dead = ch.get('dead', true)!.delivery.message;
    expect(dead.body.toString()).toBe('poison');
    const death = (dead.properties.headers!['x-death'] as FieldTable[])[0]!;
    expect([death['reason'], death['queue']]).toEqual(['rejected', 'work']);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.fields).toMatchObject({ queue: 'work', deadLettered: true, err: 'cannot encode' });
    const work = vhost.getQueue('work');
    expect([work.readyCount, work.unackedCount]).toEqual([0, noAck ? 0 : 1]);
    expect(ch.unackedCount).toBe(noAck ? 0 : 1);
  });

  test('without a dead-letter exchange it is dropped with a log line', async () => {
    const { sink, lines, publish, vhost } = setup(noAck);
    publish('nodlx', 'poison');
    publish('nodlx', 'fine');
    await waitFor(() => sink.got.length === 1);
    expect(lines.map((l) => l.fields['deadLettered'])).toEqual([false]);
    const q = vhost.getQueue('nodlx');
    expect(q.readyCount).toBe(0);
    expect(q.unackedCount).toBe(noAck ? 0 : 1);
  });
});

test('basic.get: a delivery the adapter cannot encode is taken back and rejected', () => {
  const { ch, lines, publish } = setup(false);
  ch.cancel([...ch.consumers.keys()][0]!);
  publish('work', 'poison');
  const r = ch.get('work', false)!;
  ch.undeliverable(r.delivery, new Error('frame too large'));
  expect(ch.unackedCount).toBe(0);
  expect(ch.get('dead', true)?.delivery.message.body.toString()).toBe('poison');
  expect(lines[0]!.fields).toMatchObject({ queue: 'work', consumerTag: '', deadLettered: true });
});

test('a dead-letter cycle back into the same queue does not spin: the message is dropped after one rejection', async () => {
  const { ch, sink, lines, publish, vhost } = setup(false);
  ch.declareQueue('loop', { arguments: { 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'loop' } });
  ch.consume('loop', {}, sink);
  publish('loop', 'poison');
  publish('loop', 'fine');
  await waitFor(() => sink.got.length === 1);
  // Had the poison come back, it would have been tried again (and logged) before 'fine' was delivered.
  publish('loop', 'fine again');
  await waitFor(() => sink.got.length === 2);
  expect(lines).toHaveLength(1);
  expect(vhost.getQueue('loop').readyCount).toBe(0);
});
