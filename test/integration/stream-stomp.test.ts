import type { Client, IMessage } from '@stomp/stompjs';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { stompClient, wsUrl } from '../helpers/stomp.js';

let tb: TestBroker;
let amqp: ChannelModel;
const clients: Client[] = [];

beforeAll(async () => {
  tb = await startTestBroker();
  amqp = await connect(tb.amqpUrl);
  const ch = await amqp.createConfirmChannel();
  await ch.assertQueue('readings', { durable: true, arguments: { 'x-queue-type': 'stream' } });
  for (let i = 0; i < 20; i++) {
    ch.sendToQueue('readings', Buffer.from(`r${i}`), { persistent: true, headers: i % 2 === 0 ? { 'x-stream-filter-value': 'even' } : {} });
    await ch.waitForConfirms(); // one chunk each, so the filter can skip chunks
  }
  await ch.close();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await amqp.close();
  await tb.stop();
});

async function client(): Promise<Client> {
  const c = await stompClient(wsUrl(tb.broker.ports.http!));
  clients.push(c);
  return c;
}

/** Subscribes with ack client-individual and acks every message; returns what arrived. */
function replay(c: Client, headers: Record<string, string>): IMessage[] {
  const got: IMessage[] = [];
  c.subscribe(
    '/amq/queue/readings',
    (m) => {
      got.push(m);
      m.ack();
    },
    { ack: 'client-individual', 'prefetch-count': '5', ...headers },
  );
  return got;
}

describe('STOMP stream subscriptions (RabbitMQ form)', () => {
  test('x-stream-offset first replays the stream, each MESSAGE with its x-stream-offset', async () => {
    const got = replay(await client(), { 'x-stream-offset': 'first' });
    await waitFor(() => got.length >= 20, 5000, '20 messages');
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: 20 }, (_, i) => `r${i}`));
    expect(got.map((m) => m.headers['x-stream-offset'])).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
  });

  test('offset=<n> starts at that offset and then follows live publishes', async () => {
    const got = replay(await client(), { 'x-stream-offset': 'offset=18' });
    await waitFor(() => got.length >= 2, 5000, '2 messages');
    const ch = await amqp.createConfirmChannel();
    ch.sendToQueue('readings', Buffer.from('live'), { persistent: true });
    await ch.waitForConfirms();
    await ch.close();
    await waitFor(() => got.length >= 3, 5000, 'the live message');
    expect(got.map((m) => m.body)).toEqual(['r18', 'r19', 'live']);
  });

  test('timestamp=<seconds> and x-stream-filter', async () => {
    const got = replay(await client(), { 'x-stream-offset': 'timestamp=0', 'x-stream-filter': 'even' });
    await waitFor(() => got.length >= 10, 5000, '10 even messages');
    expect(got.map((m) => m.body)).toEqual(Array.from({ length: 10 }, (_, i) => `r${i * 2}`));
  });

  test('ack mode auto is refused with an ERROR frame, as RabbitMQ refuses it', async () => {
    const c = await client();
    const error = new Promise<string>((resolve) => {
      c.onStompError = (f) => resolve(`${f.headers['message'] ?? ''} ${f.body}`);
    });
    c.subscribe('/amq/queue/readings', () => undefined, { 'x-stream-offset': 'first', 'prefetch-count': '5' });
    expect(await error).toContain('automatic acknowledgement not supported by stream queues');
  });
});
