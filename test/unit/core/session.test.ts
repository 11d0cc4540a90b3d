import { describe, expect, test } from 'vitest';
import { BrokerError, Core, ReplyCode, type Delivery, type DeliverySink } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';

class Sink implements DeliverySink {
  readonly got: Delivery[] = [];
  readonly congested = false;
  deliver(d: Delivery): void {
    this.got.push(d);
  }
}

function setup() {
  const core = new Core();
  core.addVhost('v');
  core.auth.addUser('dev', 'pw', []);
  core.auth.setPermission('v', 'dev', { configure: '.*', write: '.*', read: '.*' });
  core.auth.addUser('reader', 'pw', []);
  core.auth.setPermission('v', 'reader', { configure: '.*', write: '^$', read: '.*' });
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'dev', vhost: 'v', clientId: 'c1' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  ch.declareQueue('q', { durable: false });
  ch.bindQueue('q', 'amq.topic', 'a.*', { 'x-opt': 1 });
  ch.bindQueue('q', 'amq.fanout', '');
  const sink = new Sink();
  ch.consume('q', { noAck: true }, sink);
  return { core, conn, ch, sink };
}

const msg = (routingKey: string, body = 'x') => ({ exchange: 'amq.topic', routingKey, properties: {}, body: Buffer.from(body) });

function codeOf(f: () => unknown): number | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof BrokerError ? e.code : -1;
  }
  return undefined;
}

describe('SystemSession', () => {
  test('is opened only on an existing vhost and reports queues with their bindings', () => {
    const { core } = setup();
    expect(core.openSession('nope')).toBeUndefined();
    const s = core.openSession('v')!;
    expect(s.queueExists('q')).toBe(true);
    expect(s.queueExists('other')).toBe(false);
    expect(s.queueInfo('other')).toBeUndefined();
    const info = s.queueInfo('q')!;
    expect(info.exclusive).toBe(false);
    expect(info.bindings.map((b) => [b.exchange, b.routingKey, b.args]).sort()).toEqual([
      ['amq.fanout', '', {}],
      ['amq.topic', 'a.*', { 'x-opt': 1 }],
    ]);
    // Not a client connection: nothing shows up in the connection list.
    expect(core.connections.size).toBe(1);
  });

  test('counts the consumers of a queue', () => {
    const { core, ch } = setup();
    const s = core.openSession('v')!;
    expect(s.queueInfo('q')!.consumers).toBe(1);
    ch.consume('q', { consumerTag: 'second', noAck: true }, new Sink());
    expect(s.queueInfo('q')!.consumers).toBe(2);
    ch.cancel('second');
    expect(s.queueInfo('q')!.consumers).toBe(1);
  });

  test('deletes a queue whoever declared it, cancelling its consumers', () => {
    const { core, ch } = setup();
    const s = core.openSession('v')!;
    expect(s.deleteQueue('q')).toBe(0);
    expect(s.queueExists('q')).toBe(false);
    expect(ch.consumers.size).toBe(0);
    expect(s.deleteQueue('q')).toBe(0);
  });

  test('publishes for a user with that user write and topic permissions', async () => {
    const { core, sink } = setup();
    const s = core.openSession('v')!;
    s.publish(msg('a.b', 'will'), { user: 'dev', clientId: 'c1', publisherId: 0 });
    await waitFor(() => sink.got.length === 1);
    expect(sink.got[0]!.message.body.toString()).toBe('will');
    expect(codeOf(() => s.publish(msg('a.b'), { user: 'reader', clientId: 'r', publisherId: 0 }))).toBe(ReplyCode.ACCESS_REFUSED);
    // Topic permission with {client_id}: only the client's own subtree.
    core.auth.setTopicPermission('v', 'dev', { exchange: 'amq.topic', write: '^a\\.{client_id}$', read: '.*' });
    expect(codeOf(() => s.publish(msg('a.other'), { user: 'dev', clientId: 'c1', publisherId: 0 }))).toBe(ReplyCode.ACCESS_REFUSED);
    s.publish(msg('a.c1', 'own'), { user: 'dev', clientId: 'c1', publisherId: 0 });
    await waitFor(() => sink.got.length === 2);
    expect(codeOf(() => s.publish({ ...msg('a.b'), exchange: 'missing' }, { user: 'dev', clientId: 'c1', publisherId: 0 }))).toBe(ReplyCode.NOT_FOUND);
  });

  test('the publisher id given travels with the message (MQTT no-local compares it)', async () => {
    const { core, conn, sink } = setup();
    const s = core.openSession('v')!;
    s.publish(msg('a.b', 'mine'), { user: 'dev', clientId: 'c1', publisherId: conn.id });
    await waitFor(() => sink.got.length === 1);
    expect(sink.got[0]!.message.publisherId).toBe(conn.id);
  });

  test('once its vhost is deleted it sees no queues and refuses publishes', () => {
    const { core } = setup();
    const s = core.openSession('v')!;
    core.vhosts.delete('v');
    expect(s.isOpen).toBe(false);
    expect(s.queueExists('q')).toBe(false);
    expect(s.deleteQueue('q')).toBe(0);
    expect(codeOf(() => s.publish(msg('a.b'), { user: 'dev', clientId: 'c1', publisherId: 0 }))).toBe(ReplyCode.NOT_FOUND);
  });
});
