import { describe, expect, test } from 'vitest';
import {
  BrokerError,
  Core,
  DirectReplyTo,
  REPLY_TO_PREFIX,
  REPLY_TO_QUEUE,
  SETTLED,
  type CoreChannel,
  type Delivery,
  type DeliverySink,
  type ReplyTarget,
} from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';

class Sink implements DeliverySink {
  readonly got: Delivery[] = [];
  congested = false;
  fail = false;
  deliver(d: Delivery): void {
    if (this.fail) throw new Error('cannot encode');
    this.got.push(d);
  }
}

function setup(): { core: Core; open: () => CoreChannel } {
  const core = new Core();
  const open = (): CoreChannel =>
    core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined }).openChannel(1);
  return { core, open };
}

/** Sends a request from `ch` (reply-to the pseudo-queue) and returns the reply-to the responder sees. */
async function requestAddress(ch: CoreChannel, responder: CoreChannel): Promise<string> {
  const q = responder.declareQueue('', { exclusive: true }).queue;
  const sink = new Sink();
  responder.consume(q, { noAck: true }, sink);
  ch.publish({ exchange: '', routingKey: q, properties: { replyTo: REPLY_TO_QUEUE, correlationId: 'c' }, body: Buffer.from('req') });
  const d = await waitFor(() => sink.got[0], 5000, 'the request');
  return d.message.properties.replyTo!;
}

const reply = (ch: CoreChannel, address: string, body = 'ans'): number =>
  ch.publish({ exchange: '', routingKey: address, properties: {}, body: Buffer.from(body) }).routed;

const codeOf = (f: () => unknown): number | undefined => {
  try {
    f();
  } catch (e) {
    return e instanceof BrokerError ? e.code : -1;
  }
  return undefined;
};

describe('direct reply-to registry', () => {
  test('tokens are long, random, url-safe and never repeat', () => {
    const r = new DirectReplyTo();
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const t = r.newToken();
      expect(t).toMatch(/^[A-Za-z0-9_-]{24}$/);
      seen.add(t);
    }
    expect(seen.size).toBe(1000);
  });

  test('lookup finds a target by its full address only while it is registered', () => {
    const { open } = setup();
    const ch = open();
    const r = new DirectReplyTo();
    const t: ReplyTarget = { token: r.newToken(), consumerTag: 'x', sink: new Sink(), channel: ch };
    r.add(t);
    expect(r.lookup(REPLY_TO_PREFIX + t.token)).toBe(t);
    expect(r.lookup(t.token)).toBeUndefined();
    expect(r.exists(REPLY_TO_QUEUE)).toBe(true);
    r.remove(t);
    expect(r.lookup(REPLY_TO_PREFIX + t.token)).toBeUndefined();
    expect(r.size).toBe(0);
  });

  test('a reply reaches the requester sink directly, with its own delivery tag, and is settled at once', async () => {
    const { open } = setup();
    const requester = open();
    const responder = open();
    const sink = new Sink();
    const tag = requester.consume(REPLY_TO_QUEUE, { noAck: true }, sink);
    const address = await requestAddress(requester, responder);
    expect(address).toBe(requester.replyAddress);
    expect(address.startsWith(REPLY_TO_PREFIX)).toBe(true);
    const r = responder.publish({ exchange: '', routingKey: address, properties: { correlationId: 'c' }, body: Buffer.from('ans') });
    expect(r.routed).toBe(1);
    await expect(r.settled).resolves.toBeUndefined();
    expect(sink.got).toHaveLength(1);
    const d = sink.got[0]!;
    expect([d.consumerTag, d.queue, d.message.routingKey, d.message.body.toString(), d.redelivered]).toEqual([tag, REPLY_TO_QUEUE, address, 'ans', false]);
    expect(d.deliveryTag).toBeGreaterThan(0);
    reply(responder, address);
    expect(sink.got[1]!.deliveryTag).toBe(d.deliveryTag + 1);
    expect(requester.unackedCount).toBe(0);
  });

  test('the rewritten request loses its raw AMQP property bytes, so they are re-encoded with the new reply-to', async () => {
    const { open } = setup();
    const requester = open();
    const responder = open();
    requester.consume(REPLY_TO_QUEUE, { noAck: true }, new Sink());
    const q = responder.declareQueue('', { exclusive: true }).queue;
    const got = new Sink();
    responder.consume(q, { noAck: true }, got);
    requester.publish({ exchange: '', routingKey: q, properties: { replyTo: REPLY_TO_QUEUE }, body: Buffer.from('x'), rawProperties: Buffer.from([1, 2]) });
    const m = (await waitFor(() => got.got[0], 5000, 'the request')).message;
    expect(m.properties.replyTo).toBe(requester.replyAddress);
    expect(m.rawProperties).toBeUndefined();
  });

  test('RabbitMQ rules: no-ack only, one per channel, no request without it, tags not reused', () => {
    const { open } = setup();
    const ch = open();
    expect(codeOf(() => ch.consume(REPLY_TO_QUEUE, { noAck: false }, new Sink()))).toBe(406);
    expect(codeOf(() => ch.publish({ exchange: '', routingKey: 'q', properties: { replyTo: REPLY_TO_QUEUE }, body: Buffer.alloc(0) }))).toBe(406);
    ch.consume(REPLY_TO_QUEUE, { noAck: true, consumerTag: 'rt' }, new Sink());
    expect(codeOf(() => ch.consume(REPLY_TO_QUEUE, { noAck: true }, new Sink()))).toBe(406);
    ch.declareQueue('plain', {});
    expect(codeOf(() => ch.consume('plain', { consumerTag: 'rt' }, new Sink()))).toBe(530);
  });

  test('replies to a cancelled, closed or unknown address are dropped: routed 0', () => {
    const { core, open } = setup();
    const responder = open();
    const a = open();
    a.consume(REPLY_TO_QUEUE, { noAck: true, consumerTag: 'a' }, new Sink());
    const addrA = a.replyAddress!;
    a.cancel('a');
    expect(a.replyAddress).toBeUndefined();
    expect(reply(responder, addrA)).toBe(0);
    const b = open();
    b.consume(REPLY_TO_QUEUE, { noAck: true }, new Sink());
    const addrB = b.replyAddress!;
    b.connection.close();
    expect(reply(responder, addrB)).toBe(0);
    expect(reply(responder, `${REPLY_TO_PREFIX}nobody`)).toBe(0);
    expect(reply(responder, REPLY_TO_QUEUE)).toBe(0);
    expect(core.vhosts.get('/')!.directReply.size).toBe(0);
  });

  test('a reply the sink cannot encode is dropped and the requester keeps its address', () => {
    const { open } = setup();
    const requester = open();
    const responder = open();
    const sink = new Sink();
    requester.consume(REPLY_TO_QUEUE, { noAck: true }, sink);
    const address = requester.replyAddress!;
    sink.fail = true;
    expect(reply(responder, address)).toBe(0);
    sink.fail = false;
    expect(reply(responder, address)).toBe(1);
    expect(sink.got).toHaveLength(1);
  });

  test('an address is only valid in the vhost of its requester', () => {
    const core = new Core();
    core.addVhost('other');
    core.auth.setPermission('other', 'guest', { configure: '.*', write: '.*', read: '.*' });
    const conn = (vhost: string): CoreChannel =>
      core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost }, { forceClose: () => undefined }).openChannel(1);
    const requester = conn('/');
    requester.consume(REPLY_TO_QUEUE, { noAck: true }, new Sink());
    expect(reply(conn('other'), requester.replyAddress!)).toBe(0);
    expect(reply(conn('/'), requester.replyAddress!)).toBe(1);
  });

  test('declaring the pseudo-queue or a live address creates nothing; a dead address is 404', () => {
    const { core, open } = setup();
    const ch = open();
    expect(ch.declareQueue(REPLY_TO_QUEUE, {}, true)).toEqual({ queue: REPLY_TO_QUEUE, messageCount: 0, consumerCount: 1 });
    expect(ch.declareQueue(REPLY_TO_QUEUE, { durable: true })).toEqual({ queue: REPLY_TO_QUEUE, messageCount: 0, consumerCount: 1 });
    const requester = open();
    requester.consume(REPLY_TO_QUEUE, { noAck: true }, new Sink());
    const address = requester.replyAddress!;
    expect(ch.declareQueue(address, {}, true).consumerCount).toBe(1);
    expect(core.vhosts.get('/')!.queues.has(REPLY_TO_QUEUE)).toBe(false);
    requester.close();
    expect(codeOf(() => ch.declareQueue(address, {}, true))).toBe(404);
    expect(ch.definitionsSettled()).toBe(SETTLED);
  });
});
