import { beforeAll, describe, expect, test } from 'vitest';
import { durabilityWarning, EngineError, NoResponderError, type ClusterEngine, type KvEntry } from '../../src/cluster/index.js';
import { connectNats } from '../../src/cluster/nats/nats-engine.js';
import { waitFor } from '../helpers/broker.js';
import { contractEngines } from '../helpers/cluster.js';

/**
 * The engine contract, run against both implementations: the in-process engine the unit tests use
 * must behave as NATS JetStream does where the cluster code relies on it.
 */

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array | undefined): string | undefined => (b === undefined ? undefined : new TextDecoder().decode(b));

const connectors = contractEngines('contract');

let bucketNo = 0;

describe.each(connectors)('the %s engine', (_name, connect) => {
  let a: ClusterEngine;
  let b: ClusterEngine;
  beforeAll(async () => {
    a = await connect();
    b = await connect();
  });

  test('put, get, create only when absent, compare-and-set only at the current revision, delete', async () => {
    const kv = await a.openKV(`contract_${++bucketNo}`, { replicas: 1 });
    expect(await kv.get('k')).toBeUndefined();
    const r1 = await kv.create('k', enc('one'));
    expect(r1).toBeGreaterThan(0);
    expect(await kv.create('k', enc('again'))).toBeUndefined();
    const r2 = await kv.compareAndSet('k', enc('two'), r1!);
    expect(r2).toBeGreaterThan(r1!);
    expect(await kv.compareAndSet('k', enc('stale'), r1!)).toBeUndefined();
    const got = await kv.get('k');
    expect([dec(got?.value), got?.revision]).toEqual(['two', r2]);
    const r3 = await kv.put('k', enc('three'));
    expect(r3).toBeGreaterThan(r2!);
    await kv.delete('k');
    expect(await kv.get('k')).toBeUndefined();
    expect(await kv.create('k', enc('after delete'))).toBeGreaterThan(r3);
  });

  test('a watch passes on every current value (deletions too), is ready after them, then every change in order', async () => {
    const name = `contract_${++bucketNo}`;
    const kv = await a.openKV(name, { replicas: 1 });
    await kv.put('x', enc('1'));
    await kv.put('y', enc('2'));
    await kv.put('gone', enc('3'));
    await kv.delete('gone');
    const seen: Array<[string, string | undefined]> = [];
    const other = await b.openKV(name, { replicas: 1 });
    const w = await other.watch((e: KvEntry) => seen.push([e.key, dec(e.value)]));
    await w.ready;
    expect(seen).toEqual([['x', '1'], ['y', '2'], ['gone', undefined]]);
    await kv.put('x', enc('4'));
    await kv.delete('y');
    await waitFor(() => seen.length === 5, 5000, 'changes');
    expect(seen.slice(3)).toEqual([['x', '4'], ['y', undefined]]);
    w.stop();
  });

  test('a watch of an empty bucket is ready at once', async () => {
    const kv = await a.openKV(`contract_${++bucketNo}`, { replicas: 1 });
    const w = await kv.watch(() => undefined);
    await w.ready;
    w.stop();
  });

  test('a TTL bucket drops entries that are not written again', async () => {
    const kv = await a.openKV(`contract_${++bucketNo}`, { replicas: 1, ttlMs: 1000 });
    await kv.put('beat', enc('x'));
    expect(dec((await kv.get('beat'))?.value)).toBe('x');
    await waitFor(async () => (await kv.get('beat')) === undefined, 5000, 'the entry to expire');
  });

  test('the bus: publish to subscribers by wildcard, request with an answer, a request nobody takes', async () => {
    const got: string[] = [];
    const sub = b.bus.subscribe('contract.*.events', (data, subject) => got.push(`${subject}:${dec(data)}`));
    const rsub = b.bus.subscribe('contract.rpc', (data, _s, reply) => reply?.(enc(`re:${dec(data)}`)));
    await new Promise((r) => setTimeout(r, 100)); // the subscription reaches the server
    a.bus.publish('contract.orders.events', enc('e1'));
    a.bus.publish('contract.orders.other', enc('nope'));
    await waitFor(() => got.length === 1, 5000, 'the event');
    expect(got).toEqual(['contract.orders.events:e1']);
    expect(dec(await a.bus.request('contract.rpc', enc('q'), 2000))).toBe('re:q');
    await expect(a.bus.request('contract.nobody', enc('q'), 2000)).rejects.toBeInstanceOf(NoResponderError);
    sub.unsubscribe();
    rsub.unsubscribe();
  });

  test('logs listed by name prefix; a change of replicas keeps the messages and the cursor', async () => {
    const prefix = `contract_l_${++bucketNo}_`;
    const la = await a.openLog(`${prefix}one`, { replicas: 1, ackWaitMs: 30_000 });
    await b.openLog(`${prefix}two`, { replicas: 1, ackWaitMs: 30_000 });
    await a.openLog(`contract_other_${bucketNo}`, { replicas: 1, ackWaitMs: 30_000 });
    expect((await b.logNames(prefix)).sort()).toEqual([`${prefix}one`, `${prefix}two`]);
    await la.append(enc('m1'), { msgId: 'y1' });
    await la.append(enc('m2'), { msgId: 'y2' });
    const first = await la.pull(1);
    expect(first.map((m) => dec(m.data))).toEqual(['m1']);
    // One server: more copies than that are as many as there are.
    await la.setReplicas(3);
    const st = await la.status();
    expect([st.members.length, st.messages]).toEqual([1, 2]);
    la.ack(first[0]!.seq);
    expect((await la.pull(5)).map((m) => dec(m.data))).toEqual(['m2']);
  });

  test('a stream: appends deduplicated by id, every follower sees every sequence in order from where it starts, then live; destroy removes it', async () => {
    const name = `contract_s_${++bucketNo}`;
    const sa = await a.openStream(name, { replicas: 1 });
    const sb = await b.openStream(name, { replicas: 1 });
    expect(await sa.bounds()).toEqual({ first: 1, last: 0 });
    expect(await sa.append(enc('m1'), { msgId: 'x1' })).toBe(1);
    expect(await sb.append(enc('m2'), { msgId: 'x2' })).toBe(2);
    expect(await sa.append(enc('m1 again'), { msgId: 'x1' })).toBe(1);
    expect(await sb.bounds()).toEqual({ first: 1, last: 2 });
    const all: string[] = [];
    const fromTwo: string[] = [];
    const f1 = sb.follow(1, (e) => all.push(`${e.seq}:${dec(e.data)}`));
    const f2 = sa.follow(2, (e) => fromTwo.push(`${e.seq}:${dec(e.data)}`));
    await waitFor(() => all.length === 2 && fromTwo.length === 1, 5000, 'what was there');
    await sa.append(enc('m3'), { msgId: 'x3' });
    await waitFor(() => all.length === 3 && fromTwo.length === 2, 5000, 'the live one');
    expect(all).toEqual(['1:m1', '2:m2', '3:m3']);
    expect(fromTwo).toEqual(['2:m2', '3:m3']);
    f1.stop();
    f2.stop();
    await sa.destroy();
    await expect(sb.bounds()).rejects.toThrow();
  });
});

describe('engine checks', () => {
  test('servers before 2.10 get the durability warning, later ones do not', () => {
    expect(durabilityWarning({ serverName: 's1', version: '2.9.10', clusterSize: 3 })).toMatch(/sync_interval/);
    expect(durabilityWarning({ serverName: 's1', version: '2.10.0', clusterSize: 3 })).toBeUndefined();
    expect(durabilityWarning({ serverName: 's1', version: '2.12.3', clusterSize: 3 })).toBeUndefined();
  });

  test('a server that cannot be reached is an EngineError naming it', async () => {
    const err = await connectNats({ servers: ['nats://127.0.0.1:1'], name: 'x', connectTimeoutMs: 1000 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EngineError);
    expect((err as Error).message).toMatch(/cannot connect to the cluster engine at nats:\/\/127\.0\.0\.1:1/);
  });
});
