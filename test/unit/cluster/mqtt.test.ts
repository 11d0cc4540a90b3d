import { afterEach, describe, expect, test } from 'vitest';
import { MemoryEngine, type ClusterMembership } from '../../../src/cluster/index.js';
import { frame, MAX_REPLICATED_RETAINED, nameKey, parseNameKey, startMqttCluster, unframe, type MqttCluster } from '../../../src/cluster/mqtt.js';
import { Core } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';
import { settle } from '../../helpers/mqtt.js';
import { memoryNodes, silentLog } from '../../helpers/memory-cluster.js';

let engine: MemoryEngine;
const nodes = memoryNodes('test');
const mqtts: MqttCluster[] = [];

afterEach(() => {
  for (const c of mqtts.splice(0)) c.stop();
});

interface Node {
  core: Core;
  m: ClusterMembership;
  c: MqttCluster;
  moved: string[];
  wills: Array<{ vhost: string; clientId: string; record: string }>;
  expired: string[];
  retained: Map<string, string>;
}

async function node(name: string): Promise<Node> {
  const core = new Core();
  const m = await nodes.join(engine, name, core);
  const c = await startMqttCluster(m, silentLog, { sweepMs: 20, leaseTtlMs: 2000 });
  mqtts.push(c);
  const n: Node = { core, m, c, moved: [], wills: [], expired: [], retained: new Map() };
  c.seam.attach({
    clientMoved: (vhost, clientId) => n.moved.push(`${vhost}:${clientId}`),
    publishOrphanWill: (vhost, clientId, record) => n.wills.push({ vhost, clientId, record: Buffer.from(record).toString() }),
    sessionExpired: (vhost, clientId) => n.expired.push(`${vhost}:${clientId}`),
  });
  c.retained.listen((vhost, topic, record) => {
    if (record === undefined) n.retained.delete(`${vhost}:${topic}`);
    else n.retained.set(`${vhost}:${topic}`, Buffer.from(record).toString());
  });
  return n;
}

/** The node's process is gone: no heartbeat, no watches; its records stay in the buckets. */
async function dies(n: Node): Promise<void> {
  n.c.stop();
  nodes.forget(n.m);
  await n.m.stop();
}

type Entries = { entries: Map<string, { value: Uint8Array | undefined }> };
/** Keys with a value (a deletion leaves a marker without one, as JetStream's KV does). */
const liveKeys = (bucket: Entries): string[] => [...bucket.entries].filter(([, e]) => e.value !== undefined).map(([k]) => k);
/** Will records in the MQTT bucket. */
const willCount = (bucket: Entries): number => liveKeys(bucket).filter((k) => k.startsWith('w.')).length;

const bytes = (s: string): Uint8Array => Buffer.from(s);

describe('KV keys and values of the MQTT buckets', () => {
  test('names become keys of the KV alphabet, long ones a digest; values frame a header and a body', () => {
    const k = nameKey('/', 'sensors/room 1/#+ü');
    expect(k).toMatch(/^[-_=/.A-Za-z0-9]+$/);
    expect(parseNameKey(k)).toEqual(['/', 'sensors/room 1/#+ü']);
    const long = nameKey('/', 'x'.repeat(500));
    expect(long).toMatch(/^h\.[0-9a-f]{64}$/);
    expect(parseNameKey(long)).toBeUndefined();
    expect(nameKey('/', 'x'.repeat(500))).toBe(long);
    const { header, body } = unframe(frame({ a: 1 }, bytes('payload')));
    expect(header).toEqual({ a: 1 });
    expect(Buffer.from(body).toString()).toBe('payload');
  });
});

describe('client ids across nodes', () => {
  test('a claim on n2 moves the client id away from n1 (n1 is told, n2 is not)', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    await a.c.seam.claimClientId('/', 'dev-1').written;
    // A node holding no claim on the id is told as well (a session it recovered from its store ends).
    await waitFor(() => b.moved.length === 1, 2000, 'n2 told of the claim on n1');
    await b.c.seam.claimClientId('/', 'dev-1').written;
    await waitFor(() => a.moved.length === 1, 2000, 'n1 told');
    expect(a.moved).toEqual(['/:dev-1']);
    await settle(50);
    expect(b.moved).toEqual(['/:dev-1']);
    // Claims of other ids on n2 leave n1's alone; a later claim on n1 moves it back from n2.
    await b.c.seam.claimClientId('/', 'dev-2').written;
    await a.c.seam.claimClientId('/', 'dev-1').written;
    await waitFor(() => b.moved.length === 2, 2000, 'n2 told');
    expect(b.moved).toEqual(['/:dev-1', '/:dev-1']);
    expect(a.moved).toEqual(['/:dev-1', '/:dev-2']);
  });

  test('two claims at once: the one written last holds the id, the other node lets go', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const ca = a.c.seam.claimClientId('/', 'race');
    const cb = b.c.seam.claimClientId('/', 'race');
    await Promise.all([ca.written, cb.written]);
    await waitFor(() => a.moved.length + b.moved.length === 1, 2000, 'one node told');
    const rev = engine.buckets.get('warren_test_mqtt')!.entries.get(`c.${nameKey('/', 'race')}`);
    const holder = JSON.parse(Buffer.from(rev!.value).toString()) as { node: string };
    expect(holder.node === 'n1' ? b.moved : a.moved).toEqual(['/:race']);
  });

  test('the record goes when the session ends after its connection, and stays while a connection holds it', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const bucket = engine.buckets.get('warren_test_mqtt')!;
    const key = `c.${nameKey('/', 'c')}`;
    const first = a.c.seam.claimClientId('/', 'c');
    await first.written;
    // A second connection on the same node took it over: the first one's session ending keeps the record.
    const second = a.c.seam.claimClientId('/', 'c');
    await second.written;
    first.release();
    a.c.seam.sessionEnded('/', 'c');
    await new Promise((r) => setTimeout(r, 30));
    expect(liveKeys(bucket)).toContain(key);
    second.release();
    a.c.seam.sessionEnded('/', 'c');
    await waitFor(() => !liveKeys(bucket).includes(key), 2000, 'record removed');
  });

  test('a node learns at start which of its recovered clients moved while it was away', async () => {
    engine = new MemoryEngine();
    const b = await node('n2');
    await b.c.seam.claimClientId('/', 'gone-to-n2').written;
    const a = await node('n1');
    expect(a.moved).toEqual(['/:gone-to-n2']);
  });

  test('holdsQueue: a durable queue declared on another node is not this node\'s; a persistent session\'s is every node\'s', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    expect(a.c.seam.holdsQueue('/', 'mqtt-shared-g-x')).toBe(true);
    const vh = b.core.vhosts.get('/')!;
    vh.declareQueue('mqtt-shared-g-x', { durable: true, autoDelete: false, arguments: {} }, false, 0);
    vh.declareQueue('mqtt-subscription-x', { durable: true, autoDelete: false, arguments: {} }, false, 0);
    await b.core.persistence.definitionsSettled();
    await waitFor(() => a.core.vhosts.get('/')!.queues.has('mqtt-shared-g-x') && a.core.vhosts.get('/')!.queues.has('mqtt-subscription-x'), 2000, 'queues on n1');
    expect(a.c.seam.holdsQueue('/', 'mqtt-shared-g-x')).toBe(false);
    expect(b.c.seam.holdsQueue('/', 'mqtt-shared-g-x')).toBe(true);
    // The session queue is replicated: its messages are on the engine, for whichever node the client is on.
    expect([a.c.seam.holdsQueue('/', 'mqtt-subscription-x'), b.c.seam.holdsQueue('/', 'mqtt-subscription-x')]).toEqual([true, true]);
    expect(a.m.replicated.isReplicated('/', 'mqtt-subscription-x')).toBe(true);
  });
});

describe('offline persistent sessions', () => {
  const sessionKeys = (bucket: Entries): string[] => liveKeys(bucket).filter((k) => k.startsWith('s.'));

  test('the session of a node that died is expired by one survivor once its deadline passes', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const c = await node('n3');
    const claim = a.c.seam.claimClientId('/', 'sleeper');
    await claim.written;
    claim.release();
    const deadline = Date.now() + 300;
    a.c.seam.sessionOffline('/', 'sleeper', deadline);
    const bucket = engine.buckets.get('warren_test_mqtt')!;
    await waitFor(() => sessionKeys(bucket).length === 1, 2000, 'expiry record');
    await dies(a);
    await waitFor(() => b.expired.length + c.expired.length === 1, 3000, 'session expired');
    expect(Date.now()).toBeGreaterThanOrEqual(deadline);
    await waitFor(() => sessionKeys(bucket).length === 0, 2000, 'record removed');
    await new Promise((r) => setTimeout(r, 100));
    expect([...b.expired, ...c.expired]).toEqual(['/:sleeper']);
  });

  test('a node that runs expires its own sessions; a reconnect anywhere voids the record; a session taken over is not offline', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const bucket = engine.buckets.get('warren_test_mqtt')!;
    const first = a.c.seam.claimClientId('/', 'mover');
    await first.written;
    first.release();
    a.c.seam.sessionOffline('/', 'mover', Date.now() + 100);
    await waitFor(() => sessionKeys(bucket).length === 1, 2000, 'expiry record');
    // The client comes back on n2 before the deadline: the record goes, nobody expires the session.
    await b.c.seam.claimClientId('/', 'mover').written;
    await waitFor(() => sessionKeys(bucket).length === 0, 2000, 'record removed by the reconnect');
    await waitFor(() => a.moved.length === 1, 2000, 'n1 told');
    // n1's connection closing after the takeover does not record the session as offline.
    a.c.seam.sessionOffline('/', 'mover', Date.now() + 50);
    a.c.seam.sessionEnded('/', 'mover');
    await new Promise((r) => setTimeout(r, 300));
    expect([sessionKeys(bucket), a.expired, b.expired]).toEqual([[], [], []]);
    // On n2 it goes offline and ends there (its own timer): the record goes with it.
    b.c.seam.sessionOffline('/', 'mover', Date.now() + 60_000);
    await waitFor(() => sessionKeys(bucket).length === 1, 2000, 'expiry record on n2');
    b.c.seam.sessionEnded('/', 'mover');
    await waitFor(() => sessionKeys(bucket).length === 0, 2000, 'record removed at the end');
    expect([a.expired, b.expired]).toEqual([[], []]);
  });
});

describe('retained messages across nodes', () => {
  test('a write on n1 reaches n2 and a node that joins later; a deletion replicates', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    await a.c.retained.write('/', 'home/temp', bytes('21'));
    await waitFor(() => b.retained.get('/:home/temp') === '21', 2000, 'on n2');
    await b.c.retained.write('/', 'home/temp', bytes('22'));
    await waitFor(() => a.retained.get('/:home/temp') === '22', 2000, 'replaced on n1');
    const long = `t/${'x'.repeat(400)}`;
    await a.c.retained.write('/', long, bytes('long'));
    const c = await node('n3');
    expect(c.retained.get('/:home/temp')).toBe('22');
    expect(c.retained.get(`/:${long}`)).toBe('long');
    await a.c.retained.write('/', 'home/temp', null);
    await b.c.retained.write('/', long, null);
    await waitFor(() => c.retained.size === 0 && b.retained.size === 0 && a.retained.size === 0, 2000, 'deleted everywhere');
  });

  test('a record larger than a cluster stores is refused before anything is written', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    expect(() => a.c.retained.write('/', 'big', new Uint8Array(MAX_REPLICATED_RETAINED))).toThrow(/larger than a cluster stores/);
    expect(liveKeys(engine.buckets.get('warren_test_mqtt')!)).toEqual([]);
  });

  test('the write resolves only once the engine has it (rejects when it is unreachable)', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    engine.available = false;
    await expect(a.c.retained.write('/', 't', bytes('x'))).rejects.toThrow(/unavailable/);
    engine.available = true;
  });
});

describe('wills of a node that died', () => {
  test('one survivor publishes them once; a normal disconnect removes the record first', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    const c = await node('n3');
    a.c.seam.setWill('/', 'w1', 0, bytes('will-1'));
    a.c.seam.setWill('/', 'w2', 0, bytes('will-2'));
    a.c.seam.setWill('/', 'w3', 0, bytes('will-3'));
    a.c.seam.setWill('/', 'w3', 0, undefined); // w3 disconnected normally
    const bucket = engine.buckets.get('warren_test_mqtt')!;
    await waitFor(() => willCount(bucket) === 2, 2000, 'two will records');
    // n1 stops running without removing its will records (as when it dies).
    await dies(a);
    await waitFor(() => b.wills.length + c.wills.length === 2, 3000, 'wills published');
    await waitFor(() => willCount(bucket) === 0, 2000, 'records removed');
    await new Promise((r) => setTimeout(r, 100));
    const all = [...b.wills, ...c.wills].map((w) => `${w.clientId}=${w.record}`).sort();
    expect(all).toEqual(['w1=will-1', 'w2=will-2']);
    // One node took the lease and published both.
    expect(b.wills.length === 2 || c.wills.length === 2).toBe(true);
  });

  test('a delayed will waits for its delay on the survivor', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    const b = await node('n2');
    a.c.seam.setWill('/', 'late', 300, bytes('late'));
    const bucket = engine.buckets.get('warren_test_mqtt')!;
    await waitFor(() => willCount(bucket) === 1, 2000, 'will record');
    const killedAt = Date.now();
    await dies(a);
    await waitFor(() => b.wills.length === 1, 3000, 'will published');
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(290);
  });

  test('the wills of this node\'s earlier process are published by the node when it comes back', async () => {
    engine = new MemoryEngine();
    const a = await node('n1');
    a.c.seam.setWill('/', 'w', 0, bytes('from-before'));
    const bucket = engine.buckets.get('warren_test_mqtt')!;
    await waitFor(() => willCount(bucket) === 1, 2000, 'will record');
    // The process dies (no clean stop) and its successor takes the name once the heartbeat is stale.
    await dies(a);
    const again = await node('n1');
    await waitFor(() => again.wills.length === 1, 3000, 'will published by the successor');
    expect(again.wills[0]!.record).toBe('from-before');
  });
});
