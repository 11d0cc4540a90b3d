import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { checkDeliveries, describeVerdict, seeded } from '../helpers/delivery-check.js';
import { http } from '../helpers/management.js';
import { connectMqtt } from '../helpers/mqtt.js';
import { QosOnePublisher, SessionSubscriber } from '../helpers/mqtt-failover-clients.js';

/**
 * The randomized failover check of persistent MQTT sessions, bounded: three nats-servers and three
 * Warren nodes; QoS 1 publishers on n1 and n2, a subscriber with a persistent session (3.1.1
 * clean session false, or v5 with a session expiry) on n3, all on one topic per round; at a
 * random moment of each round a random Warren node is SIGKILLed, and started again after the
 * drain. A client on the killed node moves to the next node: the subscriber resumes its session
 * with the same client id, a publisher sends again what was not PUBACKed. Each round's verdict:
 * every PUBACKed message delivered at least once, nothing delivered that was never published, a
 * repeat only with DUP or of a message its publisher sent again.
 *
 * The seed is printed; `WARREN_FAILOVER_SEED=<seed>` runs the same choices again.
 */

const SEED = Number(process.env['WARREN_FAILOVER_SEED'] ?? Date.now() % 2 ** 31);
const ROUNDS: Array<4 | 5> = [4, 5, 4];
/** Publishing before and after the kill, ms: the kill comes at a random moment of the first span. */
const BEFORE_MS = 3000;
const AFTER_MS = 2500;
const ACK_WAIT_MS = 3000;
const NODES = ['n1', 'n2', 'n3'];
const EXTRA = ['--cluster-ack-wait', String(ACK_WAIT_MS), '--mqtt-port', '0'];
/** Each publisher: one message every 3 ms, at most 30 without PUBACK. */
const PACE = { window: 30, intervalMs: 3 };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('randomized failover of persistent MQTT sessions', { timeout: 90_000 }, () => {
  let cluster: TestCluster;
  const random = seeded(SEED);

  beforeAll(async () => {
    console.log(`MQTT failover check: seed ${SEED} (WARREN_FAILOVER_SEED=${SEED} repeats it)`);
    cluster = await startTestCluster(3);
    await cluster.start('n1', EXTRA);
    await Promise.all([cluster.start('n2', EXTRA), cluster.start('n3', EXTRA)]);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  const url = (n: string): string => `mqtt://127.0.0.1:${cluster.nodes.get(n)!.mqttPort!}`;
  /** `first`, then the other nodes in order, with the ports they have now. */
  const from = (first: string) => (): string[] => [first, ...NODES.filter((n) => n !== first)].map(url);

  test.each(ROUNDS.map((version, i) => [i + 1, version] as const))('round %i: MQTT %i session, a Warren node killed at a random moment; every PUBACKed message delivered', async (round, version) => {
    const topic = `checked/r${round}`;
    const clientId = `checked-sub-${round}`;
    const subscriber = new SessionSubscriber(from('n3'), clientId, `${topic}/#`, version);
    await subscriber.start();
    for (const n of NODES) {
      const port = cluster.nodes.get(n)!.httpPort;
      await waitFor(async () => (await http(port, 'GET', `/api/queues/%2F/mqtt-subscription-${clientId}`)).status === 200, 15_000, `session queue on ${n}`);
    }
    // The subscription is in force where the publishers are before the round starts.
    const probes: string[] = [];
    for (const n of ['n1', 'n2']) {
      const probe = await connectMqtt(url(n), { protocolVersion: 4 });
      await waitFor(async () => {
        const id = `probe-${round}-${n}-${probes.length}`;
        probes.push(id);
        await probe.publishAsync(`${topic}/x`, id, { qos: 1 });
        return waitFor(() => subscriber.ids.has(id), 500, id).then(() => true, () => false);
      }, 15_000, `subscription in force on ${n}`);
      await probe.endAsync();
    }

    const victim = NODES[Math.floor(random() * 3)]!;
    const killAfterMs = Math.floor(300 + random() * (BEFORE_MS - 300));
    const publishers = [new QosOnePublisher(from('n1'), `${topic}/a`, `r${round}a`, PACE), new QosOnePublisher(from('n2'), `${topic}/b`, `r${round}b`, PACE)];
    for (const p of publishers) void p.start();
    await sleep(killAfterMs);
    await cluster.kill(victim);
    await sleep(BEFORE_MS - killAfterMs + AFTER_MS);
    await Promise.all(publishers.map((p) => p.stop()));

    const published = [...probes, ...publishers.flatMap((p) => p.published)];
    const acked = publishers.flatMap((p) => [...p.acked]);
    const unanswered = publishers.reduce((n, p) => n + p.published.length, 0) - acked.length;
    const resent = new Set(publishers.flatMap((p) => [...p.resent]));
    const drained = await subscriber.received(acked, 30_000);
    await subscriber.stop();
    // A publish sent again is a second message: its repeat has no DUP, and MQTT allows it.
    const deliveries = subscriber.deliveries.map((d) => ({ id: d.id, redelivered: d.redelivered || resent.has(d.id) }));
    const verdict = checkDeliveries(published, acked, deliveries);
    console.log(
      `MQTT failover check seed ${SEED} round ${round} (v${version}): ${victim} killed after ${killAfterMs} ms; published ${published.length - probes.length} (and ${probes.length} probes), ` +
        `PUBACKed ${acked.length} (${unanswered} not), sent again ${resent.size}; subscriber connections ${subscriber.connections} (session present ${subscriber.resumedWithSession.join(',') || '-'}); ${describeVerdict(verdict)}`,
    );
    await cluster.start(victim, EXTRA);

    expect(acked.length, 'PUBACKs in the round').toBeGreaterThan(50);
    expect(subscriber.resumedWithSession.every((present) => present), 'the session resumed on another node').toBe(true);
    expect(verdict.ok, `seed ${SEED} round ${round}: ${describeVerdict(verdict)}`).toBe(true);
    expect(drained, `seed ${SEED} round ${round}: every PUBACKed message delivered within 30 s`).toBe(true);
  });
});
