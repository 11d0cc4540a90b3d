import { createHash } from 'node:crypto';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect as connectNatsClient } from '@nats-io/transport-node';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { nameKey } from '../../src/cluster/mqtt.js';
import { connectNats } from '../../src/cluster/nats/nats-engine.js';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { http } from '../helpers/management.js';
import { connectCollecting, connectMqtt, type Received } from '../helpers/mqtt.js';
import { RawStomp } from '../helpers/stomp.js';

/**
 * Persistent MQTT sessions and durable STOMP topic subscriptions across three Warren nodes on
 * three clustered nats-servers: their queues are replicated, so a client resumes on any node,
 * also after the node it was on was SIGKILLed. n1 is killed in the in-flight test, n2 in the last.
 */

/** Short, so what a killed node held comes back within the test. */
const ACK_WAIT_MS = 3000;

/** `p`, or a rejection naming `what` after `ms` (a client that lost its connection may never settle). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe('persistent sessions across three nodes', { timeout: 120_000 }, () => {
  let cluster: TestCluster;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    const extra = ['--cluster-ack-wait', String(ACK_WAIT_MS), '--mqtt-port', '0', '--stomp-port', '0'];
    await cluster.start('n1', extra);
    await Promise.all([cluster.start('n2', extra), cluster.start('n3', extra)]);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.end(true);
    await cluster?.stop();
  });

  const url = (node: string): string => `mqtt://127.0.0.1:${cluster.nodes.get(node)!.mqttPort!}`;
  const track = <T extends { client: MqttClient }>(c: T): T => {
    c.client.on('error', () => undefined);
    clients.push(c.client);
    return c;
  };
  const closed = (c: MqttClient): Promise<void> => new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
  const queueOn = async (node: string, queue: string): Promise<{ type?: string; messages?: number } | undefined> => {
    const r = await http(cluster.nodes.get(node)!.httpPort, 'GET', `/api/queues/%2F/${encodeURIComponent(queue)}`);
    return r.status === 200 ? (r.body as { type?: string; messages?: number }) : undefined;
  };
  /** Whether the JetStream stream of a replicated queue exists. */
  const streamExists = async (queue: string): Promise<boolean> => {
    const name = `warren_test_q_${createHash('sha256').update('/').update('\0').update(queue).digest('hex').slice(0, 32)}`;
    const nc = await connectNatsClient({ servers: cluster.nats.url.split(',') });
    try {
      const jsm = await jetstreamManager(nc);
      return await jsm.streams.info(name).then(
        () => true,
        () => false,
      );
    } finally {
      await nc.close();
    }
  };
  const sessionRecord = async (clientId: string): Promise<boolean> => {
    const engine = await connectNats({ servers: cluster.nats.url.split(','), name: 'test' });
    try {
      const kv = await engine.openKV('warren_test_mqtt', { replicas: 3 });
      return (await kv.get(`s.${nameKey('/', clientId)}`))?.value !== undefined;
    } finally {
      await engine.close();
    }
  };
  /** Publishes `count` QoS 1 messages `<prefix><i>` on `node`; resolves with those PUBACKed. */
  const publishAll = async (node: string, topic: string, prefix: string, count: number, gapMs = 0): Promise<string[]> => {
    const pub = track(await connectCollecting(url(node), { protocolVersion: 4 })).client;
    const acked: string[] = [];
    for (let i = 0; i < count; i++) {
      const id = `${prefix}${i}`;
      await within(pub.publishAsync(topic, id, { qos: 1 }), 15_000, `PUBACK of ${id} on ${node}`);
      acked.push(id);
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
    pub.end();
    return acked;
  };
  const payloads = (got: Received[]): string[] => got.map((m) => m.payload);

  test('3.1.1 clean session false: subscribed on n1, 100 published on n2 while offline, all arrive on n3 with the session present', async () => {
    const first = track(await connectCollecting(url('n1'), { protocolVersion: 4, clientId: 'roamer', clean: false }));
    expect(first.connack.sessionPresent).toBe(false);
    await first.client.subscribeAsync('roam/#', { qos: 1 });
    // The session queue is a replicated queue, known to every node.
    await waitFor(async () => (await queueOn('n2', 'mqtt-subscription-roamer')) !== undefined, 10_000, 'session queue on n2');
    first.client.end();
    await closed(first.client);
    const acked = await publishAll('n2', 'roam/t', 'r', 100);
    expect(acked).toHaveLength(100);
    const back = track(await connectCollecting(url('n3'), { protocolVersion: 4, clientId: 'roamer', clean: false }));
    expect(back.connack.sessionPresent).toBe(true);
    await waitFor(() => new Set(payloads(back.received)).size === 100, 20_000, 'all 100 on n3');
    expect(new Set(payloads(back.received))).toEqual(new Set(acked));
    // Each arrives once (one may carry DUP: n1 can have pulled it from the log for the consumer that was closing).
    expect(back.received).toHaveLength(100);
    // The subscription is in force on n3 for new publishes too.
    await within(back.client.publishAsync('roam/live', 'live', { qos: 1 }), 15_000, 'PUBACK of the live publish');
    await waitFor(() => payloads(back.received).includes('live'), 10_000, 'live publish');
    back.client.end();
    await closed(back.client);
  });

  test('v5: a session whose node runs expires there; the KV record and the stream go with it', async () => {
    const s = track(await connectCollecting(url('n1'), { protocolVersion: 5, clientId: 'brief', clean: true, properties: { sessionExpiryInterval: 2 } }));
    await s.client.subscribeAsync('brief/#', { qos: 1 });
    await waitFor(async () => (await queueOn('n3', 'mqtt-subscription-brief')) !== undefined, 10_000, 'session queue on n3');
    expect(await streamExists('mqtt-subscription-brief')).toBe(true);
    s.client.end();
    await closed(s.client);
    await waitFor(() => sessionRecord('brief'), 5000, 'expiry record');
    await waitFor(async () => (await queueOn('n3', 'mqtt-subscription-brief')) === undefined, 15_000, 'queue gone on n3');
    await waitFor(async () => !(await streamExists('mqtt-subscription-brief')), 10_000, 'stream removed');
    await waitFor(async () => !(await sessionRecord('brief')), 5000, 'expiry record removed');
    const again = track(await connectCollecting(url('n2'), { protocolVersion: 5, clientId: 'brief', clean: false, properties: { sessionExpiryInterval: 2 } }));
    expect(again.connack.sessionPresent).toBe(false);
    again.client.end();
  });

  test("n1 SIGKILLed while messages are in flight and published from n2: every PUBACKed publish arrives on n3, duplicates only with DUP", async () => {
    const sub = track(await connectCollecting(url('n1'), { protocolVersion: 4, clientId: 'survivor', clean: false }));
    await sub.client.subscribeAsync('flight/#', { qos: 1 });
    await waitFor(async () => (await queueOn('n2', 'mqtt-subscription-survivor')) !== undefined, 10_000, 'session queue on n2');
    const received: Received[] = sub.received;
    const publishing = publishAll('n2', 'flight/t', 'f', 300, 5);
    await waitFor(() => received.length >= 50, 20_000, 'first deliveries on n1');
    await cluster.kill('n1');
    sub.client.end(true);
    const back = track(await connectCollecting(url('n3'), { protocolVersion: 4, clientId: 'survivor', clean: false }));
    expect(back.connack.sessionPresent).toBe(true);
    const acked = await publishing;
    // The publisher on n2 never lost its node: everything it sent was acknowledged.
    expect(acked).toHaveLength(300);
    await waitFor(() => acked.every((id) => payloads(received).includes(id) || payloads(back.received).includes(id)), 30_000, 'every acknowledged publish delivered');
    const all = [...received, ...back.received];
    const known = new Set(acked);
    expect(all.filter((m) => !known.has(m.payload))).toEqual([]);
    // A message seen a second time comes with DUP (the first sighting may have DUP too: n1 may have
    // pulled it without sending it).
    const seen = new Set<string>();
    const undeclared: string[] = [];
    for (const m of all) {
      if (seen.has(m.payload) && !m.packet.dup) undeclared.push(m.payload);
      seen.add(m.payload);
    }
    expect(undeclared).toEqual([]);
    back.client.end();
    await closed(back.client);
  });

  test('v5 session on a node that was SIGKILLed expires on a survivor; a durable STOMP subscription of that node resumes on another with what was published meanwhile', async () => {
    // MQTT: offline with a 3 s expiry on n2.
    const s = track(await connectCollecting(url('n2'), { protocolVersion: 5, clientId: 'orphan', clean: true, properties: { sessionExpiryInterval: 3 } }));
    await s.client.subscribeAsync('orphan/#', { qos: 1 });
    await waitFor(async () => (await queueOn('n3', 'mqtt-subscription-orphan')) !== undefined, 10_000, 'session queue on n3');
    s.client.end();
    await closed(s.client);
    await waitFor(() => sessionRecord('orphan'), 5000, 'expiry record');
    // STOMP: a durable topic subscription on n2, connected when n2 dies.
    const port = (n: string): number => cluster.nodes.get(n)!.stompPort!;
    const dur = await RawStomp.connected(port('n2'), { login: 'guest', passcode: 'guest' });
    dur.send('SUBSCRIBE', { destination: '/topic/dur.news', id: 'news-1', durable: 'true', 'auto-delete': 'false', ack: 'client-individual', receipt: 's1' });
    await dur.next('RECEIPT', 10_000);
    const before = await RawStomp.connected(port('n3'), { login: 'guest', passcode: 'guest' });
    before.send('SEND', { destination: '/topic/dur.news', persistent: 'true', receipt: 'b0' }, 'before');
    await before.next('RECEIPT', 10_000);
    const first = await dur.next('MESSAGE', 10_000);
    expect(first.body.toString()).toBe('before');
    await cluster.kill('n2');
    dur.destroy();
    // Published on n3 while the subscriber is away, each confirmed by a receipt.
    for (let i = 0; i < 20; i++) {
      before.send('SEND', { destination: '/topic/dur.news', persistent: 'true', receipt: `p${i}` }, `news-${i}`);
      await before.next('RECEIPT', 10_000);
    }
    before.end();
    const back = await RawStomp.connected(port('n3'), { login: 'guest', passcode: 'guest' });
    back.send('SUBSCRIBE', { destination: '/topic/dur.news', id: 'news-1', durable: 'true', 'auto-delete': 'false', ack: 'auto' });
    const bodies: string[] = [];
    while (!Array.from({ length: 20 }, (_, i) => `news-${i}`).every((b) => bodies.includes(b))) {
      bodies.push((await back.next('MESSAGE', 15_000)).body.toString());
    }
    // 'before' was not acknowledged on n2: it may come again, after the ack wait.
    expect(bodies.filter((b) => b !== 'before' && !b.startsWith('news-'))).toEqual([]);
    back.end();
    // The MQTT session's node is gone: a survivor expires it once its deadline passed.
    await waitFor(async () => (await queueOn('n3', 'mqtt-subscription-orphan')) === undefined, 30_000, 'orphan queue gone');
    await waitFor(async () => !(await streamExists('mqtt-subscription-orphan')), 10_000, 'orphan stream removed');
    await waitFor(async () => !(await sessionRecord('orphan')), 5000, 'orphan record removed');
    const again = track(await connectCollecting(url('n3'), { protocolVersion: 5, clientId: 'orphan', clean: false, properties: { sessionExpiryInterval: 3 } }));
    expect(again.connack.sessionPresent).toBe(false);
    again.client.end();
  });
});
