import { jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { checkDeliveries, describeVerdict, seeded } from '../helpers/delivery-check.js';
import { ConfirmingPublisher, RecordingConsumer } from '../helpers/failover-clients.js';
import { http } from '../helpers/management.js';

/**
 * A randomized failover check, bounded: three nats-servers and three Warren nodes; publishers with
 * confirms on n1 and n2 and a consumer on n3, all on one replicated queue per round; at a random
 * moment of each round a random Warren node is SIGKILLed (or, in other rounds, a random
 * nats-server), and started again after the drain. Clients on a killed node move to the next
 * node. Each round's verdict: every confirmed message delivered at least once, nothing delivered
 * that was never published, a repeat only with `redelivered`.
 *
 * The seed is printed; `WARREN_FAILOVER_SEED=<seed>` runs the same choices again.
 */

const SEED = Number(process.env['WARREN_FAILOVER_SEED'] ?? Date.now() % 2 ** 31);
const ROUNDS: Array<'warren' | 'nats'> = ['warren', 'nats', 'warren', 'nats'];
/** Publishing before and after the kill, ms: the kill comes at a random moment of the first span. */
const BEFORE_MS = 4000;
const AFTER_MS = 3000;
const ACK_WAIT_MS = 3000;
const NODES = ['n1', 'n2', 'n3'];
/** Each publisher: one message every 2 ms, at most 50 unconfirmed. */
const PACE = { window: 50, intervalMs: 2 };

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('randomized failover of a replicated queue', { timeout: 240_000 }, () => {
  let cluster: TestCluster;
  const random = seeded(SEED);

  beforeAll(async () => {
    console.log(`failover check: seed ${SEED} (WARREN_FAILOVER_SEED=${SEED} repeats it)`);
    cluster = await startTestCluster(3);
    for (const n of NODES) await cluster.start(n, ['--cluster-ack-wait', String(ACK_WAIT_MS)]);
  }, 90_000);

  afterAll(async () => {
    await cluster?.stop();
  });

  const url = (n: string): string => `amqp://guest:guest@127.0.0.1:${cluster.nodes.get(n)!.amqpPort}`;
  /** `first`, then the other nodes in order: where a client starts and where it goes next. */
  const from = (first: string): string[] => [first, ...NODES.filter((n) => n !== first)].map(url);

  /**
   * Every stream of the engine (buckets and queues) with a leader and all its replicas current:
   * a server started again has caught up before the next round may kill another one.
   */
  const engineCaughtUp = async (): Promise<void> => {
    const nc = await connect({ servers: cluster.nats.url.split(',') });
    try {
      await waitFor(async () => {
        try {
          const jsm = await jetstreamManager(nc, { checkAPI: false, timeout: 3000 });
          for await (const si of jsm.streams.list()) {
            const c = si.cluster;
            if (c?.leader === undefined || c.leader === '' || (c.replicas ?? []).some((r) => !r.current || r.offline === true)) return false;
          }
          return true;
        } catch {
          return false;
        }
      }, 60_000, 'every stream current on every server');
    } finally {
      await nc.close();
    }
  };

  test.each(ROUNDS.map((kind, i) => [i + 1, kind] as const))('round %i: a %s process killed at a random moment; every confirmed message delivered', async (round, kind) => {
    const queue = `checked-${round}`;
    const setup = await amqp.connect(url('n1'));
    await (await setup.createChannel()).assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await setup.close();
    for (const n of NODES) {
      const port = cluster.nodes.get(n)!.httpPort;
      await waitFor(async () => (await http(port, 'GET', `/api/queues/%2F/${queue}`)).status === 200, 15_000, `${queue} on ${n}`);
    }
    const victim = Math.floor(random() * 3);
    const killAfterMs = Math.floor(500 + random() * (BEFORE_MS - 500));
    const victimName = kind === 'warren' ? NODES[victim]! : cluster.nats.servers[victim]!.name;

    const publishers = [new ConfirmingPublisher(from('n1'), queue, `r${round}a`, PACE), new ConfirmingPublisher(from('n2'), queue, `r${round}b`, PACE)];
    const consumer = new RecordingConsumer(from('n3'), queue, 20);
    consumer.start();
    for (const p of publishers) p.start();
    await sleep(killAfterMs);
    if (kind === 'warren') await cluster.kill(victimName);
    else await cluster.nats.kill(victim);
    await sleep(BEFORE_MS - killAfterMs + AFTER_MS);
    await Promise.all(publishers.map((p) => p.stop()));

    const published = publishers.flatMap((p) => p.published);
    const confirmed = publishers.flatMap((p) => [...p.confirmed]);
    const drained = await consumer.received(confirmed, 60_000);
    await consumer.stop();
    const verdict = checkDeliveries(published, confirmed, consumer.deliveries);
    console.log(
      `failover check seed ${SEED} round ${round}: ${victimName} killed after ${killAfterMs} ms; published ${published.length}, confirmed ${confirmed.length}, ` +
        `consumer connections ${consumer.connections}; ${describeVerdict(verdict)}`,
    );

    if (kind === 'warren') await cluster.start(victimName, ['--cluster-ack-wait', String(ACK_WAIT_MS)]);
    else await cluster.nats.restart(victim);
    await engineCaughtUp();

    expect(confirmed.length, 'confirms in the round').toBeGreaterThan(50);
    expect(verdict.ok, `seed ${SEED} round ${round}: ${describeVerdict(verdict)}`).toBe(true);
    expect(drained, `seed ${SEED} round ${round}: every confirmed message delivered within 60 s`).toBe(true);
  });
});
