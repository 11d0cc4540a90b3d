import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { http } from '../helpers/management.js';
import { collect, connectMqtt, settle, waitForCount, type Received } from '../helpers/mqtt.js';

/** One `$share` group with members on n1 and n2, fed by a publisher on n3. */
describe('MQTT $share groups across three Warren nodes', { timeout: 40_000 }, () => {
  let cluster: TestCluster;
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    const mqttOn = ['--mqtt-port', '0'];
    await cluster.start('n1', mqttOn);
    await Promise.all([cluster.start('n2', mqttOn), cluster.start('n3', mqttOn)]);
  }, 40_000);

  afterAll(async () => {
    for (const c of clients) c.end(true);
    await cluster?.stop();
  });

  const url = (name: string): string => `mqtt://127.0.0.1:${cluster.nodes.get(name)!.mqttPort!}`;
  const connect = async (node: string, clientId: string): Promise<MqttClient> => {
    const c = await connectMqtt(url(node), { protocolVersion: 5, clientId });
    clients.push(c);
    return c;
  };
  const queueStatus = async (node: string, queue: string): Promise<number> =>
    (await http(cluster.nodes.get(node)!.httpPort, 'GET', `/api/queues/%2F/${encodeURIComponent(queue)}`)).status;
  const consumersOn = async (node: string, queue: string): Promise<number> =>
    (await http<{ consumers: number }>(cluster.nodes.get(node)!.httpPort, 'GET', `/api/queues/%2F/${encodeURIComponent(queue)}`)).body.consumers;
  const payloads = (r: Received[]): string[] => r.map((m) => m.payload);

  test('each message goes to one member cluster-wide; both members get some; a member leaving', async () => {
    const queue = 'mqtt-shared-g1-jobs.#';
    const a = await connect('n1', 'share-a');
    const gotA = collect(a);
    await a.subscribeAsync('$share/g1/jobs/#', { qos: 1 });
    // The group's queue is a replicated definition: n2 and n3 know it (and its binding) once their watch has it.
    for (const n of ['n2', 'n3']) await waitFor(async () => (await queueStatus(n, queue)) === 200, 5000, `${queue} on ${n}`);
    const b = await connect('n2', 'share-b');
    const gotB = collect(b);
    await b.subscribeAsync('$share/g1/jobs/#', { qos: 1 });
    await waitFor(async () => (await consumersOn('n1', queue)) === 2, 5000, 'both members counted on n1');

    const pub = await connect('n3', 'share-pub');
    const n = 200;
    for (let i = 0; i < n; i++) await pub.publishAsync(`jobs/${i % 4}`, `m${i}`, { qos: 1 });
    await waitFor(() => gotA.length + gotB.length >= n, 15_000, `${n} messages in the group`);
    await settle(300);
    const all = [...payloads(gotA), ...payloads(gotB)];
    expect(all.length).toBe(n);
    expect(new Set(all).size).toBe(n);
    expect(gotA.length).toBeGreaterThan(0);
    expect(gotB.length).toBeGreaterThan(0);

    // The member on n2 leaves: the group stays (its queue is still there) and n1's member gets everything.
    await b.unsubscribeAsync('$share/g1/jobs/#');
    await settle(200);
    expect(await queueStatus('n1', queue)).toBe(200);
    gotA.length = 0;
    gotB.length = 0;
    for (let i = 0; i < 20; i++) await pub.publishAsync(`jobs/x`, `after${i}`, { qos: 1 });
    await waitForCount(gotA, 20, 10_000);
    await settle(200);
    expect(payloads(gotA)).toEqual(Array.from({ length: 20 }, (_, i) => `after${i}`));
    expect(gotB).toHaveLength(0);

    // The last member leaves: the group's queue is deleted on every node.
    await a.unsubscribeAsync('$share/g1/jobs/#');
    for (const n of ['n1', 'n2', 'n3']) await waitFor(async () => (await queueStatus(n, queue)) === 404, 5000, `${queue} gone on ${n}`);
  });
  test('the member on the group queue\'s home leaves first: the member on another node keeps the group going, and its leaving deletes the queue', async () => {
    const queue = 'mqtt-shared-g2-work';
    const a = await connect('n1', 'share2-a');
    await a.subscribeAsync('$share/g2/work', { qos: 1 });
    await waitFor(async () => (await queueStatus('n2', queue)) === 200, 5000, `${queue} on n2`);
    const b = await connect('n2', 'share2-b');
    const gotB = collect(b);
    await b.subscribeAsync('$share/g2/work', { qos: 1 });
    // The member on n2 consumes through the home: the home counts it once the attach has arrived.
    await waitFor(async () => (await consumersOn('n1', queue)) === 2, 5000, 'both members counted on n1');
    // n1 is the home: its member's clean disconnect leaves the queue to the member consuming it from n2.
    await a.endAsync();
    await settle(300);
    expect(await queueStatus('n1', queue)).toBe(200);
    const pub = await connect('n3', 'share2-pub');
    for (let i = 0; i < 30; i++) await pub.publishAsync('work', `w${i}`, { qos: 1 });
    await waitForCount(gotB, 30, 10_000);
    await settle(200);
    expect(payloads(gotB)).toEqual(Array.from({ length: 30 }, (_, i) => `w${i}`));
    // The last member, on n2, leaves: the home finds nobody consuming and deletes the queue everywhere.
    await b.unsubscribeAsync('$share/g2/work');
    for (const n of ['n1', 'n2', 'n3']) await waitFor(async () => (await queueStatus(n, queue)) === 404, 8000, `${queue} gone on ${n}`);
  });
});
