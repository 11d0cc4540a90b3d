import { connect, type ChannelModel } from 'amqplib';
import mqtt from 'mqtt';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';
import { stompClient, wsUrl } from '../helpers/stomp.js';

/**
 * A non-durable queue holding tens of thousands of ready messages keeps most of them encoded off
 * the JavaScript heap (past 16,384): over real sockets, what comes out is what went in, in order,
 * whichever protocol published it and whichever consumes it.
 */

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

test('30,000 AMQP messages with properties on a non-durable queue come back in order and intact; a requeued one comes again once, redelivered', async () => {
  const N = 30_000;
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue('spill-amqp', { durable: false });
  for (let i = 0; i < N; i++) {
    ch.sendToQueue('spill-amqp', Buffer.from(`m${i}`), {
      headers: { i, even: i % 2 === 0, tag: `t${i % 5}` },
      correlationId: `c${i}`,
      contentType: 'text/plain',
      priority: i % 10,
      persistent: i % 3 === 0,
      ...(i === N - 1 ? { expiration: '600000' } : {}),
    });
  }
  await ch.waitForConfirms();
  const api = mgmt(tb.broker.ports.http!);
  const row = (await api.get('/queues/%2F/spill-amqp')).body;
  expect([row['messages'], row['messages_ready_ram'], row['messages_off_heap'], row['messages_paged_out']]).toEqual([N, 16_384, N - 16_384, 0]);

  const consumer = await conn.createChannel();
  await consumer.prefetch(1000);
  const got: string[] = [];
  let bad = 0;
  let requeued = false;
  await consumer.consume('spill-amqp', (m) => {
    if (m === null) return;
    const i = Number(m.properties.headers?.['i']);
    // The first delivery of m20000 goes back once: it comes again, redelivered, once (after what the
    // consumer's prefetch already holds).
    if (i === 20_000 && !requeued) {
      requeued = true;
      consumer.nack(m, false, true);
      return;
    }
    if (
      m.content.toString() !== `m${i}` ||
      m.properties.correlationId !== `c${i}` ||
      m.properties.contentType !== 'text/plain' ||
      m.properties.priority !== i % 10 ||
      m.properties.deliveryMode !== (i % 3 === 0 ? 2 : 1) ||
      m.properties.headers?.['tag'] !== `t${i % 5}` ||
      m.properties.headers?.['even'] !== (i % 2 === 0) ||
      m.fields.redelivered !== (i === 20_000)
    ) {
      bad++;
    }
    got.push(m.content.toString());
    consumer.ack(m);
  });
  await waitFor(() => got.length === N, 30_000, () => `consumed ${got.length}`);
  expect(bad).toBe(0);
  expect(got.filter((b) => b === 'm20000')).toHaveLength(1);
  expect(got.filter((b) => b !== 'm20000')).toEqual(Array.from({ length: N }, (_, i) => `m${i}`).filter((b) => b !== 'm20000'));
  await waitFor(async () => (await api.get('/queues/%2F/spill-amqp')).body['messages'] === 0, 10_000, 'the queue empty');
  await consumer.close();
  await ch.close();
});

test('20,000 MQTT 5 publishes routed to a non-durable queue reach a STOMP consumer in order with their user properties', async () => {
  const N = 20_000;
  const ch = await conn.createChannel();
  await ch.assertQueue('spill-mqtt', { durable: false });
  await ch.bindQueue('spill-mqtt', 'amq.topic', 'spill.t');
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.broker.ports.mqtt!}`, { protocolVersion: 5, clientId: 'spill-pub' });
  for (let i = 0; i < N; i += 500) {
    const batch = [];
    for (let j = i; j < i + 500; j++) {
      batch.push(pub.publishAsync('spill/t', `b${j}`, { qos: 1, properties: { userProperties: { n: String(j) }, contentType: 'application/x-test' } }));
    }
    await Promise.all(batch);
  }
  await pub.endAsync();
  const api = mgmt(tb.broker.ports.http!);
  const row = (await api.get('/queues/%2F/spill-mqtt')).body;
  expect([row['messages'], row['messages_off_heap']]).toEqual([N, N - 16_384]);

  const stomp = await stompClient(wsUrl(tb.broker.ports.http!));
  const got: Array<{ body: string; n: string | undefined; type: string | undefined }> = [];
  stomp.subscribe(
    '/amq/queue/spill-mqtt',
    (m) => {
      got.push({ body: m.body, n: m.headers['n'], type: m.headers['content-type'] });
      m.ack();
    },
    { ack: 'client-individual', 'prefetch-count': '500' },
  );
  await waitFor(() => got.length === N, 30_000, () => `consumed ${got.length}`);
  expect(got.filter((g, i) => g.body !== `b${i}` || g.n !== String(i) || g.type !== 'application/x-test')).toEqual([]);
  await stomp.deactivate();
  await ch.close();
});
