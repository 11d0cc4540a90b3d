import { describe, expect, test } from 'vitest';
import { MemoryEngine, transientQueueKey, type ClusterMembership } from '../../../src/cluster/index.js';
import { Core } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, testChannel } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('t', { remoteConsumers: { pingMs: 50, missesAllowed: 2, silenceMs: 300, requestTimeoutMs: 200 } });

async function node(name: string): Promise<{ core: Core; m: ClusterMembership }> {
  const core = new Core();
  return { core, m: await nodes.join(engine, name, core) };
}

describe('named transient queues cluster-wide (in-process engine)', () => {
  test('a stand-in on n2 is placed at its home, forwards publishes, carries consumers, and deleting it deletes the queue at home', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    testChannel(a.core).declareQueue('tq', { durable: false, autoDelete: false });
    const v2 = b.core.vhosts.get('/')!;
    const standIn = await waitFor(() => v2.queues.get('tq'), 2000, 'the stand-in on n2');
    expect(standIn.forwarder).toBeDefined();
    expect(standIn.remote).toBeDefined();
    expect(b.m.transientQueues.counts).toEqual({ own: 0, standIns: 1 });
    expect(a.m.transientQueues.counts).toEqual({ own: 1, standIns: 0 });

    const ch2 = testChannel(b.core);
    const sink = new RecordingSink();
    ch2.consume('tq', { noAck: true }, sink);
    await waitFor(() => a.core.vhosts.get('/')!.queues.get('tq')!.consumerCount === 1, 2000, 'the consumer at home');
    const res = ch2.publish({ exchange: '', routingKey: 'tq', properties: {}, body: Buffer.from('m') });
    expect(res.routed).toBe(1);
    await res.settled;
    await waitFor(() => sink.got.length === 1, 2000, 'the message on n2');
    expect(sink.got[0]!.message.body.toString()).toBe('m');

    ch2.deleteQueue('tq');
    await waitFor(() => !a.core.vhosts.get('/')!.queues.has('tq'), 2000, 'the queue deleted at home');
  });

  test("a stand-in goes when its home stops running, and a restarted node drops what its earlier run announced", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    testChannel(a.core).declareQueue('tq2', { durable: false });
    const v2 = b.core.vhosts.get('/')!;
    await waitFor(() => v2.queues.has('tq2'), 2000, 'the stand-in on n2');
    // n1 dies without a word: its heartbeat stops, its announcement stays in the bucket.
    (a.m.registry as unknown as { timer: NodeJS.Timeout }).timer.close();
    await waitFor(() => !v2.queues.has('tq2'), 3000, 'the stand-in gone');
    const kv = await engine.connect('probe').openKV('warren_t_transient', { replicas: 1 });
    const key = transientQueueKey('n1', '/', 'tq2');
    expect((await kv.get(key))?.value).toBeDefined();
    // n1 comes back (its transient queues did not survive it): the announcement goes.
    await node('n1');
    await waitFor(async () => (await kv.get(key))?.value === undefined, 3000, 'the stale announcement deleted');
    expect(v2.queues.has('tq2')).toBe(false);
  });
});
