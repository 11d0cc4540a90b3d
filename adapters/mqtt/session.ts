/**
 * An MQTT session: the state that outlives a network connection when the client asked for a
 * persistent session — subscriptions, outbound QoS 1/2 deliveries in flight (resent with DUP and
 * their original packet ids after a reconnect), PUBRELs owed, and inbound QoS 2 packet ids awaiting
 * PUBREL (so a duplicate PUBLISH is not routed twice).
 */
import type { FieldTable } from '../../src/core/index.js';
import { SESSION_QUEUE_PREFIX, SHARED_QUEUE_PREFIX, SUBSCRIPTION_OPTS_ARG, type QoS } from './constants.js';
import type { RetainedMessage } from './retained.js';
import { filterWords, matchWords, type ParsedFilter } from './topic.js';

export interface Subscription {
  readonly parsed: ParsedFilter;
  readonly qos: QoS;
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
  readonly retainHandling: number;
  /** v5 subscription identifier; 0 = none. */
  readonly id: number;
  /** The queue it delivers from: the session queue, or the group's shared queue. */
  readonly queue: string;
  /** The binding arguments used for it (needed to unbind). */
  readonly args: FieldTable;
}

/** Outbound QoS >= 1 delivery states. */
export const OutState = {
  /** PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2). */
  PUBLISH: 1,
  /** PUBREL sent, waiting for PUBCOMP. */
  PUBREL: 2,
  /** The connection went away before the ack: the core requeued the message; it comes back with DUP. */
  REQUEUED: 3,
  /** A retained message that was in flight when the connection went away: resent with DUP on reconnect. */
  RESEND: 4,
} as const;
export type OutStateValue = (typeof OutState)[keyof typeof OutState];

export interface Outgoing {
  readonly packetId: number;
  qos: QoS;
  state: OutStateValue;
  /** The core delivery tag on the current connection's channel; 0 when the message is not held by the core. */
  tag: number;
  /** The core message id (to recognise a requeued message); 0 for retained messages. */
  readonly msgId: number;
  /** Set for retained messages sent on SUBSCRIBE (they have no core delivery). */
  readonly retained: RetainedMessage | undefined;
  /** Delivered from a shared subscription's queue (given to another member if the connection goes). */
  readonly shared: boolean;
}

/** What a session needs from the connection it is attached to. */
export interface SessionConnection {
  /** Closes the connection because a new one took over its client id. */
  takeOver(): void;
}

/**
 * What the MQTT adapter asks of the cluster its node belongs to. Absent on a single node; on a
 * cluster node it is implemented outside the adapter and handed to it by the broker.
 */
export interface MqttClusterSeam {
  /**
   * Records cluster-wide that a connection on this node now holds the client id; the returned
   * claim's `written` resolves once the engine has the record and this node has every change to
   * the cluster's definitions made before it (CONNACK waits for it).
   */
  claimClientId(vhost: string, clientId: string): ClientClaim;
  /** The session of a client id ended on this node: its record goes unless a connection here holds the id again. */
  sessionEnded(vhost: string, clientId: string): void;
  /**
   * A persistent session went offline on this node and ends at `expiresAt` (ms since the epoch)
   * unless the client comes back: recorded so that another node ends it if this one dies first.
   */
  sessionOffline(vhost: string, clientId: string, expiresAt: number): void;
  /** Whether a durable queue's messages live on this node (it is the queue's home, or the queue is replicated). */
  holdsQueue(vhost: string, queue: string): boolean;
  /**
   * Records the will of a connected client (`record` as the adapter encodes it), which the other
   * nodes publish if this node dies; `record` undefined removes it (published or not due any more).
   */
  setWill(vhost: string, clientId: string, delayMs: number, record: Uint8Array | undefined): void;
  /** The adapter's side, called by the cluster; given once, when the adapter is made. */
  attach(handlers: MqttClusterHandlers): void;
}

/** A connection's hold on its client id in the cluster. */
export interface ClientClaim {
  readonly written: Promise<void>;
  /** The connection is gone (its session may stay, offline). */
  release(): void;
}

/** What the cluster calls on the adapter. */
export interface MqttClusterHandlers {
  /**
   * A connection on another node took the client id: the local connection holding it closes as
   * taken over and the local session ends (its queue stays: a replicated one follows the client).
   */
  clientMoved(vhost: string, clientId: string): void;
  /** A will recorded by a node that died, due now: publish it here. */
  publishOrphanWill(vhost: string, clientId: string, record: Uint8Array): void;
  /** A session left offline on a node that died has expired: it ends here (its queue goes). */
  sessionExpired(vhost: string, clientId: string): void;
}

/** A will waiting for its delay to pass (or for the session to end first). */
export interface PendingWill {
  readonly timer: NodeJS.Timeout;
  readonly publish: () => void;
}

/** What one delivered routing key matches among a session's subscriptions. */
export interface MatchResult {
  /** Highest granted QoS among matching subscriptions; -1 when none matches. */
  readonly qos: number;
  readonly ids: number[] | undefined;
  readonly rap: boolean;
  /** The same, counting only subscriptions without no-local (for the session's own publishes). */
  readonly localQos: number;
  readonly localIds: number[] | undefined;
  readonly localRap: boolean;
  /** MQTT topic name of the routing key. */
  readonly topic: string;
}

const MATCH_CACHE_SIZE = 256;

/** Binding arguments without a subscription identifier, one (frozen) table per combination of options. */
const SHARED_ARGS = new Map<number, FieldTable>();

/** Arguments of the session queue, its consumer and shared subscriptions: none, one frozen table for all. */
export const NO_ARGS: FieldTable = Object.freeze({});

/**
 * Binding arguments of a subscription (RabbitMQ's `x-mqtt-subscription-opts` table). Without a
 * subscription identifier there are only 36 different tables: sessions share them (frozen).
 */
export function subscriptionArgs(qos: QoS, noLocal: boolean, rap: boolean, rh: number, id: number): FieldTable {
  const shareable = id === 0 && rh >= 0 && rh <= 2;
  const key = qos * 12 + (noLocal ? 6 : 0) + (rap ? 3 : 0) + rh;
  if (shareable) {
    const t = SHARED_ARGS.get(key);
    if (t !== undefined) return t;
  }
  const opts: FieldTable = { qos, 'no-local': noLocal, 'retain-as-published': rap, 'retain-handling': rh };
  if (id > 0) opts['id'] = id;
  const args: FieldTable = { [SUBSCRIPTION_OPTS_ARG]: opts };
  if (shareable) {
    Object.freeze(opts);
    SHARED_ARGS.set(key, Object.freeze(args));
  }
  return args;
}

/** Reads the subscription options back from binding arguments (session recovery). */
export function optionsFromArgs(args: FieldTable): { qos: QoS; noLocal: boolean; rap: boolean; rh: number; id: number } | undefined {
  const t = args[SUBSCRIPTION_OPTS_ARG];
  if (t === null || typeof t !== 'object' || Array.isArray(t) || Buffer.isBuffer(t) || t instanceof Date || !('qos' in t)) return undefined;
  const opts = t as FieldTable;
  const qos = opts['qos'];
  if (qos !== 0 && qos !== 1 && qos !== 2) return undefined;
  const rh = opts['retain-handling'];
  const id = opts['id'];
  return {
    qos,
    noLocal: opts['no-local'] === true,
    rap: opts['retain-as-published'] === true,
    rh: typeof rh === 'number' ? rh : 0,
    id: typeof id === 'number' ? id : 0,
  };
}

export function sessionQueueName(clientId: string): string {
  return SESSION_QUEUE_PREFIX + clientId;
}

/** One queue per (vhost, group, filter): the name holds group and binding key, or a digest of them when too long. */
export function sharedQueueName(group: string, bindingKey: string, digest: (s: string) => string): string {
  const name = `${SHARED_QUEUE_PREFIX}${group}-${bindingKey}`;
  return Buffer.byteLength(name) <= 255 ? name : `${SHARED_QUEUE_PREFIX}${digest(`${group}\u0000${bindingKey}`)}`;
}

const NO_SUBSCRIPTIONS: ReadonlyMap<string, Subscription> = new Map();

/**
 * A session's subscriptions while it has exactly one (most devices): the ReadonlyMap view without
 * a hash table.
 */
class OneSubscription implements ReadonlyMap<string, Subscription> {
  constructor(readonly sub: Subscription) {}

  get size(): number {
    return 1;
  }

  get(filter: string): Subscription | undefined {
    return filter === this.sub.parsed.raw ? this.sub : undefined;
  }

  has(filter: string): boolean {
    return filter === this.sub.parsed.raw;
  }

  forEach(fn: (value: Subscription, key: string, map: ReadonlyMap<string, Subscription>) => void): void {
    fn(this.sub, this.sub.parsed.raw, this);
  }

  *entries(): MapIterator<[string, Subscription]> {
    yield [this.sub.parsed.raw, this.sub];
  }

  *keys(): MapIterator<string> {
    yield this.sub.parsed.raw;
  }

  *values(): MapIterator<Subscription> {
    yield this.sub;
  }

  [Symbol.iterator](): MapIterator<[string, Subscription]> {
    return this.entries();
  }
}
const NO_OUTGOING: ReadonlyMap<number, Outgoing> = new Map();

/**
 * One client session. Its maps are allocated on first use: an idle connection's session is a
 * handful of fields.
 */
export class Session {
  /** One subscription, or a Map once there are more. */
  private subs: OneSubscription | Map<string, Subscription> | undefined;
  private out: Map<number, Outgoing> | undefined;
  /** Outgoing entries in state PUBLISH or PUBREL: what counts against the receive maximum. */
  inflight = 0;
  /** Message ids of REQUEUED entries -> their entry. */
  requeued: Map<number, Outgoing> | undefined;
  /**
   * Inbound QoS 2 packet ids: the promise of a publish the core has not settled yet, or null once
   * settled (PUBREC sent or owed) until PUBREL.
   */
  incoming: Map<number, Promise<void> | null> | undefined;
  private nextPacketId = 1;
  /** Seconds; 0 = the session ends with the connection; SESSION_EXPIRY_NEVER = never. */
  expiryInterval = 0;
  expiryTimer: NodeJS.Timeout | undefined;
  /** Expiry deadline (ms since the epoch) while offline; 0 while connected; Infinity = never. */
  expiresAt = 0;
  /** Whether the session queue exists (created on the first non-shared SUBSCRIBE). */
  hasQueue = false;
  /** The connection the session is attached to; undefined while the client is offline. */
  connection: SessionConnection | undefined;
  pendingWill: PendingWill | undefined;
  private cache: Map<string, MatchResult> | undefined;
  private queueName: string | undefined;

  constructor(
    readonly vhost: string,
    readonly clientId: string,
  ) {}

  /** The session queue, `mqtt-subscription-<client id>`. */
  get queue(): string {
    return (this.queueName ??= sessionQueueName(this.clientId));
  }

  /** Filters (as written, `$share/...` included) -> subscription. */
  get subscriptions(): ReadonlyMap<string, Subscription> {
    return this.subs ?? NO_SUBSCRIPTIONS;
  }

  setSubscription(sub: Subscription): void {
    const subs = this.subs;
    if (subs === undefined || (subs instanceof OneSubscription && subs.sub.parsed.raw === sub.parsed.raw)) this.subs = new OneSubscription(sub);
    else if (subs instanceof OneSubscription) this.subs = new Map([[subs.sub.parsed.raw, subs.sub], [sub.parsed.raw, sub]]);
    else subs.set(sub.parsed.raw, sub);
    this.cache = undefined;
  }

  deleteSubscription(filter: string): void {
    const subs = this.subs;
    if (subs === undefined || !subs.has(filter)) return;
    if (subs instanceof OneSubscription) this.subs = undefined;
    else subs.delete(filter);
    this.cache = undefined;
  }

  /** Outbound QoS >= 1 in flight, by packet id. */
  get outgoing(): ReadonlyMap<number, Outgoing> {
    return this.out ?? NO_OUTGOING;
  }

  addOutgoing(e: Outgoing): void {
    (this.out ??= new Map()).set(e.packetId, e);
  }

  deleteOutgoing(packetId: number): void {
    this.out?.delete(packetId);
  }

  /** A free packet id (1..65535) for an outbound QoS >= 1 PUBLISH. */
  allocatePacketId(): number {
    const out = this.out;
    for (let tries = 0; tries < 65535; tries++) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (out === undefined || !out.has(id)) return id;
    }
    return 0;
  }

  /** Matches a delivered routing key against the session's own (non-shared) subscriptions. */
  match(routingKey: string): MatchResult {
    let cache = this.cache;
    const hit = cache?.get(routingKey);
    if (hit !== undefined) return hit;
    const words = routingKey.split('.');
    let qos = -1;
    let localQos = -1;
    let ids: number[] | undefined;
    let localIds: number[] | undefined;
    let rap = false;
    let localRap = false;
    for (const s of this.subscriptions.values()) {
      if (s.parsed.group !== undefined || !matchWords(filterWords(s.parsed), words, '*')) continue;
      if (s.qos > qos) qos = s.qos;
      if (s.id > 0) (ids ??= []).push(s.id);
      rap ||= s.retainAsPublished;
      if (!s.noLocal) {
        if (s.qos > localQos) localQos = s.qos;
        if (s.id > 0) (localIds ??= []).push(s.id);
        localRap ||= s.retainAsPublished;
      }
    }
    const topic = routingKey.includes('.') ? words.join('/') : routingKey;
    const result: MatchResult = { qos, ids, rap, localQos, localIds, localRap, topic };
    if (cache === undefined) cache = this.cache = new Map();
    else if (cache.size >= MATCH_CACHE_SIZE) cache.clear();
    cache.set(routingKey, result);
    return result;
  }

  /** The shared subscription that delivers from `queue`, if any. */
  sharedFor(queue: string): Subscription | undefined {
    for (const s of this.subscriptions.values()) if (s.queue === queue && s.parsed.group !== undefined) return s;
    return undefined;
  }

  /** The highest QoS of the subscriptions on the session queue (decides whether its consumer acks). */
  get maxOwnQos(): number {
    let q = -1;
    for (const s of this.subscriptions.values()) if (s.parsed.group === undefined && s.qos > q) q = s.qos;
    return q;
  }

  get ownSubscriptionCount(): number {
    let n = 0;
    for (const s of this.subscriptions.values()) if (s.parsed.group === undefined) n++;
    return n;
  }

  /** Forgets every subscription, delivery and packet id (the session ended). */
  reset(): void {
    this.subs = undefined;
    this.out = undefined;
    this.inflight = 0;
    this.requeued = undefined;
    this.incoming = undefined;
    this.cache = undefined;
    this.hasQueue = false;
  }
}
