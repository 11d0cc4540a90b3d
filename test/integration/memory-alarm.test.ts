import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { MEMORY_CLEAR_RATIO } from '../../src/core/index.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { connectMqtt, mqttUrl } from '../helpers/mqtt.js';

const MiB = 1 << 20;
const BODY = Buffer.alloc(64 * 1024, 7);

let tb: TestBroker;
let conn: ChannelModel;
let ch: ConfirmChannel;
const events: string[] = [];

beforeAll(async () => {
  tb = await startTestBroker();
  conn = await connect(tb.amqpUrl);
  conn.on('blocked', () => events.push('blocked'));
  conn.on('unblocked', () => events.push('unblocked'));
  ch = await conn.createConfirmChannel();
  await ch.assertQueue('fill', { durable: false });
});
afterAll(async () => {
  await conn.close();
  await tb.stop();
});

/** Resolves on the channel's 'drain' or the connection's 'blocked' (after which no drain may come). */
function drainedOrBlocked(): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      ch.off('drain', done);
      conn.off('blocked', done);
      resolve();
    };
    ch.once('drain', done);
    conn.once('blocked', done);
  });
}

test('the memory alarm counts queued messages, clears after a purge although RSS stays high, and publishers resume', async () => {
  const alarms = tb.broker.core.alarms;
  // 128 MiB of queued messages above what this process holds now reach the watermark (the band
  // between raising and clearing, 10 % of it, is wider than this test process's heap swings).
  const limit = alarms.memoryFigure().total + 128 * MiB;
  alarms.memoryLimit = limit;
  // An MQTT publisher (one that has published: blocked connections are the publishing ones).
  const mqtt = await connectMqtt(mqttUrl(tb), { clientId: 'alarm-pub' });
  await mqtt.publishAsync('alarm/test', 'before', { qos: 1 });

  // Flood until the broker blocks the publisher (connection.blocked), honouring socket back-pressure.
  let sent = 0;
  while (!events.includes('blocked') && sent < 8000) {
    if (!ch.sendToQueue('fill', BODY)) await drainedOrBlocked();
    sent++;
    if (sent % 16 === 0) await new Promise<void>((r) => setImmediate(r));
  }
  await waitFor(() => events.includes('blocked'), 10_000, 'connection.blocked');
  expect(alarms.active).toContain('memory');
  const figure = alarms.memoryFigure();
  expect(figure.messages).toBeGreaterThan(100 * MiB);
  // The alarm is raised close to the watermark, not long after it.
  expect(figure.total).toBeLessThan(limit * 1.2);

  // The MQTT publisher is held too: its QoS 1 PUBACK waits until the alarm clears. This process's
  // heap counts in the figure, so a GC can clear the alarm for a moment; the PUBACK may then come,
  // but never before a clear. `order` lines up the alarm's changes and the PUBACK as they happen.
  const order: string[] = [];
  const stopListening = alarms.on((blocked) => order.push(blocked ? 'raised' : 'cleared'));
  let acked = false;
  const pub = mqtt.publishAsync('alarm/test', 'x', { qos: 1 }).then(() => {
    acked = true;
    order.push('puback');
  });
  await new Promise((r) => setTimeout(r, 200));
  if (acked) expect(order.indexOf('cleared')).toBeGreaterThanOrEqual(0);
  if (acked) expect(order.indexOf('cleared')).toBeLessThan(order.indexOf('puback'));
  else expect(alarms.active).toContain('memory');

  // A blocked connection is not read at all: purge from another one (consumers and management work on).
  const other = await connect(tb.amqpUrl);
  const purger = await other.createChannel();
  await purger.purgeQueue('fill');
  await waitFor(() => alarms.active.length === 0 && events[events.length - 1] === 'unblocked', 5000, 'connection.unblocked');
  const after = alarms.memoryFigure();
  expect(after.total).toBeLessThan(limit * MEMORY_CLEAR_RATIO);
  // The resident set size did not come down with it: the alarm does not follow RSS.
  expect(process.memoryUsage.rss()).toBeGreaterThan(limit);
  expect(alarms.active).toEqual([]);

  await pub;
  expect(acked).toBe(true);
  stopListening();
  expect(order.indexOf('cleared')).toBeLessThan(order.indexOf('puback'));
  // The flood's messages still in flight land now, then this one: every publish is confirmed.
  ch.sendToQueue('fill', Buffer.from('after'));
  await ch.waitForConfirms();
  expect((await purger.checkQueue('fill')).messageCount).toBeGreaterThanOrEqual(1);
  await purger.purgeQueue('fill');
  // Blocked and unblocked alternate, once or (when the alarm cleared for a moment) more often.
  expect(events.length % 2).toBe(0);
  expect(events.every((e, i) => e === (i % 2 === 0 ? 'blocked' : 'unblocked'))).toBe(true);
  await mqtt.endAsync();
  await other.close();
});

test('the figure shows in /api/nodes and /metrics next to the resident set size', async () => {
  const http = `http://127.0.0.1:${tb.broker.ports.http}`;
  const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` };
  const nodes = (await (await fetch(`${http}/api/nodes`, { headers: auth })).json()) as Record<string, unknown>[];
  const node = nodes[0]!;
  const memory = node['memory'] as Record<string, number>;
  expect(node['mem_limit']).toBe(tb.broker.core.alarms.memoryLimit);
  expect(node['mem_used']).toBeGreaterThan(0);
  expect(node['mem_used']).toBeLessThan(memory['total']!); // the accounted figure, not RSS
  expect(memory['accounted']).toBeGreaterThanOrEqual(memory['queued_messages']! + memory['buffered']!);
  const metrics = await (await fetch(`${http}/metrics`)).text();
  expect(metrics).toMatch(/^warren_memory_used_bytes \d+$/m);
  expect(metrics).toMatch(/^warren_memory_queued_messages_bytes \d+$/m);
  expect(metrics).toMatch(/^warren_memory_buffered_bytes \d+$/m);
  expect(metrics).toMatch(/^warren_process_resident_memory_bytes \d+$/m);
});
