import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt, type Row } from '../helpers/management.js';

let tb: TestBroker;
let conn: ChannelModel;
let api: Mgmt;

beforeAll(async () => {
  tb = await startTestBroker();
  conn = await connect(tb.amqpUrl);
  api = mgmt(tb.broker.ports.http!);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue('audit', { durable: true, arguments: { 'x-queue-type': 'stream' } });
  for (let i = 0; i < 30; i++) ch.sendToQueue('audit', Buffer.from(`e${i}`), { headers: i === 7 ? { 'x-stream-filter-value': 'seven' } : {} });
  await ch.waitForConfirms();
  await ch.close();
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

test('a stream shows its offsets, size on disk and segments, and each consumer its offset', async () => {
  const ch = await conn.createChannel();
  await ch.prefetch(5);
  await ch.consume('audit', () => undefined, { consumerTag: 'reader', arguments: { 'x-stream-offset': 10 } });
  const q = await waitFor(async () => {
    const r = await api.get('/queues/%2F/audit');
    const c = (r.body['consumer_details'] as Row[])[0];
    return c !== undefined && c['stream_offset'] === 15 ? r.body : undefined;
  }, 5000, 'consumer at offset 15');
  expect(q).toMatchObject({ type: 'stream', first_offset: 0, last_offset: 29, committed_offset: 30, segments: 1 });
  expect(q['disk_size']).toBeGreaterThan(30 * 2);
  expect((q['consumer_details'] as Row[])[0]).toMatchObject({ consumer_tag: 'reader', stream_offset: 15, last_delivered_offset: 14, offset_lag: 15 });
  await ch.close();
});

test('messages are read from an offset without consuming them', async () => {
  const r = await api.get('/streams/%2F/audit/messages?offset=5&count=3');
  expect(r.status).toBe(200);
  const msgs = r.body['messages'] as Row[];
  expect(msgs.map((m) => [m['offset'], m['payload'], m['filter_value']])).toEqual([
    [5, 'e5', null],
    [6, 'e6', null],
    [7, 'e7', 'seven'],
  ]);
  const again = await api.get('/streams/%2F/audit/messages?offset=5&count=1');
  expect((again.body['messages'] as Row[])[0]!['payload']).toBe('e5');
  const q = await api.get('/queues/%2F/audit');
  expect(q.body['messages']).toBe(30);
});

test('reading a classic queue as a stream is a 400', async () => {
  const ch = await conn.createChannel();
  await ch.assertQueue('plain-q', { durable: true });
  await ch.close();
  const r = await api.get('/streams/%2F/plain-q/messages?offset=0');
  expect(r.status).toBe(400);
});
