import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, expect, test } from 'vitest';
import { runWarren, spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

/**
 * The broker runs as a child process; several AMQP channels declare durable queues, bind them,
 * unbind and delete them as fast as the replies come, and the broker is killed with SIGKILL at a
 * random moment. After each kill the data directory is read back (as the restart will see it) and
 * the broker restarts on it. Across all rounds: every queue whose declare-ok arrived (and whose
 * delete was never sent) is there, every queue whose delete-ok arrived is not; the same for
 * bindings and bind-ok / unbind-ok.
 */

const ROUNDS = 4;
const WORKERS = 6;
const EXCHANGE = 'defs-crash-x';

/** What the client knows about one queue (and its one binding), in the order things happen. */
interface QueueLedger {
  declareSent: boolean;
  declared: boolean;
  bindSent: boolean;
  bound: boolean;
  unbindSent: boolean;
  unbound: boolean;
  deleteSent: boolean;
  deleted: boolean;
}

const dirs: string[] = [];
let proc: WarrenProcess | undefined;

afterAll(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

const noop = (): void => undefined;

/** A connection, and a promise that resolves once it is closed (the broker was killed). */
async function open(port: number): Promise<{ conn: ChannelModel; closed: Promise<void> }> {
  const conn = await connect(`amqp://guest:guest@127.0.0.1:${port}`, { noDelay: true });
  conn.on('error', noop);
  const closed = new Promise<void>((resolve) => conn.once('close', () => resolve()));
  return { conn, closed };
}

/**
 * One channel's work until the connection dies: for each new queue, declare it, bind it; every
 * other step deletes the queue before, and every fourth unbinds the (kept) one before. Names are
 * never reused, so every outcome is unambiguous. The churn makes the log outgrow the live
 * definitions quickly, so compactions happen (and are killed) too.
 */
async function worker(ch: Channel, id: string, ledger: Map<string, QueueLedger>, stop: { now: boolean }): Promise<void> {
  ch.on('error', noop);
  const mine: string[] = [];
  for (let n = 0; !stop.now; n++) {
    const q = `dq-${id}-${n}`;
    const l: QueueLedger = { declareSent: true, declared: false, bindSent: false, bound: false, unbindSent: false, unbound: false, deleteSent: false, deleted: false };
    ledger.set(q, l);
    await ch.assertQueue(q, { durable: true });
    l.declared = true;
    l.bindSent = true;
    await ch.bindQueue(q, EXCHANGE, `k-${q}`);
    l.bound = true;
    mine.push(q);
    if (n % 2 === 1) {
      const victim = mine[n - 1]!;
      const v = ledger.get(victim)!;
      v.deleteSent = true;
      await ch.deleteQueue(victim);
      v.deleted = true;
    } else if (n % 4 === 2) {
      const victim = mine[n - 1]!;
      const v = ledger.get(victim)!;
      v.unbindSent = true;
      await ch.unbindQueue(victim, EXCHANGE, `k-${victim}`);
      v.unbound = true;
    }
  }
}

interface Exported {
  queues: { name: string; vhost: string }[];
  bindings: { source: string; destination: string; routing_key: string }[];
}

function check(ledger: Map<string, QueueLedger>, defs: Exported, round: number, violations: Map<string, string>): void {
  const queues = new Set(defs.queues.filter((q) => q.vhost === '/').map((q) => q.name));
  const bindings = new Set(defs.bindings.filter((b) => b.source === EXCHANGE).map((b) => `${b.destination}|${b.routing_key}`));
  const add = (q: string, what: string): void => {
    if (!violations.has(q)) violations.set(q, `round ${round}: ${what}`);
  };
  for (const [q, l] of ledger) {
    const has = queues.has(q);
    const bound = bindings.has(`${q}|k-${q}`);
    if (l.declared && !l.deleteSent && !has) add(q, `declare-ok of ${q} was sent, the queue is gone`);
    if (l.deleted && has) add(q, `delete-ok of ${q} was sent, the queue came back`);
    if (!l.declareSent && has) add(q, `${q} was never declared`);
    if (l.bound && !l.unbindSent && !l.deleteSent && !bound) add(q, `bind-ok of ${q} was sent, the binding is gone`);
    if ((l.unbound || l.deleted) && bound) add(q, `the binding of ${q} came back after its unbind-ok/delete-ok`);
    if (!l.bindSent && bound) add(q, `${q} was never bound`);
  }
}

/** The generation in the snapshot's first record: one per startup, one per compaction. */
function snapshotGeneration(dataDir: string): number {
  const buf = readFileSync(join(dataDir, 'definitions.snap'));
  return buf.readDoubleLE(8 + 8 + 1);
}

test('kill -9 while declaring, binding, unbinding and deleting: every confirmed change survives, every confirmed delete stays deleted', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-defs-crash-'));
  dirs.push(dataDir);
  // A small compaction threshold, so that snapshots are written (and killed) too.
  const tuned = { queueMemoryBudget: 1 << 20, segmentSize: 1 << 20, definitionsCompactBytes: 32 * 1024 };
  const ledger = new Map<string, QueueLedger>();
  const violations = new Map<string, string>();
  const delays: number[] = [];
  let confirmedDeclares = 0;
  for (let round = 0; round < ROUNDS; round++) {
    proc = await spawnWarren(dataDir, [], { tuned });
    const conns = [await open(proc.amqpPort), await open(proc.amqpPort)];
    const setup = await conns[0]!.conn.createChannel();
    await setup.assertExchange(EXCHANGE, 'direct', { durable: true });
    await setup.close();
    const stop = { now: false };
    const work: Promise<void>[] = [];
    for (let w = 0; w < WORKERS; w++) {
      const c = conns[w % conns.length]!;
      const ch = await c.conn.createChannel();
      // A worker ends with its connection (its pending call fails, or the connection reports closed).
      work.push(Promise.race([worker(ch, `${round}-${w}`, ledger, stop).catch(noop), c.closed]));
    }
    const delay = 200 + Math.floor(Math.random() * 800);
    delays.push(delay);
    await new Promise((r) => setTimeout(r, delay));
    proc.child.kill('SIGKILL');
    await proc.exited;
    stop.now = true;
    await Promise.all(work);
    await Promise.all(conns.map((c) => c.closed));

    // What a restart recovers, read from the data directory the way recovery reads it.
    const exp = await runWarren(['definitions', 'export', '-', '--data-dir', dataDir]);
    expect(exp.code, exp.stderr).toBe(0);
    check(ledger, JSON.parse(exp.stdout) as Exported, round, violations);
  }
  for (const l of ledger.values()) if (l.declared) confirmedDeclares++;

  // And the broker itself, restarted: the confirmed queues are there.
  proc = await spawnWarren(dataDir, [], { tuned });
  const { conn } = await open(proc.amqpPort);
  let missing = 0;
  for (const [q, l] of ledger) {
    if (!l.declared || l.deleteSent) continue;
    const ch = await conn.createChannel();
    ch.on('error', noop);
    try {
      await ch.checkQueue(q);
      await ch.close();
    } catch {
      missing++;
    }
  }
  await conn.close();
  proc.child.kill('SIGTERM');
  await proc.exited;

  expect(confirmedDeclares, `kill delays ${delays.join(', ')} ms`).toBeGreaterThan(50);
  expect([...violations.values()].slice(0, 20), `kill delays ${delays.join(', ')} ms; ${violations.size} violations of ${ledger.size} queues`).toEqual([]);
  expect(missing).toBe(0);
  // Compactions happened, besides the rewrite at each of the ROUNDS + 1 startups.
  expect(snapshotGeneration(dataDir)).toBeGreaterThan(ROUNDS + 1);
}, 120_000);
