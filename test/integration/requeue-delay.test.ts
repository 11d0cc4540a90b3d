import { connect, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, expect, test } from 'vitest';
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

test('a nack with requeue on a queue with x-requeue-delay redelivers after the delay, other messages flow meanwhile', async () => {
  const ch = await conn.createChannel();
  await ch.assertQueue('rd-fixed', { durable: true, arguments: { 'x-requeue-delay': 400 } });
  const got: Array<{ body: string; at: number; redelivered: boolean }> = [];
  await ch.consume('rd-fixed', (m) => {
    if (!m) return;
    got.push({ body: m.content.toString(), at: Date.now(), redelivered: m.fields.redelivered });
    if (m.content.toString() === 'retry' && !m.fields.redelivered) ch.nack(m, false, true);
    else ch.ack(m);
  });
  ch.sendToQueue('rd-fixed', Buffer.from('retry'));
  await waitFor(() => got.length === 1);
  ch.sendToQueue('rd-fixed', Buffer.from('next'));
  await waitFor(() => got.length === 2);
  expect(got[1]!.body).toBe('next');
  const api = mgmt(tb.broker.ports.http!);
  expect((await api.get('/queues/%2F/rd-fixed')).body['messages_delayed']).toBe(1);
  await waitFor(() => got.length === 3, 5000, 'the delayed redelivery');
  expect(got[2]!.body).toBe('retry');
  expect(got[2]!.redelivered).toBe(true);
  expect(got[2]!.at - got[0]!.at).toBeGreaterThanOrEqual(390);
  await ch.deleteQueue('rd-fixed');
  await ch.close();
});

test('x-requeue-delay-max turns the delay into exponential back-off; a reject without requeue is not delayed', async () => {
  const ch = await conn.createChannel();
  await ch.assertQueue('rd-dlq', { durable: false });
  await ch.assertQueue('rd-backoff', {
    durable: false,
    arguments: { 'x-requeue-delay': 100, 'x-requeue-delay-max': 1000, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'rd-dlq' },
  });
  const at: number[] = [];
  await ch.consume('rd-backoff', (m: ConsumeMessage | null) => {
    if (!m) return;
    at.push(Date.now());
    ch.reject(m, at.length < 4);
  });
  ch.sendToQueue('rd-backoff', Buffer.from('b'));
  const dead = await waitFor(async () => ch.get('rd-dlq', { noAck: true }), 8000, 'the dead-lettered message');
  expect(dead.content.toString()).toBe('b');
  const gaps = at.slice(1).map((t, i) => t - at[i]!);
  expect(gaps).toHaveLength(3);
  expect(gaps[0]!).toBeGreaterThanOrEqual(95);
  expect(gaps[1]!).toBeGreaterThanOrEqual(195);
  expect(gaps[2]!).toBeGreaterThanOrEqual(395);
  await ch.close();
});

test('closing the channel returns unacked messages at once, without the requeue delay', async () => {
  const ch = await conn.createChannel();
  await ch.assertQueue('rd-close', { durable: false, arguments: { 'x-requeue-delay': 60_000 } });
  ch.sendToQueue('rd-close', Buffer.from('c'));
  const got: ConsumeMessage[] = [];
  await ch.consume('rd-close', (m) => m && got.push(m));
  await waitFor(() => got.length === 1);
  await ch.close();
  const ch2 = await conn.createChannel();
  expect((await ch2.checkQueue('rd-close')).messageCount).toBe(1);
  await ch2.deleteQueue('rd-close');
  await ch2.close();
});
