import { AMQPClient } from '@cloudamqp/amqp-client';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt } from '../helpers/management.js';

/**
 * RabbitMQ's permission semantics over AMQP 0-9-1: configure / write / read regexes per vhost,
 * topic permissions on routing keys, 403 ACCESS_REFUSED closing the channel.
 */

let tb: TestBroker;
let api: Mgmt;
let admin: ChannelModel;
let adminCh: Channel;
let app: ChannelModel;

const PERMS = { configure: '^app\\.', write: '^app\\.|^amq\\.(default|topic)$', read: '^app\\.|^amq\\.topic$' };

function url(user: string, pass: string, vhost = ''): string {
  return `amqp://${user}:${pass}@127.0.0.1:${tb.broker.ports.amqp}/${encodeURIComponent(vhost)}`;
}

/** Runs `op` on a fresh channel and returns the channel error it causes (the channel closes). */
async function refusal(c: ChannelModel, op: (ch: Channel) => unknown): Promise<string> {
  const ch = await c.createChannel();
  const closed = new Promise<Error>((resolve) => ch.once('error', resolve));
  try {
    await op(ch);
  } catch {
    // RPCs reject as well as emitting 'error'
  }
  return String((await closed).message);
}

beforeAll(async () => {
  tb = await startTestBroker();
  api = mgmt(tb.broker.ports.http!);
  await api.put('/users/app', { password: 'pw', tags: '' });
  await api.put('/permissions/%2F/app', PERMS);
  await api.put('/users/stranger', { password: 'pw', tags: '' });
  admin = await connect(tb.amqpUrl);
  adminCh = await admin.createChannel();
  await adminCh.assertQueue('shared.q', { durable: false });
  await adminCh.assertExchange('other.x', 'fanout', { durable: false });
  app = await connect(url('app', 'pw'));
});
afterAll(async () => {
  await app.close();
  await admin.close();
  await tb.stop();
});

describe('connecting', () => {
  test('a wrong password is ACCESS_REFUSED', async () => {
    await expect(connect(url('app', 'nope'))).rejects.toThrow(/ACCESS.REFUSED|403/);
  });

  test('a user without permissions in the vhost is NOT_ALLOWED on connection.open', async () => {
    // amqplib only says the handshake ended; amqp-client reports the server's close
    await expect(connect(url('stranger', 'pw'))).rejects.toThrow(/ConnectionClose/);
    const client = new AMQPClient(url('stranger', 'pw'));
    await expect(client.connect()).rejects.toThrow(/NOT_ALLOWED - access to vhost '\/' refused for user 'stranger'/);
  });
});

describe('configure', () => {
  test('declaring a queue needs configure on its name', async () => {
    const ch = await app.createChannel();
    expect((await ch.assertQueue('app.q1', { durable: false })).queue).toBe('app.q1');
    await ch.close();
    const msg = await refusal(app, (c) => c.assertQueue('other.q', { durable: false }));
    expect(msg).toMatch(/ACCESS_REFUSED - access to queue 'other.q' in vhost '\/' refused for user 'app'/);
    expect(tb.broker.core.vhosts.get('/')!.queues.has('other.q')).toBe(false);
  });

  test('a server-named queue needs configure on the generated name, and leaves nothing behind when refused', async () => {
    const before = tb.broker.core.vhosts.get('/')!.queues.size;
    const msg = await refusal(app, (c) => c.assertQueue('', { exclusive: true }));
    expect(msg).toMatch(/ACCESS_REFUSED - access to queue 'amq\.gen-[\w-]+' in vhost '\/' refused/);
    expect(tb.broker.core.vhosts.get('/')!.queues.size).toBe(before);
  });

  test('deleting needs configure; a passive declare needs nothing', async () => {
    expect(await refusal(app, (c) => c.deleteQueue('shared.q'))).toMatch(/ACCESS_REFUSED/);
    const ch = await app.createChannel();
    expect((await ch.checkQueue('shared.q')).queue).toBe('shared.q');
    await ch.close();
  });

  test('an alternate exchange needs write on it; a dead-letter exchange needs write on it and read on the queue', async () => {
    expect(await refusal(app, (c) => c.assertExchange('app.x-ae', 'direct', { durable: false, alternateExchange: 'other.x' }))).toMatch(
      /access to exchange 'other.x' in vhost '\/' refused/,
    );
    expect(await refusal(app, (c) => c.assertQueue('app.dlq', { durable: false, deadLetterExchange: 'other.x' }))).toMatch(
      /access to exchange 'other.x' in vhost '\/' refused/,
    );
    const ch = await app.createChannel();
    await ch.assertExchange('app.x', 'direct', { durable: false, alternateExchange: 'app.ae' });
    await ch.assertQueue('app.dlq', { durable: false, deadLetterExchange: 'app.x' });
    await ch.close();
  });
});

describe('write and read', () => {
  test('publishing needs write on the exchange (the default exchange is amq.default)', async () => {
    const ch = await app.createChannel();
    await ch.assertQueue('app.in', { durable: false });
    ch.sendToQueue('app.in', Buffer.from('ok'));
    await waitFor(async () => (await ch.checkQueue('app.in')).messageCount === 1, 3000, 'published');
    await ch.close();
    expect(await refusal(app, (c) => c.publish('amq.direct', 'k', Buffer.from('no')))).toMatch(
      /ACCESS_REFUSED - access to exchange 'amq.direct' in vhost '\/' refused for user 'app'/,
    );
  });

  test('consuming, getting and purging need read on the queue', async () => {
    for (const op of [(c: Channel) => c.consume('shared.q', () => undefined), (c: Channel) => c.get('shared.q'), (c: Channel) => c.purgeQueue('shared.q')]) {
      expect(await refusal(app, op)).toMatch(/ACCESS_REFUSED - access to queue 'shared.q' in vhost '\/' refused for user 'app'/);
    }
    const ch = await app.createChannel();
    expect(await ch.get('app.in', { noAck: true })).not.toBe(false);
    await ch.close();
  });

  test('binding needs write on the queue and read on the exchange', async () => {
    expect(await refusal(app, (c) => c.bindQueue('app.in', 'other.x', ''))).toMatch(/access to exchange 'other.x' in vhost '\/' refused/);
    expect(await refusal(app, (c) => c.bindQueue('shared.q', 'amq.topic', 'x'))).toMatch(/access to queue 'shared.q' in vhost '\/' refused/);
    const ch = await app.createChannel();
    await ch.bindQueue('app.in', 'app.x', 'k');
    await ch.close();
  });

  test('permission changes apply to open channels', async () => {
    const ch = await app.createChannel();
    await ch.assertQueue('app.live', { durable: false });
    ch.sendToQueue('app.live', Buffer.from('1'));
    await waitFor(async () => (await ch.checkQueue('app.live')).messageCount === 1, 3000, 'first publish');
    await api.put('/permissions/%2F/app', { ...PERMS, write: '^app\\.' });
    const closed = new Promise<Error>((resolve) => ch.once('error', resolve));
    ch.sendToQueue('app.live', Buffer.from('2'));
    expect(String((await closed).message)).toMatch(/access to exchange 'amq.default'/);
    await api.put('/permissions/%2F/app', PERMS);
  });
});

describe('topic permissions', () => {
  beforeAll(async () => {
    await api.put('/topic-permissions/%2F/app', { exchange: 'amq.topic', write: '^sensors\\.{username}\\.', read: '^sensors\\.' });
  });
  afterAll(async () => {
    await api.del('/topic-permissions/%2F/app');
  });

  test('publishing to a topic exchange needs the routing key to match (with {username})', async () => {
    const ch = await app.createChannel();
    await ch.assertQueue('app.sensors', { durable: false });
    await ch.bindQueue('app.sensors', 'amq.topic', 'sensors.#');
    ch.publish('amq.topic', 'sensors.app.temp', Buffer.from('21.5'));
    await waitFor(async () => (await ch.checkQueue('app.sensors')).messageCount === 1, 3000, 'allowed publish');
    const closed = new Promise<Error>((resolve) => ch.once('error', resolve));
    ch.publish('amq.topic', 'sensors.bob.temp', Buffer.from('19'));
    expect(String((await closed).message)).toMatch(/ACCESS_REFUSED - write access to topic 'sensors.bob.temp' in exchange 'amq.topic' in vhost '\/' refused for user 'app'/);
  });

  test('binding to a topic exchange needs the binding key to match the read regex', async () => {
    expect(await refusal(app, (c) => c.bindQueue('app.sensors', 'amq.topic', 'alerts.#'))).toMatch(/read access to topic 'alerts.#'/);
  });

  test('topic permissions constrain only topic exchanges and only users who have them', async () => {
    const ch = await app.createChannel();
    ch.sendToQueue('app.sensors', Buffer.from('direct'));
    await ch.close();
    adminCh.publish('amq.topic', 'sensors.anyone.x', Buffer.from('guest has none'));
    await waitFor(async () => (await adminCh.checkQueue('app.sensors')).messageCount === 3, 3000, 'unconstrained publishes');
  });
});
