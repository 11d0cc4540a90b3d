import { createHash } from 'node:crypto';
import type { Logger } from '../logger.js';
import { decodeJson, encodeJson, type ClusterKV, type KvEntry, type KvWatch } from './engine.js';
import type { ClusterMembership } from './index.js';

/**
 * MQTT across the nodes of a cluster, in one replicated bucket (`warren_NAME_mqtt`, one stream and
 * one watch however much MQTT does) whose keys have three prefixes, and a lease bucket:
 * - `c.`: which node holds each client id. A CONNECT writes {node, serial}; every node
 *   watches the bucket and closes its own connection whose record moved to another node (a
 *   takeover, [MQTT-3.1.4-2]), so a client id is connected at most once in the cluster.
 * - `r.`: one key per retained topic, the record the MQTT adapter encodes; every node
 *   caches all of it from a watch, so every node answers a SUBSCRIBE with the same messages.
 * - `w.`: the will of every connected client, keyed by node and client. When a node stops
 *   running without having removed its records (it died), one survivor, the one that creates the
 *   lease key in `warren_NAME_mqtt_will_leases`, publishes that node's wills (after their delay) and deletes
 *   them.
 * - `s.`: the expiry deadline of every persistent session that is offline with a finite expiry
 *   (v5 Session Expiry Interval). The session's subscriptions are its queue's bindings and its
 *   messages its queue, a replicated queue: both are cluster-wide already, so a client
 *   reconnecting on any node resumes the session. The node the client left expires it; when that
 *   node is gone, one survivor (holding the lease `s.<key>`) does, unless the client connected
 *   again after the record was written (its client-id record is newer).
 * The MQTT adapter sees none of this: it is handed {@link MqttCluster.seam} and
 * {@link MqttCluster.retained}, which match the interfaces the adapter declares.
 */

/** The largest retained record the cluster stores: NATS's default max_payload (1 MiB) less room for the framing. */
export const MAX_REPLICATED_RETAINED = 1024 * 1024 - 4096;
/** Keys longer than this are a digest of the names. */
const MAX_NAMED_KEY = 200;
/** How often the wills of nodes that stopped are looked for. */
const DEFAULT_SWEEP_MS = 1000;
/** How long to wait before trying a lease again after the engine failed to answer. */
const LEASE_RETRY_MS = 5000;
/** How long a lease on a dead node's wills lasts unless renewed. */
const DEFAULT_LEASE_TTL_MS = 30_000;

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64url');
const unb64 = (s: string): string => Buffer.from(s, 'base64url').toString('utf8');

/**
 * The key of a (vhost, name) pair within the KV key alphabet: `<base64url vhost>.<base64url
 * name>`, or `h.<sha-256>` when that would be long (base64url of a string is never one character,
 * so `h` cannot be a vhost's token).
 */
export function nameKey(vhost: string, name: string): string {
  const k = `${b64(vhost)}.${b64(name)}`;
  if (k.length <= MAX_NAMED_KEY) return k;
  return `h.${createHash('sha256').update(vhost).update('\u0000').update(name).digest('hex')}`;
}

/** The (vhost, name) of a key made by {@link nameKey}; undefined for a digest key. */
export function parseNameKey(key: string): [string, string] | undefined {
  const dot = key.indexOf('.');
  if (dot < 0 || key.startsWith('h.')) return undefined;
  return [unb64(key.slice(0, dot)), unb64(key.slice(dot + 1))];
}

/** A value of a JSON header and a binary body: u32 header length, the header, the body. */
export function frame(header: unknown, body: Uint8Array): Uint8Array {
  const h = encodeJson(header);
  const out = Buffer.allocUnsafe(4 + h.length + body.length);
  out.writeUInt32BE(h.length, 0);
  out.set(h, 4);
  out.set(body, 4 + h.length);
  return out;
}

export function unframe(v: Uint8Array): { header: unknown; body: Uint8Array } {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  const n = b.readUInt32BE(0);
  return { header: decodeJson(b.subarray(4, 4 + n)), body: b.subarray(4 + n) };
}

/** A client-id record: who holds the id. */
interface ClientRecord {
  node: string;
  instance: string;
  serial: number;
  vhost: string;
  clientId: string;
}

/** This node's latest claim of a client id. */
interface LocalClaim {
  readonly serial: number;
  readonly vhost: string;
  readonly clientId: string;
  /** The record's revision once written. */
  revision: number | undefined;
  /** Highest revision of another node's record seen while the write was pending. */
  foreign: number;
  /** A connection holds it (false once the connection is gone; the session may stay). */
  live: boolean;
}

/** An offline session's expiry record. */
interface SessionRecord {
  node: string;
  instance: string;
  vhost: string;
  clientId: string;
  /** ms since the epoch. */
  expiresAt: number;
}

interface KnownSession {
  readonly record: SessionRecord;
  readonly revision: number;
}

/** A will record's header. */
interface WillHeader {
  node: string;
  instance: string;
  vhost: string;
  clientId: string;
  delayMs: number;
}

interface KnownWill {
  readonly header: WillHeader;
  readonly record: Uint8Array;
}

/** The adapter side (matches the MQTT adapter's handlers). */
export interface MqttHandlers {
  clientMoved(vhost: string, clientId: string): void;
  publishOrphanWill(vhost: string, clientId: string, record: Uint8Array): void;
  sessionExpired(vhost: string, clientId: string): void;
}

/** What the MQTT adapter calls (matches its cluster seam). */
export interface MqttSeam {
  claimClientId(vhost: string, clientId: string): { readonly written: Promise<void>; release(): void };
  sessionEnded(vhost: string, clientId: string): void;
  sessionOffline(vhost: string, clientId: string, expiresAt: number): void;
  holdsQueue(vhost: string, queue: string): boolean;
  setWill(vhost: string, clientId: string, delayMs: number, record: Uint8Array | undefined): void;
  attach(handlers: MqttHandlers): void;
}

/** The retained replica (matches the MQTT adapter's). */
export interface MqttRetainedReplica {
  write(vhost: string, topic: string, record: Uint8Array | null): Promise<void>;
  listen(onChange: (vhost: string, topic: string, record: Uint8Array | undefined) => void): void;
}

export interface MqttClusterOptions {
  sweepMs?: number;
  leaseTtlMs?: number;
}

/** Opens the MQTT buckets and loads them; call after joining, before the MQTT adapter is made. */
export async function startMqttCluster(m: ClusterMembership, log: Logger, opts: MqttClusterOptions = {}): Promise<MqttCluster> {
  const replicas = m.engine.info.clusterSize >= 3 ? 3 : 1;
  const prefix = `warren_${m.clusterName}_mqtt`;
  const leaseTtlMs = opts.leaseTtlMs ?? DEFAULT_LEASE_TTL_MS;
  const [bucket, leases] = await Promise.all([m.engine.openKV(prefix, { replicas }), m.engine.openKV(`${prefix}_will_leases`, { replicas, ttlMs: leaseTtlMs })]);
  const kv = {
    bucket,
    clients: new PrefixedKV(bucket, 'c.'),
    retained: new PrefixedKV(bucket, 'r.'),
    wills: new PrefixedKV(bucket, 'w.'),
    sessions: new PrefixedKV(bucket, 's.'),
    leases,
  };
  const c = new MqttCluster(m, kv, log, { sweepMs: opts.sweepMs ?? DEFAULT_SWEEP_MS, leaseTtlMs });
  await c.start();
  return c;
}

/** The keys of a bucket that start with `prefix`, without it (one bucket holds several kinds of record). */
class PrefixedKV {
  constructor(
    private readonly kv: ClusterKV,
    readonly prefix: string,
  ) {}

  get(key: string): Promise<KvEntry | undefined> {
    return this.kv.get(this.prefix + key);
  }

  put(key: string, value: Uint8Array): Promise<number> {
    return this.kv.put(this.prefix + key, value);
  }

  create(key: string, value: Uint8Array): Promise<number | undefined> {
    return this.kv.create(this.prefix + key, value);
  }

  delete(key: string): Promise<void> {
    return this.kv.delete(this.prefix + key);
  }
}

type Buckets = { bucket: ClusterKV; clients: PrefixedKV; retained: PrefixedKV; wills: PrefixedKV; sessions: PrefixedKV; leases: ClusterKV };

export class MqttCluster {
  private readonly node: string;
  private readonly instance: string;
  private readonly watches: KvWatch[] = [];
  private handlers: MqttHandlers | undefined;
  private stopped = false;

  // client ids
  private serial = 0;
  private readonly claims = new Map<string, LocalClaim>();
  /** Clients that moved away, seen before the adapter attached. */
  private movedEarly: Array<[string, string]> | undefined = [];

  // retained
  private retainedListener: ((vhost: string, topic: string, record: Uint8Array | undefined) => void) | undefined;
  private retainedEarly: Array<[string, string, Uint8Array | undefined]> | undefined = [];
  /** Names of digest keys (a deletion carries only the key). */
  private readonly hashedNames = new Map<string, [string, string]>();
  /** Revision of this node's latest write per key: older changes that arrive later are skipped. */
  private readonly applied = new Map<string, number>();

  // wills
  private readonly wills = new Map<string, KnownWill>();
  private readonly ownWills = new Set<string>();
  /** Dead node instances whose wills this node is publishing. */
  private readonly publishing = new Set<string>();
  /** Lease lost (someone else publishes): not tried again before this time. */
  private readonly lostUntil = new Map<string, number>();
  private sweeper: NodeJS.Timeout | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly renewals = new Set<NodeJS.Timeout>();

  // offline persistent sessions
  private readonly sessions = new Map<string, KnownSession>();
  /** Keys of the records this node wrote (its watch may not have passed them on yet). */
  private readonly ownSessions = new Set<string>();
  /** Keys whose expiry this node is carrying out. */
  private readonly expiring = new Set<string>();

  /** Given to the MQTT adapter. */
  readonly seam: MqttSeam;
  readonly retained: MqttRetainedReplica;

  constructor(
    private readonly m: ClusterMembership,
    private readonly kv: Buckets,
    private readonly log: Logger,
    private readonly opts: Required<MqttClusterOptions>,
  ) {
    this.node = m.nodeName;
    this.instance = m.registry.instance;
    this.seam = {
      claimClientId: (vhost, clientId) => this.claim(vhost, clientId),
      sessionEnded: (vhost, clientId) => this.sessionEnded(vhost, clientId),
      sessionOffline: (vhost, clientId, expiresAt) => this.sessionOffline(vhost, clientId, expiresAt),
      holdsQueue: (vhost, queue) => {
        // A replicated queue (a persistent session's) is held by every node.
        if (m.replicated.isReplicated(vhost, queue)) return true;
        const home = m.homeOf(vhost, queue);
        return home === undefined || home === this.node;
      },
      setWill: (vhost, clientId, delayMs, record) => this.setWill(vhost, clientId, delayMs, record),
      attach: (h) => this.attach(h),
    };
    this.retained = {
      write: (vhost, topic, record) => this.writeRetained(vhost, topic, record),
      listen: (on) => {
        this.retainedListener = on;
        const early = this.retainedEarly ?? [];
        this.retainedEarly = undefined;
        for (const [v, t, r] of early) on(v, t, r);
      },
    };
  }

  /** Loads the buckets (every retained message and will is known when this resolves). */
  async start(): Promise<void> {
    const w = await this.kv.bucket.watch((e) => {
      const kind = e.key.slice(0, 2);
      const entry: KvEntry = { key: e.key.slice(2), value: e.value, revision: e.revision };
      if (kind === 'c.') this.onClient(entry);
      else if (kind === 'r.') this.onRetained(entry);
      else if (kind === 'w.') this.onWill(entry);
      else if (kind === 's.') this.onSession(entry);
    });
    this.watches.push(w);
    await w.ready;
  }

  stop(): void {
    this.stopped = true;
    for (const w of this.watches) w.stop();
    if (this.sweeper) clearInterval(this.sweeper);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    for (const t of this.renewals) clearInterval(t);
    this.renewals.clear();
  }

  private attach(h: MqttHandlers): void {
    this.handlers = h;
    const early = this.movedEarly ?? [];
    this.movedEarly = undefined;
    for (const [vhost, clientId] of early) h.clientMoved(vhost, clientId);
    this.sweeper = setInterval(() => this.sweep(), this.opts.sweepMs);
    this.sweeper.unref();
  }

  // ---- client ids ---------------------------------------------------------------------------

  private claim(vhost: string, clientId: string): { written: Promise<void>; release(): void } {
    const key = nameKey(vhost, clientId);
    const c: LocalClaim = { serial: ++this.serial, vhost, clientId, revision: undefined, foreign: 0, live: true };
    this.claims.set(key, c);
    const rec: ClientRecord = { node: this.node, instance: this.instance, serial: c.serial, vhost, clientId };
    // The node also catches up with the cluster's definitions: a session queue declared or deleted
    // on another node a moment ago is seen here before the session is looked up.
    const written = Promise.all([this.kv.clients.put(key, encodeJson(rec)), this.m.definitions.caughtUp()]).then(
      ([revision]) => {
        if (this.claims.get(key) !== c) return;
        c.revision = revision;
        // Another node's record came after ours while we waited: it holds the id now.
        if (c.foreign > revision) this.moved(key, vhost, clientId);
        // The session is connected again: its offline expiry record is void.
        else if (this.ownSessions.delete(key) || this.sessions.has(key)) this.dropSessionRecord(key);
      },
      (err: unknown) => {
        if (this.claims.get(key) === c) this.claims.delete(key);
        throw err;
      },
    );
    return {
      written,
      release: () => {
        if (this.claims.get(key) === c) c.live = false;
      },
    };
  }

  private moved(key: string, vhost: string, clientId: string): void {
    this.claims.delete(key);
    if (this.handlers === undefined) this.movedEarly?.push([vhost, clientId]);
    else this.handlers.clientMoved(vhost, clientId);
  }

  private onClient(e: KvEntry): void {
    if (e.value === undefined) return;
    let r: ClientRecord;
    try {
      r = decodeJson(e.value) as ClientRecord;
    } catch {
      return;
    }
    // This node's own records (from this process or an earlier one: sessions outlive restarts).
    if (r.node === this.node || typeof r.vhost !== 'string' || typeof r.clientId !== 'string') return;
    const c = this.claims.get(e.key);
    if (c !== undefined) {
      if (c.revision === undefined) {
        c.foreign = Math.max(c.foreign, e.revision);
        return;
      }
      if (e.revision < c.revision) return;
    }
    this.moved(e.key, r.vhost, r.clientId);
  }

  /** The record goes with the session, if it is still this connection's (another node may have written since). */
  private sessionEnded(vhost: string, clientId: string): void {
    const key = nameKey(vhost, clientId);
    if (this.ownSessions.delete(key) && !this.stopped) this.dropSessionRecord(key);
    const c = this.claims.get(key);
    if (c === undefined || c.live) return;
    this.claims.delete(key);
    if (this.stopped) return;
    const kv = this.kv.clients;
    void (async () => {
      const e = await kv.get(key);
      if (e?.value === undefined) return;
      const r = decodeJson(e.value) as ClientRecord;
      if (r.node === this.node && r.instance === this.instance && r.serial === c.serial && this.claims.get(key) === undefined) await kv.delete(key);
    })().catch((err: unknown) => this.log.debug({ err, vhost, clientId }, 'cluster: client id record not removed'));
  }

  // ---- offline persistent sessions ----------------------------------------------------------

  /** A persistent session went offline here, due to expire at `expiresAt`: the others expire it if this node dies. */
  private sessionOffline(vhost: string, clientId: string, expiresAt: number): void {
    if (this.stopped || !Number.isFinite(expiresAt)) return;
    const key = nameKey(vhost, clientId);
    // Taken over by another node (its claim came after this one's): the session moves, it is not offline.
    if (!this.claims.has(key)) return;
    this.ownSessions.add(key);
    const rec: SessionRecord = { node: this.node, instance: this.instance, vhost, clientId, expiresAt };
    this.kv.sessions.put(key, encodeJson(rec)).then(
      () => undefined,
      (err: unknown) => this.log.warn({ err, vhost, clientId }, 'cluster: session expiry record not written'),
    );
  }

  private dropSessionRecord(key: string): void {
    this.kv.sessions.delete(key).then(
      () => undefined,
      (err: unknown) => this.log.debug({ err, key }, 'cluster: session expiry record not removed'),
    );
  }

  private onSession(e: KvEntry): void {
    if (e.value === undefined) {
      this.sessions.delete(e.key);
      return;
    }
    try {
      const r = decodeJson(e.value) as SessionRecord;
      if (typeof r.node !== 'string' || typeof r.instance !== 'string' || typeof r.vhost !== 'string' || typeof r.clientId !== 'string' || typeof r.expiresAt !== 'number') return;
      this.sessions.set(e.key, { record: r, revision: e.revision });
    } catch {
      // not a record of ours
    }
  }

  /** Offline sessions past their deadline whose node is gone: expired here, by the one node that takes the lease. */
  private sweepSessions(running: ReadonlySet<string>): void {
    const now = Date.now();
    for (const [key, known] of this.sessions) {
      const r = known.record;
      if (r.expiresAt > now || this.expiring.has(key)) continue;
      // A node that runs expires its own sessions (a restarted one from its store).
      const gone = r.node === this.node ? r.instance !== this.instance : !running.has(r.node);
      if (!gone) continue;
      this.expiring.add(key);
      this.expireSession(key, known)
        .catch((err: unknown) => this.log.warn({ err, vhost: r.vhost, clientId: r.clientId }, 'cluster: session of a stopped node not expired; trying again'))
        .finally(() => this.expiring.delete(key));
    }
  }

  private async expireSession(key: string, known: KnownSession): Promise<void> {
    const { vhost, clientId } = known.record;
    // The client connected again after the record was written: the session is not offline.
    const claim = await this.kv.clients.get(key);
    if (claim?.value !== undefined && claim.revision > known.revision) {
      if (this.sessions.get(key) === known) this.sessions.delete(key);
      return;
    }
    const lease = encodeJson({ by: this.node, instance: this.instance, at: Date.now() });
    if ((await this.kv.leases.create(`s.${key}`, lease)) === undefined) return;
    if (this.sessions.get(key) !== known || this.stopped) return;
    this.log.info({ vhost, clientId, node: known.record.node }, 'cluster: expiring the session of a client last connected to a node that stopped');
    this.handlers?.sessionExpired(vhost, clientId);
    await this.kv.sessions.delete(key);
  }

  // ---- retained messages --------------------------------------------------------------------

  private writeRetained(vhost: string, topic: string, record: Uint8Array | null): Promise<void> {
    const key = nameKey(vhost, topic);
    if (record === null) return this.kv.retained.delete(key);
    const value = frame({ vhost, topic }, record);
    if (value.length > MAX_REPLICATED_RETAINED) {
      throw new Error(`retained message of ${record.length} bytes is larger than a cluster stores (${MAX_REPLICATED_RETAINED} bytes)`);
    }
    return this.kv.retained.put(key, value).then((revision) => {
      if ((this.applied.get(key) ?? 0) < revision) this.applied.set(key, revision);
    });
  }

  private onRetained(e: KvEntry): void {
    const seen = this.applied.get(e.key);
    // This node's own write (applied when it was made), or a change older than it.
    if (seen !== undefined && e.revision <= seen) return;
    let vhost: string;
    let topic: string;
    let record: Uint8Array | undefined;
    if (e.value === undefined) {
      this.applied.delete(e.key);
      const names = this.hashedNames.get(e.key) ?? parseNameKey(e.key);
      this.hashedNames.delete(e.key);
      if (names === undefined) return;
      [vhost, topic] = names;
      record = undefined;
    } else {
      try {
        const { header, body } = unframe(e.value);
        const h = header as { vhost?: unknown; topic?: unknown };
        if (typeof h.vhost !== 'string' || typeof h.topic !== 'string') return;
        vhost = h.vhost;
        topic = h.topic;
        record = body;
      } catch (err) {
        this.log.warn({ err, key: e.key }, 'cluster: unreadable retained record ignored');
        return;
      }
      if (e.key.startsWith('h.')) this.hashedNames.set(e.key, [vhost, topic]);
    }
    if (this.retainedListener !== undefined) this.retainedListener(vhost, topic, record);
    else this.retainedEarly?.push([vhost, topic, record]);
  }

  // ---- wills --------------------------------------------------------------------------------

  private setWill(vhost: string, clientId: string, delayMs: number, record: Uint8Array | undefined): void {
    if (this.stopped) return;
    const key = `${this.node}.${nameKey(vhost, clientId)}`;
    const kv = this.kv.wills;
    const failed = (err: unknown): void => this.log.warn({ err, vhost, clientId }, 'cluster: will record not written');
    if (record === undefined) {
      if (!this.ownWills.delete(key)) return;
      kv.delete(key).catch(failed);
      return;
    }
    this.ownWills.add(key);
    const h: WillHeader = { node: this.node, instance: this.instance, vhost, clientId, delayMs };
    kv.put(key, frame(h, record)).then(() => undefined, failed);
  }

  private onWill(e: KvEntry): void {
    if (e.value === undefined) {
      this.wills.delete(e.key);
      return;
    }
    try {
      const { header, body } = unframe(e.value);
      const h = header as WillHeader;
      if (typeof h.node !== 'string' || typeof h.instance !== 'string' || typeof h.vhost !== 'string' || typeof h.clientId !== 'string') return;
      this.wills.set(e.key, { header: h, record: body });
    } catch {
      // not a record of ours
    }
  }

  /** Wills of node processes that are gone: this node's earlier process, or a node that stopped running. */
  private sweep(): void {
    if (this.stopped || (this.wills.size === 0 && this.sessions.size === 0)) return;
    const running = new Set(
      this.m
        .nodes()
        .filter((n) => n.running)
        .map((n) => n.name),
    );
    if (this.sessions.size > 0) this.sweepSessions(running);
    if (this.wills.size === 0) return;
    const orphans = new Map<string, { node: string; instance: string; keys: string[] }>();
    for (const [key, w] of this.wills) {
      const { node, instance } = w.header;
      const gone = node === this.node ? instance !== this.instance : !running.has(node);
      if (!gone) continue;
      const g = `${node}.${instance}`;
      const o = orphans.get(g);
      if (o === undefined) orphans.set(g, { node, instance, keys: [key] });
      else o.keys.push(key);
    }
    const now = Date.now();
    for (const [g, o] of orphans) {
      if (this.publishing.has(g) || (this.lostUntil.get(g) ?? 0) > now) continue;
      this.publishing.add(g);
      this.takeLease(g, o.node, o.keys).catch((err: unknown) => {
        // The engine did not answer (this node may be the one cut off): try again a little later.
        this.publishing.delete(g);
        this.lostUntil.set(g, Date.now() + LEASE_RETRY_MS);
        this.log.warn({ err, node: o.node }, 'cluster: wills of a stopped node not taken');
      });
    }
  }

  /** One survivor wins the lease (create), publishes the dead node's wills when due, deletes them. */
  private async takeLease(g: string, node: string, keys: string[]): Promise<void> {
    const lease = encodeJson({ by: this.node, instance: this.instance, at: Date.now() });
    if ((await this.kv.leases.create(g, lease)) === undefined) {
      this.publishing.delete(g);
      this.lostUntil.set(g, Date.now() + this.opts.leaseTtlMs);
      return;
    }
    this.log.info({ node, wills: keys.length }, 'cluster: publishing the wills of a node that stopped');
    let left = keys.length;
    // Kept while wills wait for their delay: another node takes over only if this one dies too.
    const renew = setInterval(() => {
      this.kv.leases.put(g, lease).then(
        () => undefined,
        (err: unknown) => this.log.warn({ err }, 'cluster: will lease not renewed'),
      );
    }, Math.max(100, Math.floor(this.opts.leaseTtlMs / 3)));
    renew.unref();
    this.renewals.add(renew);
    const done = (): void => {
      if (--left > 0) return;
      clearInterval(renew);
      this.renewals.delete(renew);
      this.publishing.delete(g);
      // The lease stays until its TTL: nodes whose watch has not seen the deletions yet do not start again.
      this.lostUntil.set(g, Date.now() + this.opts.leaseTtlMs);
    };
    for (const key of keys) {
      const w = this.wills.get(key);
      const fire = (): void => {
        const now = this.wills.get(key);
        if (now !== undefined && !this.stopped) {
          try {
            this.handlers?.publishOrphanWill(now.header.vhost, now.header.clientId, now.record);
          } catch (err) {
            this.log.warn({ err, node, clientId: now.header.clientId }, 'cluster: will of a stopped node not published');
          }
          this.kv.wills.delete(key).then(
            () => undefined,
            (err: unknown) => this.log.warn({ err }, 'cluster: will record not removed'),
          );
        }
        done();
      };
      const delay = w?.header.delayMs ?? 0;
      if (delay <= 0) fire();
      else {
        const t = setTimeout(() => {
          this.timers.delete(t);
          fire();
        }, Math.min(delay, 2 ** 31 - 1));
        t.unref();
        this.timers.add(t);
      }
    }
    if (keys.length === 0) done();
  }
}
