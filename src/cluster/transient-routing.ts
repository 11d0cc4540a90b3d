import { createHash, randomBytes } from 'node:crypto';
import type { Binding, Core, Exchange, Message, Queue, RoutingRelay, VHost } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter, readProperties, writeProperties } from '../store/index.js';
import type { BusSubscription, ClusterBus, ClusterKV, KvEntry, KvWatch } from './engine.js';

/**
 * Routing to transient subscribers across nodes. Exclusive and other non-durable queues (MQTT
 * clean sessions, STOMP `/topic` and `/exchange` subscriptions, AMQP server-named queues) and
 * their bindings live on one node only: they are not replicated. Every node subscribes on the bus
 * to the subjects its own such bindings need, and every node that routes a publish (not one that
 * came from the bus) sends it once on the subject for its (vhost, exchange, routing key). A node
 * that receives one routes it against its own bindings to its non-durable queues only: durable
 * queues got it through the publishing node's routing (forwarded to their home node).
 *
 * Subjects: `warren.<cluster>.r.<vhost>.<exchange>.<word>...`, every name and routing-key word
 * encoded as one NATS token ({@link encodeToken}). What a binding subscribes to
 * ({@link interestSubjects}): a direct exchange its exact key; a topic exchange its pattern,
 * `*` as `*`, and up to its first `#` (which may match no word) both the words before it alone
 * and those words followed by `>` — a `#` in the middle subscribes wider and the receiving node's
 * own routing filters; any other exchange (fanout, headers, ...) its whole subject; the default
 * exchange a non-durable queue's name. An exchange-to-exchange binding subscribes to its key on
 * its source whatever lies behind it (wider: the receiving node routes the rest). One bus
 * subscription per subject, counted by the bindings that need it, dropped with the last.
 *
 * Which exchanges other nodes listen on: each node announces, in a replicated bucket, every
 * (vhost, exchange) it has at least one subscription for (written when the first comes, deleted
 * with the last), and watches the others' announcements. A publish on an exchange no other node
 * listens on is not sent at all (sending costs several times what routing it locally does).
 * Without the bucket, every publish is sent.
 *
 * At most once: nothing waits for another node to take such a message (a publisher's confirm
 * does not), and a node that is down or slow misses it, as every anchor's QoS 0 does.
 *
 * Wire: u8 version | str16 origin | u64 sequence | str16 vhost | str16 exchange | str16 routing
 * key | properties (the store's codec) | bytes32 body. The origin is the sending node's name
 * and an incarnation; a receiving node drops what it sent itself, and a sequence it has already
 * seen from that origin (a publish matching two of its subscriptions arrives once per
 * subscription).
 */

const VERSION = 1;

/** Characters a token keeps as they are; every other byte is written `_XX` (hex). */
function plain(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x2d;
}

/**
 * One word (or name) as one NATS token: letters, digits and `-` as they are, every other UTF-8
 * byte as `_` and two hex digits, the empty word as `_`. One-to-one, and never `*`, `>`, a `.`
 * or a space.
 */
export function encodeToken(word: string): string {
  if (word.length === 0) return '_';
  let i = 0;
  while (i < word.length && plain(word.charCodeAt(i))) i++;
  if (i === word.length) return word;
  let out = word.slice(0, i);
  for (const byte of Buffer.from(word.slice(i), 'utf8')) {
    out += plain(byte) ? String.fromCharCode(byte) : `_${byte < 16 ? '0' : ''}${byte.toString(16)}`;
  }
  return out;
}

/** A routing key as tokens, word by word (a key of plain words and dots is its own encoding). */
export function encodeKey(key: string): string {
  let simple = key.length > 0;
  let prevDot = true;
  for (let i = 0; i < key.length && simple; i++) {
    const c = key.charCodeAt(i);
    if (c === 0x2e) {
      if (prevDot) simple = false;
      prevDot = true;
    } else if (plain(c)) prevDot = false;
    else simple = false;
  }
  if (simple && !prevDot) return key;
  return key.split('.').map(encodeToken).join('.');
}

/** The subject prefix of one exchange of one vhost. */
export function exchangeSubject(cluster: string, vhost: string, exchange: string): string {
  return `warren.${cluster}.r.${encodeToken(vhost)}.${encodeToken(exchange === '' ? '' : exchange)}`;
}

/** The subjects a binding with `key` on an exchange of `type` needs, under `base` (see above). */
export function interestSubjects(base: string, type: string, key: string): string[] {
  if (type === 'direct') return [`${base}.${encodeKey(key)}`];
  if (type !== 'topic') return [`${base}.>`];
  const words = key.split('.');
  const hash = words.indexOf('#');
  if (hash < 0) return [`${base}.${words.map((w) => (w === '*' ? '*' : encodeToken(w))).join('.')}`];
  if (hash === 0) return [`${base}.>`];
  const prefix = `${base}.${words
    .slice(0, hash)
    .map((w) => (w === '*' ? '*' : encodeToken(w)))
    .join('.')}`;
  return [prefix, `${prefix}.>`];
}

/**
 * A message as it travels between nodes, after what its kind of record puts first: str16 vhost |
 * str16 exchange | str16 routing key | properties (the store's codec) | bytes32 body.
 */
export function writeCarried(w: ByteWriter, vhost: string, exchange: string, msg: Message): void {
  w.str16(vhost);
  w.str16(exchange);
  w.str16(msg.routingKey);
  writeProperties(w, msg.properties);
  w.bytes32(msg.body);
}

/** Reads what {@link writeCarried} wrote after the vhost (read first, so an unknown one stops there). */
export function readCarried(r: ByteReader): Message {
  const exchange = r.str16();
  const routingKey = r.str16();
  const properties = readProperties(r);
  const body = Buffer.from(r.bytes32()); // owned: the bus may reuse its buffer
  return { exchange, routingKey, properties, body };
}

/** What one binding or queue holds: its subjects, under one exchange's prefix. */
interface Held {
  readonly base: string;
  readonly subjects: string[];
}

interface Interest {
  count: number;
  /** Undefined when the engine refused the subscription (its connection was closing). */
  sub: BusSubscription | undefined;
}

export class TransientRouting implements RoutingRelay {
  private readonly w = new ByteWriter(4096);
  private readonly r = new ByteReader();
  /** Bus subscriptions by subject, with how many bindings (and queues) need each. */
  private readonly interest = new Map<string, Interest>();
  /** The subjects each counted binding or queue took (what it gives back). */
  private readonly held = new Map<Binding | Queue, Held>();
  /** Per exchange prefix: how many bindings and queues of this node listen under it. */
  private readonly localBases = new Map<string, number>();
  /** Per exchange prefix: how many other nodes listen under it (from the bucket). */
  private readonly remoteBases = new Map<string, number>();
  /** The bucket's keys of other nodes' announcements, with their prefix. */
  private readonly remoteKeys = new Map<string, string>();
  private readonly ownPrefix: string;
  private watch: KvWatch | undefined;
  /** Subject prefixes by vhost and exchange name. */
  private readonly bases = new Map<string, Map<string, string>>();
  private readonly origin: string;
  private seq = 0n;
  private readonly lastSeen = new Map<string, bigint>();
  private readonly onMessage = (data: Uint8Array): void => this.received(data);
  private running = false;
  readonly stats = { sent: 0, skipped: 0, dropped: 0, received: 0, routed: 0, duplicates: 0 };
  /**
   * Non-exclusive non-durable queues known cluster-wide (see transient-queues.ts): set, they are
   * told to it and not reached by name over the bus (other nodes forward to them).
   */
  shared: { added(vhost: VHost, q: Queue): void; removed(vhost: VHost, q: Queue): void } | undefined;

  constructor(
    private readonly core: Core,
    private readonly bus: ClusterBus,
    private readonly cluster: string,
    nodeName: string,
    private readonly log: Logger,
    /** Where nodes announce the exchanges they listen on; none: every publish is sent. */
    private readonly kv?: ClusterKV,
  ) {
    this.origin = `${nodeName}/${randomBytes(6).toString('base64url')}`;
    this.ownPrefix = `${Buffer.from(nodeName, 'utf8').toString('base64url')}.`;
  }

  /** Takes the core's routing: the bindings and queues it has now, and every later one. */
  async start(): Promise<void> {
    const stale: string[] = [];
    if (this.kv !== undefined) {
      this.watch = await this.kv.watch((e) => this.onAnnouncement(e, stale));
      await this.watch.ready;
    }
    this.running = true;
    for (const v of this.core.vhosts.values()) {
      for (const q of v.queues.values()) if (!q.durable) this.queueAdded(v, q);
      for (const ex of v.exchanges.values()) for (const b of ex.bindings.values()) this.bound(v, b);
    }
    this.core.relay = this;
    // What an earlier run of this node announced and this one does not listen on any more.
    for (const key of stale) if (!this.announcedKeys.has(key)) this.withdrawKey(key);
  }

  /** Leaves routing to the core alone again, and withdraws what this node announced. */
  async stop(): Promise<void> {
    if (this.core.relay === this) this.core.relay = undefined;
    this.running = false;
    this.watch?.stop();
    this.watch = undefined;
    const kv = this.kv;
    const announced = [...this.announcedKeys];
    this.announcedKeys.clear();
    if (kv !== undefined) await Promise.all(announced.map((k) => kv.delete(k).catch(() => undefined)));
    for (const i of this.interest.values()) i.sub?.unsubscribe();
    this.interest.clear();
    this.held.clear();
    this.localBases.clear();
  }

  /** Whether another node listens on an exchange (always true without the bucket). */
  remoteInterest(vhost: string, exchange: string): boolean {
    return this.kv === undefined || this.remoteBases.has(this.base(vhost, exchange));
  }

  // ---- announcements ----------------------------------------------------------------------

  /** Keys this node announced (so a stale one from an earlier run is told apart). */
  private readonly announcedKeys = new Set<string>();

  private keyOf(base: string): string {
    return `${this.ownPrefix}${createHash('sha256').update(base).digest('base64url').slice(0, 32)}`;
  }

  private onAnnouncement(e: KvEntry, stale: string[]): void {
    if (e.key.startsWith(this.ownPrefix)) {
      if (e.value !== undefined && !this.running) stale.push(e.key);
      return;
    }
    const known = this.remoteKeys.get(e.key);
    if (e.value === undefined) {
      if (known === undefined) return;
      this.remoteKeys.delete(e.key);
      const n = (this.remoteBases.get(known) ?? 1) - 1;
      if (n > 0) this.remoteBases.set(known, n);
      else this.remoteBases.delete(known);
      return;
    }
    if (known !== undefined) return;
    const base = Buffer.from(e.value).toString('utf8');
    this.remoteKeys.set(e.key, base);
    this.remoteBases.set(base, (this.remoteBases.get(base) ?? 0) + 1);
  }

  private announce(base: string): void {
    const kv = this.kv;
    if (kv === undefined) return;
    const key = this.keyOf(base);
    this.announcedKeys.add(key);
    kv.put(key, Buffer.from(base, 'utf8')).catch((e: unknown) =>
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cluster: could not announce a routing interest'),
    );
  }

  private withdraw(base: string): void {
    if (this.kv === undefined) return;
    const key = this.keyOf(base);
    this.announcedKeys.delete(key);
    this.withdrawKey(key);
  }

  private withdrawKey(key: string): void {
    this.kv?.delete(key).catch((e: unknown) =>
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cluster: could not withdraw a routing interest'),
    );
  }

  /** The subjects this node listens to now (tests, diagnostics). */
  subjects(): string[] {
    return [...this.interest.keys()];
  }

  private base(vhost: string, exchange: string): string {
    let byName = this.bases.get(vhost);
    if (byName === undefined) this.bases.set(vhost, (byName = new Map()));
    let b = byName.get(exchange);
    if (b === undefined) {
      b = exchangeSubject(this.cluster, vhost, exchange);
      // Names come and go with their exchanges; a bounded cache is enough.
      if (byName.size >= 10_000) byName.clear();
      byName.set(exchange, b);
    }
    return b;
  }

  // ---- interest ---------------------------------------------------------------------------

  bound(vhost: VHost, b: Binding): void {
    const d = b.destination;
    // Bindings of durable queues are everywhere: those queues get their messages by forwarding.
    if (!('router' in d) && d.durable) return;
    if (this.held.has(b)) return;
    const base = this.base(vhost.name, b.source.name);
    this.take(b, base, interestSubjects(base, b.source.type, b.routingKey));
  }

  unbound(_vhost: VHost, b: Binding): void {
    this.release(b);
  }

  queueAdded(vhost: VHost, q: Queue): void {
    // A queue shared cluster-wide: the other nodes route to it by name and forward to it.
    if (this.shared !== undefined && !q.exclusive) return this.shared.added(vhost, q);
    if (this.held.has(q)) return;
    const base = this.base(vhost.name, '');
    this.take(q, base, [`${base}.${encodeKey(q.name)}`]);
  }

  queueRemoved(vhost: VHost, q: Queue): void {
    if (this.shared !== undefined && !q.exclusive) this.shared.removed(vhost, q);
    this.release(q);
  }

  private take(owner: Binding | Queue, base: string, subjects: string[]): void {
    if (!this.running) return;
    this.held.set(owner, { base, subjects });
    const n = this.localBases.get(base) ?? 0;
    this.localBases.set(base, n + 1);
    if (n === 0) this.announce(base);
    for (const s of subjects) {
      const i = this.interest.get(s);
      if (i !== undefined) i.count++;
      else this.interest.set(s, { count: 1, sub: this.subscribe(s) });
    }
  }

  private subscribe(subject: string): BusSubscription | undefined {
    try {
      return this.bus.subscribe(subject, this.onMessage);
    } catch (e) {
      // A bind must not fail for it: the node's own routing is unaffected.
      this.log.warn({ subject, err: e instanceof Error ? e.message : String(e) }, 'cluster: could not subscribe to a routing subject');
      return undefined;
    }
  }

  private release(owner: Binding | Queue): void {
    const h = this.held.get(owner);
    if (h === undefined) return;
    this.held.delete(owner);
    const { base, subjects } = h;
    const n = (this.localBases.get(base) ?? 1) - 1;
    if (n > 0) this.localBases.set(base, n);
    else {
      this.localBases.delete(base);
      this.withdraw(base);
    }
    for (const s of subjects) {
      const i = this.interest.get(s);
      if (i === undefined) continue;
      if (--i.count > 0) continue;
      this.interest.delete(s);
      try {
        i.sub?.unsubscribe();
      } catch {
        // The connection is gone, and its subscriptions with it.
      }
    }
  }

  // ---- sending ----------------------------------------------------------------------------

  published(vhost: VHost, ex: Exchange, msg: Message): void {
    const base = this.base(vhost.name, ex.name);
    if (this.kv !== undefined && !this.remoteBases.has(base)) {
      this.stats.skipped++;
      return;
    }
    const w = this.w.reset();
    w.u8(VERSION);
    w.str16(this.origin);
    w.u64(++this.seq);
    writeCarried(w, vhost.name, ex.name, msg);
    const subject = `${base}.${encodeKey(msg.routingKey)}`;
    try {
      this.bus.publish(subject, Buffer.from(w.buf.subarray(0, w.pos)));
      this.stats.sent++;
    } catch {
      // The engine's connection is closed: at most once, the local publish goes on.
      this.stats.dropped++;
    }
  }

  // ---- receiving --------------------------------------------------------------------------

  private received(data: Uint8Array): void {
    this.stats.received++;
    try {
      const r = this.r.reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      if (r.u8() !== VERSION) return;
      const origin = r.str16();
      if (origin === this.origin) return;
      const seq = r.u64();
      const last = this.lastSeen.get(origin);
      if (last !== undefined && seq <= last) {
        this.stats.duplicates++;
        return;
      }
      this.lastSeen.set(origin, seq);
      const vhost = this.core.vhosts.get(r.str16());
      if (vhost === undefined) return;
      const msg = readCarried(r);
      const ex = vhost.exchanges.get(msg.exchange);
      if (ex === undefined) return;
      const result = vhost.publishFromPeer(ex, msg);
      if (result.routed > 0) this.stats.routed++;
      result.settled.catch(() => undefined);
    } catch (e) {
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cluster: a message from another node could not be routed');
    }
  }
}
