import { connect as netConnect, type Socket } from 'node:net';
import { connect as amqpConnect, type ChannelModel } from 'amqplib';
import { generate } from 'mqtt-packet';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, mqttUrl } from '../helpers/mqtt.js';
import { stompClient } from '../helpers/stomp.js';

const IDLE_MQTT = 1900;
const ACTIVE_EACH = 50;
/** Generous: this checks that held connections do not starve a newcomer, it is not a benchmark. */
const ROUND_TRIP_BOUND_MS = 1000;

let tb: TestBroker;
const sockets: Socket[] = [];
const amqps: ChannelModel[] = [];
const timers: NodeJS.Timeout[] = [];

/** An idle MQTT 3.1.1 client on a raw socket: CONNECT, wait for CONNACK, then nothing. */
function idleMqtt(port: number, clientId: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('error', reject);
    s.once('connect', () =>
      s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 300 })),
    );
    s.once('data', (d: Buffer) => (d[0] === 0x20 && d[3] === 0 ? resolve(s) : reject(new Error(`no CONNACK for ${clientId}`))));
  });
}

/** An active STOMP client on a raw socket that publishes to itself once a second; counts MESSAGE frames. */
function activeStomp(port: number, key: string, counts: { stomp: number }): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('error', reject);
    const dest = `/exchange/amq.direct/${key}`;
    s.once('connect', () => s.write('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0'));
    s.once('data', (d: Buffer) => {
      if (!d.toString('latin1').startsWith('CONNECTED')) return reject(new Error(`no CONNECTED for ${key}`));
      s.on('data', (m: Buffer) => (counts.stomp += m.toString('latin1').split('MESSAGE\n').length - 1));
      s.write(`SUBSCRIBE\nid:0\ndestination:${dest}\nack:auto\n\n\0`);
      timers.push(setInterval(() => s.write(`SEND\ndestination:${dest}\ncontent-length:2\n\nhi\0`), 1000));
      resolve(s);
    });
  });
}

async function inBatches(n: number, size: number, open: (i: number) => Promise<void>): Promise<void> {
  for (let i = 0; i < n; i += size) await Promise.all(Array.from({ length: Math.min(size, n - i) }, (_, k) => open(i + k)));
}

const counts = { amqp: 0, stomp: 0 };

beforeAll(async () => {
  tb = await startTestBroker();
  const { mqtt, stomp } = tb.broker.ports;
  await inBatches(IDLE_MQTT, 100, async (i) => void sockets.push(await idleMqtt(mqtt!, `idle-${i}`)));
  await inBatches(ACTIVE_EACH, 10, async (i) => {
    const c = await amqpConnect(tb.amqpUrl);
    amqps.push(c);
    const ch = await c.createChannel();
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.consume(q, () => counts.amqp++, { noAck: true });
    timers.push(setInterval(() => ch.sendToQueue(q, Buffer.from('hi')), 1000));
  });
  await inBatches(ACTIVE_EACH, 10, async (i) => void sockets.push(await activeStomp(stomp!, `active-${i}`, counts)));
}, 120_000);

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  for (const c of amqps) await c.close();
  for (const s of sockets) s.destroy();
  await tb.stop();
});

test(`with ${IDLE_MQTT + 2 * ACTIVE_EACH} connections held, a new client of each protocol connects and round-trips quickly`, async () => {
  const total = IDLE_MQTT + 2 * ACTIVE_EACH;
  await waitFor(() => tb.broker.core.connections.size >= total, 10_000, 'every connection registered');
  // The active ones really are active.
  await waitFor(() => counts.amqp >= ACTIVE_EACH && counts.stomp >= ACTIVE_EACH, 10_000, 'active traffic');

  const times: Record<string, number[]> = { mqtt: [], amqp: [], stomp: [] };
  for (let i = 0; i < 3; i++) {
    let t0 = performance.now();
    const m = await connectMqtt(mqttUrl(tb), { clientId: `probe-${i}` });
    const got = new Promise<void>((resolve) => m.once('message', () => resolve()));
    await m.subscribeAsync(`probe/${i}`);
    await m.publishAsync(`probe/${i}`, 'ping');
    await got;
    times.mqtt!.push(performance.now() - t0);
    await m.endAsync();

    t0 = performance.now();
    const a = await amqpConnect(tb.amqpUrl, { noDelay: true });
    const ch = await a.createChannel();
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    const gotA = new Promise<void>((resolve) => void ch.consume(q, () => resolve(), { noAck: true }));
    ch.sendToQueue(q, Buffer.from('ping'));
    await gotA;
    times.amqp!.push(performance.now() - t0);
    await a.close();

    t0 = performance.now();
    const s = await stompClient(`ws://127.0.0.1:${tb.broker.ports.http}/ws`);
    const gotS = new Promise<void>((resolve) => s.subscribe(`/exchange/amq.direct/probe-${i}`, () => resolve()));
    s.publish({ destination: `/exchange/amq.direct/probe-${i}`, body: 'ping' });
    await gotS;
    times.stomp!.push(performance.now() - t0);
    await s.deactivate();
  }
  for (const [protocol, ts] of Object.entries(times)) {
    expect(ts, protocol).toHaveLength(3);
    expect(Math.max(...ts), `${protocol} connect + round trip (ms): ${ts.map((t) => t.toFixed(1)).join(', ')}`).toBeLessThan(ROUND_TRIP_BOUND_MS);
  }
  // Nobody was dropped meanwhile.
  expect(tb.broker.core.connections.size).toBeGreaterThanOrEqual(total);
}, 60_000);
