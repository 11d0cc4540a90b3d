import { connect, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { http, mgmt } from '../helpers/management.js';

let tb: TestBroker;
let conn: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker({ consumerTimeout: 0 });
  conn = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

describe('consumer timeout (x-consumer-timeout)', () => {
  test('a consumer holding a delivery too long gets basic.cancel, the message is redelivered, the channel and its other consumer go on', async () => {
    const ch = await conn.createChannel();
    let channelClosed = false;
    ch.on('close', () => (channelClosed = true));
    await ch.assertQueue('ct-slow', { durable: true, arguments: { 'x-consumer-timeout': 300 } });
    await ch.assertQueue('ct-other', { durable: true });
    ch.sendToQueue('ct-slow', Buffer.from('held'));
    const slow: Array<ConsumeMessage | null> = [];
    await ch.consume('ct-slow', (m) => slow.push(m));
    const other: ConsumeMessage[] = [];
    await ch.consume('ct-other', (m) => {
      if (m) {
        other.push(m);
        ch.ack(m);
      }
    });
    await waitFor(() => slow.length === 1);
    // Cancelled by the server: amqplib calls the consumer with null.
    await waitFor(() => slow.length === 2, 8000, 'basic.cancel from the server');
    expect(slow[1]).toBeNull();
    const api = mgmt(tb.broker.ports.http!);
    expect((await api.get('/queues/%2F/ct-slow')).body['consumers']).toBe(0);
    const again = await waitFor(async () => ch.get('ct-slow'));
    expect(again.content.toString()).toBe('held');
    expect(again.fields.redelivered).toBe(true);
    ch.ack(again);
    ch.sendToQueue('ct-other', Buffer.from('still works'));
    await waitFor(() => other.length === 1);
    expect(channelClosed).toBe(false);
    await ch.deleteQueue('ct-slow');
    await ch.deleteQueue('ct-other');
    await ch.close();
  });

  test('a basic.get delivery held too long closes the channel with 406 and RabbitMQ text', async () => {
    const ch = await conn.createChannel();
    const errors: Error[] = [];
    ch.on('error', (e: Error) => errors.push(e));
    await ch.assertQueue('ct-get', { durable: false, arguments: { 'x-consumer-timeout': 200 } });
    ch.sendToQueue('ct-get', Buffer.from('g'));
    await waitFor(async () => ch.get('ct-get'));
    await waitFor(() => errors.length === 1, 8000, 'the channel error');
    expect(errors[0]!.message).toContain('PRECONDITION_FAILED - delivery acknowledgement on channel');
    expect(errors[0]!.message).toContain('timed out. Timeout value used: 200 ms');
    const ch2 = await conn.createChannel();
    expect((await ch2.checkQueue('ct-get')).messageCount).toBe(1);
    await ch2.deleteQueue('ct-get');
    await ch2.close();
  });

  test('a client that did not announce consumer_cancel_notify has its channel closed instead', async () => {
    const c = await connect(tb.amqpUrl, { clientProperties: { capabilities: { publisher_confirms: true, consumer_cancel_notify: false } } });
    const ch = await c.createChannel();
    const errors: Error[] = [];
    ch.on('error', (e: Error) => errors.push(e));
    await ch.assertQueue('ct-nocancel', { durable: false, arguments: { 'x-consumer-timeout': 200 } });
    ch.sendToQueue('ct-nocancel', Buffer.from('n'));
    await ch.consume('ct-nocancel', () => undefined);
    await waitFor(() => errors.length === 1, 8000, 'the channel error');
    expect(errors[0]!.message).toContain('Timeout value used: 200 ms');
    const ch2 = await c.createChannel();
    const back = await waitFor(async () => ch2.get('ct-nocancel', { noAck: true }));
    expect(back.fields.redelivered).toBe(true);
    await ch2.deleteQueue('ct-nocancel');
    await c.close();
  });

  test('a consumer-timeout policy applies to matching queues', async () => {
    const api = mgmt(tb.broker.ports.http!);
    const put = await api.put('/policies/%2F/ct-policy', { pattern: '^ct-pol', definition: { 'consumer-timeout': 300 }, 'apply-to': 'queues' });
    expect(put.status).toBeLessThan(300);
    const ch = await conn.createChannel();
    await ch.assertQueue('ct-pol-q', { durable: false });
    ch.sendToQueue('ct-pol-q', Buffer.from('p'));
    const got: Array<ConsumeMessage | null> = [];
    await ch.consume('ct-pol-q', (m) => got.push(m));
    await waitFor(() => got.length === 2, 8000, 'basic.cancel from the policy timeout');
    expect(got[1]).toBeNull();
    await api.del('/policies/%2F/ct-policy');
    await ch.deleteQueue('ct-pol-q');
    await ch.close();
  });

  test('the oldest unacknowledged delivery age is in /api/queues and /metrics/per-object', async () => {
    const ch = await conn.createChannel();
    await ch.assertQueue('ct-age', { durable: false });
    ch.sendToQueue('ct-age', Buffer.from('a'));
    const got: ConsumeMessage[] = [];
    await ch.consume('ct-age', (m) => m && got.push(m));
    await waitFor(() => got.length === 1);
    const api = mgmt(tb.broker.ports.http!);
    const row = await waitFor(async () => {
      const r = await api.get('/queues/%2F/ct-age');
      return (r.body['oldest_unacked_age'] as number) >= 200 ? r.body : undefined;
    });
    expect(row['oldest_unacked_age']).toBeGreaterThanOrEqual(200);
    const metrics = await http(tb.broker.ports.http!, 'GET', '/metrics/per-object');
    const line = metrics.text.split('\n').find((l) => l.startsWith('warren_queue_oldest_unacked_age_seconds{vhost="/",queue="ct-age"}'));
    expect(Number(line?.split(' ')[1])).toBeGreaterThan(0.1);
    ch.ack(got[0]!);
    await waitFor(async () => (await api.get('/queues/%2F/ct-age')).body['oldest_unacked_age'] === 0);
    await ch.deleteQueue('ct-age');
    await ch.close();
  });
});

describe('the broker default (--consumer-timeout)', () => {
  test('applies to every queue without its own timeout', async () => {
    const other = await startTestBroker({ consumerTimeout: 300 });
    try {
      const c = await connect(other.amqpUrl);
      const ch = await c.createChannel();
      await ch.assertQueue('ct-default', { durable: false });
      ch.sendToQueue('ct-default', Buffer.from('d'));
      const got: Array<ConsumeMessage | null> = [];
      await ch.consume('ct-default', (m) => got.push(m));
      await waitFor(() => got.length === 2, 8000, 'basic.cancel from the default timeout');
      expect(got[1]).toBeNull();
      await c.close();
    } finally {
      await other.stop();
    }
  });
});
