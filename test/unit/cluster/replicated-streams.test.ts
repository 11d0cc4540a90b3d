import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { Core, NO_PERSISTENCE, StreamQueue, type Delivery, type FieldTable, type FieldValue } from '../../../src/core/index.js';
import { StreamLog } from '../../../src/store/stream-log.js';
import { waitFor } from '../../helpers/broker.js';
import { RecordingSink, memoryNodes, silentLog, testChannel } from '../../helpers/memory-cluster.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

let engine: MemoryEngine;
const nodes = memoryNodes('t');

/** A core whose streams are segment stores in a directory of its own. */
function streamCore(dir = mkdtempSync(join(tmpdir(), 'warren-rs-'))): Core {
  dirs.push(dir);
  return new Core({ persistence: { ...NO_PERSISTENCE, openStream: (q, limits) => new StreamLog(join(dir, q.name), limits, silentLog) } });
}

async function node(name: string, core = streamCore()): Promise<{ core: Core; m: ClusterMembership }> {
  return { core, m: await nodes.join(engine, name, core) };
}

const streamOf = (core: Core, name: string): StreamQueue | undefined => {
  const q = core.vhosts.get('/')!.queues.get(name);
  return q instanceof StreamQueue ? q : undefined;
};

function publish(core: Core, queue: string, bodies: string[], headers?: Record<string, string>): Promise<void[]> {
  const ch = testChannel(core);
  return Promise.all(bodies.map((b) => ch.publish({ exchange: '', routingKey: queue, properties: headers === undefined ? {} : { headers }, body: Buffer.from(b) }).settled));
}

function read(core: Core, queue: string, offset: FieldValue, args: FieldTable = {}): RecordingSink {
  const ch = testChannel(core);
  ch.qos(100, false);
  const sink = new RecordingSink();
  ch.consume(queue, { noAck: false, arguments: { 'x-stream-offset': offset, ...args } }, sink);
  return sink;
}

const offsets = (s: RecordingSink): number[] => s.got.map((d: Delivery) => Number(d.message.properties.headers?.['x-stream-offset']));
const bodies = (s: RecordingSink): string[] => s.got.map((d: Delivery) => d.message.body.toString());

describe('stream queues on the in-process engine', () => {
  test('publishes on two nodes settle once the engine has them, and every node reads the same offsets in the same order', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    testChannel(a.core).declareQueue('s', { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => b.m.streams.has(streamOf(b.core, 's')!), 5000, 's on n2');
    await publish(a.core, 's', ['a0', 'a1', 'a2']);
    await publish(b.core, 's', ['b0', 'b1']);
    const st = [...engine.streams.values()][0]!;
    expect(st.lastSeq).toBe(5);

    const ra = read(a.core, 's', 'first');
    const rb = read(b.core, 's', 'first');
    await waitFor(() => ra.got.length === 5 && rb.got.length === 5, 5000, 'five on each node');
    expect(offsets(ra)).toEqual([0, 1, 2, 3, 4]);
    expect(bodies(rb)).toEqual(bodies(ra));
    expect(bodies(ra).slice(0, 3)).toEqual(['a0', 'a1', 'a2']);

    // `next` on n2 sees only what comes after; a numeric offset starts there.
    const next = read(b.core, 's', 'next');
    const from3 = read(a.core, 's', 3);
    await waitFor(() => from3.got.length === 2, 5000, 'from 3');
    await publish(a.core, 's', ['late']);
    await waitFor(() => next.got.length === 1 && from3.got.length === 3, 5000, 'the late one');
    expect(offsets(next)).toEqual([5]);
    expect(offsets(from3)).toEqual([3, 4, 5]);
  });

  test("a stream's replicas as management sees them: typed stream, under-replicated with a server offline, beside a quorum queue", async () => {
    engine = new MemoryEngine();
    engine.servers = 3;
    const a = await node('n1');
    const ch = testChannel(a.core);
    ch.declareQueue('s', { durable: true, arguments: { 'x-queue-type': 'stream' } });
    ch.declareQueue('q', { durable: true, arguments: { 'x-queue-type': 'quorum' } });
    await a.core.persistence.definitionsSettled();
    await publish(a.core, 's', ['x']);
    expect(await a.m.replicationOf('/', 's')).toEqual({ type: 'stream', replicas: 3, leader: 'memory-1', members: ['memory-1', 'memory-2', 'memory-3'], online: ['memory-1', 'memory-2', 'memory-3'], messages: 1, lag: [0, 0, 0] });
    engine.offline.add('memory-3');
    const reports = await a.m.replicatedQueues();
    expect(reports.map((r) => [r.name, r.type ?? 'quorum', r.status?.online.length]).sort()).toEqual([['q', 'quorum', 2], ['s', 'stream', 2]]);
    engine.offline.clear();
    await a.m.stop();
  });

  test("a stream matched by an 'ha-mode' policy is still a replicated stream, not a replicated queue", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    a.core.policies.set({ vhost: '/', name: 'ha', pattern: '.*', applyTo: 'queues', definition: { 'ha-mode': 'all' }, priority: 0 });
    testChannel(a.core).declareQueue('h', { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await a.core.persistence.definitionsSettled();
    const q = streamOf(a.core, 'h')!;
    expect([a.m.streams.has(q), a.m.replicated.has(q)]).toEqual([true, false]);
    await publish(a.core, 'h', ['one']);
    const r = read(a.core, 'h', 'first');
    await waitFor(() => r.got.length === 1, 5000, 'one');
    expect(offsets(r)).toEqual([0]);
  });

  test('filter values travel with the message: a filtered reader on another node gets only its own', async () => {
    engine = new MemoryEngine();
    const [a, b] = [await node('n1'), await node('n2')];
    testChannel(a.core).declareQueue('f', { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => streamOf(b.core, 'f') !== undefined && b.m.streams.has(streamOf(b.core, 'f')!), 5000, 'f on n2');
    await publish(a.core, 'f', ['r1'], { 'x-stream-filter-value': 'red' });
    await publish(a.core, 'f', ['b1'], { 'x-stream-filter-value': 'blue' });
    await publish(a.core, 'f', ['r2'], { 'x-stream-filter-value': 'red' });
    const red = read(b.core, 'f', 'first', { 'x-stream-filter': 'red' });
    await waitFor(() => red.got.length === 2, 5000, 'the red ones');
    expect(bodies(red)).toEqual(['r1', 'r2']);
    expect(offsets(red)).toEqual([0, 2]);
  });

  test("a node joining after the engine's retention dropped the oldest messages starts its copy at the engine's first offset", async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    testChannel(a.core).declareQueue('r', { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await a.core.persistence.definitionsSettled();
    await publish(a.core, 'r', Array.from({ length: 10 }, (_, i) => `m${i}`));
    [...engine.streams.values()][0]!.dropBefore(7);

    const b = await node('n2');
    await waitFor(() => streamOf(b.core, 'r')?.log.end === 10, 5000, 'copy on n2');
    const q = streamOf(b.core, 'r')!;
    expect(q.log.first).toBe(6);
    const r = read(b.core, 'r', 'first');
    await waitFor(() => r.got.length === 4, 5000, 'four');
    expect(offsets(r)).toEqual([6, 7, 8, 9]);
    expect(bodies(r)).toEqual(['m6', 'm7', 'm8', 'm9']);
  });

  test('a node restarted with its copy on disk fetches only what it missed; a delete removes the engine stream', async () => {
    engine = new MemoryEngine();
    const dir = mkdtempSync(join(tmpdir(), 'warren-rs-'));
    const a = await node('n1');
    const b = await node('n2', streamCore(dir));
    testChannel(a.core).declareQueue('k', { durable: true, arguments: { 'x-queue-type': 'stream' } });
    await a.core.persistence.definitionsSettled();
    await waitFor(() => streamOf(b.core, 'k') !== undefined && b.m.streams.has(streamOf(b.core, 'k')!), 5000, 'k on n2');
    await publish(a.core, 'k', ['x0', 'x1']);
    await waitFor(() => streamOf(b.core, 'k')?.log.end === 2, 5000, 'two on n2');
    await b.m.stop();
    nodes.forget(b.m);
    (streamOf(b.core, 'k')!.log as StreamLog).close();
    await publish(a.core, 'k', ['x2']);

    // The same directory again: the store recovers two, the follower brings the third.
    const core2 = streamCore(dir);
    const again = await node('n2', core2);
    expect(again.m.streams.has(streamOf(core2, 'k')!)).toBe(true);
    await waitFor(() => streamOf(core2, 'k')?.log.end === 3, 5000, 'three on n2');
    const r = read(core2, 'k', 'first');
    await waitFor(() => r.got.length === 3, 5000, 'three');
    expect(bodies(r)).toEqual(['x0', 'x1', 'x2']);

    testChannel(a.core).deleteQueue('k');
    await a.core.persistence.definitionsSettled();
    await waitFor(() => engine.streams.size === 0, 5000, 'engine stream removed');
    await waitFor(() => streamOf(core2, 'k') === undefined, 5000, 'k gone on n2');
  });
});
