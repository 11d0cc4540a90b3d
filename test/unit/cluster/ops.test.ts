import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import { ClusterPeers, MemoryEngine, type ClusterNodeInfo } from '../../../src/cluster/index.js';
import { addNumbers } from '../../../src/management/cluster-wide.js';

const log = pino({ level: 'silent' });
let engine: MemoryEngine;

afterEach(() => engine?.stop());

const info = (name: string, running = true): ClusterNodeInfo => ({
  name, running, host: 'h', pid: 1, version: '0', startedAt: 0, uptime: 0, memUsed: 0, memLimit: 0, alarms: [], connections: 0, listeners: [],
});

const user = { name: 'guest', tags: ['administrator'] };

describe('ClusterPeers: requests to the other nodes', () => {
  test('asks every other running node once; answers come back by node, a node without a responder is not answering', async () => {
    engine = new MemoryEngine();
    let nodes = [info('a'), info('b'), info('c'), info('d', false)];
    const peers = new Map(['a', 'b', 'c'].map((n) => [n, new ClusterPeers(engine.connect(n).bus, 't', n, () => nodes, log, 200)]));
    const seen: string[] = [];
    peers.get('b')!.serve(async (req) => {
      seen.push(`${req.op}:${req.user.name}:${req.vhost ?? ''}`);
      return { ok: true, body: [{ name: 'conn-b', node: 'b' }] };
    });
    // c never serves: no responder on its subject.
    const r = await peers.get('a')!.askAll({ op: 'connections', user, vhost: '/' });
    expect(r.answers).toEqual([{ node: 'b', reply: { ok: true, body: [{ name: 'conn-b', node: 'b' }] } }]);
    expect(r.notAnswering).toEqual(['c']);
    expect(seen).toEqual(['connections:guest:/']);

    // A node the registry lists as stopped is not asked at all.
    nodes = [info('a'), info('b', false)];
    expect((await peers.get('a')!.askAll({ op: 'connections', user })).answers).toEqual([]);
    for (const p of peers.values()) p.stop();
  });

  test('a handler that throws answers 500; a malformed request 400; an answer over the message limit 413', async () => {
    engine = new MemoryEngine();
    const nodes = [info('a'), info('b')];
    const a = new ClusterPeers(engine.connect('a').bus, 't', 'a', () => nodes, log, 500);
    const b = new ClusterPeers(engine.connect('b').bus, 't', 'b', () => nodes, log, 500);
    b.serve(async (req) => {
      if (req.op === 'boom') throw new Error('broken');
      if (req.op === 'big') return { ok: true, body: 'x'.repeat(2_000_000) };
      return { ok: true, body: null };
    });
    expect(await a.ask('b', { op: 'boom', user })).toMatchObject({ ok: false, status: 500, reason: 'broken' });
    expect(await a.ask('b', { op: 'big', user })).toMatchObject({ ok: false, status: 413 });
    expect(await a.ask('b', { op: 'x', user: { name: 1 } as unknown as typeof user })).toMatchObject({ ok: false, status: 400 });
    expect(await a.ask('nobody', { op: 'x', user })).toBeUndefined();
    a.stop();
    b.stop();
  });
});

describe('addNumbers (overview totals over nodes)', () => {
  test('adds numbers through nested objects, keeps arrays and strings of the first, takes new keys', () => {
    const dst: Record<string, unknown> = { publish: 1, publish_details: { rate: 2, samples: [1] }, name: 'x' };
    addNumbers(dst, { publish: 3, publish_details: { rate: 0.5, samples: [9] }, name: 'y', ack: 4, JSON: { a: 1 } });
    expect(dst).toEqual({ publish: 4, publish_details: { rate: 2.5, samples: [1] }, name: 'x', ack: 4, JSON: { a: 1 } });
    addNumbers(dst, JSON.parse('{"__proto__": {"polluted": 1}}'));
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});
