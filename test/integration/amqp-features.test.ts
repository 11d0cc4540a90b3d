import { connect, type Channel, type ChannelModel, type ConsumeMessage, type GetMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
let conn: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  tb = await startTestBroker();
  conn = await connect(tb.amqpUrl);
  ch = await conn.createChannel();
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

async function tempQueue(args: Record<string, unknown> = {}, c: Channel = ch): Promise<string> {
  return (await c.assertQueue('', { exclusive: true, arguments: args })).queue;
}

async function getAll(q: string, c: Channel = ch): Promise<GetMessage[]> {
  const out: GetMessage[] = [];
  for (let m = await c.get(q, { noAck: true }); m; m = await c.get(q, { noAck: true })) out.push(m);
  return out;
}

describe('publishing', () => {
  test('publisher confirms cover every publish, coalesced with multiple', async () => {
    const cc = await conn.createConfirmChannel();
    const q = await tempQueue({}, cc);
    const acks: { deliveryTag: number; multiple: boolean }[] = [];
    cc.on('ack', (a: { deliveryTag: number; multiple: boolean }) => acks.push(a));
    for (let i = 0; i < 500; i++) cc.sendToQueue(q, Buffer.from(String(i)));
    await cc.waitForConfirms();
    expect(acks.at(-1)?.deliveryTag).toBe(500);
    expect(acks.some((a) => a.multiple)).toBe(true);
    expect(acks.length).toBeLessThan(500);
    expect((await cc.checkQueue(q)).messageCount).toBe(500);
    await cc.close();
  });

  test('an unroutable mandatory message comes back with basic.return 312 NO_ROUTE', async () => {
    const returned = new Promise<ConsumeMessage>((resolve) => ch.once('return', resolve));
    ch.publish('amq.direct', 'nobody-home', Buffer.from('lost'), { mandatory: true, messageId: 'm1' });
    const r = await returned;
    expect(r.content.toString()).toBe('lost');
    expect(r.properties.messageId).toBe('m1');
    expect((r.fields as unknown as { replyCode: number }).replyCode).toBe(312);
    expect((r.fields as unknown as { replyText: string }).replyText).toBe('NO_ROUTE');
  });

  test('an unroutable message without mandatory is dropped silently and the channel stays open', async () => {
    ch.publish('amq.direct', 'nobody-home', Buffer.from('x'));
    const q = await ch.assertQueue('', { exclusive: true });
    expect(q.messageCount).toBe(0);
  });

  test('a 16 MiB message crosses many body frames intact', async () => {
    const q = await tempQueue();
    const body = Buffer.alloc(16 * 1024 * 1024);
    for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
    ch.sendToQueue(q, body);
    const m = await waitFor(() => ch.get(q, { noAck: true }), 10_000);
    expect(m.content.length).toBe(body.length);
    expect(m.content.equals(body)).toBe(true);
  });

  test('all basic properties and header value types survive the round trip', async () => {
    const q = await tempQueue();
    const headers = { s: 'str', i: 42, neg: -7, big: 2 ** 40, f: 1.5, t: true, nested: { a: 1, b: 'x' }, arr: [1, 'two', false], v: null };
    ch.sendToQueue(q, Buffer.from('p'), {
      contentType: 'text/plain',
      contentEncoding: 'utf-8',
      headers,
      deliveryMode: 2,
      priority: 3,
      correlationId: 'corr',
      replyTo: 'rq',
      expiration: '60000',
      messageId: 'mid',
      timestamp: 1700000000,
      type: 'kind',
      userId: 'guest',
      appId: 'app',
    });
    const m = await waitFor(() => ch.get(q, { noAck: true }));
    const p = m.properties;
    expect([p.contentType, p.contentEncoding, p.deliveryMode, p.priority, p.correlationId, p.replyTo, p.expiration]).toEqual(
      ['text/plain', 'utf-8', 2, 3, 'corr', 'rq', '60000'],
    );
    expect([p.messageId, p.timestamp, p.type, p.userId, p.appId]).toEqual(['mid', 1700000000, 'kind', 'guest', 'app']);
    expect(p.headers).toEqual(headers);
  });
});

describe('transactions', () => {
  test('publishes are invisible until commit and discarded by rollback', async () => {
    const tx = await conn.createChannel();
    const q = await tempQueue({}, tx);
    // amqplib has no public tx API: use the raw RPC it exposes.
    const rpc = (tx as unknown as { rpc: (m: number, f: object, expect: number) => Promise<unknown> }).rpc.bind(tx);
    await rpc(5898250 /* tx.select */, {}, 5898251);
    tx.sendToQueue(q, Buffer.from('a'));
    tx.sendToQueue(q, Buffer.from('b'));
    expect((await ch.checkQueue(q)).messageCount).toBe(0);
    await rpc(5898270 /* tx.rollback */, {}, 5898271);
    expect((await tx.checkQueue(q)).messageCount).toBe(0);
    tx.sendToQueue(q, Buffer.from('c'));
    await rpc(5898260 /* tx.commit */, {}, 5898261);
    expect((await tx.checkQueue(q)).messageCount).toBe(1);
    const m = await tx.get(q, { noAck: false });
    expect(m && m.content.toString()).toBe('c');
    tx.ack(m as GetMessage);
    expect((await tx.checkQueue(q)).messageCount).toBe(0);
    await rpc(5898270, {}, 5898271); // the ack is rolled back: still unacked, requeued when the channel closes
    await tx.close();
    expect((await ch.checkQueue(q)).messageCount).toBe(1);
  });
});

describe('consuming', () => {
  test('messages unacked by a closed channel are redelivered, flagged redelivered, in order', async () => {
    const q = (await ch.assertQueue('redeliver-q')).queue;
    for (let i = 0; i < 3; i++) ch.sendToQueue(q, Buffer.from(String(i)));
    const c1 = await conn.createChannel();
    const seen: ConsumeMessage[] = [];
    await c1.consume(q, (m) => m && seen.push(m));
    await waitFor(() => seen.length === 3);
    expect(seen.every((m) => !m.fields.redelivered)).toBe(true);
    await c1.close();
    const again = await getAll(q);
    expect(again.map((m) => m.content.toString())).toEqual(['0', '1', '2']);
    expect(again.every((m) => m.fields.redelivered)).toBe(true);
    await ch.deleteQueue(q);
  });

  test('a requeued message returns to its original position', async () => {
    const c = await conn.createChannel();
    const q = await tempQueue({}, c);
    for (let i = 1; i <= 5; i++) c.sendToQueue(q, Buffer.from(String(i)));
    const got: GetMessage[] = [];
    for (let i = 0; i < 3; i++) got.push((await waitFor(() => c.get(q))) as GetMessage);
    c.nack(got[1]!, false, true); // message 2 back
    c.ack(got[0]!);
    c.ack(got[2]!);
    const rest = await getAll(q, c);
    expect(rest.map((m) => [m.content.toString(), m.fields.redelivered])).toEqual([
      ['2', true],
      ['4', false],
      ['5', false],
    ]);
    await c.close();
  });

  test('reject without requeue drops the message; nack multiple requeues all up to the tag', async () => {
    const c = await conn.createChannel();
    const q = await tempQueue({}, c);
    for (let i = 1; i <= 4; i++) c.sendToQueue(q, Buffer.from(String(i)));
    const got: GetMessage[] = [];
    for (let i = 0; i < 4; i++) got.push((await waitFor(() => c.get(q))) as GetMessage);
    c.reject(got[0]!, false);
    c.nack(got[2]!, true, true); // 2 and 3
    c.ack(got[3]!);
    const rest = await getAll(q, c);
    expect(rest.map((m) => m.content.toString())).toEqual(['2', '3']);
    await c.close();
  });

  test('basic.get answers get-empty on an empty queue and reports the remaining count', async () => {
    const q = await tempQueue();
    expect(await ch.get(q)).toBe(false);
    ch.sendToQueue(q, Buffer.from('a'));
    ch.sendToQueue(q, Buffer.from('b'));
    const m = await waitFor(() => ch.get(q, { noAck: true }));
    expect((m.fields as unknown as { messageCount: number }).messageCount).toBe(1);
  });

  test('basic.recover requeues unacked deliveries', async () => {
    const c = await conn.createChannel();
    const q = await tempQueue({}, c);
    c.sendToQueue(q, Buffer.from('r'));
    const m = (await waitFor(() => c.get(q))) as GetMessage;
    expect(m.fields.redelivered).toBe(false);
    await c.recover();
    const again = (await waitFor(() => c.get(q, { noAck: true }))) as GetMessage;
    expect([again.content.toString(), again.fields.redelivered]).toEqual(['r', true]);
    await c.close();
  });

  test('an exclusive consumer locks the queue for others (403)', async () => {
    const q = (await ch.assertQueue('excl-consumer')).queue;
    const c1 = await conn.createChannel();
    await c1.consume(q, () => undefined, { exclusive: true });
    const c2 = await conn.createChannel();
    const closed = new Promise<Error>((resolve) => c2.once('error', resolve));
    await expect(c2.consume(q, () => undefined)).rejects.toThrow(/ACCESS_REFUSED/);
    expect(String(await closed)).toMatch(/403/);
    await c1.close();
    await ch.deleteQueue(q);
  });

  test('deleting a queue cancels its consumers (consumer_cancel_notify)', async () => {
    const c = await conn.createChannel();
    const q = (await c.assertQueue('cancel-notify')).queue;
    let cancelled = false;
    await c.consume(q, (m) => {
      if (m === null) cancelled = true;
    });
    await ch.deleteQueue(q);
    await waitFor(() => cancelled);
    expect(cancelled).toBe(true);
    await c.close();
  });

  test('global prefetch limits the whole channel; per-consumer prefetch each consumer', async () => {
    const c = await conn.createChannel();
    const q1 = await tempQueue({}, c);
    const q2 = await tempQueue({}, c);
    for (let i = 0; i < 10; i++) {
      c.sendToQueue(q1, Buffer.from('a'));
      c.sendToQueue(q2, Buffer.from('b'));
    }
    await c.prefetch(3, true);
    const got: ConsumeMessage[] = [];
    await c.consume(q1, (m) => m && got.push(m));
    await c.consume(q2, (m) => m && got.push(m));
    await waitFor(() => got.length === 3);
    const ready = async (): Promise<number> => (await c.checkQueue(q1)).messageCount + (await c.checkQueue(q2)).messageCount;
    expect(await ready()).toBe(17);
    c.ack(got[0]!);
    await waitFor(() => got.length === 4);
    expect(await ready()).toBe(16);
    await c.close();
  });

  test('a higher-priority consumer gets messages while it has credit', async () => {
    const c = await conn.createChannel();
    const q = await tempQueue({}, c);
    const low: string[] = [];
    const high: string[] = [];
    await c.consume(q, (m) => m && low.push(m.content.toString()), { noAck: true, priority: 1 });
    await c.consume(q, (m) => m && high.push(m.content.toString()), { noAck: true, priority: 10 });
    for (let i = 0; i < 5; i++) c.sendToQueue(q, Buffer.from(String(i)));
    await waitFor(() => high.length === 5);
    expect(low).toEqual([]);
    await c.close();
  });

  test('channel.flow pauses deliveries until reactivated', async () => {
    const c = await conn.createChannel();
    const q = await tempQueue({}, c);
    const flow = (c as unknown as { rpc: (m: number, f: object, expect: number) => Promise<unknown> }).rpc.bind(c);
    await flow(1310740 /* channel.flow */, { active: false }, 1310741);
    const got: string[] = [];
    await c.consume(q, (m) => m && got.push(m.content.toString()), { noAck: true });
    c.sendToQueue(q, Buffer.from('held'));
    await waitFor(async () => (await c.checkQueue(q)).messageCount === 1);
    expect(got).toEqual([]);
    await flow(1310740, { active: true }, 1310741);
    await waitFor(() => got.length === 1);
    expect(got).toEqual(['held']);
    await c.close();
  });
});

describe('exchanges', () => {
  test('exchange-to-exchange bindings route onwards, and a loop does not duplicate', async () => {
    await ch.assertExchange('e2e-a', 'topic', { autoDelete: false });
    await ch.assertExchange('e2e-b', 'fanout', { autoDelete: false });
    await ch.bindExchange('e2e-b', 'e2e-a', 'x.#');
    await ch.bindExchange('e2e-a', 'e2e-b', ''); // loop back
    const q = await tempQueue();
    await ch.bindQueue(q, 'e2e-b', '');
    ch.publish('e2e-a', 'x.y', Buffer.from('via-b'));
    ch.publish('e2e-a', 'z', Buffer.from('no'));
    await waitFor(async () => (await ch.checkQueue(q)).messageCount === 1);
    expect((await getAll(q)).map((m) => m.content.toString())).toEqual(['via-b']);
    await ch.unbindExchange('e2e-b', 'e2e-a', 'x.#');
    await ch.deleteExchange('e2e-a');
    await ch.deleteExchange('e2e-b');
  });

  test('the alternate exchange receives what the main exchange cannot route', async () => {
    await ch.assertExchange('ae-target', 'fanout', { durable: false });
    await ch.assertExchange('ae-main', 'direct', { durable: false, alternateExchange: 'ae-target' });
    const unrouted = await tempQueue();
    const routed = await tempQueue();
    await ch.bindQueue(unrouted, 'ae-target', '');
    await ch.bindQueue(routed, 'ae-main', 'known');
    ch.publish('ae-main', 'known', Buffer.from('k'));
    ch.publish('ae-main', 'unknown', Buffer.from('u'));
    await waitFor(async () => (await ch.checkQueue(unrouted)).messageCount === 1);
    expect((await getAll(unrouted)).map((m) => m.content.toString())).toEqual(['u']);
    expect((await getAll(routed)).map((m) => m.content.toString())).toEqual(['k']);
  });

  test('headers exchange matches with x-match all and any', async () => {
    await ch.assertExchange('hdr', 'headers', { durable: false });
    const all = await tempQueue();
    const any = await tempQueue();
    await ch.bindQueue(all, 'hdr', '', { 'x-match': 'all', format: 'pdf', type: 'report' });
    await ch.bindQueue(any, 'hdr', '', { 'x-match': 'any', format: 'pdf', type: 'report' });
    ch.publish('hdr', '', Buffer.from('both'), { headers: { format: 'pdf', type: 'report' } });
    ch.publish('hdr', '', Buffer.from('one'), { headers: { format: 'pdf', type: 'log' } });
    ch.publish('hdr', '', Buffer.from('none'), { headers: { format: 'zip' } });
    await waitFor(async () => (await ch.checkQueue(any)).messageCount === 2);
    expect((await getAll(all)).map((m) => m.content.toString())).toEqual(['both']);
    expect((await getAll(any)).map((m) => m.content.toString())).toEqual(['both', 'one']);
  });

  test('an auto-delete exchange goes away with its last binding', async () => {
    await ch.assertExchange('ad-x', 'fanout', { autoDelete: true });
    const q = await tempQueue();
    await ch.bindQueue(q, 'ad-x', '');
    await ch.unbindQueue(q, 'ad-x', '');
    const c = await conn.createChannel();
    c.on('error', () => undefined);
    await expect(c.checkExchange('ad-x')).rejects.toThrow(/404/);
  });

  test('an auto-delete queue goes away when its last consumer cancels', async () => {
    const c = await conn.createChannel();
    const q = (await c.assertQueue('ad-q', { autoDelete: true })).queue;
    const { consumerTag } = await c.consume(q, () => undefined);
    await c.cancel(consumerTag);
    c.on('error', () => undefined);
    await expect(c.checkQueue(q)).rejects.toThrow(/404/);
  });
});

describe('queue arguments', () => {
  test('expired messages are dead-lettered with x-death', async () => {
    const dead = await tempQueue();
    await ch.assertExchange('dlx', 'fanout', { durable: false });
    await ch.bindQueue(dead, 'dlx', '');
    const q = await tempQueue({ 'x-message-ttl': 30, 'x-dead-letter-exchange': 'dlx' });
    ch.sendToQueue(q, Buffer.from('old'));
    const m = (await waitFor(() => ch.get(dead, { noAck: true }), 5000)) as GetMessage;
    expect(m.content.toString()).toBe('old');
    const death = (m.properties.headers?.['x-death'] as Record<string, unknown>[])[0]!;
    expect([death['reason'], death['queue'], death['count']]).toEqual(['expired', q, 1]);
    expect(m.properties.headers?.['x-first-death-reason']).toBe('expired');
  });

  test('per-message expiration drops a message nobody consumed in time', async () => {
    const q = await tempQueue();
    ch.sendToQueue(q, Buffer.from('short'), { expiration: '20' });
    ch.sendToQueue(q, Buffer.from('long'));
    await waitFor(async () => (await ch.checkQueue(q)).messageCount === 1);
    expect((await getAll(q)).map((m) => m.content.toString())).toEqual(['long']);
  });

  test('rejected messages are dead-lettered with reason rejected and the dead-letter routing key', async () => {
    const dead = await tempQueue();
    await ch.assertExchange('dlx2', 'direct', { durable: false });
    await ch.bindQueue(dead, 'dlx2', 'dead');
    const q = await tempQueue({ 'x-dead-letter-exchange': 'dlx2', 'x-dead-letter-routing-key': 'dead' });
    ch.sendToQueue(q, Buffer.from('bad'));
    const m = (await waitFor(() => ch.get(q))) as GetMessage;
    ch.reject(m, false);
    const d = (await waitFor(() => ch.get(dead, { noAck: true }))) as GetMessage;
    expect(d.fields.routingKey).toBe('dead');
    expect((d.properties.headers?.['x-death'] as Record<string, unknown>[])[0]!['reason']).toBe('rejected');
  });

  test('x-max-length drops from the head by default', async () => {
    const q = await tempQueue({ 'x-max-length': 2 });
    for (const s of ['1', '2', '3']) ch.sendToQueue(q, Buffer.from(s));
    await waitFor(async () => (await ch.checkQueue(q)).messageCount === 2);
    expect((await getAll(q)).map((m) => m.content.toString())).toEqual(['2', '3']);
  });

  test('x-overflow reject-publish nacks the confirm of a publish that does not fit', async () => {
    const cc = await conn.createConfirmChannel();
    const q = await tempQueue({ 'x-max-length': 1, 'x-overflow': 'reject-publish' }, cc);
    const results = await Promise.all(
      ['a', 'b'].map(
        (s) => new Promise<string>((resolve) => cc.sendToQueue(q, Buffer.from(s), {}, (err) => resolve(err ? 'nack' : 'ack'))),
      ),
    );
    expect(results).toEqual(['ack', 'nack']);
    await cc.close();
  });

  test('x-max-priority delivers higher priorities first', async () => {
    const q = await tempQueue({ 'x-max-priority': 5 });
    ch.sendToQueue(q, Buffer.from('low'), { priority: 1 });
    ch.sendToQueue(q, Buffer.from('high'), { priority: 5 });
    ch.sendToQueue(q, Buffer.from('none'));
    await waitFor(async () => (await ch.checkQueue(q)).messageCount === 3);
    expect((await getAll(q)).map((m) => m.content.toString())).toEqual(['high', 'low', 'none']);
  });

  test('x-expires deletes an unused queue', async () => {
    const q = (await ch.assertQueue('expiring', { arguments: { 'x-expires': 50 } })).queue;
    const c = await conn.createChannel();
    c.on('error', () => undefined);
    await waitFor(async () => tb.broker.core.vhosts.get('/')!.queues.get(q) === undefined, 3000);
    await expect(c.checkQueue(q)).rejects.toThrow(/404/);
  });
});

describe('flow control', () => {
  test('a memory alarm sends connection.blocked and clearing it connection.unblocked', async () => {
    const c2 = await connect(tb.amqpUrl);
    const events: string[] = [];
    c2.on('blocked', () => events.push('blocked'));
    c2.on('unblocked', () => events.push('unblocked'));
    const alarms = tb.broker.core.alarms;
    alarms.set('memory', true);
    await waitFor(() => events.length === 1);
    alarms.set('memory', false);
    await waitFor(() => events.length === 2);
    expect(events).toEqual(['blocked', 'unblocked']);
    await c2.close();
  });
});

describe('accounting', () => {
  test('an AMQP connection counts the bytes and frames it sends and receives', async () => {
    const q = await tempQueue();
    ch.sendToQueue(q, Buffer.from('counted'));
    await waitFor(() => ch.get(q, { noAck: true }));
    const conns = [...tb.broker.core.connections].filter((c) => c.info.protocol === 'AMQP 0-9-1');
    expect(conns.length).toBeGreaterThan(0);
    for (const c of conns) {
      expect(c.traffic.sendOct).toBeGreaterThan(0);
      expect(c.traffic.sendCnt).toBeGreaterThan(0);
      expect(c.traffic.recvOct).toBeGreaterThan(0);
    }
  });
});
