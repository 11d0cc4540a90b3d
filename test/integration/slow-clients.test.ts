import { connect as netConnect, type Socket } from 'node:net';
import amqplib from 'amqplib';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MAX_QUEUED_QOS0 } from '../../adapters/mqtt/qos0.js';
import { HIGH_WATERMARK } from '../../src/transport/link.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawAmqp } from '../helpers/amqp-raw.js';
import { connectMqtt, mqttUrl, RawMqtt } from '../helpers/mqtt.js';

let tb: TestBroker;

beforeAll(async () => {
  tb = await startTestBroker();
});

afterAll(async () => {
  await tb.stop();
});

function queueOf(name: string): { readyCount: number; unackedCount: number } | undefined {
  return tb.broker.core.vhosts.get('/')!.queues.get(name) as unknown as { readyCount: number; unackedCount: number } | undefined;
}

function connectionOf(clientOrUser: (info: { clientId?: string | undefined; protocol: string }) => boolean): { traffic: { dropped: number; sendOct: number } } | undefined {
  for (const c of tb.broker.core.connections) if (clientOrUser(c.info)) return c;
  return undefined;
}

/** An AMQP round trip on a fresh connection: other clients are not held up by a stuck one. */
async function amqpRoundTrip(): Promise<number> {
  const started = Date.now();
  const conn = await amqplib.connect(tb.amqpUrl);
  const ch = await conn.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(queue, Buffer.from('ping'));
  await waitFor(async () => (await ch.get(queue, { noAck: true })) !== false, 5000, 'round trip');
  await conn.close();
  return Date.now() - started;
}

/** A raw STOMP connection that completes CONNECT, then is left to the test (which may stop reading it). */
async function rawStomp(port: number): Promise<Socket> {
  const s = netConnect({ port, host: '127.0.0.1' });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', resolve);
    s.once('error', reject);
  });
  s.on('error', () => undefined);
  let got = '';
  const connected = new Promise<void>((resolve) => {
    const onData = (b: Buffer): void => {
      got += b.toString('latin1');
      if (got.includes('CONNECTED')) {
        s.off('data', onData);
        resolve();
      }
    };
    s.on('data', onData);
  });
  s.write('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0');
  await connected;
  return s;
}

describe('a client that stops reading costs the broker bounded memory and hurts nobody else', () => {
  test('MQTT QoS 0: a subscriber that never reads gets at most its session bound queued, the oldest dropped and counted', async () => {
    const sub = await RawMqtt.connected(tb.broker.ports.mqtt!, 4, { clientId: 'stuck-qos0' });
    sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'slow/qos0/#', qos: 0 }] });
    await sub.next('suback');
    sub.socket.pause(); // from now on the client reads nothing
    const pub = await connectMqtt(mqttUrl(tb));
    const body = Buffer.alloc(1024, 7);
    const total = 20_000;
    for (let i = 0; i < total; i++) {
      pub.publish('slow/qos0/t', body, { qos: 0 });
      if (i % 500 === 499) await new Promise((r) => setImmediate(r));
    }
    await new Promise<void>((resolve, reject) => pub.publish('slow/qos0/end', 'x', { qos: 1 }, (e) => (e ? reject(e) : resolve())));
    const stuck = connectionOf((i) => i.clientId === 'stuck-qos0')!;
    await waitFor(() => stuck.traffic.dropped > 0, 10_000, 'dropped QoS 0 messages');
    // The session queue is not where they pile up either.
    const q = queueOf('mqtt-subscription-stuck-qos0');
    await waitFor(() => q !== undefined && q.readyCount === 0, 10_000, 'session queue drained into the bounded buffer');
    // What the broker holds for it: at most the bound plus what sits in the link and the socket.
    expect(stuck.traffic.dropped).toBeGreaterThanOrEqual(total - MAX_QUEUED_QOS0 - Math.ceil((HIGH_WATERMARK * 16) / body.length));
    expect(tb.broker.core.alarms.blocked).toBe(false);
    // Management and metrics count the drops for this connection.
    const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` };
    const rows = (await (await fetch(`http://127.0.0.1:${tb.broker.ports.http}/api/connections`, { headers: auth })).json()) as Array<{ client_id?: string; messages_dropped: number }>;
    expect(rows.find((r) => r.client_id === 'stuck-qos0')!.messages_dropped).toBe(stuck.traffic.dropped);
    const metrics = await (await fetch(`http://127.0.0.1:${tb.broker.ports.http}/metrics`)).text();
    expect(metrics).toMatch(/warren_slow_client_dropped_total\{protocol="mqtt"[^}]*\} [1-9]/);
    expect(await amqpRoundTrip()).toBeLessThan(2000);
    // Once it reads again, it gets the newest messages and the connection carries on.
    sub.socket.resume();
    await waitFor(() => sub.packets.filter((p) => p.cmd === 'publish').length >= MAX_QUEUED_QOS0 / 2, 10_000, 'messages after resuming');
    sub.end();
    await pub.endAsync();
  }, 60_000);

  test('STOMP: a consumer that never reads stops getting deliveries at the link watermark; the rest stays in its queue', async () => {
    const port = tb.broker.ports.stomp!;
    const s = await rawStomp(port);
    s.write('SUBSCRIBE\nid:0\ndestination:/queue/slow-stomp\nack:auto\nreceipt:sub\n\n\0');
    await waitFor(() => queueOf('slow-stomp') !== undefined, 5000, 'queue declared');
    s.pause();
    const conn = await amqplib.connect(tb.amqpUrl);
    const ch = await conn.createConfirmChannel();
    const body = Buffer.alloc(64 * 1024, 1);
    const total = 600; // 37.5 MiB: far beyond the watermark plus any socket buffers
    for (let i = 0; i < total; i++) ch.sendToQueue('slow-stomp', body);
    await ch.waitForConfirms();
    const q = queueOf('slow-stomp')!;
    const stuck = connectionOf((i) => i.protocol.startsWith('STOMP'))!;
    // Deliveries stop: what left the queue is bounded by the watermark and the kernel's buffers.
    await waitFor(async () => {
      const before = stuck.traffic.sendOct;
      await new Promise((r) => setTimeout(r, 200));
      return stuck.traffic.sendOct === before;
    }, 10_000, 'deliveries to stop');
    expect(q.readyCount).toBeGreaterThan(total / 2);
    expect(tb.broker.core.alarms.blocked).toBe(false);
    expect(await amqpRoundTrip()).toBeLessThan(2000);
    s.destroy();
    await ch.deleteQueue('slow-stomp');
    await conn.close();
  }, 60_000);

  test('STOMP over WebSocket: the same watermark applies (the transport differs only below the link)', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${tb.broker.ports.http}/ws`, 'v12.stomp');
    ws.on('error', () => undefined);
    let got = '';
    ws.on('message', (m: Buffer) => (got += m.toString('latin1')));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0');
    await waitFor(() => got.includes('CONNECTED'), 5000, 'CONNECTED');
    ws.send('SUBSCRIBE\nid:0\ndestination:/queue/slow-stomp-ws\nack:auto\nreceipt:sub\n\n\0');
    await waitFor(() => got.includes('receipt-id:sub'), 5000, 'subscribed');
    (ws as unknown as { _socket: Socket })._socket.pause(); // the client reads nothing more
    const conn = await amqplib.connect(tb.amqpUrl);
    const ch = await conn.createConfirmChannel();
    const body = Buffer.alloc(64 * 1024, 3);
    const total = 600;
    for (let i = 0; i < total; i++) ch.sendToQueue('slow-stomp-ws', body);
    await ch.waitForConfirms();
    const q = queueOf('slow-stomp-ws')!;
    const stuck = connectionOf((i) => i.protocol.startsWith('STOMP'))!;
    await waitFor(async () => {
      const before = stuck.traffic.sendOct;
      await new Promise((r) => setTimeout(r, 200));
      return stuck.traffic.sendOct === before;
    }, 10_000, 'deliveries to stop');
    expect(q.readyCount).toBeGreaterThan(total / 2);
    expect(tb.broker.core.alarms.blocked).toBe(false);
    expect(await amqpRoundTrip()).toBeLessThan(2000);
    ws.terminate();
    await waitFor(() => ![...tb.broker.core.connections].includes(stuck as never), 5000, 'the WebSocket connection to go');
    await ch.deleteQueue('slow-stomp-ws');
    await conn.close();
  }, 60_000);

  test('AMQP: a consumer whose socket is not read stops getting deliveries; the rest stays in its queue', async () => {
    const conn = await amqplib.connect(tb.amqpUrl);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('slow-amqp', { autoDelete: false });
    const raw = await RawAmqp.ready(tb.broker.ports.amqp!);
    raw.send(1, { kind: 'channel.open' });
    await raw.nextMethod('channel.open-ok');
    raw.send(1, { kind: 'basic.consume', queue: 'slow-amqp', consumerTag: 'stuck', noLocal: false, noAck: true, exclusive: false, noWait: false, arguments: {} });
    await raw.nextMethod('basic.consume-ok');
    raw.socket.pause(); // from now on the client reads nothing
    const body = Buffer.alloc(64 * 1024, 2);
    const total = 600;
    for (let i = 0; i < total; i++) ch.sendToQueue('slow-amqp', body);
    await ch.waitForConfirms();
    const q = queueOf('slow-amqp')!;
    const stuck = [...tb.broker.core.connections].find((c) => [...c.channels].some((x) => x.consumers.has('stuck')))!;
    await waitFor(async () => {
      const before = stuck.traffic.sendOct;
      await new Promise((r) => setTimeout(r, 200));
      return stuck.traffic.sendOct === before;
    }, 10_000, 'deliveries to stop');
    expect(q.readyCount).toBeGreaterThan(total / 2);
    expect(tb.broker.core.alarms.blocked).toBe(false);
    expect(await amqpRoundTrip()).toBeLessThan(2000);
    raw.end();
    await waitFor(() => q.unackedCount === 0 && ![...tb.broker.core.connections].includes(stuck), 5000, 'the stuck connection to go');
    await ch.deleteQueue('slow-amqp');
    await conn.close();
  }, 60_000);
});
