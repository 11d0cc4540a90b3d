import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startNatsServers, type NatsServers } from '../../src/cluster/dev-cluster.js';
import { LogFullError, NoResponderError, type ClusterEngine, type LogMessage, type ReplicatedLog } from '../../src/cluster/index.js';
import { connectNats } from '../../src/cluster/nats/nats-engine.js';
import { waitFor } from '../helpers/broker.js';
import { contractEngines } from '../helpers/cluster.js';

/**
 * The replicated log's contract, against both engines: the in-process fake must behave as a
 * JetStream work-queue stream with one shared durable consumer does.
 */

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const dec = (b: Uint8Array): string => new TextDecoder().decode(b);

const connectors = contractEngines('log-contract');

let logNo = 0;

/** Pulls until `n` messages came (a pull answers with what is there at once). */
async function pullN(log: ReplicatedLog, n: number, timeoutMs = 5000): Promise<LogMessage[]> {
  const got: LogMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < n) {
    if (Date.now() > deadline) throw new Error(`pulled ${got.length} of ${n}`);
    const batch = await log.pull(n - got.length);
    got.push(...batch);
    if (batch.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return got;
}

describe.each(connectors)('a replicated log on the %s engine', (_name, connect) => {
  let a: ClusterEngine;
  let b: ClusterEngine;
  beforeAll(async () => {
    a = await connect();
    b = await connect();
  });

  test('appends in order, deduplicates a retried message id, and hands each message to one puller', async () => {
    const name = `log_${++logNo}`;
    const la = await a.openLog(name, { replicas: 3, ackWaitMs: 30_000 });
    const lb = await b.openLog(name, { replicas: 3, ackWaitMs: 30_000 });
    const s1 = await la.append(enc('one'), { msgId: 'm1' });
    const s2 = await lb.append(enc('two'), { msgId: 'm2' });
    expect(s2).toBeGreaterThan(s1);
    expect(await la.append(enc('one again'), { msgId: 'm1' })).toBe(s1);
    for (let i = 3; i <= 6; i++) await la.append(enc(`m${i}`), { msgId: `m${i}` });
    const fromA = await pullN(la, 2);
    const fromB = await pullN(lb, 4);
    expect(fromA.map((m) => dec(m.data))).toEqual(['one', 'two']);
    expect(fromB.map((m) => dec(m.data))).toEqual(['m3', 'm4', 'm5', 'm6']);
    expect([...fromA, ...fromB].every((m) => m.deliveries === 1)).toBe(true);
    expect(await la.pull(10)).toEqual([]);
    for (const m of fromA) la.ack(m.seq);
    for (const m of fromB) lb.ack(m.seq);
    await waitFor(async () => (await la.status()).messages === 0, 5000, 'acked messages removed');
    await la.destroy();
  });

  test('an expected last sequence fences a writer', async () => {
    const log = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000 });
    const s1 = await log.append(enc('x'), { msgId: 'x', expectedSeq: 0 });
    await expect(log.append(enc('y'), { msgId: 'y', expectedSeq: 0 })).rejects.toThrow();
    expect(await log.append(enc('z'), { msgId: 'z', expectedSeq: s1 })).toBe(s1 + 1);
    await log.destroy();
  });

  test('a nak hands the message out again (after its delay) with its delivery count up; the delivery limit stops it', async () => {
    const log = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000, maxDeliver: 2 });
    const other = await b.openLog(log.name, { replicas: 1, ackWaitMs: 30_000, maxDeliver: 2 });
    await log.append(enc('again'), { msgId: 'a' });
    const [first] = await pullN(log, 1);
    expect(first!.deliveries).toBe(1);
    log.nak(first!.seq, 300);
    const nakAt = Date.now();
    const [second] = await pullN(other, 1);
    expect(Date.now() - nakAt).toBeGreaterThanOrEqual(250);
    expect([second!.seq, second!.deliveries, dec(second!.data)]).toEqual([first!.seq, 2, 'again']);
    other.nak(second!.seq);
    // Two deliveries made: it is not handed out a third time.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await log.pull(5)).toEqual([]);
    await log.destroy();
  });

  test('a message not acked within the ack wait is handed out again; in-progress holds it', async () => {
    const log = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 1000 });
    const other = await b.openLog(log.name, { replicas: 1, ackWaitMs: 1000 });
    await log.append(enc('held'), { msgId: 'h' });
    await log.append(enc('dropped'), { msgId: 'd' });
    const got = await pullN(log, 2);
    const held = got.find((m) => dec(m.data) === 'held')!;
    // The puller keeps working on `held` and forgets `dropped` (as a node that died would).
    const keep = setInterval(() => log.inProgress(held.seq), 300);
    try {
      const again = await pullN(other, 1, 5000);
      expect([dec(again[0]!.data), again[0]!.deliveries]).toEqual(['dropped', 2]);
      other.ack(again[0]!.seq);
      await new Promise((resolve) => setTimeout(resolve, 1200));
      expect(await other.pull(5)).toEqual([]);
    } finally {
      clearInterval(keep);
    }
    log.ack(held.seq);
    await log.destroy();
  });

  test('a pull that may wait answers as soon as the first message is appended, and ends empty once its wait is over', async () => {
    const log = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000 });
    const other = await b.openLog(log.name, { replicas: 1, ackWaitMs: 30_000 });
    let answeredAt = 0;
    const waiting = other.pull(10, 10_000).then((got) => {
      answeredAt = Date.now();
      return got;
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(answeredAt).toBe(0);
    const appendedAt = Date.now();
    await log.append(enc('late'), { msgId: 'late' });
    const got = await waiting;
    expect(got.map((m) => [dec(m.data), m.deliveries])).toEqual([['late', 1]]);
    // Long before the wait is over: the append ended it, and one message did (not the ten asked for).
    expect(answeredAt - appendedAt).toBeLessThan(5000);
    other.ack(got[0]!.seq);
    const idleFrom = Date.now();
    expect(await other.pull(10, 400)).toEqual([]);
    expect(Date.now() - idleFrom).toBeGreaterThanOrEqual(350);
    // Nothing was left with the ended pulls: the next message goes to the next pull.
    await log.append(enc('next'), { msgId: 'next' });
    expect((await pullN(log, 1)).map((m) => dec(m.data))).toEqual(['next']);
    await log.destroy();
  });

  test('limits: a log full of bytes refuses new messages or drops its oldest, drops what is older than its maximum age, and counts its ready messages', async () => {
    // Two 1000-byte messages fit in 2500 bytes, with what either engine counts besides the data.
    const big = (id: string): Uint8Array => enc(id.padEnd(1000, '.'));
    const first = (m: LogMessage): string => dec(m.data).slice(0, 2);
    const full = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000, maxBytes: 2500, rejectWhenFull: true });
    await full.append(big('f1'), { msgId: 'f1' });
    await full.append(big('f2'), { msgId: 'f2' });
    await expect(full.append(big('f3'), { msgId: 'f3' })).rejects.toBeInstanceOf(LogFullError);
    expect((await pullN(full, 2)).map(first)).toEqual(['f1', 'f2']);
    await full.destroy();

    const dropping = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000, maxBytes: 2500 });
    for (const id of ['d1', 'd2', 'd3']) await dropping.append(big(id), { msgId: id });
    expect((await pullN(dropping, 2)).map(first)).toEqual(['d2', 'd3']);
    await dropping.destroy();

    // ready(): what was never handed out (a nak does not make a message ready again).
    const counted = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000 });
    for (const id of ['r1', 'r2', 'r3']) await counted.append(enc(id), { msgId: id });
    expect(await counted.ready()).toBe(3);
    const [taken] = await pullN(counted, 1);
    expect(await counted.ready()).toBe(2);
    counted.nak(taken!.seq);
    expect(await counted.ready()).toBe(2);
    await counted.destroy();

    const aging = await a.openLog(`log_${++logNo}`, { replicas: 1, ackWaitMs: 30_000, maxAgeMs: 200 });
    await aging.append(enc('old'), { msgId: 'old' });
    await waitFor(async () => (await aging.status()).messages === 0, 5000, 'the old message dropped');
    await aging.append(enc('new'), { msgId: 'new' });
    expect((await pullN(aging, 1)).map((m) => dec(m.data))).toEqual(['new']);
    await aging.destroy();
  });

  test('status names the members; destroy removes the log', async () => {
    const log = await a.openLog(`log_${++logNo}`, { replicas: 3, ackWaitMs: 30_000 });
    await log.append(enc('s'), { msgId: 's' });
    const st = await log.status();
    expect(st.messages).toBe(1);
    expect(st.members.length).toBe(1);
    expect(st.leader).toBe(st.members[0]);
    expect(st.online).toEqual(st.members);
    await log.destroy();
    await expect(log.append(enc('t'), { msgId: 't' })).rejects.toThrow();
  });
});

describe('a replicated log on three nats-servers', { timeout: 60_000 }, () => {
  let servers: NatsServers;
  let engine: ClusterEngine;
  let raw: NatsConnection;
  beforeAll(async () => {
    servers = await startNatsServers({ count: 3 });
    engine = await connectNats({ servers: servers.url.split(','), name: 'log-stepdown' });
    raw = await connect({ servers: servers.url.split(',') });
  }, 60_000);
  afterAll(async () => {
    await raw?.close();
    await engine?.close();
    await servers?.stop();
  });

  test('a long poll on a quiet log is kept alive by its heartbeats until its wait is over', async () => {
    const log = await engine.openLog(`quiet_${Date.now()}`, { replicas: 3, ackWaitMs: 30_000 });
    try {
      const startedAt = Date.now();
      // Longer than the missed heartbeats after which a pull is taken as lost.
      expect(await log.pull(10, 4500)).toEqual([]);
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(4400);
    } finally {
      await log.destroy();
    }
  });

  test('two pulls in flight on one log: each message goes to one of them, the older pull first', async () => {
    const log = await engine.openLog(`two_${Date.now()}`, { replicas: 3, ackWaitMs: 30_000 });
    try {
      const older = log.pull(1, 10_000);
      const newer = log.pull(1, 10_000);
      for (let i = 1; i <= 3; i++) await log.append(enc(`p${i}`), { msgId: `p${i}` });
      const [a, b] = await Promise.all([older, newer]);
      expect(a.map((m) => dec(m.data))).toEqual(['p1']);
      expect(b.map((m) => dec(m.data))).toEqual(['p2']);
      const rest = await pullN(log, 1);
      expect(rest.map((m) => [dec(m.data), m.deliveries])).toEqual([['p3', 1]]);
      for (const m of [...a, ...b, ...rest]) log.ack(m.seq);
    } finally {
      await log.destroy();
    }
  });

  test('an append to a log that is gone fails as nothing answering there, not as a timeout', async () => {
    const log = await engine.openLog(`gone_${Date.now()}`, { replicas: 3, ackWaitMs: 30_000 });
    expect(await log.append(enc('kept'), { msgId: 'k1' })).toBe(1);
    await log.destroy();
    const startedAt = Date.now();
    await expect(log.append(enc('lost'), { msgId: 'k2' })).rejects.toBeInstanceOf(NoResponderError);
    expect(Date.now() - startedAt).toBeLessThan(4000);
  });

  test("a long poll across a change of its consumer's leader: what is appended after it is pulled", async () => {
    const name = `stepdown_${Date.now()}`;
    const log = await engine.openLog(name, { replicas: 3, ackWaitMs: 30_000 });
    const reader = await connectNats({ servers: servers.url.split(','), name: 'log-stepdown-reader' });
    try {
      const other = await reader.openLog(name, { replicas: 3, ackWaitMs: 30_000 });
      // A long poll waits on the consumer's leader; the leader steps down.
      const startedAt = Date.now();
      const waiting = other.pull(10, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const before = (await log.status()).leader;
      const answer = await raw.request(`$JS.API.CONSUMER.LEADER.STEPDOWN.${name}.shared`, new Uint8Array(0), { timeout: 5000 });
      expect(new TextDecoder().decode(answer.data)).not.toContain('"error"');
      await log.append(enc('after the new leader'), { msgId: 'a1' });
      // Long before the 30 s wait is over, the pull brings the message, or ends (its heartbeats stopped) for the next one to.
      const first = await waiting;
      expect(Date.now() - startedAt).toBeLessThan(15_000);
      const got = first.length > 0 ? first : await pullN(other, 1);
      expect(got.map((m) => dec(m.data))).toEqual(['after the new leader']);
      other.ack(got[0]!.seq);
      expect(before).toBeDefined();
    } finally {
      await reader.close();
      await log.destroy();
    }
  });
});
