import { createHash } from 'node:crypto';
import type { Duplex } from 'node:stream';
import { BrokerError, ReplyCode, SETTLED, type CoreChannel, type MessageProperties } from '../../src/core/index.js';
import type { AdapterContext, Peer, ProtocolAdapter, TransportControl } from '../../src/transport/adapter.js';
import { MAX_PACKET_SIZE, MAX_PACKET_SIZE_UNAUTHENTICATED, SESSION_EXPIRY_NEVER, TOPIC_EXCHANGE, type QoS } from './constants.js';
import { MqttConnection, type Will } from './connection.js';
import { MqttDurableState, decodeWill, encodeWill } from './durable.js';
import { toAmqpProperties } from './properties.js';
import { DurableRetainedStore, MemoryRetainedStore, ReplicatedRetainedStore, type RetainedReplica, type RetainedStore } from './retained.js';
import { OutState, Session, optionsFromArgs, sharedQueueName, type MqttClusterSeam, type SessionConnection } from './session.js';
import { bindingKeyToFilter, parseFilter, printable, routingKeyOf, type ParsedFilter } from './topic.js';

export { DurableRetainedStore, MemoryRetainedStore, ReplicatedRetainedStore, type RetainedMessage, type RetainedReplica, type RetainedStore } from './retained.js';
export type { ClientClaim, MqttClusterHandlers, MqttClusterSeam } from './session.js';

/** What a cluster node gives the MQTT adapter: the client-id registry and wills, and the retained replica. */
export interface MqttClusterOptions {
  readonly seam: MqttClusterSeam;
  readonly retained: RetainedReplica;
}

/** setTimeout's largest delay; longer session expiries re-arm. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A `$share/<group>/<filter>` group: one queue, consumed by every member session. */
/** How often a group's home checks whether members on other nodes still consume its queue. */
const SHARED_RECHECK_MS = 2000;

interface SharedGroup {
  readonly queue: string;
  readonly members: Set<Session>;
}

function setBlocked(c: MqttConnection, blocked: boolean): void {
  c.setBlocked(blocked);
}

function digest(s: string): string {
  return createHash('sha256').update(s).digest('base64url').slice(0, 32);
}

/**
 * The MQTT 3.1 / 3.1.1 / 5.0 server (TCP and WebSocket): connections, the sessions that outlive
 * them, shared subscription groups and retained messages.
 */
export class MqttAdapter implements ProtocolAdapter {
  readonly name = 'mqtt';
  readonly preAuthLimit = MAX_PACKET_SIZE_UNAUTHENTICATED;
  private readonly connections = new Set<MqttConnection>();
  /** vhost -> client id -> session. */
  private readonly sessions = new Map<string, Map<string, Session>>();
  private readonly shared = new Map<string, SharedGroup>();
  /** Groups whose home node has no member left while members elsewhere consume: key -> recheck timer. */
  private readonly sharedWatches = new Map<string, NodeJS.Timeout>();
  readonly retained: RetainedStore;
  /** Largest packet accepted from a connected client. */
  readonly maxPacketSize: number;
  /** v5 Receive Maximum announced in CONNACK: unacknowledged QoS 1/2 PUBLISHes a client may have. */
  readonly receiveMaximum: number;
  /** Longest keep-alive accepted, seconds (0 = no cap). */
  readonly maxKeepalive: number;
  private readonly unsubscribeAlarms: () => void;
  /** Session state and delayed wills in the data directory; undefined without a store. */
  private readonly durable: MqttDurableState | undefined;

  /** The cluster the node belongs to; undefined on a single node. */
  readonly cluster: MqttClusterSeam | undefined;

  /**
   * `retained` replaces the default: retained messages in the store's `retained` record store when
   * the context has a store, in memory only otherwise; on a cluster node (`cluster`) the cluster's
   * replica, cached in memory.
   */
  constructor(
    readonly ctx: AdapterContext,
    retained?: RetainedStore,
    cluster?: MqttClusterOptions,
  ) {
    this.cluster = cluster?.seam;
    this.retained =
      retained ??
      (cluster !== undefined
        ? new ReplicatedRetainedStore(new MemoryRetainedStore(), cluster.retained, ctx.log)
        : ctx.store === undefined
          ? new MemoryRetainedStore()
          : new DurableRetainedStore(new MemoryRetainedStore(), ctx.store.records('retained'), ctx.log));
    // A publish carries its payload plus at most a topic and properties: allow 64 KiB on top of the body limit.
    this.maxPacketSize = Math.min(MAX_PACKET_SIZE, ctx.options.maxMessageSize + 65536);
    this.receiveMaximum = ctx.options.mqttReceiveMaximum;
    this.maxKeepalive = ctx.options.mqttMaxKeepalive;
    this.unsubscribeAlarms = ctx.core.alarms.on((blocked) => {
      for (const c of this.connections) c.guarded(setBlocked, blocked);
    });
    const store = ctx.store;
    if (store !== undefined) {
      this.durable = new MqttDurableState(store.records('mqtt-sessions'), store.records('mqtt-wills'), ctx.log);
      this.recoverDurable(this.durable);
    }
    cluster?.seam.attach({
      clientMoved: (vhost, clientId) => this.clientMoved(vhost, clientId),
      publishOrphanWill: (vhost, clientId, record) => this.publishOrphanWill(vhost, clientId, record),
      sessionExpired: (vhost, clientId) => this.sessionExpired(vhost, clientId),
    });
  }

  /**
   * A connection on another node took the client id: the local connection closes as taken over
   * and the local session ends; its queue stays for the new node to replace (deleting it here
   * could race with the new node declaring it).
   */
  private clientMoved(vhost: string, clientId: string): void {
    const s = this.sessions.get(vhost)?.get(clientId);
    if (s === undefined) return;
    s.connection?.takeOver();
    const still = this.sessions.get(vhost)?.get(clientId);
    if (still !== undefined && still.connection === undefined) this.endSession(still, 'session moved to another node', true);
  }

  /** The session expired while offline on a node that died: it ends here, unless its client is connected here. */
  private sessionExpired(vhost: string, clientId: string): void {
    const s = this.sessions.get(vhost)?.get(clientId);
    if (s?.connection !== undefined) return;
    this.endSession(s ?? new Session(vhost, clientId), 'session expired');
  }

  /** A will of a node that died, published by this one. */
  private publishOrphanWill(vhost: string, clientId: string, record: Uint8Array): void {
    let w: ReturnType<typeof decodeWill>;
    try {
      w = decodeWill(vhost, clientId, Buffer.from(record.buffer, record.byteOffset, record.byteLength));
    } catch (err) {
      this.ctx.log.warn({ protocol: 'mqtt', err, vhost, clientId }, 'unreadable will of another node ignored');
      return;
    }
    this.publishWill(new Session(vhost, clientId), w.user, w.will, 0, false);
  }

  /** A connection attached with `will` (or none): on a cluster node it is recorded for the survivors. */
  willRecorded(s: Session, user: string, will: Will | undefined): void {
    const cluster = this.cluster;
    if (cluster === undefined) return;
    if (will === undefined) cluster.setWill(s.vhost, s.clientId, 0, undefined);
    else cluster.setWill(s.vhost, s.clientId, Math.min(will.delay, s.expiryInterval) * 1000, encodeWill(user, will, 0));
  }

  /**
   * Startup: sessions with stored state come back offline with their QoS 2 packet ids and expiry
   * (expired ones end now); delayed wills are re-armed, or published now when overdue.
   */
  private recoverDurable(durable: MqttDurableState): void {
    const { sessions, wills } = durable.load();
    const now = Date.now();
    let restored = 0;
    let expired = 0;
    let willsArmed = 0;
    let willsSent = 0;
    for (const rec of sessions) {
      if (this.ctx.core.openSession(rec.vhost) === undefined) {
        this.endSession(new Session(rec.vhost, rec.clientId), undefined);
        continue;
      }
      const s = new Session(rec.vhost, rec.clientId);
      s.expiryInterval = rec.expiryInterval;
      this.recoverSession(s);
      if (rec.incoming.length > 0) s.incoming = new Map(rec.incoming.map((id) => [id, null]));
      for (const packetId of rec.pubrel) {
        s.addOutgoing({ packetId, qos: 2, state: OutState.PUBREL, tag: 0, msgId: 0, retained: undefined, shared: false });
        s.inflight++;
      }
      let inVhost = this.sessions.get(rec.vhost);
      if (inVhost === undefined) this.sessions.set(rec.vhost, (inVhost = new Map()));
      inVhost.set(rec.clientId, s);
      const key = MqttDurableState.key(rec.vhost, rec.clientId);
      const w = wills.get(key);
      wills.delete(key);
      if (w !== undefined) {
        if (w.due <= now) {
          this.publishWill(s, w.user, w.will, 0);
          durable.dropWill(s);
          willsSent++;
        } else {
          this.armWill(s, w.user, w.will, w.due - now);
          willsArmed++;
        }
      }
      const deadline = rec.expiresAt !== 0 ? rec.expiresAt : rec.expiryInterval >= SESSION_EXPIRY_NEVER ? Infinity : now + rec.expiryInterval * 1000;
      s.expiresAt = deadline;
      if (deadline <= now) {
        this.endSession(s, 'session expired');
        expired++;
        continue;
      }
      if (deadline !== Infinity) this.scheduleExpiry(s, deadline);
      if (rec.expiresAt === 0) void durable.saveSession(s);
      restored++;
    }
    // A will whose session record is gone belongs to a session that ended: it is due now.
    for (const w of wills.values()) {
      const s = new Session(w.vhost, w.clientId);
      if (this.ctx.core.openSession(w.vhost) !== undefined) {
        this.publishWill(s, w.user, w.will, 0);
        willsSent++;
      }
      durable.dropWill(s);
    }
    if (restored + expired + willsArmed + willsSent > 0) {
      this.ctx.log.info({ protocol: 'mqtt', sessions: restored, expired, willsArmed, willsPublished: willsSent }, 'MQTT session state recovered');
    }
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** Sessions known to the adapter (online and offline). */
  get sessionCount(): number {
    let n = 0;
    for (const m of this.sessions.values()) n += m.size;
    return n;
  }

  handle(stream: Duplex, peer: Peer, transport = 'tcp', control?: TransportControl): void {
    this.connections.add(new MqttConnection(this, stream, peer, transport, control));
  }

  async shutdown(_reason: string): Promise<void> {
    this.unsubscribeAlarms();
    // Closing detaches each connection at once; its socket ends after the DISCONNECT is flushed.
    for (const c of [...this.connections]) c.shutdown();
    for (const t of this.sharedWatches.values()) clearInterval(t);
    this.sharedWatches.clear();
    // Stored expiries and wills stay: they are re-armed at the next start.
    for (const s of [...this.sessions.values()].flatMap((m) => [...m.values()])) {
      if (s.expiryTimer !== undefined) clearTimeout(s.expiryTimer);
      if (s.pendingWill !== undefined) clearTimeout(s.pendingWill.timer);
      s.expiryTimer = undefined;
      s.pendingWill = undefined;
    }
    await this.durable?.settle();
  }

  /**
   * Records the state of a persistent session (QoS 2 packet ids, expiry); resolves once it is on
   * disk (at once when nothing is stored for it).
   */
  saveSession(s: Session): Promise<void> {
    return this.durable === undefined ? SETTLED : this.durable.saveSession(s);
  }

  /** A connection attached to `s` with its expiry interval set: store it as connected (or forget it). */
  sessionAttached(s: Session): void {
    s.expiresAt = 0;
    if (this.durable === undefined) return;
    if (MqttDurableState.persists(s)) void this.durable.saveSession(s);
    else this.durable.dropSession(s);
  }

  /** @internal */
  connectionGone(c: MqttConnection): void {
    this.connections.delete(c);
  }

  // ---- sessions -----------------------------------------------------------------------------

  /**
   * Attaches a connection to the session of (vhost, client id): the connection holding it is closed
   * first (takeover); with clean start an existing session is discarded.
   */
  openSession(vhost: string, clientId: string, clean: boolean, conn: SessionConnection): { session: Session; present: boolean; discarded: boolean } {
    this.sessions.get(vhost)?.get(clientId)?.connection?.takeOver();
    // The takeover may have ended the old session: look again.
    let s = this.sessions.get(vhost)?.get(clientId);
    let discarded = false;
    if (s !== undefined) {
      if (s.expiryTimer !== undefined) clearTimeout(s.expiryTimer);
      s.expiryTimer = undefined;
      if (clean) {
        discarded = this.queueExists(vhost, s.queue);
        this.endSession(s, 'replaced by a clean session');
        s = undefined;
      } else if (s.pendingWill !== undefined) {
        // Reconnected within the will delay: the will is not sent [MQTT-3.1.3-9].
        clearTimeout(s.pendingWill.timer);
        s.pendingWill = undefined;
        this.durable?.dropWill(s);
      }
    }
    let present = s !== undefined;
    if (s === undefined) {
      s = new Session(vhost, clientId);
      // A session queue whose home is another node: the session's state is there, not here; the
      // client starts a new session on this node (session present 0).
      if (clean || (this.cluster !== undefined && !this.cluster.holdsQueue(vhost, s.queue))) {
        if (this.queueExists(vhost, s.queue)) {
          discarded = true;
          this.deleteQueue(vhost, s.queue);
        }
      } else present = this.recoverSession(s);
      let inVhost = this.sessions.get(vhost);
      if (inVhost === undefined) this.sessions.set(vhost, (inVhost = new Map()));
      inVhost.set(clientId, s);
    }
    s.connection = conn;
    return { session: s, present, discarded };
  }

  /**
   * A session whose queue survived without the adapter knowing it (e.g. recovered by the store):
   * its subscriptions come back from the queue's bindings.
   */
  private recoverSession(s: Session): boolean {
    const q = this.ctx.core.openSession(s.vhost)?.queueInfo(s.queue);
    if (q === undefined || q.exclusive) return false;
    for (const b of q.bindings) {
      if (b.exchange !== TOPIC_EXCHANGE) continue;
      const o = optionsFromArgs(b.args);
      const parsed = parseFilter(bindingKeyToFilter(b.routingKey));
      if (o === undefined || typeof parsed === 'string') continue;
      s.setSubscription({
        parsed,
        qos: o.qos,
        noLocal: o.noLocal,
        retainAsPublished: o.rap,
        retainHandling: o.rh,
        id: o.id,
        queue: s.queue,
        args: b.args,
      });
    }
    s.hasQueue = true;
    return true;
  }

  /** The connection left: the session ends now, or waits for its expiry (and its will for the delay). */
  sessionDetached(s: Session, will: Will | undefined, user: string, connId: number): void {
    s.connection = undefined;
    if (will === undefined) this.cluster?.setWill(s.vhost, s.clientId, 0, undefined);
    if (s.expiryInterval === 0) {
      if (will !== undefined) this.publishWill(s, user, will, connId);
      this.endSession(s, undefined);
      return;
    }
    const now = Date.now();
    if (will !== undefined) {
      const delay = Math.min(will.delay, s.expiryInterval);
      if (delay === 0) this.publishWill(s, user, will, connId);
      else {
        this.armWill(s, user, will, delay * 1000, connId);
        this.durable?.saveWill(s, user, will, now + delay * 1000);
      }
    }
    s.expiresAt = s.expiryInterval < SESSION_EXPIRY_NEVER ? now + s.expiryInterval * 1000 : Infinity;
    void this.durable?.saveSession(s);
    this.cluster?.sessionOffline(s.vhost, s.clientId, s.expiresAt);
    if (s.expiryInterval < SESSION_EXPIRY_NEVER) this.scheduleExpiry(s, s.expiresAt);
  }

  /** Publishes `will` after `delayMs` unless the session resumes first (or at its end, if sooner). */
  private armWill(s: Session, user: string, will: Will, delayMs: number, connId = 0): void {
    const publish = (): void => {
      this.publishWill(s, user, will, connId);
      this.durable?.dropWill(s);
    };
    const timer = setTimeout(() => {
      s.pendingWill = undefined;
      publish();
    }, Math.min(delayMs, MAX_TIMER_MS));
    timer.unref();
    s.pendingWill = { timer, publish };
  }

  private scheduleExpiry(s: Session, deadline: number): void {
    const left = deadline - Date.now();
    if (left <= 0) {
      s.expiryTimer = undefined;
      if (s.connection === undefined) this.endSession(s, 'session expired');
      return;
    }
    s.expiryTimer = setTimeout(() => this.scheduleExpiry(s, deadline), Math.min(left, MAX_TIMER_MS));
    s.expiryTimer.unref();
  }

  /** Ends a session: its queue and shared memberships go; a pending will is published now. */
  private endSession(s: Session, why: string | undefined, keepQueue = false): void {
    if (s.expiryTimer !== undefined) clearTimeout(s.expiryTimer);
    s.expiryTimer = undefined;
    const will = s.pendingWill;
    s.pendingWill = undefined;
    if (will !== undefined) {
      clearTimeout(will.timer);
      will.publish();
    }
    const inVhost = this.sessions.get(s.vhost);
    if (inVhost?.get(s.clientId) === s) {
      inVhost.delete(s.clientId);
      if (inVhost.size === 0) this.sessions.delete(s.vhost);
    }
    for (const sub of s.subscriptions.values()) if (sub.parsed.group !== undefined) this.leaveShared(s, sub.parsed);
    if (!keepQueue) this.deleteQueue(s.vhost, s.queue);
    this.durable?.dropSession(s);
    this.cluster?.sessionEnded(s.vhost, s.clientId);
    s.reset();
    if (why !== undefined) this.ctx.log.info({ protocol: 'mqtt', vhost: s.vhost, clientId: s.clientId }, why);
  }

  queueExists(vhost: string, name: string): boolean {
    return this.ctx.core.openSession(vhost)?.queueExists(name) ?? false;
  }

  private deleteQueue(vhost: string, name: string): void {
    this.ctx.core.openSession(vhost)?.deleteQueue(name);
  }

  // ---- shared subscriptions -----------------------------------------------------------------

  /** Joins `$share/<group>/<filter>`: declares and binds the group's queue (with `ch`'s permissions). */
  joinShared(s: Session, parsed: ParsedFilter, ch: CoreChannel): string {
    const key = `${s.vhost}\u0000${parsed.group!}\u0000${parsed.bindingKey}`;
    const g = this.shared.get(key);
    const queue = g?.queue ?? sharedQueueName(parsed.group!, parsed.bindingKey, digest);
    if (this.queueExists(s.vhost, queue)) ch.declareQueue(queue, {}, true);
    else ch.declareQueue(queue, { durable: true });
    ch.bindQueue(queue, TOPIC_EXCHANGE, parsed.bindingKey, {});
    if (g === undefined) this.shared.set(key, { queue, members: new Set([s]) });
    else g.members.add(s);
    return queue;
  }

  /** Leaves a group; the last member out deletes the group's queue. */
  leaveShared(s: Session, parsed: ParsedFilter): void {
    const key = `${s.vhost}\u0000${parsed.group!}\u0000${parsed.bindingKey}`;
    const g = this.shared.get(key);
    if (g === undefined || !g.members.delete(s)) return;
    if (g.members.size === 0) {
      this.shared.delete(key);
      if (this.cluster === undefined || this.sharedUnused(s.vhost, key, g.queue)) this.deleteQueue(s.vhost, g.queue);
    }
  }

  /**
   * In a cluster a group spans nodes: its queue is a durable queue on the node where the group
   * first appeared, which members elsewhere consume remotely. The last member out on another node
   * leaves it; on its home it goes once no member anywhere consumes it: while members elsewhere
   * still do, the home checks again every few seconds.
   */
  private sharedUnused(vhost: string, key: string, queue: string): boolean {
    if (!this.cluster!.holdsQueue(vhost, queue)) return false;
    if (this.sharedConsumers(vhost, queue) === 0) return true;
    if (!this.sharedWatches.has(key)) {
      const timer = setInterval(() => this.recheckShared(vhost, key, queue), SHARED_RECHECK_MS);
      timer.unref();
      this.sharedWatches.set(key, timer);
    }
    return false;
  }

  private sharedConsumers(vhost: string, queue: string): number {
    return this.ctx.core.openSession(vhost)?.queueInfo(queue)?.consumers ?? 0;
  }

  /** A group with members on other nodes only: deleted here, on its home, once none consumes it. */
  private recheckShared(vhost: string, key: string, queue: string): void {
    // A member joined here again, the queue went, or this node is not its home any more: stop watching.
    const watching = !this.shared.has(key) && this.queueExists(vhost, queue) && this.cluster!.holdsQueue(vhost, queue);
    if (watching && this.sharedConsumers(vhost, queue) > 0) return;
    clearInterval(this.sharedWatches.get(key));
    this.sharedWatches.delete(key);
    if (watching) this.deleteQueue(vhost, queue);
  }

  // ---- retained messages and wills ----------------------------------------------------------

  /**
   * Stores (or, with an empty payload, clears) the retained message of a topic. On a cluster node
   * returns a promise that resolves once the change is replicated.
   */
  retain(vhost: string, topic: string, qos: QoS, properties: MessageProperties, body: Buffer): Promise<void> | undefined {
    if (body.length === 0) return this.retained.set(vhost, topic, null) ?? undefined;
    const exp = properties.expiration;
    const expiresAt = exp === undefined ? 0 : Date.now() + Number(exp);
    return this.retained.set(vhost, topic, { topic, qos, properties, body, expiresAt }) ?? undefined;
  }

  /** Publishes a will to `amq.topic` (the connection is gone: permissions are checked here). */
  publishWill(s: Session, user: string, will: Will, connId: number, own = true): void {
    const vhost = s.vhost;
    // This node's record of the will goes (a will of another node keeps this node's record).
    if (own) this.cluster?.setWill(vhost, s.clientId, 0, undefined);
    const session = this.ctx.core.openSession(vhost);
    const log = this.ctx.log;
    if (session === undefined) return;
    // A will's topic is mostly its client's own: converted without the publishers' cache, which a
    // storm of thousands of wills would otherwise empty several times over.
    const routingKey = routingKeyOf(will.topic);
    const properties = toAmqpProperties(will.qos, will.retain, will.properties);
    try {
      const r = session.publish({ exchange: TOPIC_EXCHANGE, routingKey, properties, body: will.payload }, { user, clientId: s.clientId, publisherId: connId });
      if (r.settled !== SETTLED) r.settled.catch(() => undefined);
    } catch (e) {
      if (e instanceof BrokerError && e.code === ReplyCode.ACCESS_REFUSED) {
        log.warn({ protocol: 'mqtt', vhost, user, clientId: s.clientId, topic: printable(will.topic) }, 'will not published: write access refused');
        return;
      }
      log.warn({ protocol: 'mqtt', vhost, user, clientId: s.clientId, topic: printable(will.topic) }, `will not published: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    if (will.retain) this.retain(vhost, will.topic, will.qos, properties, will.payload)?.catch(() => undefined);
    if (log.isLevelEnabled('debug')) log.debug({ protocol: 'mqtt', vhost, user, clientId: s.clientId, topic: printable(will.topic) }, 'will published');
  }
}
