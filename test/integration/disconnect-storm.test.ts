import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as amqpConnect } from 'amqplib';
import { generate } from 'mqtt-packet';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { collect, connectCollecting, connectMqtt, mqttUrl, waitForCount } from '../helpers/mqtt.js';

/** More than one turn's teardown budget, so that the closes are taken in slices. */
const SESSIONS = 700;

let tb: TestBroker;
let logDir: string;
let logFile: string;

beforeAll(async () => {
  // The broker logs at info level to a file: a storm's closes are logged in one line, not one each.
  logDir = await mkdtemp(join(tmpdir(), 'warren-storm-log-'));
  logFile = join(logDir, 'broker.log');
  tb = await startTestBroker({ logLevel: 'info', logFile });
});

afterAll(async () => {
  await tb.stop();
  await rm(logDir, { recursive: true, force: true });
});

/** The broker's log lines so far, parsed. */
async function logLines(): Promise<{ msg?: string; closed?: number; clientId?: string }[]> {
  const text = await readFile(logFile, 'utf8');
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as { msg?: string; closed?: number; clientId?: string });
}

/** A subscribed MQTT 3.1.1 clean session on a raw socket: CONNECT, SUBSCRIBE `storm/<id>` QoS 1, wait for SUBACK. */
function subscribedSession(port: number, clientId: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect(port, '127.0.0.1');
    s.once('error', reject);
    s.once('connect', () => {
      s.write(generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive: 300 }));
      s.write(generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `storm/${clientId}`, qos: 1 }] }));
    });
    let got = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length < 9) return;
      s.off('data', onData);
      s.on('data', () => undefined);
      if (got[0] === 0x20 && got[3] === 0 && got[4] === 0x90 && got[8] === 1) resolve(s);
      else reject(new Error(`${clientId}: no CONNACK/SUBACK`));
    };
    s.on('data', onData);
  });
}

test('a storm of dropped sessions is torn down in slices and leaves no state behind for the clients that come back', async () => {
  const core = tb.broker.core;
  const vh = core.vhosts.get('/')!;
  const topic = vh.getExchange('amq.topic');
  const port = tb.broker.ports.mqtt!;
  const publisher = await connectMqtt(mqttUrl(tb), { clientId: 'storm-publisher' });
  // AMQP connections with exclusive queues bound to the same topics drop in the same storm.
  const amqps = await Promise.all(
    Array.from({ length: 5 }, async () => {
      const c = await amqpConnect(tb.amqpUrl);
      const ch = await c.createChannel();
      const q = (await ch.assertQueue('', { exclusive: true })).queue;
      await ch.bindQueue(q, 'amq.topic', 'storm.#');
      return { c, q };
    }),
  );
  const baseConnections = core.connections.size - amqps.length;
  const baseBindings = topic.bindings.size - amqps.length;

  const ids = Array.from({ length: SESSIONS }, (_, i) => `storm-${i}`);
  const sockets: Socket[] = [];
  for (let i = 0; i < ids.length; i += 100) sockets.push(...(await Promise.all(ids.slice(i, i + 100).map((id) => subscribedSession(port, id)))));
  expect(topic.bindings.size).toBe(baseBindings + amqps.length + SESSIONS);

  // Everyone drops at once, as when a load balancer restarts; the AMQP sockets go in the same turn.
  for (const s of sockets) s.destroy();
  for (const { c } of amqps) (c as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
  // Messages for the dropped sessions while their teardown is under way: dropped with them.
  for (let i = 0; i < SESSIONS; i += 7) await publisher.publishAsync(`storm/${ids[i]}`, 'for a dropped session', { qos: 1 });

  await waitFor(() => core.connections.size === baseConnections && core.teardown.size === 0, 20_000, 'every dropped connection torn down');
  expect([...vh.queues.keys()].filter((n) => n.includes('storm-') || n.startsWith('amq.gen-'))).toEqual([]);
  for (const { q } of amqps) expect(vh.queues.has(q)).toBe(false);
  expect(topic.bindings.size).toBe(baseBindings);
  expect(topic.router.size).toBe(baseBindings);
  let ready = 0;
  for (const q of vh.queues.values()) ready += q.readyCount + q.unackedCount;
  expect(ready).toBe(0);

  // One line for the storm, counting the closes it took in slices; the few closed before the
  // first slice had to wait have a line of their own.
  const lines = await waitFor(async () => {
    const all = await logLines();
    return all.some((l) => l.msg?.startsWith('connections closed in a storm') === true) ? all : undefined;
  }, 5000, 'the storm line in the log');
  const stormLines = lines.filter((l) => l.msg?.startsWith('connections closed in a storm') === true);
  const ownLines = lines.filter((l) => l.msg === 'connection closed' && l.clientId?.startsWith('storm-') === true);
  const quiet = stormLines.reduce((n, l) => n + (l.closed ?? 0), 0);
  expect(quiet).toBeGreaterThan(SESSIONS / 2);
  expect(ownLines.length + quiet).toBeGreaterThanOrEqual(SESSIONS);
  expect(ownLines.length).toBeLessThan(SESSIONS / 2);

  // The same client ids come back (clean session): fresh sessions, only what is published now.
  const back = await Promise.all(ids.slice(0, 30).map((id) => connectMqtt(mqttUrl(tb), { clientId: id, clean: true })));
  const got = back.map((c) => collect(c));
  await Promise.all(back.map((c, i) => c.subscribeAsync(`storm/${ids[i]}`, { qos: 1 })));
  for (let i = 0; i < back.length; i++) await publisher.publishAsync(`storm/${ids[i]}`, `hello ${i}`, { qos: 1 });
  for (let i = 0; i < back.length; i++) {
    await waitForCount(got[i]!, 1);
    expect(got[i]!.map((m) => m.payload.toString())).toEqual([`hello ${i}`]);
  }
  // A persistent-session reconnect finds no session left by the storm.
  const persistent = await connectCollecting(mqttUrl(tb), { clientId: ids[100]!, clean: false });
  expect(persistent.connack.sessionPresent).toBe(false);
  await persistent.client.endAsync();
  await Promise.all(back.map((c) => c.endAsync()));
  await publisher.endAsync();
});
