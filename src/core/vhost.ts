import { randomBytes } from 'node:crypto';
import { BrokerError, ReplyCode } from './errors.js';
import { latencyTrace } from './latency-trace.js';
import { BindingRecord } from './exchanges/binding-table.js';
import { DELAYED_EXCHANGE_TYPE, DelayedMessages, delayOf, MAX_DELAY_MS, type DelayedHost, type DelayedStore } from './exchanges/delayed.js';
import { Exchange, type Binding, type Destination } from './exchanges/exchange.js';
import type { HeldCodec } from './exchanges/held.js';
import { describeValue, tableKey } from './field-key.js';
import { checkMessage } from './message-check.js';
import type { Persistence } from './persistence.js';
import type { Policies } from './policies.js';
import { Queue, type DeadLetterReason, type QueueHost } from './queues/queue.js';
import { StreamQueue } from './queues/stream-queue.js';
import { QUORUM } from './queues/quorum.js';
import { queueTypeOf } from './queues/queue-type.js';
import { DirectReplyTo, REPLY_TO_PREFIX, replyNode } from './reply-to.js';
import { RouteSet } from './routing/route-set.js';
import {
  SETTLED,
  type ExchangeOptions,
  type FieldTable,
  type FieldValue,
  type Message,
  type PublishResult,
  type QueueOptions,
  type StoredMessage,
} from './types.js';

/** Broker-wide services a vhost uses. */
export interface VHostContext {
  readonly persistence: Persistence;
  nextMessageId(): number;
  /** Messages dropped because nothing routed them, and similar counters. */
  readonly counters: { published: number; unroutable: number; deadLettered: number };
  /** Policies whose definitions fold into queue and exchange arguments. */
  readonly policies?: Policies;
  /** The largest property block a stored message may have (what fits one AMQP content header frame). */
  readonly maxPropertiesBytes?: number;
  /** Where persistent messages held by durable exchanges are stored (none: memory only). */
  readonly delayedStore?: DelayedStore | undefined;
  /** Packs held messages into bytes (none: they are kept as objects). */
  readonly heldCodec?: HeldCodec | undefined;
  /** A cluster node's relay of node-local routing to the other nodes (none: a single node). */
  readonly relay?: RoutingRelay | undefined;
  /** A cluster node's passage for direct replies to requesters on other nodes (none: a single node). */
  readonly replies?: ReplyRelay | undefined;
}

/**
 * Direct replies across the nodes of a cluster: this node's name goes into the tokens it makes,
 * and a reply to a token naming another node is handed here to go there.
 */
export interface ReplyRelay {
  readonly nodeName: string;
  /** Sends a reply (its routing key a reply address naming another node) there; false when it cannot go. */
  send(vhost: VHost, msg: Message): boolean;
}

/**
 * What a cluster node needs from routing for its transient (node-local) subscribers: it is told
 * of every binding and every non-durable queue as they come and go (to keep its interest on the
 * bus), and of every publish routed here that did not itself come from another node.
 */
export interface RoutingRelay {
  bound(vhost: VHost, b: Binding): void;
  unbound(vhost: VHost, b: Binding): void;
  /** A non-durable queue was declared (the default exchange routes to it by name). */
  queueAdded(vhost: VHost, q: Queue): void;
  queueRemoved(vhost: VHost, q: Queue): void;
  published(vhost: VHost, ex: Exchange, msg: Message): void;
}

/** Messages from other nodes reach only this node's own queues: never the replicated ones. */
const SKIP_DURABLE = (q: Queue): boolean => q.durable;

const DEFAULT_EXCHANGES: ReadonlyArray<[string, string]> = [
  ['amq.direct', 'direct'],
  ['amq.fanout', 'fanout'],
  ['amq.topic', 'topic'],
  ['amq.headers', 'headers'],
  ['amq.match', 'headers'],
];

/** Queue arguments whose value must match on redeclare (RabbitMQ's equivalence check). */
const EQUIVALENCE_ARGS = [
  'x-message-ttl',
  'x-expires',
  'x-max-length',
  'x-max-length-bytes',
  'x-overflow',
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-max-priority',
  'x-single-active-consumer',
  'x-queue-type',
];

/** A reply handed to its direct reply-to consumer: routed, nothing to wait for (shared, never written). */
const REPLIED: PublishResult = { routed: 1, settled: SETTLED };
const NOT_ROUTED: PublishResult = { routed: 0, settled: SETTLED };
/** Results are read-only: a publish settled at once to a few queues shares one (index = queues). */
const SETTLED_TO: readonly PublishResult[] = Array.from({ length: 16 }, (_, routed) => Object.freeze({ routed, settled: SETTLED }));

function settledTo(routed: number): PublishResult {
  return routed < SETTLED_TO.length ? SETTLED_TO[routed]! : { routed, settled: SETTLED };
}

const HOME_DOWN = (why: string): Promise<void> => {
  const p = Promise.reject(new BrokerError(ReplyCode.INTERNAL_ERROR, why));
  p.catch(() => undefined);
  return p;
};
const REJECTED_BY_QUEUE = (): Promise<void> => {
  const p = Promise.reject(new BrokerError(406, 'message rejected by a full queue'));
  p.catch(() => undefined);
  return p;
};

const NO_QUEUES: readonly Queue[] = [];

/** A routed message as the core keeps it: stored once, shared by every queue it reaches. */
function storedOf(msg: Message, id: number, publisherId: number, persistent: boolean): StoredMessage {
  return {
    exchange: msg.exchange,
    routingKey: msg.routingKey,
    properties: msg.properties,
    body: msg.body,
    rawProperties: msg.rawProperties,
    id,
    size: msg.body.length + 64,
    persistent,
    refs: 0,
    publisherId,
  };
}

export function checkName(kind: 'queue' | 'exchange', name: string): void {
  if (Buffer.byteLength(name) > 255) throw BrokerError.precondition(`${kind} name too long`);
}

function inequivalent(what: string, arg: string, received: FieldValue | undefined, current: FieldValue | undefined): BrokerError {
  return BrokerError.precondition(
    `inequivalent arg '${arg}' for ${what}: received ${fmt(received)} but current is ${fmt(current)}`,
  );
}

function fmt(v: FieldValue | undefined): string {
  return v === undefined ? 'none' : `'${describeValue(v)}'`;
}

function validateExpiration(exp: string | undefined): void {
  if (exp === undefined) return;
  if (!/^\d{1,10}$/.test(exp)) throw BrokerError.precondition(`invalid expiration '${exp}'`);
}

/**
 * A virtual host: its own exchanges, queues and bindings. All routing happens here.
 */
export class VHost implements QueueHost, DelayedHost {
  readonly exchanges = new Map<string, Exchange>();
  readonly queues = new Map<string, Queue>();
  /**
   * Exclusive queues by owning connection id: a closing connection finds its own without a scan.
   * One queue (a clean MQTT session's) is held as is, a Set from the second.
   */
  private readonly exclusiveBy = new Map<number, Queue | Set<Queue>>();
  private readonly scratch = new RouteSet<Destination>();
  private readonly outSet = new RouteSet<Queue>();
  private publishDepth = 0;
  /** Direct reply-to consumers of this vhost, by token (`amq.rabbitmq.reply-to.<token>`). */
  readonly directReply = new DirectReplyTo(() => this.ctx.replies?.nodeName);

  constructor(
    readonly name: string,
    readonly ctx: VHostContext,
  ) {
    this.exchanges.set('', new Exchange(name, '', 'direct', true, false, false, {}));
    for (const [n, t] of DEFAULT_EXCHANGES) this.exchanges.set(n, new Exchange(name, n, t, true, false, false, {}));
  }

  get persistence(): Persistence {
    return this.ctx.persistence;
  }

  /** The message as the core stores it (see `checkMessage`), or a MessageRefusedError (406). */
  checkContent(msg: Message): Message {
    return checkMessage(msg, this.ctx.maxPropertiesBytes);
  }

  private describe(kind: 'queue' | 'exchange', name: string): string {
    return `${kind} '${name}' in vhost '${this.name}'`;
  }

  getExchange(name: string): Exchange {
    const ex = this.exchanges.get(name);
    if (!ex) throw BrokerError.notFound(`no ${this.describe('exchange', name)}`);
    return ex;
  }

  getQueue(name: string): Queue {
    const q = this.queues.get(name);
    if (!q) throw BrokerError.notFound(`no ${this.describe('queue', name)}`);
    return q;
  }

  // ---- exchanges ----------------------------------------------------------------------------

  declareExchange(name: string, type: string, opts: ExchangeOptions, passive: boolean): Exchange {
    checkName('exchange', name);
    const existing = this.exchanges.get(name);
    if (passive) {
      if (!existing) throw BrokerError.notFound(`no ${this.describe('exchange', name)}`);
      return existing;
    }
    if (name === '' || (name.startsWith('amq.') && !existing)) {
      throw BrokerError.accessRefused(`${this.describe('exchange', name)} refused: reserved name`);
    }
    const durable = opts.durable ?? false;
    const autoDelete = opts.autoDelete ?? false;
    const internal = opts.internal ?? false;
    const args = opts.arguments ?? {};
    if (existing) {
      const what = this.describe('exchange', name);
      if (existing.type !== type) throw inequivalent(what, 'type', type, existing.type);
      if (existing.durable !== durable) throw inequivalent(what, 'durable', durable, existing.durable);
      if (existing.autoDelete !== autoDelete) throw inequivalent(what, 'auto_delete', autoDelete, existing.autoDelete);
      if (existing.internal !== internal) throw inequivalent(what, 'internal', internal, existing.internal);
      const ae = args['alternate-exchange'];
      if (tableKey({ ae: ae ?? null }) !== tableKey({ ae: existing.args['alternate-exchange'] ?? null })) {
        throw inequivalent(what, 'alternate-exchange', ae, existing.args['alternate-exchange']);
      }
      if (type === DELAYED_EXCHANGE_TYPE && args['x-delayed-type'] !== existing.args['x-delayed-type']) {
        throw inequivalent(what, 'x-delayed-type', args['x-delayed-type'], existing.args['x-delayed-type']);
      }
      return existing;
    }
    const ex = new Exchange(this.name, name, type, durable, autoDelete, internal, args);
    if (type === DELAYED_EXCHANGE_TYPE) this.delayedOf(ex);
    const ae = this.ctx.policies?.effectiveExchangeArguments(this.name, name, args)['alternate-exchange'];
    if (typeof ae === 'string') ex.alternate = ae;
    this.exchanges.set(name, ex);
    if (durable) void this.persistence.definitionsChanged({ kind: 'exchange', vhost: this.name, name });
    return ex;
  }

  deleteExchange(name: string, ifUnused: boolean): void {
    if (name === '' || name.startsWith('amq.')) {
      throw BrokerError.accessRefused(`operation not permitted on ${this.describe('exchange', name)}`);
    }
    const ex = this.exchanges.get(name);
    if (!ex) return;
    if (ifUnused && ex.bindings.size > 0) {
      throw BrokerError.precondition(`${this.describe('exchange', name)} in use`);
    }
    this.removeExchange(ex);
  }

  private removeExchange(ex: Exchange): void {
    ex.deleted = true;
    ex.delayed?.destroy();
    this.exchanges.delete(ex.name);
    for (const b of [...ex.bindings.values()]) this.removeBinding(b, false);
    for (const b of [...ex.inbound]) this.removeBinding(b, true);
    if (ex.durable) void this.persistence.definitionsChanged({ kind: 'exchange', vhost: this.name, name: ex.name });
  }

  // ---- queues -------------------------------------------------------------------------------

  /** Declares (or checks) a queue. `owner` is the declaring connection's id. */
  declareQueue(name: string, opts: QueueOptions, passive: boolean, owner: number): Queue {
    checkName('queue', name);
    const existing = name === '' ? undefined : this.queues.get(name);
    if (existing) this.checkExclusiveAccess(existing, owner);
    if (passive) {
      if (!existing) throw BrokerError.notFound(`no ${this.describe('queue', name)}`);
      existing.touch();
      return existing;
    }
    const durable = opts.durable ?? false;
    const exclusive = opts.exclusive ?? false;
    const autoDelete = opts.autoDelete ?? false;
    const args = opts.arguments ?? {};
    if (existing) {
      const what = this.describe('queue', name);
      if (existing.durable !== durable) throw inequivalent(what, 'durable', durable, existing.durable);
      if (existing.exclusive !== exclusive) throw inequivalent(what, 'exclusive', exclusive, existing.exclusive);
      if (existing.autoDelete !== autoDelete) throw inequivalent(what, 'auto_delete', autoDelete, existing.autoDelete);
      for (const a of EQUIVALENCE_ARGS) {
        if (a === 'x-queue-type') {
          // No x-queue-type means the default type: 'classic' and none are equivalent.
          if (queueTypeOf(this.name, name, args, QUORUM).name !== existing.type.name) throw inequivalent(what, a, args[a], existing.args[a]);
          continue;
        }
        if (tableKey({ v: args[a] ?? null }) !== tableKey({ v: existing.args[a] ?? null })) {
          throw inequivalent(what, a, args[a], existing.args[a]);
        }
      }
      existing.touch();
      return existing;
    }
    if (name.startsWith('amq.')) {
      throw BrokerError.accessRefused(`${this.describe('queue', name)} refused: reserved name`);
    }
    queueTypeOf(this.name, name, args, QUORUM).validate({ vhost: this.name, name, durable, exclusive, autoDelete, args });
    const qname = name === '' ? `amq.gen-${randomBytes(16).toString('base64url').slice(0, 22)}` : name;
    const effective = this.ctx.policies?.effectiveQueueArguments(this.name, qname, args) ?? args;
    const q =
      queueTypeOf(this.name, qname, args, QUORUM).name === 'stream'
        ? new StreamQueue(this, qname, args, effective)
        : new Queue(this, qname, durable && !exclusive, exclusive, autoDelete, args, exclusive ? owner : 0, effective);
    this.queues.set(qname, q);
    if (exclusive) {
      const own = this.exclusiveBy.get(owner);
      if (own === undefined) this.exclusiveBy.set(owner, q);
      else if (own instanceof Set) own.add(q);
      else this.exclusiveBy.set(owner, new Set([own, q]));
    }
    if (q.durable) void this.persistence.definitionsChanged({ kind: 'queue', vhost: this.name, name: qname });
    else this.ctx.relay?.queueAdded(this, q);
    return q;
  }

  /** An exclusive queue belongs to the connection that declared it (405 for any other). */
  checkExclusiveAccess(q: Queue, owner: number): void {
    if (q.exclusive && q.owner !== owner) {
      throw BrokerError.locked(
        `cannot obtain exclusive access to locked ${this.describe('queue', q.name)}. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration.`,
      );
    }
  }

  deleteQueue(name: string, ifUnused: boolean, ifEmpty: boolean, owner: number): number {
    const q = this.queues.get(name);
    if (!q) return 0;
    this.checkExclusiveAccess(q, owner);
    if (ifUnused) q.finishClosingConsumers();
    if (ifUnused && q.consumerCount > 0) throw BrokerError.precondition(`${this.describe('queue', name)} in use`);
    if (ifEmpty && q.readyCount > 0) throw BrokerError.precondition(`${this.describe('queue', name)} not empty`);
    return this.removeQueue(q);
  }

  /** Deletes a queue: bindings go, consumers are cancelled, ready messages are dropped. */
  removeQueue(q: Queue): number {
    if (!this.unlinkQueue(q)) return 0;
    return this.dropUnlinked(q);
  }

  /**
   * First half of a delete: the queue loses its name (a new queue may take it at once) and takes
   * no more messages (routing skips it). False when it was not this vhost's live queue.
   */
  private unlinkQueue(q: Queue): boolean {
    if (q.deleted || this.queues.get(q.name) !== q) return false;
    this.queues.delete(q.name);
    q.deleted = true;
    if (!q.durable) this.ctx.relay?.queueRemoved(this, q);
    if (q.exclusive) {
      const own = this.exclusiveBy.get(q.owner);
      if (own === q) this.exclusiveBy.delete(q.owner);
      else if (own instanceof Set && own.delete(q) && own.size === 0) this.exclusiveBy.delete(q.owner);
    }
    return true;
  }

  /** Second half: consumers cancelled, messages dropped, its own bindings (only those) removed. */
  private dropUnlinked(q: Queue): number {
    for (const c of [...q.consumers]) c.owner.consumerCancelled(c);
    q.consumers.length = 0;
    const n = q.destroy();
    for (const b of this.bindingsTo(q)) this.removeBinding(b, true);
    if (q.durable) void this.persistence.definitionsChanged({ kind: 'queue', vhost: this.name, name: q.name });
    return n;
  }

  /** The bindings whose destination is `q` (excluding the default exchange's implicit one). */
  bindingsTo(q: Queue): Binding[] {
    const inbound = q.inbound;
    if (inbound === undefined) return [];
    return inbound instanceof Set ? [...inbound] : [inbound];
  }

  // ---- bindings -----------------------------------------------------------------------------

  bind(source: Exchange, destination: Destination, routingKey: string, args: FieldTable): void {
    if (source.name === '') {
      throw BrokerError.accessRefused(`operation not permitted on the default exchange`);
    }
    if (destination instanceof Exchange && destination.name === '') {
      throw BrokerError.accessRefused(`operation not permitted on the default exchange`);
    }
    const old = source.bindings.find(destination, routingKey, args);
    if (old !== undefined) {
      if (old.destination === destination) return;
      // A deleted queue of the same name whose teardown is still to come: its binding goes now.
      this.removeBinding(old, false);
    }
    const b = new BindingRecord(source, destination, routingKey, args);
    source.router.add(routingKey, args, destination);
    source.bindings.add(b);
    if (destination instanceof Exchange) destination.inbound.add(b);
    else {
      const inbound = destination.inbound;
      if (inbound === undefined) destination.inbound = b;
      else if (inbound instanceof Set) inbound.add(b);
      else destination.inbound = new Set([inbound, b]);
    }
    if (source.durable && destination.durable) void this.persistence.definitionsChanged({ kind: 'binding', vhost: this.name, source: source.name, key: b.key });
    this.ctx.relay?.bound(this, b);
  }

  unbind(source: Exchange, destination: Destination, routingKey: string, args: FieldTable): void {
    if (source.name === '' || (destination instanceof Exchange && destination.name === '')) {
      throw BrokerError.accessRefused(`operation not permitted on the default exchange`);
    }
    const b = source.bindings.find(destination, routingKey, args);
    if (b !== undefined && b.destination === destination) this.removeBinding(b, true);
  }

  private removeBinding(b: Binding, autoDeleteSource: boolean): void {
    const src = b.source;
    if (!src.bindings.delete(b)) return;
    src.router.remove(b.routingKey, b.args, b.destination);
    this.ctx.relay?.unbound(this, b);
    const d = b.destination;
    if (d instanceof Exchange) d.inbound.delete(b);
    else if (d.inbound === b) d.inbound = undefined;
    else if (d.inbound instanceof Set && d.inbound.delete(b) && d.inbound.size === 0) d.inbound = undefined;
    if (src.durable && b.destination.durable) void this.persistence.definitionsChanged({ kind: 'binding', vhost: this.name, source: src.name, key: b.key });
    if (autoDeleteSource && src.autoDelete && src.bindings.size === 0 && !src.deleted) this.removeExchange(src);
  }

  // ---- routing ------------------------------------------------------------------------------

  /**
   * Routes a message and hands it to every matching queue. The message is stored once and shared.
   * Every publish from outside the core comes through here (channels, MQTT wills), so every
   * stored message passes {@link checkMessage}: it can be delivered on every protocol, or the
   * publish is refused (406).
   */
  publish(msg: Message, publisherId: number, delay = 0): PublishResult {
    const trace = latencyTrace;
    if (trace !== null) trace.route();
    const ex = this.getExchange(msg.exchange);
    validateExpiration(msg.properties.expiration);
    // A held message is checked before it is held: it is refused at publish, not when it is due.
    const checked = this.checkContent(msg);
    if (ex.name === '' && msg.routingKey.startsWith(REPLY_TO_PREFIX)) return this.publishReply(ex, checked, publisherId);
    if (ex.delayed !== undefined && ex.type === DELAYED_EXCHANGE_TYPE) {
      const d = delayOf(checked.properties.headers);
      if (d !== undefined) return ex.delayed.hold(checked, publisherId, d);
    }
    if (delay > 0 && delay <= MAX_DELAY_MS) return this.delayedOf(ex).hold(checked, publisherId, delay);
    return this.publishTo(ex, checked, publisherId, undefined);
  }

  /**
   * A publish to `amq.rabbitmq.reply-to.<token>` on the default exchange goes straight to that
   * token's consumer: no queue, no persistence, settled at once. A token nobody holds any more
   * (the requester went away) or a reply its sink cannot take is dropped: `routed` 0, so a
   * mandatory publish is returned. On a cluster node, a token naming another node is sent there
   * (routed, at most once: that node drops it if its requester is gone).
   */
  private publishReply(ex: Exchange, msg: Message, publisherId: number): PublishResult {
    this.ctx.counters.published++;
    ex.stats.publishIn++;
    const relay = this.ctx.replies;
    if (this.replyHere(msg, publisherId)) {
      ex.stats.publishOut++;
      return REPLIED;
    }
    if (relay !== undefined) {
      // This node's own tokens name it: a reply to one of them that found nobody stays dropped.
      const node = replyNode(msg.routingKey);
      if (node !== undefined && node !== relay.nodeName && relay.send(this, msg)) {
        ex.stats.publishOut++;
        return REPLIED;
      }
    }
    this.ctx.counters.unroutable++;
    return NOT_ROUTED;
  }

  /**
   * Delivers a direct reply to this node's requester holding its token; false when there is none
   * (gone) or its sink could not take it. Replies from other nodes of a cluster come in here.
   */
  replyHere(msg: Message, publisherId: number): boolean {
    const target = this.directReply.lookup(msg.routingKey);
    if (target === undefined) return false;
    return target.channel.deliverReply(target, storedOf(msg, this.ctx.nextMessageId(), publisherId, false));
  }

  /** The holder of an exchange's delayed messages, created on first use. */
  delayedOf(ex: Exchange): DelayedMessages {
    return (ex.delayed ??= new DelayedMessages(ex, this, ex.durable ? this.ctx.delayedStore : undefined, this.ctx.heldCodec));
  }

  releaseDelayed(ex: Exchange, msg: Message, publisherId: number): PublishResult {
    if (ex.deleted) return { routed: 0, settled: SETTLED };
    return this.publishTo(ex, msg, publisherId, undefined);
  }

  /**
   * A message another node of a cluster published (see {@link RoutingRelay}): routed here to this
   * node's own queues only (the replicated ones got it from the publishing node), and not passed
   * on again.
   */
  publishFromPeer(ex: Exchange, msg: Message): PublishResult {
    return this.publishTo(ex, this.checkContent(msg), 0, SKIP_DURABLE, false);
  }

  private publishTo(ex: Exchange, msg: Message, publisherId: number, skip: ((q: Queue) => boolean) | undefined, relay = true): PublishResult {
    const out = this.publishDepth === 0 ? this.outSet : new RouteSet<Queue>();
    this.publishDepth++;
    try {
      this.route(ex, msg.routingKey, msg.properties.headers, out);
      if (relay) this.ctx.relay?.published(this, ex, msg);
      this.ctx.counters.published++;
      ex.stats.publishIn++;
      if (out.size === 0) {
        this.ctx.counters.unroutable++;
        return NOT_ROUTED;
      }
      const stored = storedOf(msg, this.ctx.nextMessageId(), publisherId, msg.properties.deliveryMode === 2);
      let pending: Promise<void> | undefined;
      let extra: Promise<void>[] | undefined;
      let rejected = false;
      let unavailable: string | undefined;
      let routed = 0;
      for (let i = 0; i < out.size; i++) {
        const q = out.at(i);
        // A queue unlinked by a closing connection whose bindings are still to go takes nothing.
        if (q.deleted || (skip !== undefined && skip(q))) continue;
        // A queue whose home node is down is no route (RabbitMQ: mandatory returns), and fails the confirm.
        if (q.forwarder !== undefined && q.forwarder.unavailable !== undefined) {
          const why = q.forwarder.unavailable(q);
          if (why !== undefined) {
            unavailable ??= why;
            continue;
          }
        }
        routed++;
        const r = q.forwarder === undefined ? q.enqueue(stored) : q.forwarder.forward(q, stored);
        if (r === false) rejected = true;
        else if (r !== undefined && r !== pending) {
          if (pending === undefined) pending = r;
          else (extra ??= []).push(r);
        }
      }
      ex.stats.publishOut += routed;
      if (routed === 0 && skip === undefined) this.ctx.counters.unroutable++;
      let settled: Promise<void> = SETTLED;
      if (unavailable !== undefined) settled = HOME_DOWN(unavailable);
      else if (rejected) settled = REJECTED_BY_QUEUE();
      else if (extra !== undefined) settled = Promise.all([pending, ...extra]).then(() => undefined);
      else if (pending !== undefined) settled = pending;
      return settled === SETTLED ? settledTo(routed) : { routed, settled };
    } finally {
      out.clear();
      this.publishDepth--;
    }
  }

  /**
   * A message another node of a cluster routed to `q`, whose home this node is: enqueued as it
   * was routed there (its exchange and routing key kept). Settles as a publish to it would.
   */
  enqueueForwarded(q: Queue, msg: Message, publisherId: number): Promise<void> {
    const r = q.enqueue(this.storedFromCluster(msg, publisherId));
    if (r === false) return REJECTED_BY_QUEUE();
    return r ?? SETTLED;
  }

  /** A message that came from another node (forwarded, or pulled from a replicated queue's log). */
  storedFromCluster(msg: Message, publisherId: number): StoredMessage {
    const checked = this.checkContent(msg);
    return {
      exchange: checked.exchange,
      routingKey: checked.routingKey,
      properties: checked.properties,
      body: checked.body,
      rawProperties: checked.rawProperties,
      id: this.ctx.nextMessageId(),
      size: checked.body.length + 64,
      persistent: checked.properties.deliveryMode === 2,
      refs: 0,
      publisherId,
    };
  }

  /** Collects the queues a message reaches: exchange-to-exchange bindings and alternate exchanges. */
  route(ex: Exchange, routingKey: string, headers: FieldTable | undefined, out: RouteSet<Queue>): void {
    if (ex.name === '') {
      const q = this.queues.get(routingKey);
      if (q) out.add(q);
      return;
    }
    const dests = this.scratch;
    ex.router.route(routingKey, headers, dests);
    let nested: Exchange[] | undefined;
    for (let i = 0; i < dests.size; i++) {
      const d = dests.at(i);
      if (d instanceof Queue) out.add(d);
      else (nested ??= []).push(d);
    }
    dests.clear();
    let visited: Set<Exchange> | undefined;
    if (nested !== undefined) {
      visited = new Set([ex]);
      this.routeNested(nested, routingKey, headers, out, visited);
    }
    // Alternate exchanges, when nothing else matched (loops are cut by `visited`).
    let cur = ex;
    while (out.size === 0 && cur.alternate !== undefined) {
      const ae = this.exchanges.get(cur.alternate);
      visited ??= new Set([ex]);
      if (!ae || visited.has(ae)) break;
      visited.add(ae);
      this.routeNested([ae], routingKey, headers, out, visited);
      cur = ae;
    }
  }

  private routeNested(start: Exchange[], rk: string, headers: FieldTable | undefined, out: RouteSet<Queue>, visited: Set<Exchange>): void {
    const stack = [...start];
    for (const x of start) visited.add(x);
    const found = new Set<Destination>();
    while (stack.length > 0) {
      const x = stack.pop()!;
      if (x.name === '') {
        const q = this.queues.get(rk);
        if (q) out.add(q);
        continue;
      }
      x.router.route(rk, headers, found);
      for (const d of found) {
        if (d instanceof Queue) out.add(d);
        else if (!visited.has(d)) {
          visited.add(d);
          stack.push(d);
        }
      }
      found.clear();
    }
  }

  // ---- dead-lettering -----------------------------------------------------------------------

  deadLetter(queue: Queue, msg: StoredMessage, reason: DeadLetterReason, undeliverable = false): void {
    const dlxName = queue.limits.deadLetterExchange;
    if (dlxName === undefined) return;
    const dlx = this.exchanges.get(dlxName);
    if (!dlx) return; // RabbitMQ drops the message when the DLX is missing
    const routingKey = queue.limits.deadLetterRoutingKey ?? msg.routingKey;
    const headers: FieldTable = { ...(msg.properties.headers ?? {}) };
    const deaths = Array.isArray(headers['x-death']) ? (headers['x-death'] as FieldTable[]).slice() : [];
    const idx = deaths.findIndex((d) => d['queue'] === queue.name && d['reason'] === reason);
    const prior = idx >= 0 ? deaths.splice(idx, 1)[0]! : undefined;
    const count = prior && typeof prior['count'] === 'number' ? prior['count'] + 1 : 1;
    const death: FieldTable = {
      count,
      reason,
      queue: queue.name,
      time: new Date(Math.floor(Date.now() / 1000) * 1000),
      exchange: msg.exchange,
      'routing-keys': [msg.routingKey],
    };
    if (msg.properties.expiration !== undefined) death['original-expiration'] = msg.properties.expiration;
    deaths.unshift(death);
    headers['x-death'] = deaths;
    if (headers['x-first-death-reason'] === undefined) {
      headers['x-first-death-reason'] = reason;
      headers['x-first-death-queue'] = queue.name;
      headers['x-first-death-exchange'] = msg.exchange;
    }
    headers['x-last-death-reason'] = reason;
    headers['x-last-death-queue'] = queue.name;
    headers['x-last-death-exchange'] = msg.exchange;
    const properties = { ...msg.properties, headers };
    delete properties.expiration;
    // A message that would die again in a queue it already died in, without ever being
    // rejected on the way, is in a cycle: do not deliver it there again (RabbitMQ does the same).
    // A rejection by the broker itself (no consumer could be sent it) would only come round again.
    const everRejected = !undeliverable && deaths.some((d) => d['reason'] === 'rejected');
    const diedIn = new Set(deaths.map((d) => d['queue']));
    const skip = everRejected ? undefined : (q: Queue): boolean => diedIn.has(q.name);
    this.ctx.counters.deadLettered++;
    this.publishTo(dlx, { exchange: dlxName, routingKey, properties, body: msg.body }, 0, skip).settled.catch(() => undefined);
  }

  /** Policies changed: every queue and exchange takes its new effective arguments. */
  applyPolicies(): void {
    const policies = this.ctx.policies;
    if (policies === undefined) return;
    for (const q of this.queues.values()) q.applyArguments(policies.effectiveQueueArguments(this.name, q.name, q.args));
    for (const ex of this.exchanges.values()) {
      if (ex.name === '') continue;
      const ae = policies.effectiveExchangeArguments(this.name, ex.name, ex.args)['alternate-exchange'];
      ex.alternate = typeof ae === 'string' ? ae : undefined;
    }
  }

  /** The vhost is being deleted: every queue and exchange goes, with their bindings. */
  removeAll(): void {
    for (const q of [...this.queues.values()]) this.removeQueue(q);
    for (const ex of [...this.exchanges.values()]) if (ex.name !== '' && !ex.name.startsWith('amq.')) this.removeExchange(ex);
  }

  /** Deletes every exclusive queue of a closing connection (only those: they are indexed by owner). */
  dropExclusive(owner: number): void {
    for (const q of this.unlinkExclusive(owner)) this.dropUnlinked(q);
  }

  /**
   * The first half of deleting a closing connection's exclusive queues (see `unlinkQueue`): their
   * names are free and they take no messages. The caller finishes each with `dropUnlinkedQueue`.
   */
  unlinkExclusive(owner: number): readonly Queue[] {
    const own = this.exclusiveBy.get(owner);
    if (own === undefined) return NO_QUEUES;
    const out = own instanceof Set ? [...own] : [own];
    for (const q of out) this.unlinkQueue(q);
    return out;
  }

  /** The second half of a delete begun by `unlinkExclusive`. */
  dropUnlinkedQueue(q: Queue): void {
    if (q.deleted && !q.destroyed) this.dropUnlinked(q);
  }
}
