import { createHash } from 'node:crypto';
import {
  BrokerError,
  importDefinitions,
  ReplyCode,
  SETTLED,
  tableFromJson,
  type Core,
  type DefinitionChange,
  type Persistence,
  type Queue,
} from '../core/index.js';
import type { Logger } from '../logger.js';
import { allEntries, changeKey, currentEntry, metaEntries, type DefinitionEntry, type DefinitionKind } from '../store/index.js';
import type { ClusterKV, KvEntry, KvWatch } from './engine.js';

/**
 * The cluster's one namespace: every durable definition (vhosts, users, permissions, topic
 * permissions, policies, durable exchanges, queues, bindings) is a key in a replicated bucket, and
 * every node applies the bucket to its core from a watch.
 *
 * It sits where the core reports definition changes (its {@link Persistence}): a change goes to the
 * local store as before and, once the microtask that made it is over, to the bucket. A declare's
 * reply waits for both ({@link definitionsSettled}): the engine has the definition, and the local
 * node has it (it made it). Other nodes apply it when their watch delivers it: the visibility
 * window.
 *
 * Changes that arrive from the bucket are applied with the local store told (it keeps a copy for
 * the node's restart) but not written back. A node's own writes come back through the watch too:
 * they are recognised in order (per key, what this node wrote and the engine has not yet echoed)
 * and skipped, and a remote value older than a pending write of ours is skipped as well, since
 * ours lands after it.
 *
 * Joining: the first node of a cluster (no `seeded` marker in the bucket) writes its definitions;
 * a later node takes the bucket as the truth: it applies what the bucket has and drops local
 * definitions the bucket does not have (deleted while the node was away).
 */

/** Marks a bucket a first node has written its definitions to. */
const SEEDED = 'seeded';
/** Keys a node writes to see its watch catch up with the bucket (see {@link DefinitionsSync.caughtUp}). */
const SYNC_PREFIX = 'n.';
/** A catch-up whose write the watch has not passed back after this long ends anyway. */
const CAUGHT_UP_TIMEOUT_MS = 5000;

/** What a key holds in the bucket. */
interface StoredDefinition {
  /** The definitions log's key (JSON of kind and names). */
  key: string;
  kind: DefinitionKind;
  vhost: string;
  /** The entry of RabbitMQ's definitions JSON. */
  def: unknown;
  /** Queues: the node that declared it, where its messages live (a classic queue's home). */
  home?: string;
}

interface Known {
  readonly kvKey: string;
  readonly raw: string;
  readonly value: StoredDefinition;
}

const SECTIONS: Record<DefinitionKind, string> = {
  v: 'vhosts',
  u: 'users',
  p: 'permissions',
  t: 'topic_permissions',
  P: 'policies',
  x: 'exchanges',
  q: 'queues',
  b: 'bindings',
};
/** Removal order: what depends on something goes first. */
const REMOVE_ORDER: DefinitionKind[] = ['b', 'q', 'x', 'P', 't', 'p', 'u', 'v'];
const META: ReadonlySet<DefinitionKind> = new Set(['v', 'u', 'p', 't', 'P']);
/** Kinds a refused declare of a new one is undone for on the local node, rather than written again. */
const UNDONE_IF_REFUSED: ReadonlySet<DefinitionKind> = new Set(['x', 'q', 'b']);

const ENC = new TextEncoder();
const DEC = new TextDecoder();
const noop = (): void => undefined;

/** A definitions key as a bucket key: base64url, or a hash when it would be too long a subject. */
export function bucketKey(key: string): string {
  const b = Buffer.from(key, 'utf8').toString('base64url');
  return b.length <= 480 ? `d.${b}` : `h.${createHash('sha256').update(key).digest('hex')}`;
}

interface Batch {
  readonly promise: Promise<void>;
  resolve(): void;
  reject(e: unknown): void;
}

function newBatch(): Batch {
  let resolve: () => void = noop;
  let reject: (e: unknown) => void = noop;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(noop);
  return { promise, resolve, reject };
}

export interface DefinitionsSyncStats {
  /** Writes this node made to the bucket. */
  written: number;
  /** Changes from other nodes applied here. */
  applied: number;
  /** Writes that failed. */
  failed: number;
}

/**
 * Why the engine did not take a write, for the client: no answer in time is what a node gets
 * when the engine servers it reaches are not a majority of the engine's cluster (the node is on
 * the minority side of a partition, or most servers are down).
 */
/**
 * Whether `e` (or an error it wraps) says the engine could not be reached as a cluster: a timeout,
 * nobody answering (the client library calls it JetStream not being enabled), or JetStream's
 * "system temporarily unavailable" (its meta leader has no majority).
 */
function unreachable(e: unknown): boolean {
  for (let c = e, depth = 0; c instanceof Error && depth < 4; c = c.cause, depth++) {
    if (c.name === 'TimeoutError' || c.name === 'NoResponders' || c.name === 'NoRespondersError' || c.name === 'RequestError' || c.name === 'JetStreamNotEnabled') return true;
    if (/temporarily unavailable/i.test(c.message)) return true;
  }
  return false;
}

function notTaken(node: string, e: unknown): string {
  if (unreachable(e)) {
    return `node '${node}' does not reach a majority of the cluster's NATS servers (a partition, or most of them down)`;
  }
  return e instanceof Error ? e.message : String(e);
}

export class DefinitionsSync implements Persistence {
  /** What the bucket holds, as far as this node knows (its own writes included), by definitions key. */
  private readonly known = new Map<string, Known>();
  private readonly byBucketKey = new Map<string, string>();
  /** Per bucket key: what this node wrote that the watch has not delivered back yet, in order. */
  private readonly mine = new Map<string, (string | null)[]>();
  /** Bindings whose source or destination has not arrived yet. */
  private readonly unresolved = new Map<string, Known>();
  private applying = false;
  private live = false;
  private seeded = false;
  private readonly initial = new Map<string, KvEntry>();
  private watcher: KvWatch | undefined;
  private tail: Promise<unknown> = SETTLED;
  private pending = new Map<string, DefinitionChange>();
  private pendingMeta = false;
  private batch: Batch | undefined;
  /** The latest batch a reply may wait for; undefined once it is written. */
  private waiting: Promise<void> | undefined;
  readonly stats: DefinitionsSyncStats = { written: 0, applied: 0, failed: 0 };
  /** This node's catch-up key, and the catch-ups waiting for their write to come back, in order. */
  private readonly syncKey: string;
  private syncSerial = 0;
  private readonly syncWaiters: Array<{ serial: number; done: () => void }> = [];
  private readonly syncBoot = `${process.pid}.${Date.now().toString(36)}`;
  /**
   * Told where each queue lives (its home node), when publishes are forwarded home. For a queue
   * declared on this node it may return a promise the declare's answer waits for as well (a
   * replicated queue's log being created).
   */
  placement: ((queue: Queue, home: string | undefined) => Promise<void> | undefined) | undefined;
  /** Told of a queue deleted on this node (its replicated log, if any, goes with it). */
  queueRemoved: ((vhost: string, name: string) => void) | undefined;

  constructor(
    private readonly core: Core,
    private readonly inner: Persistence,
    private readonly kv: ClusterKV,
    readonly nodeName: string,
    private readonly log: Logger,
  ) {
    this.syncKey = `${SYNC_PREFIX}${Buffer.from(nodeName, 'utf8').toString('base64url')}`;
  }

  /**
   * Resolves once this node has applied every change the bucket held when it was called (from
   * any node): a write of this node's catch-up key, seen coming back through the watch, which
   * passes changes on in the bucket's order. A client that acts on what another node did a
   * moment ago (resumes a session whose queue was just declared or deleted there) waits for it.
   */
  caughtUp(): Promise<void> {
    if (!this.live) return SETTLED;
    const serial = ++this.syncSerial;
    let forget = noop;
    const seen = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        forget();
        this.log.warn('cluster: the definitions watch did not catch up in time; going on with what this node has');
        resolve();
      }, CAUGHT_UP_TIMEOUT_MS);
      timer.unref();
      const w = {
        serial,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      };
      forget = () => {
        clearTimeout(timer);
        const i = this.syncWaiters.indexOf(w);
        if (i >= 0) this.syncWaiters.splice(i, 1);
      };
      this.syncWaiters.push(w);
    });
    const written = this.kv.put(this.syncKey, ENC.encode(`${this.syncBoot}.${serial}`)).catch((e: unknown) => {
      forget();
      throw e;
    });
    return Promise.all([written, seen]).then(noop);
  }

  private syncSeen(value: Uint8Array | undefined): void {
    if (value === undefined) return;
    const v = DEC.decode(value);
    if (!v.startsWith(`${this.syncBoot}.`)) return;
    const serial = Number(v.slice(this.syncBoot.length + 1));
    while (this.syncWaiters.length > 0 && this.syncWaiters[0]!.serial <= serial) this.syncWaiters.shift()!.done();
  }

  /**
   * Joins: reads the bucket, seeds it (first node) or takes it as the truth (later nodes), then
   * applies changes as they come. The core reports its changes here from then on.
   */
  async start(): Promise<void> {
    this.watcher = await this.kv.watch((e) => this.onEntry(e));
    await this.watcher.ready;
    this.core.persistence = this;
    if (!this.seeded) {
      const local = allEntries(this.core);
      // A failure here fails the join: the node does not start half-written into a new cluster.
      await Promise.all([...local].map(([key, entry]) => this.write(key, this.store(key, entry, undefined))));
      await this.kv.put(SEEDED, ENC.encode(JSON.stringify({ by: this.nodeName, at: new Date().toISOString() })));
      this.log.info({ definitions: local.size }, 'cluster: first node, definitions written to the cluster');
    }
    this.live = true;
    this.reconcile();
  }

  stop(): void {
    this.watcher?.stop();
    this.live = false;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    if (this.core.persistence === this) this.core.persistence = this.inner;
  }

  /** The home node of a queue (the node that declared it), if known. */
  homeOf(vhost: string, queue: string): string | undefined {
    return this.known.get(JSON.stringify(['q', vhost, queue]))?.value.home;
  }

  /** Every definition the cluster holds, as this node knows it. */
  get size(): number {
    return this.known.size;
  }

  // ---- Persistence ------------------------------------------------------------------------

  openQueue(queue: Queue): ReturnType<Persistence['openQueue']> {
    return this.inner.openQueue(queue);
  }

  /** The node's own stream store (a stream's local copy), when it has a data directory. */
  get openStream(): Persistence['openStream'] {
    const inner = this.inner;
    const open = inner.openStream;
    return open === undefined ? undefined : (queue, limits) => open.call(inner, queue, limits);
  }

  /** The node's own off-heap spill for memory-only queues. */
  get openSpill(): Persistence['openSpill'] {
    const inner = this.inner;
    const open = inner.openSpill;
    return open === undefined ? undefined : (queue) => open.call(inner, queue);
  }

  definitionsChanged(change?: DefinitionChange): Promise<void> {
    const local = this.inner.definitionsChanged(change);
    if (this.applying || !this.live) return local;
    if (change === undefined) this.pendingMeta = true;
    else this.pending.set(changeKey(change), change);
    if (this.batch === undefined) {
      this.batch = newBatch();
      queueMicrotask(() => this.flush());
    }
    const cluster = this.batch.promise;
    this.waiting = cluster;
    const both = local === SETTLED ? cluster : Promise.all([local, cluster]).then(noop);
    both.catch(noop);
    return both;
  }

  definitionsSettled(): Promise<void> {
    const local = this.inner.definitionsSettled();
    const cluster = this.waiting;
    if (cluster === undefined) return local;
    if (local === SETTLED) return cluster;
    const both = Promise.all([local, cluster]).then(noop);
    both.catch(noop);
    return both;
  }

  // ---- local changes to the bucket ----------------------------------------------------------

  private flush(): void {
    const batch = this.batch!;
    this.batch = undefined;
    const writes: Promise<void>[] = [];
    /** Replicated queues' logs being created: waited for after the writes (whose failure says more). */
    const readies: Promise<void>[] = [];
    /** New exchanges, queues and bindings the engine refused: undone here once the writes settle. */
    const refused: Known[] = [];
    const put = (key: string, entry: DefinitionEntry | null): void => {
      const old = this.known.get(key);
      if (entry === null) {
        if (old !== undefined) writes.push(this.write(key, null));
        return;
      }
      const value = this.store(key, entry, old?.value.home);
      if (old === undefined) writes.push(this.write(key, value, UNDONE_IF_REFUSED.has(entry.kind) ? refused : undefined));
      else if (old.raw !== value.raw) writes.push(this.write(key, value));
    };
    if (this.pendingMeta) {
      const now = metaEntries(this.core);
      const goneVhosts = new Set<string>();
      for (const [key, k] of this.known) {
        if (!META.has(k.value.kind) || now.has(key)) continue;
        put(key, null);
        if (k.value.kind === 'v' && !this.core.vhosts.has(k.value.vhost)) goneVhosts.add(k.value.vhost);
      }
      for (const [key, e] of now) put(key, e);
      if (goneVhosts.size > 0) for (const [key, k] of this.known) if (goneVhosts.has(k.value.vhost)) put(key, null);
    }
    for (const [key, c] of this.pending) {
      const entry = currentEntry(this.core, c);
      put(key, entry);
      if (c.kind !== 'queue') continue;
      // A queue declared or deleted here: its placement now, before the declare is answered.
      if (entry === null) this.queueRemoved?.(c.vhost, c.name);
      else {
        const q = this.core.vhosts.get(c.vhost)?.queues.get(c.name);
        const ready = q === undefined ? undefined : this.placement?.(q, this.known.get(key)?.value.home ?? this.nodeName);
        if (ready !== undefined) readies.push(ready);
      }
    }
    this.pending.clear();
    this.pendingMeta = false;
    for (const r of readies) r.catch(noop);
    Promise.allSettled(writes)
      .then((results) => {
        // Undone before the client hears of the failure: what it declared is nowhere.
        this.undo(refused);
        const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed !== undefined) throw failed.reason;
      })
      .then(() => Promise.all(readies))
      .then(
        () => {
          if (this.waiting === batch.promise) this.waiting = undefined;
          batch.resolve();
        },
        (e: unknown) => {
          if (this.waiting === batch.promise) this.waiting = undefined;
          batch.reject(BrokerError.internal(`the cluster did not take the change: ${notTaken(this.nodeName, e)}`));
        },
      );
  }

  private store(key: string, entry: DefinitionEntry, home: string | undefined): Known {
    const value: StoredDefinition = { key, kind: entry.kind, vhost: entry.vhost, def: JSON.parse(entry.json) as unknown };
    if (entry.kind === 'q') value.home = home ?? this.nodeName;
    return { kvKey: bucketKey(key), raw: JSON.stringify(value), value };
  }

  /**
   * Writes one key (null: deletes it), after every earlier write, and records it as ours. With
   * `refused`, a failed write of a new definition is not written again: it goes to `refused` for
   * {@link undo}, unless its own write came back through the watch (it landed: the node keeps it).
   */
  private write(key: string, k: Known | null, refused?: Known[]): Promise<void> {
    const kvKey = k?.kvKey ?? this.known.get(key)?.kvKey ?? bucketKey(key);
    if (k === null) this.known.delete(key);
    else {
      this.known.set(key, k);
      this.byBucketKey.set(kvKey, key);
    }
    const raw = k === null ? null : k.raw;
    let q = this.mine.get(kvKey);
    if (q === undefined) this.mine.set(kvKey, (q = []));
    q.push(raw);
    const p = this.tail.then(() => (raw === null ? this.kv.delete(kvKey) : this.kv.put(kvKey, ENC.encode(raw)).then(noop)));
    this.tail = p.catch(noop);
    return p.then(
      () => {
        this.stats.written++;
      },
      (e: unknown) => {
        this.stats.failed++;
        // It may not have landed: not ours to expect back. The node's state is written again
        // until the engine takes it (the client was told of the failure meanwhile).
        const mq = this.mine.get(kvKey);
        const i = mq?.indexOf(raw) ?? -1;
        if (mq !== undefined && i >= 0) mq.splice(i, 1);
        if (refused !== undefined && k !== null) {
          // A later change of the key (a delete, a new value) settles it by its own write.
          if (i >= 0 && this.known.get(key) === k) {
            this.known.delete(key);
            refused.push(k);
            this.log.error({ err: e, key }, 'cluster: a new definition could not be written to the cluster; undone on this node');
          }
          throw e;
        }
        if (this.known.get(key) === k) this.known.delete(key);
        this.log.error({ err: e, key }, 'cluster: a definition could not be written to the cluster; retrying');
        this.retryLater(key);
        throw e;
      },
    );
  }

  /**
   * Removes from the core the new definitions the engine refused (their client got an error), so
   * this node says what the cluster says: they do not exist. Dependents go first; one the node
   * changed again since (or that came from the bucket meanwhile) stays.
   */
  private undo(refused: Known[]): void {
    if (refused.length === 0) return;
    refused.sort((a, b) => REMOVE_ORDER.indexOf(a.value.kind) - REMOVE_ORDER.indexOf(b.value.kind));
    const local = allEntries(this.core);
    for (const k of refused) {
      if (this.known.has(k.value.key)) continue;
      const entry = local.get(k.value.key);
      if (entry === undefined || JSON.stringify(JSON.parse(entry.json)) !== JSON.stringify(k.value.def)) continue;
      this.remove(k.value.key, k.value);
    }
  }

  private readonly failedKeys = new Set<string>();
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = 250;

  private retryLater(key: string): void {
    this.failedKeys.add(key);
    if (this.retryTimer !== undefined || !this.live) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.retryDelay = Math.min(this.retryDelay * 2, 5000);
      this.retryFailed();
    }, this.retryDelay);
    this.retryTimer.unref();
  }

  /** Writes the current local state of every key whose write failed (a deletion where it is gone). */
  private retryFailed(): void {
    if (!this.live || this.failedKeys.size === 0) return;
    const keys = [...this.failedKeys];
    this.failedKeys.clear();
    const all = allEntries(this.core);
    const writes = keys.map((key) => {
      const entry = all.get(key);
      return this.write(key, entry === undefined ? null : this.store(key, entry, this.known.get(key)?.value.home));
    });
    Promise.all(writes).then(
      () => {
        this.retryDelay = 250;
        this.log.info({ definitions: keys.length }, 'cluster: definitions written to the cluster after a failure');
      },
      noop,
    );
  }

  // ---- the bucket's changes to the core -----------------------------------------------------

  private onEntry(e: KvEntry): void {
    if (e.key === SEEDED) {
      if (e.value !== undefined) this.seeded = true;
      return;
    }
    if (e.key.startsWith(SYNC_PREFIX)) {
      if (e.key === this.syncKey) this.syncSeen(e.value);
      return;
    }
    const raw = e.value === undefined ? null : DEC.decode(e.value);
    const q = this.mine.get(e.key);
    if (q !== undefined && q.length > 0) {
      // Our own write coming back, or a write that lands before a pending one of ours: skipped.
      if (q[0] === raw) q.shift();
      if (q.length === 0) this.mine.delete(e.key);
      return;
    }
    if (!this.live) {
      this.initial.set(e.key, e);
      return;
    }
    this.applyOne(e.key, raw);
  }

  private parse(kvKey: string, raw: string): Known | undefined {
    try {
      const value = JSON.parse(raw) as StoredDefinition;
      if (typeof value.key !== 'string' || typeof value.kind !== 'string' || !(value.kind in SECTIONS)) throw new Error('not a definition');
      return { kvKey, raw, value };
    } catch (err) {
      this.log.warn({ err, key: kvKey }, 'cluster: an unreadable definition in the cluster ignored');
      return undefined;
    }
  }

  private applyOne(kvKey: string, raw: string | null): void {
    if (raw === null) {
      const key = this.byBucketKey.get(kvKey);
      if (key === undefined) return;
      const old = this.known.get(key);
      this.known.delete(key);
      this.byBucketKey.delete(kvKey);
      this.unresolved.delete(key);
      if (old !== undefined) this.remove(key, old.value);
      return;
    }
    const k = this.parse(kvKey, raw);
    if (k === undefined) return;
    const old = this.known.get(k.value.key);
    if (old?.raw === raw) return;
    this.known.set(k.value.key, k);
    this.byBucketKey.set(kvKey, k.value.key);
    this.importAll([k]);
  }

  /** After joining: the core becomes what the bucket holds. */
  private reconcile(): void {
    const incoming: Known[] = [];
    for (const [kvKey, e] of this.initial) {
      if (e.value === undefined) continue;
      const k = this.parse(kvKey, DEC.decode(e.value));
      if (k === undefined) continue;
      const old = this.known.get(k.value.key);
      this.known.set(k.value.key, k);
      this.byBucketKey.set(kvKey, k.value.key);
      if (old?.raw !== k.raw) incoming.push(k);
    }
    this.initial.clear();
    // Local definitions the cluster does not have were deleted while this node was away.
    const local = allEntries(this.core);
    const gone = [...local].filter(([key]) => !this.known.has(key));
    gone.sort((a, b) => REMOVE_ORDER.indexOf(a[1].kind) - REMOVE_ORDER.indexOf(b[1].kind));
    for (const [key, entry] of gone) {
      this.log.info({ definition: key }, 'cluster: a local definition the cluster no longer has removed');
      this.remove(key, { key, kind: entry.kind, vhost: entry.vhost, def: JSON.parse(entry.json) as unknown });
    }
    if (incoming.length > 0) this.importAll(incoming);
    this.log.info({ definitions: this.known.size, applied: incoming.length, removed: gone.length }, 'cluster: definitions in step with the cluster');
  }

  /** Applies definitions through the definitions import (it orders them: vhosts first, bindings last). */
  private importAll(ks: Known[]): void {
    const defs: Record<string, unknown[]> = {};
    let bindings = 0;
    for (const k of ks) {
      (defs[SECTIONS[k.value.kind]] ??= []).push(k.value.def);
      if (k.value.kind === 'b') bindings++;
    }
    const retry = bindings === ks.length ? [] : [...this.unresolved.values()];
    if (retry.length > 0) {
      this.unresolved.clear();
      for (const k of retry) (defs['bindings'] ??= []).push(k.value.def);
    }
    this.applying = true;
    try {
      const report = importDefinitions(this.core, defs);
      this.stats.applied += ks.length;
      for (const w of report.warnings) {
        if (!w.includes('its source or destination does not exist')) this.log.warn(`cluster: ${w}`);
      }
    } catch (err) {
      this.log.error({ err }, 'cluster: definitions from the cluster could not be applied');
    } finally {
      this.applying = false;
    }
    if (this.placement !== undefined) {
      for (const k of ks) {
        if (k.value.kind !== 'q') continue;
        const q = this.core.vhosts.get(k.value.vhost)?.queues.get((k.value.def as { name?: string }).name ?? '');
        // A log not created yet is tried again by its next use: nothing waits for it here.
        if (q !== undefined) this.placement(q, k.value.home)?.catch(noop);
      }
    }
    // Bindings whose ends are not here yet wait for them.
    for (const k of [...ks, ...retry]) {
      if (k.value.kind === 'b' && !this.hasBinding(k.value)) this.unresolved.set(k.value.key, k);
    }
  }

  private hasBinding(v: StoredDefinition): boolean {
    const d = v.def as { source?: string; destination?: string; destination_type?: string };
    const vh = this.core.vhosts.get(v.vhost);
    if (vh === undefined || typeof d.source !== 'string' || typeof d.destination !== 'string') return false;
    const dest = d.destination_type === 'exchange' ? vh.exchanges.get(d.destination) : vh.queues.get(d.destination);
    return vh.exchanges.has(d.source) && dest !== undefined;
  }

  /** Removes a definition from the core (applied from the cluster: not written back). */
  private remove(key: string, v: StoredDefinition): void {
    let names: string[];
    try {
      names = (JSON.parse(key) as string[]).slice(1);
    } catch {
      return;
    }
    const core = this.core;
    this.applying = true;
    try {
      switch (v.kind) {
        case 'v': {
          const vh = core.vhosts.get(names[0]!);
          if (vh === undefined) break;
          for (const c of [...core.connections]) if (c.vhost === vh) c.handle.forceClose(ReplyCode.CONNECTION_FORCED, `vhost '${vh.name}' is deleted`);
          for (const x of vh.exchanges.values()) x.delayed?.destroy();
          vh.removeAll();
          core.vhosts.delete(vh.name);
          core.auth.deleteVhost(vh.name);
          core.policies.deleteVhost(vh.name);
          void core.persistence.definitionsChanged();
          break;
        }
        case 'u':
          core.auth.deleteUser(names[0]!);
          break;
        case 'p':
          core.auth.clearPermission(names[0]!, names[1]!);
          break;
        case 't':
          core.auth.clearTopicPermission(names[0]!, names[1]!, names[2]);
          break;
        case 'P':
          core.policies.delete(names[0]!, names[1]!);
          break;
        case 'x':
          if (core.vhosts.get(names[0]!)?.exchanges.has(names[1]!)) core.vhosts.get(names[0]!)!.deleteExchange(names[1]!, false);
          break;
        case 'q': {
          const vh = core.vhosts.get(names[0]!);
          const q = vh?.queues.get(names[1]!);
          if (vh !== undefined && q !== undefined) vh.removeQueue(q);
          break;
        }
        case 'b': {
          const d = v.def as { source: string; destination: string; destination_type: string; routing_key: string; arguments: unknown };
          const vh = core.vhosts.get(v.vhost);
          const src = vh?.exchanges.get(d.source);
          const dest = d.destination_type === 'exchange' ? vh?.exchanges.get(d.destination) : vh?.queues.get(d.destination);
          if (vh !== undefined && src !== undefined && dest !== undefined) vh.unbind(src, dest, d.routing_key, tableFromJson(d.arguments));
          break;
        }
      }
      this.stats.applied++;
    } catch (err) {
      this.log.warn({ err, definition: key }, 'cluster: a definition deleted in the cluster could not be removed here');
    } finally {
      this.applying = false;
    }
  }
}
