import { connect, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

/** What RabbitMQ 4.3 denies by default and Warren keeps accepting. */
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

test('basic.qos with global=true is accepted and limits the whole channel', async () => {
  const ch = await conn.createChannel();
  await ch.prefetch(3, true);
  const a = (await ch.assertQueue('', { exclusive: true })).queue;
  const b = (await ch.assertQueue('', { exclusive: true })).queue;
  for (let i = 0; i < 5; i++) {
    ch.sendToQueue(a, Buffer.from(`a${i}`));
    ch.sendToQueue(b, Buffer.from(`b${i}`));
  }
  const got: ConsumeMessage[] = [];
  await ch.consume(a, (m) => m && got.push(m));
  await ch.consume(b, (m) => m && got.push(m));
  await waitFor(() => got.length === 3);
  // Nothing beyond the channel-wide three until one is acknowledged.
  await ch.checkQueue(a);
  expect(got).toHaveLength(3);
  ch.ack(got[0]!);
  await waitFor(() => got.length === 4);
  await ch.close();
});

test('a transient non-exclusive queue is declared, shared between connections and outlives its declaring connection', async () => {
  const c1 = await connect(tb.amqpUrl);
  const ch1 = await c1.createChannel();
  const ok = await ch1.assertQueue('transient-shared', { durable: false, exclusive: false, autoDelete: false });
  expect(ok.queue).toBe('transient-shared');
  ch1.sendToQueue('transient-shared', Buffer.from('kept'));
  await ch1.checkQueue('transient-shared');
  await c1.close();
  const ch2 = await conn.createChannel();
  const m = await waitFor(async () => ch2.get('transient-shared', { noAck: true }));
  expect(m.content.toString()).toBe('kept');
  await ch2.deleteQueue('transient-shared');
  await ch2.close();
});
