import { connect, credentials, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';

interface AmqpError extends Error {
  code?: number;
  classId?: number;
  methodId?: number;
}

let tb: TestBroker;
let conn: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker();
  conn = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

/** A channel whose closing error is captured instead of thrown. */
async function channel(c: ChannelModel = conn): Promise<{ ch: Channel; closed: Promise<AmqpError> }> {
  const ch = await c.createChannel();
  const closed = new Promise<AmqpError>((resolve) => ch.once('error', resolve));
  return { ch, closed };
}

/** A fresh connection whose connection-level error is captured. */
async function connection(): Promise<{ c: ChannelModel; closed: Promise<AmqpError> }> {
  const c = await connect(tb.amqpUrl);
  const closed = new Promise<AmqpError>((resolve) => c.once('error', resolve));
  return { c, closed };
}

function ids(e: AmqpError): [number | undefined, number | undefined, number | undefined] {
  return [e.code, e.classId, e.methodId];
}

describe('channel errors (the connection stays open)', () => {
  test('404 NOT_FOUND on a passive declare of a missing queue, naming queue.declare', async () => {
    const { ch, closed } = await channel();
    await expect(ch.checkQueue('missing')).rejects.toThrow(/NOT_FOUND - no queue 'missing' in vhost '\/'/);
    expect(ids(await closed)).toEqual([404, 50, 10]);
    // the connection is still usable
    const ok = await conn.createChannel();
    await ok.close();
  });

  test('404 when binding to a missing exchange', async () => {
    const { ch, closed } = await channel();
    const q = await ch.assertQueue('', { exclusive: true });
    await expect(ch.bindQueue(q.queue, 'no-such-exchange', 'k')).rejects.toThrow(/no exchange 'no-such-exchange'/);
    expect(ids(await closed)).toEqual([404, 50, 20]);
  });

  test('404 when publishing to a missing exchange, naming basic.publish', async () => {
    const { ch, closed } = await channel();
    ch.publish('no-such-exchange', 'k', Buffer.from('x'));
    expect(ids(await closed)).toEqual([404, 60, 40]);
  });

  test('403 ACCESS_REFUSED when declaring a queue with a reserved amq. name', async () => {
    const { ch, closed } = await channel();
    await expect(ch.assertQueue('amq.mine')).rejects.toThrow(/ACCESS_REFUSED/);
    expect(ids(await closed)).toEqual([403, 50, 10]);
  });

  test('403 when publishing to an internal exchange', async () => {
    const setup = await conn.createChannel();
    await setup.assertExchange('internal-x', 'fanout', { internal: true, durable: false });
    const { ch, closed } = await channel();
    ch.publish('internal-x', '', Buffer.from('x'));
    expect(ids(await closed)).toEqual([403, 60, 40]);
    await setup.deleteExchange('internal-x');
    await setup.close();
  });

  test('405 RESOURCE_LOCKED for an exclusive queue of another connection', async () => {
    const owner = await conn.createChannel();
    const q = await owner.assertQueue('mine-only', { exclusive: true });
    const { c } = await connection();
    const ch = await c.createChannel();
    const closed = new Promise<AmqpError>((resolve) => ch.once('error', resolve));
    await expect(ch.consume(q.queue, () => undefined)).rejects.toThrow(/RESOURCE_LOCKED/);
    expect(ids(await closed)).toEqual([405, 60, 20]);
    await c.close();
    await owner.deleteQueue(q.queue);
    await owner.close();
  });

  test('406 PRECONDITION_FAILED on a redeclare with different durability', async () => {
    const setup = await conn.createChannel();
    await setup.assertQueue('durable-q', { durable: true });
    const { ch, closed } = await channel();
    await expect(ch.assertQueue('durable-q', { durable: false })).rejects.toThrow(/inequivalent arg 'durable'/);
    expect(ids(await closed)).toEqual([406, 50, 10]);
    await setup.deleteQueue('durable-q');
    await setup.close();
  });

  test('406 on a redeclare of an exchange with another type', async () => {
    const { ch, closed } = await channel();
    await expect(ch.assertExchange('amq.direct', 'fanout')).rejects.toThrow(/inequivalent arg 'type'/);
    expect(ids(await closed)).toEqual([406, 40, 10]);
  });

  test('406 when acknowledging an unknown delivery tag', async () => {
    const { ch, closed } = await channel();
    const q = await ch.assertQueue('', { exclusive: true });
    ch.sendToQueue(q.queue, Buffer.from('x'));
    const m = await ch.get(q.queue, { noAck: true });
    expect(m).not.toBe(false);
    ch.ack(m as Exclude<typeof m, false>); // was no-ack: unknown to the broker
    const e = await closed;
    expect(ids(e)).toEqual([406, 60, 80]);
    expect(e.message).toMatch(/unknown delivery tag 1/);
  });

  test('406 for delete if-unused on a queue with consumers and if-empty on one with messages', async () => {
    const setup = await conn.createChannel();
    await setup.assertQueue('busy');
    await setup.consume('busy', () => undefined);
    const a = await channel();
    await expect(a.ch.deleteQueue('busy', { ifUnused: true })).rejects.toThrow(/in use/);
    expect(ids(await a.closed)).toEqual([406, 50, 40]);
    await setup.assertQueue('full');
    setup.sendToQueue('full', Buffer.from('x'));
    const b = await channel();
    await expect(b.ch.deleteQueue('full', { ifEmpty: true })).rejects.toThrow(/not empty/);
    expect(ids(await b.closed)).toEqual([406, 50, 40]);
    await setup.deleteQueue('busy');
    await setup.deleteQueue('full');
    await setup.close();
  });

  test('406 when the message is larger than the configured maximum', async () => {
    const small = await startTestBroker({ maxMessageSize: 1024 });
    const c = await connect(small.amqpUrl);
    const ch = await c.createChannel();
    const closed = new Promise<AmqpError>((resolve) => ch.once('error', resolve));
    ch.sendToQueue('anything', Buffer.alloc(2048));
    const e = await closed;
    expect(e.code).toBe(406);
    expect(e.message).toMatch(/message size 2048 is larger than configured max size 1024/);
    const ok = await c.createChannel(); // the connection survives
    await ok.close();
    await c.close();
    await small.stop();
  });

  test('403 when the user_id property names another user', async () => {
    const { ch, closed } = await channel();
    ch.publish('amq.direct', 'k', Buffer.from('x'), { userId: 'somebody-else' });
    expect((await closed).code).toBe(406);
  });
});

describe('connection errors', () => {
  test('503 COMMAND_INVALID for an unknown exchange type closes the connection', async () => {
    const { c, closed } = await connection();
    const ch = await c.createChannel();
    ch.on('error', () => undefined);
    await expect(ch.assertExchange('weird', 'no-such-type')).rejects.toThrow();
    const e = await closed;
    expect(e.code).toBe(503);
    expect(e.message).toMatch(/invalid exchange type 'no-such-type'/);
  });

  test('530 NOT_ALLOWED when a consumer tag is reused on a channel', async () => {
    const { c, closed } = await connection();
    const ch = await c.createChannel();
    ch.on('error', () => undefined);
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.consume(q.queue, () => undefined, { consumerTag: 'dup' });
    await expect(ch.consume(q.queue, () => undefined, { consumerTag: 'dup' })).rejects.toThrow();
    const e = await closed;
    expect(e.code).toBe(530);
    expect(e.message).toMatch(/attempt to reuse consumer tag 'dup'/);
  });

  test('connection.close (not open-ok) answers a connection.open for a vhost that does not exist', async () => {
    // amqplib reports only the unexpected method; the raw-socket suite checks code 530 on the wire.
    await expect(connect(`${tb.amqpUrl}/no-such-vhost`)).rejects.toThrow(/got <ConnectionClose/);
  });

  test('403 ACCESS_REFUSED for bad credentials (authentication_failure_close)', async () => {
    const url = tb.amqpUrl.replace('guest:guest', 'guest:wrong');
    await expect(connect(url)).rejects.toThrow(/ACCESS_REFUSED|403/);
  });

  test('AMQPLAIN authenticates like PLAIN', async () => {
    const c = await connect(tb.amqpUrl, { credentials: credentials.amqplain('guest', 'guest') });
    const ch = await c.createChannel();
    await ch.close();
    await c.close();
    await expect(connect(tb.amqpUrl.replace('guest:guest@', ''), { credentials: credentials.amqplain('guest', 'bad') })).rejects.toThrow(
      /ACCESS_REFUSED|403/,
    );
  });

  test('errors on one connection leave other connections untouched', async () => {
    const { c, closed } = await connection();
    const ch = await c.createChannel();
    ch.on('error', () => undefined);
    await ch.assertExchange('weird2', 'bogus').catch(() => undefined);
    await closed;
    const ok = await conn.createChannel();
    const q = await ok.assertQueue('', { exclusive: true });
    ok.sendToQueue(q.queue, Buffer.from('still here'));
    const m = await ok.get(q.queue, { noAck: true });
    expect(m && m.content.toString()).toBe('still here');
    await ok.close();
  });
});
