import type { IDisconnectPacket, MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { nameKey } from '../../src/cluster/mqtt.js';
import { connectNats } from '../../src/cluster/nats/nats-engine.js';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { collect, connectCollecting, connectMqtt, settle, waitForCount } from '../helpers/mqtt.js';

/** Three Warren nodes with MQTT on three clustered nats-servers; n3 is killed in the last test. */
describe('MQTT across three Warren nodes', { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    const mqttOn = ['--mqtt-port', '0'];
    await cluster.start('n1', mqttOn);
    await Promise.all([cluster.start('n2', mqttOn), cluster.start('n3', mqttOn)]);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) c.end(true);
    await cluster?.stop();
  });

  const url = (name: string): string => `mqtt://127.0.0.1:${cluster.nodes.get(name)!.mqttPort!}`;
  const track = <T extends { client: MqttClient } | MqttClient>(c: T): T => {
    clients.push('client' in c ? c.client : c);
    return c;
  };
  const closed = (c: MqttClient): Promise<void> => new Promise((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));

  test('v5: a connection with the same client id on n2 takes over the one on n1 (DISCONNECT 0x8E)', async () => {
    const first = track(await connectMqtt(url('n1'), { protocolVersion: 5, clientId: 'takeover-v5' }));
    const disconnect = new Promise<IDisconnectPacket>((resolve) => first.once('disconnect', resolve));
    const gone = closed(first);
    const second = track(await connectMqtt(url('n2'), { protocolVersion: 5, clientId: 'takeover-v5' }));
    const packet = await disconnect;
    expect(packet.reasonCode).toBe(0x8e);
    await gone;
    // The new connection stays and works.
    await second.subscribeAsync('v5/echo', { qos: 1 });
    const got = collect(second);
    await second.publishAsync('v5/echo', 'still here', { qos: 1 });
    await waitForCount(got, 1);
    expect(second.connected).toBe(true);
  });

  test('3.1.1: a persistent session on n1 is closed by a connection on n2, which resumes it there; back on n1 it is present again', async () => {
    const first = track(await connectCollecting(url('n1'), { protocolVersion: 4, clientId: 'takeover-311', clean: false }));
    expect(first.connack.sessionPresent).toBe(false);
    await first.client.subscribeAsync('p/#', { qos: 1 });
    const gone = closed(first.client);
    const second = track(await connectCollecting(url('n2'), { protocolVersion: 4, clientId: 'takeover-311', clean: false }));
    await gone;
    // The session's queue and bindings are the cluster's: n2 resumes it, with its subscription.
    expect(second.connack.sessionPresent).toBe(true);
    await second.client.publishAsync('p/x', 'followed', { qos: 1 });
    await waitFor(() => second.received.some((m) => m.payload === 'followed'), 10_000, 'subscription in force on n2');
    second.client.end();
    await closed(second.client);
    // Back on n1: the same session, not a new one.
    const third = track(await connectCollecting(url('n1'), { protocolVersion: 4, clientId: 'takeover-311', clean: false }));
    expect(third.connack.sessionPresent).toBe(true);
    // A clean session discards it everywhere.
    third.client.end();
    await closed(third.client);
    const clean = track(await connectCollecting(url('n2'), { protocolVersion: 4, clientId: 'takeover-311', clean: true }));
    expect(clean.connack.sessionPresent).toBe(false);
    clean.client.end();
    await closed(clean.client);
    const fourth = track(await connectCollecting(url('n1'), { protocolVersion: 4, clientId: 'takeover-311', clean: false }));
    expect(fourth.connack.sessionPresent).toBe(false);
    fourth.client.end();
  });

  /** What a new subscriber on `node` gets as retained messages for `filter` (topic=payload). */
  const retainedOn = async (node: string, filter: string, protocolVersion: 4 | 5 = 5): Promise<string[]> => {
    const c = await connectMqtt(url(node), { protocolVersion });
    try {
      const got = collect(c);
      await c.subscribeAsync(filter, { qos: 1 });
      await settle(100);
      return got.filter((m) => m.packet.retain).map((m) => `${m.topic}=${m.payload}`);
    } finally {
      await c.endAsync();
    }
  };
  /** Other nodes apply a change once their watch delivers it (milliseconds): ask until they have. */
  const expectRetained = async (node: string, filter: string, want: string[], protocolVersion: 4 | 5 = 5): Promise<void> => {
    let last: string[] = [];
    await waitFor(async () => JSON.stringify((last = await retainedOn(node, filter, protocolVersion))) === JSON.stringify(want), 5000, `${want.join(',')} on ${node}`).catch(
      () => expect(last).toEqual(want),
    );
  };

  test('a retained message set on n1 is seen by a new subscriber on n2, replaced on n2 and seen on n3, cleared on n3 and gone on n1', async () => {
    const pub1 = track(await connectMqtt(url('n1'), { protocolVersion: 5 }));
    // PUBACK comes once the retained store is replicated.
    await pub1.publishAsync('house/temp', '21.5', { qos: 1, retain: true });
    expect(await retainedOn('n1', 'house/temp')).toEqual(['house/temp=21.5']);
    await expectRetained('n2', 'house/#', ['house/temp=21.5']);

    const pub2 = track(await connectMqtt(url('n2'), { protocolVersion: 4 }));
    await pub2.publishAsync('house/temp', '22.0', { qos: 1, retain: true });
    await expectRetained('n3', 'house/+', ['house/temp=22.0'], 4);
    await expectRetained('n1', 'house/temp', ['house/temp=22.0']);

    const pub3 = track(await connectMqtt(url('n3'), { protocolVersion: 5 }));
    await pub3.publishAsync('house/temp', '', { qos: 1, retain: true });
    await expectRetained('n1', 'house/#', []);
    await expectRetained('n2', 'house/#', [], 4);
  });

  test('the will of a client on a node killed with SIGKILL is published by a survivor', async () => {
    // Subscribers on both survivors: the one that takes the lease publishes the will where it is.
    const subs = await Promise.all(['n1', 'n2'].map(async (n) => track(await connectMqtt(url(n), { protocolVersion: 5 }))));
    const got = subs.map((s) => collect(s));
    for (const s of subs) await s.subscribeAsync('wills/#', { qos: 1 });
    const doomed = await connectMqtt(url('n3'), {
      protocolVersion: 4,
      clientId: 'doomed',
      will: { topic: 'wills/doomed', payload: Buffer.from('n3 went away'), qos: 1, retain: false },
    });
    doomed.on('error', () => undefined);
    doomed.options.reconnectPeriod = 0;
    // The record of the will is in the cluster before the node dies.
    const engine = await connectNats({ servers: cluster.nats.url.split(','), name: 'test' });
    try {
      const wills = await engine.openKV('warren_test_mqtt', { replicas: 3 });
      await waitFor(async () => (await wills.get(`w.n3.${nameKey('/', 'doomed')}`)) !== undefined, 5000, 'will record');
    } finally {
      await engine.close();
    }
    await cluster.kill('n3');
    await waitFor(() => got.some((g) => g.length > 0), 20_000, 'the will on a survivor');
    await settle(500);
    for (const g of got) expect(g.length).toBeLessThanOrEqual(1);
    const delivered = got.flat();
    expect(delivered[0]!.payload).toBe('n3 went away');
    expect(delivered[0]!.topic).toBe('wills/doomed');
    doomed.end(true);
    // The client comes back on a survivor under the same client id (its record still names n3).
    const back = track(await connectCollecting(url('n1'), { protocolVersion: 4, clientId: 'doomed', clean: false }));
    expect(back.connack.sessionPresent).toBe(false);
    await back.client.subscribeAsync('back/+', { qos: 1 });
    await back.client.publishAsync('back/again', 'hello', { qos: 1 });
    expect((await waitForCount(back.received, 1))[0]!.payload).toBe('hello');
  });
});
