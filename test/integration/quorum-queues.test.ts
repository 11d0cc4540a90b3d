import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';

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

const QUORUM = { 'x-queue-type': 'quorum' };

/** Runs `fn` on a fresh channel and returns the channel error it caused. */
async function channelError(fn: (ch: Channel) => Promise<unknown>): Promise<string> {
  const ch = await conn.createChannel();
  ch.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => ch.once('close', () => resolve()));
  const err = await fn(ch).then(
    () => undefined,
    (e: unknown) => (e as Error).message,
  );
  await closed;
  return err ?? 'no error';
}

describe('quorum queue declaration', () => {
  test('a durable quorum queue declares and is listed with type quorum', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('qq-listed', { durable: true, arguments: QUORUM });
    const r = await mgmt(tb.broker.ports.http).get('/queues/%2F/qq-listed');
    expect(r.body['type']).toBe('quorum');
    const list = await mgmt(tb.broker.ports.http).list('/queues');
    expect(list.body.find((q) => q['name'] === 'qq-listed')?.['type']).toBe('quorum');
    const classic = await ch.assertQueue('cq-listed', { durable: true });
    expect((await mgmt(tb.broker.ports.http).get(`/queues/%2F/${classic.queue}`)).body['type']).toBe('classic');
    await ch.close();
  });

  test('a non-durable quorum queue is refused with 406 and RabbitMQ text', async () => {
    const err = await channelError((ch) => ch.assertQueue('qq-transient', { durable: false, arguments: QUORUM }));
    expect(err).toContain("406 (PRECONDITION-FAILED) with message \"PRECONDITION_FAILED - invalid property 'non-durable' for queue 'qq-transient' in vhost '/'\"");
  });

  test('exclusive and auto-delete quorum queues are refused', async () => {
    expect(await channelError((ch) => ch.assertQueue('qq-excl', { durable: true, exclusive: true, arguments: QUORUM }))).toContain(
      "invalid property 'exclusive-owner' for queue 'qq-excl' in vhost '/'",
    );
    expect(await channelError((ch) => ch.assertQueue('qq-ad', { durable: true, autoDelete: true, arguments: QUORUM }))).toContain(
      "invalid property 'auto-delete' for queue 'qq-ad' in vhost '/'",
    );
  });

  test('classic-only arguments are refused on a quorum queue', async () => {
    const err = await channelError((ch) => ch.assertQueue('qq-prio', { durable: true, arguments: { ...QUORUM, 'x-max-priority': 5 } }));
    expect(err).toContain("invalid arg 'x-max-priority' for queue 'qq-prio' in vhost '/' of queue type rabbit_quorum_queue");
  });

  test('an unknown queue type is refused', async () => {
    const err = await channelError((ch) => ch.assertQueue('q-fake', { durable: true, arguments: { 'x-queue-type': 'fake-queue-type' } }));
    expect(err).toContain(`invalid arg 'x-queue-type' for queue 'q-fake' in vhost '/': "unsupported queue type 'fake-queue-type'"`);
  });

  test('redeclaring a quorum queue as classic fails the equivalence check; classic and none are equivalent', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('qq-equiv', { durable: true, arguments: QUORUM });
    await ch.assertQueue('qq-equiv', { durable: true, arguments: QUORUM });
    await ch.close();
    expect(await channelError((c) => c.assertQueue('qq-equiv', { durable: true }))).toContain("inequivalent arg 'x-queue-type'");
    const ch2 = await conn.createChannel();
    await ch2.assertQueue('cq-equiv', { durable: true });
    await ch2.assertQueue('cq-equiv', { durable: true, arguments: { 'x-queue-type': 'classic' } });
    await ch2.close();
  });
});

describe('quorum queue delivery limit', () => {
  test('a redelivery after a nack carries x-delivery-count; a first delivery does not', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('qq-count', { durable: true, arguments: QUORUM });
    ch.sendToQueue('qq-count', Buffer.from('m'));
    const seen: ConsumeMessage[] = [];
    await ch.consume('qq-count', (m) => {
      if (!m) return;
      seen.push(m);
      if (seen.length < 3) ch.nack(m, false, true);
      else ch.ack(m);
    });
    await waitFor(() => seen.length === 3);
    expect(seen.map((m) => m.properties.headers?.['x-delivery-count'])).toEqual([undefined, 1, 2]);
    expect(seen.map((m) => m.fields.redelivered)).toEqual([false, true, true]);
    await ch.close();
  });

  test('a message returned more than x-delivery-limit times is dead-lettered with reason delivery_limit', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('qq-poison-dlq', { durable: true });
    await ch.assertQueue('qq-poison', {
      durable: true,
      arguments: { ...QUORUM, 'x-delivery-limit': 2, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'qq-poison-dlq' },
    });
    ch.sendToQueue('qq-poison', Buffer.from('poison'));
    let deliveries = 0;
    const { consumerTag } = await ch.consume('qq-poison', (m) => {
      if (!m) return;
      deliveries++;
      ch.reject(m, true);
    });
    const dead = await waitFor(async () => ch.get('qq-poison-dlq', { noAck: true }));
    expect(deliveries).toBe(3);
    expect(dead.content.toString()).toBe('poison');
    const death = (dead.properties.headers?.['x-death'] as Array<Record<string, unknown>>)[0]!;
    expect(death['reason']).toBe('delivery_limit');
    expect(death['queue']).toBe('qq-poison');
    await ch.cancel(consumerTag);
    expect((await ch.checkQueue('qq-poison')).messageCount).toBe(0);
    await ch.close();
  });

  test('the default delivery limit is 20 (RabbitMQ 4)', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('qq-default-limit', { durable: true, arguments: QUORUM });
    ch.sendToQueue('qq-default-limit', Buffer.from('x'));
    let deliveries = 0;
    await ch.consume('qq-default-limit', (m) => {
      if (!m) return;
      deliveries++;
      ch.nack(m, false, true);
    });
    await waitFor(async () => deliveries >= 21 && (await ch.checkQueue('qq-default-limit')).messageCount === 0);
    expect(deliveries).toBe(21);
    await ch.close();
  });

  test('a classic queue keeps requeueing without a limit unless x-delivery-limit is set', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('cq-no-limit', { durable: true });
    ch.sendToQueue('cq-no-limit', Buffer.from('x'));
    let deliveries = 0;
    await ch.consume('cq-no-limit', (m) => {
      if (!m) return;
      deliveries++;
      if (deliveries < 30) ch.nack(m, false, true);
      else ch.ack(m);
      expect(m.properties.headers?.['x-delivery-count']).toBeUndefined();
    });
    await waitFor(() => deliveries === 30);
    await ch.close();
  });
});
