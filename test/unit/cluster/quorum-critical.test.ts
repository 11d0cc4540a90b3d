import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { joinCluster, MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { Core } from '../../../src/core/index.js';
import { assess, flagReplicated, majorityOf, quorumCritical } from '../../../src/management/replication.js';
import { waitFor } from '../../helpers/broker.js';

const log = pino({ level: 'silent' });
let engine: MemoryEngine | undefined;
const members: ClusterMembership[] = [];

afterEach(async () => {
  for (const m of members.splice(0)) await m.stop();
  engine?.stop();
  engine = undefined;
});

async function node(e: MemoryEngine, name: string): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  const m = await joinCluster({ cluster: 't', nodeName: name, urls: [], version: '0.0.0', core, log, engine: e.connect(name), heartbeatMs: 20, ttlMs: 200 });
  members.push(m);
  return { core, m };
}

function declare(core: Core, name: string, args: Record<string, unknown> = {}): void {
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  conn.openChannel(1).declareQueue(name, { durable: true, arguments: { 'x-queue-type': 'quorum', ...args } });
}

describe('node-is-quorum-critical and under-replicated queues', () => {
  test('majorities', () => {
    expect([1, 2, 3, 4, 5].map(majorityOf)).toEqual([1, 2, 2, 3, 3]);
    // The engine not answering counts as no copy online.
    expect(assess({ vhost: '/', name: 'q', replicas: 3, status: undefined })).toEqual({ size: 3, online: 0, underReplicated: true, belowMajority: true });
    // A leaderless status may list fewer members than the replica count: the count wins.
    expect(assess({ vhost: '/', name: 'q', replicas: 3, status: { leader: undefined, members: ['a', 'b'], online: ['a'], messages: 0 } }).belowMajority).toBe(true);
  });

  test('a single node (no cluster) is never quorum-critical', async () => {
    expect(await quorumCritical(undefined)).toEqual({ status: 200, body: { status: 'ok' } });
  });

  test('one of three copies offline: under-replicated, still ok; two offline: below a majority, 503 with the queue', async () => {
    const e = (engine = new MemoryEngine());
    e.servers = 3;
    const { core, m } = await node(e, 'n1');
    declare(core, 'q3');
    declare(core, 'q1', { 'x-quorum-initial-group-size': 1 });
    await core.persistence.definitionsSettled();
    await waitFor(async () => (await m.replicatedQueues()).every((r) => r.status !== undefined) && (await m.replicatedQueues()).length === 2, 5000, 'both replicated');

    expect(await quorumCritical(m)).toEqual({ status: 200, body: { status: 'ok' } });
    const rows = () => flagReplicated(m, [{ vhost: '/', name: 'q3' }, { vhost: '/', name: 'q1' }, { vhost: '/', name: 'classic' }]);
    expect((await rows()).map((r) => [r['name'], r['under_replicated'], r['below_majority']])).toEqual([
      ['q3', false, false],
      ['q1', false, false],
      ['classic', undefined, undefined],
    ]);

    e.offline.add('memory-3');
    const one = await rows();
    expect(one[0]).toMatchObject({ type: 'quorum', leader: 'memory-1', members: ['memory-1', 'memory-2', 'memory-3'], online: ['memory-1', 'memory-2'], under_replicated: true, below_majority: false });
    expect(one[1]).toMatchObject({ under_replicated: false, below_majority: false });
    expect(await quorumCritical(m)).toEqual({ status: 200, body: { status: 'ok' } });

    e.offline.add('memory-2');
    expect((await rows())[0]).toMatchObject({ leader: '', online: ['memory-1'], under_replicated: true, below_majority: true });
    expect(await quorumCritical(m)).toEqual({
      status: 503,
      body: { status: 'failed', reason: 'There are quorum queues that have lost the majority of their replicas', queues: [{ name: 'q3', readable_name: "queue 'q3' in vhost '/'", virtual_host: '/', type: 'quorum' }] },
    });

    // The engine unreachable: nothing can be said of any copy, every replicated queue is reported.
    e.offline.clear();
    e.available = false;
    const down = await quorumCritical(m);
    expect(down.status).toBe(503);
    expect((down.body['queues'] as Array<{ name: string }>).map((q) => q.name).sort()).toEqual(['q1', 'q3']);
    e.available = true;
    await waitFor(async () => (await quorumCritical(m)).status === 200, 5000, 'ok again');
  });
});
