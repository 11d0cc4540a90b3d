import {
  BrokerError,
  Consumer,
  ReplyCode,
  newEntry,
  type ConsumerOwner,
  type Core,
  type DeliverySink,
  type Queue,
  type QueueEntry,
  type RemoteQueue,
  type RemoteTaken,
  type StoredMessage,
} from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter, readProperties, writeProperties } from '../store/index.js';
import { Batch, TurnBatches } from './bus-batch.js';
import { NoResponderError, type BusSubscription, type ClusterBus } from './engine.js';

/**
 * Consumers on any node for a classic queue. A consumer attached on a node that is not the
 * queue's home is registered on the home as a proxy consumer (request on
 * `warren.<cluster>.rc.<home>`); the home dispatches to the proxy like to a local consumer, with
 * the remote consumer's prefetch as its credit, and sends each delivery to
 * `warren.<cluster>.rcd.<node>.0` (binary). Acks, nacks, rejects and cancels travel back on
 * the home's subject in order; every settlement gives the proxy its credit back, so the home never
 * has more than the prefetch in flight to one remote consumer. Deliveries to one node, and
 * settlements and cancels to one home, written in one event-loop turn go as one bus message
 * (TurnBatches), in order; a request to a home sends what is gathered for it first.
 *
 * Liveness both ways: the consuming node pings each home it consumes from every `pingMs`; a home
 * that does not answer (no responder: its process is gone; or `missesAllowed` timeouts) cancels
 * the consumers attached to it (AMQP: basic.cancel, as RabbitMQ does when a classic queue's node
 * goes away). The home drops the proxies of a node it has not heard from for `silenceMs`: their
 * unacknowledged messages go back to the queue, redelivered, as for a consumer whose channel died.
 *
 * Wire, to the home (`rc.<home>`): u8 op | str16 node | u32 id | ...
 *   CONSUME (request): str16 vhost | str16 queue | u8 flags (1 noAck, 2 exclusive) | i32 priority | u32 prefetch
 *     answer: u8 0, or u8 1 | u16 code | str16 text
 *   SETTLE: u32 tag | u8 how (0 ack, 1 failed return, 2 reject, 3 return)
 *   CANCEL: (nothing)
 *   PING (request; id unused): u32 n | n × u32 id; answer: u32 n | n × u32 id the home does not know
 *   GET (request; id 0): str16 vhost | str16 queue | u8 noAck; answer: u8 0 (empty), or u8 2 | u32 tag |
 *     u8 redelivered | u32 deliveryCount | f64 expiresAt | u32 messageCount | message, or u8 1 | u16 code | str16 text
 *   (SETTLE with id 0 settles a basic.get's message.)
 *   PURGE (request; id 0): str16 vhost | str16 queue; answer: u8 0 | u32 purged, or u8 1 | u16 code | str16 text
 *   BATCH (id 0): u32 n | n × (u8 op | u32 id | ...) of SETTLE and CANCEL
 * To the consumer's node (`rcd.<node>.0`): u8 BATCH | u32 n | n × (u8 kind | u32 id | ...), or one
 * record alone: u8 kind | u32 id | ...
 *   DELIVER: u32 tag | u8 redelivered | u32 deliveryCount | f64 expiresAt | message
 * where message = str16 exchange | str16 routing key | properties (the store's codec) | bytes32 body.
 *   CANCELLED: (nothing) the queue went away on the home
 */

const OP_CONSUME = 1;
const OP_SETTLE = 2;
const OP_CANCEL = 3;
const OP_PING = 4;
const OP_GET = 5;
const OP_BATCH = 6;
const OP_PURGE = 7;
/** The consumer id of basic.get's messages. */
const GET_ID = 0;
/** Marks a stand-in entry (in `pos`, unused by entries that are not stored). */
const STAND_IN = 1;
const KIND_DELIVER = 1;
const KIND_CANCELLED = 2;
const KIND_BATCH = 3;
/** What a delivery record carries besides its strings, properties and body. */
const DELIVERY_OVERHEAD = 1 + 4 + 4 + 1 + 4 + 8 + 2 * 2 + 4 + 64;
const OK = 0;
const FAILED = 1;
const GOT = 2;

export interface RemoteConsumerOptions {
  pingMs?: number;
  /** Ping timeouts in a row before a home counts as gone. */
  missesAllowed?: number;
  /** A home drops a node's proxies after this long without a word from it. */
  silenceMs?: number;
  requestTimeoutMs?: number;
}

/** A consumer on this node of a queue homed elsewhere. */
interface Attached {
  readonly id: number;
  readonly consumer: Consumer;
  readonly queue: Queue;
  readonly home: string;
}

/** A proxy on the home for a consumer on another node. */
class ProxyConsumer implements ConsumerOwner, DeliverySink {
  readonly connectionId = 0;
  readonly closing = false;
  readonly congested = false;
  consumer!: Consumer;
  readonly unacked = new Map<number, QueueEntry>();
  nextTag = 1;

  constructor(
    private readonly rc: RemoteConsumers,
    readonly node: string,
    readonly id: number,
    readonly key: string,
    /** Where its deliveries go. */
    readonly subject: string,
  ) {}

  canDeliver(): boolean {
    return true;
  }

  deliverFromQueue(c: Consumer, q: Queue, e: QueueEntry, redelivered: boolean): boolean {
    const tag = this.nextTag++;
    if (!c.noAck) {
      this.unacked.set(tag, e);
      c.unacked++;
    }
    this.rc.sendDelivery(this, q, e, tag, redelivered);
    return true;
  }

  consumerCancelled(): void {
    this.rc.proxyCancelled(this);
  }

  finishClose(): void {}

  deliver(): void {}
}

export class RemoteConsumers implements RemoteQueue {
  private readonly w = new ByteWriter(4096);
  private readonly r = new ByteReader();
  private subs: BusSubscription[] = [];
  private readonly turn = new TurnBatches<Batch>((b) => this.bus.publish(b.subject, b.take()));
  /** Settlements and cancels gathered for each home. */
  private readonly toHome = new Map<string, Batch>();
  /** Deliveries gathered for each consuming node. */
  private readonly toNode = new Map<string, Batch>();
  private readonly homes = new WeakMap<Queue, string>();
  // consuming side
  private nextId = 1;
  private readonly attached = new Map<number, Attached>();
  private readonly byConsumer = new Map<Consumer, Attached>();
  private readonly misses = new Map<string, number>();
  /** basic.get messages unsettled here, by home: the home is pinged while there are any. */
  private readonly gotOut = new Map<string, number>();
  private pingTimer: NodeJS.Timeout | undefined;
  // home side
  private readonly proxies = new Map<string, ProxyConsumer>();
  private readonly lastHeard = new Map<string, number>();
  /** basic.get messages of other nodes not settled yet, by node, by tag. */
  private readonly gotBy = new Map<string, Map<number, { queue: Queue; entry: QueueEntry }>>();
  private nextGetTag = 1;
  private readonly pingMs: number;
  private readonly missesAllowed: number;
  private readonly silenceMs: number;
  private readonly timeoutMs: number;
  readonly stats = { delivered: 0, received: 0, cancelledByHome: 0, proxiesDropped: 0 };

  constructor(
    private readonly core: Core,
    private readonly bus: ClusterBus,
    private readonly cluster: string,
    readonly nodeName: string,
    private readonly log: Logger,
    opts: RemoteConsumerOptions = {},
  ) {
    this.pingMs = opts.pingMs ?? 1000;
    this.missesAllowed = opts.missesAllowed ?? 3;
    this.silenceMs = opts.silenceMs ?? 5000;
    this.timeoutMs = opts.requestTimeoutMs ?? 2000;
  }

  private readonly homeSubjects = new Map<string, string>();

  private homeSubject(node: string): string {
    let s = this.homeSubjects.get(node);
    if (s === undefined) this.homeSubjects.set(node, (s = `warren.${this.cluster}.rc.${node}`));
    return s;
  }

  /** Where a node's remote consumers get their deliveries (their ids are in the records). */
  private deliverySubject(node: string): string {
    return `warren.${this.cluster}.rcd.${node}.0`;
  }

  start(): void {
    this.subs.push(this.bus.subscribe(this.homeSubject(this.nodeName), (data, _s, reply) => this.onHomeMessage(data, reply)));
    this.subs.push(this.bus.subscribe(`warren.${this.cluster}.rcd.${this.nodeName}.*`, (data) => this.onDelivery(data)));
    this.pingTimer = setInterval(() => this.tick(), this.pingMs);
    this.pingTimer.unref();
  }

  stop(): void {
    this.turn.flushAll();
    for (const s of this.subs) s.unsubscribe();
    this.subs = [];
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = undefined;
  }

  /** Where a queue lives: consumers attached here to a queue homed elsewhere go to the home. */
  place(queue: Queue, home: string | undefined): void {
    if (home === undefined || home === this.nodeName) {
      if (queue.remote === this) queue.remote = undefined;
      this.homes.delete(queue);
      return;
    }
    this.homes.set(queue, home);
    queue.remote = this;
  }

  /** Remote consumers this node has attached to queues homed elsewhere, and proxies it serves. */
  get counts(): { attached: number; proxies: number } {
    return { attached: this.attached.size, proxies: this.proxies.size };
  }

  // ---- consuming side (RemoteQueue) -----------------------------------------------------------

  attach(queue: Queue, c: Consumer): void {
    const home = this.homes.get(queue);
    if (home === undefined) throw BrokerError.internal(`queue '${queue.name}' has no home node`);
    const a: Attached = { id: this.nextId++, consumer: c, queue, home };
    this.attached.set(a.id, a);
    this.byConsumer.set(c, a);
    const w = this.start_(OP_CONSUME, a.id);
    w.str16(queue.host.name);
    w.str16(queue.name);
    w.u8((c.noAck ? 1 : 0) | (c.exclusive ? 2 : 0));
    w.i32(c.priority);
    w.u32(c.prefetch);
    this.bus.request(this.homeSubject(home), this.takeFor(home, w), this.timeoutMs).then(
      (answer) => {
        if (answer[0] === OK) return;
        const r = this.r.reset(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength), 1);
        const code = r.u16();
        this.cancelLocal(a, `${code} ${r.str16()}`);
      },
      (e: unknown) => this.cancelLocal(a, e instanceof NoResponderError ? `home node '${home}' is not running` : `home node '${home}' did not answer`),
    );
  }

  detach(_queue: Queue, c: Consumer): void {
    const a = this.byConsumer.get(c);
    if (a === undefined) return;
    this.forget(a);
    this.homeRecord(a.home, OP_CANCEL, a.id, 0);
  }

  settle(queue: Queue, e: QueueEntry, how: 0 | 1 | 2 | 3): void {
    // A stand-in entry: `seg` is the consumer's id here, `seq` the home's delivery tag.
    const home = this.homes.get(queue);
    if (home === undefined || e.pos !== STAND_IN) return;
    if (e.seg === GET_ID) {
      const n = (this.gotOut.get(home) ?? 1) - 1;
      if (n <= 0) this.gotOut.delete(home);
      else this.gotOut.set(home, n);
    }
    const w = this.homeRecord(home, OP_SETTLE, e.seg, 5);
    w.u32(e.seq);
    w.u8(how);
  }

  /** Starts a record to `home` in its batch (`size`: bytes after op and id). */
  private homeRecord(home: string, op: number, id: number, size: number): ByteWriter {
    let b = this.toHome.get(home);
    if (b === undefined) {
      this.toHome.set(
        home,
        (b = new Batch(this.homeSubject(home), (w) => {
          w.u8(OP_BATCH);
          w.str16(this.nodeName);
          w.u32(GET_ID);
        })),
      );
    }
    const w = this.turn.record(b, 5 + size);
    w.u8(op);
    w.u32(id);
    return w;
  }

  /** A request to `home`: what is gathered for it goes first, so the request does not overtake it. */
  private takeFor(home: string, w: ByteWriter): Uint8Array {
    const data = this.take(w);
    const b = this.toHome.get(home);
    if (b !== undefined) this.turn.flush(b);
    return data;
  }

  get(queue: Queue, noAck: boolean): Promise<RemoteTaken | undefined> {
    const home = this.homes.get(queue);
    if (home === undefined) return Promise.reject(BrokerError.internal(`queue '${queue.name}' has no home node`));
    const w = this.start_(OP_GET, GET_ID);
    w.str16(queue.host.name);
    w.str16(queue.name);
    w.u8(noAck ? 1 : 0);
    return this.bus.request(this.homeSubject(home), this.takeFor(home, w), this.timeoutMs).then(
      (answer) => {
        const r = this.r.reset(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength));
        const kind = r.u8();
        if (kind === OK) return undefined;
        if (kind !== GOT) throw new BrokerError(r.u16() as ReplyCode, r.str16());
        const tag = r.u32();
        const redelivered = r.u8() === 1;
        const deliveryCount = r.u32();
        const expiresAt = r.f64();
        const messageCount = r.u32();
        const e = newEntry(this.readMessage(r), tag, deliveryCount, expiresAt, 0);
        e.seg = GET_ID;
        e.pos = STAND_IN;
        if (!noAck) this.gotOut.set(home, (this.gotOut.get(home) ?? 0) + 1);
        return { entry: e, redelivered, messageCount };
      },
      (e: unknown) => {
        if (e instanceof BrokerError) throw e;
        // RabbitMQ's answer for a classic queue whose node is down.
        const why = e instanceof NoResponderError ? 'is down or inaccessible' : 'did not answer';
        throw BrokerError.notFound(`home node '${home}' of durable queue '${queue.name}' in vhost '${queue.host.name}' ${why}`);
      },
    );
  }

  purge(queue: Queue): Promise<number> {
    const home = this.homes.get(queue);
    if (home === undefined) return Promise.reject(BrokerError.internal(`queue '${queue.name}' has no home node`));
    const w = this.start_(OP_PURGE, GET_ID);
    w.str16(queue.host.name);
    w.str16(queue.name);
    return this.bus.request(this.homeSubject(home), this.takeFor(home, w), this.timeoutMs).then(
      (answer) => {
        const r = this.r.reset(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength));
        if (r.u8() !== OK) throw new BrokerError(r.u16() as ReplyCode, r.str16());
        return r.u32();
      },
      (e: unknown) => {
        if (e instanceof BrokerError) throw e;
        const why = e instanceof NoResponderError ? 'is down or inaccessible' : 'did not answer';
        throw BrokerError.notFound(`home node '${home}' of durable queue '${queue.name}' in vhost '${queue.host.name}' ${why}`);
      },
    );
  }

  private readMessage(r: ByteReader): StoredMessage {
    const exchange = r.str16();
    const routingKey = r.str16();
    const properties = readProperties(r);
    const body = Buffer.from(r.bytes32()); // owned: the bus may reuse its buffer
    return {
      exchange,
      routingKey,
      properties,
      body,
      id: this.core.nextMessageId(),
      size: body.length + 64,
      persistent: properties.deliveryMode === 2,
      refs: 0,
      publisherId: 0,
    };
  }

  private writeMessage(w: ByteWriter, m: StoredMessage): void {
    w.str16(m.exchange);
    w.str16(m.routingKey);
    writeProperties(w, m.properties);
    w.bytes32(m.body);
  }

  private forget(a: Attached): void {
    this.attached.delete(a.id);
    this.byConsumer.delete(a.consumer);
  }

  /** The home cannot serve the consumer any more: it is cancelled (AMQP basic.cancel). */
  private cancelLocal(a: Attached, why: string): void {
    if (this.attached.get(a.id) !== a) return;
    this.forget(a);
    this.stats.cancelledByHome++;
    this.log.warn({ queue: a.queue.name, vhost: a.queue.host.name, home: a.home, consumerTag: a.consumer.tag, why }, 'cluster: remote consumer cancelled');
    const cs = a.queue.consumers;
    const i = cs.indexOf(a.consumer);
    if (i >= 0) cs.splice(i, 1);
    a.consumer.owner.consumerCancelled(a.consumer);
  }

  private onDelivery(data: Uint8Array): void {
    // A reader per message: a delivery handed on may publish, and so read, before this returns.
    const r = new ByteReader().reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    if (data[0] !== KIND_BATCH) {
      this.deliveryRecord(r);
      return;
    }
    r.u8();
    for (let n = r.u32(); n > 0; n--) this.deliveryRecord(r);
  }

  private deliveryRecord(r: ByteReader): void {
    const kind = r.u8();
    const a = this.attached.get(r.u32());
    if (a === undefined) {
      // Cancelled here: the home requeues what it sent once it hears.
      if (kind === KIND_DELIVER) skipDelivery(r);
      return;
    }
    if (kind === KIND_CANCELLED) {
      this.cancelLocal(a, 'the queue went away on its home node');
      return;
    }
    const tag = r.u32();
    const redelivered = r.u8() === 1;
    const deliveryCount = r.u32();
    const expiresAt = r.f64();
    const e = newEntry(this.readMessage(r), tag, deliveryCount, expiresAt, 0);
    e.seg = a.id;
    e.pos = STAND_IN;
    this.stats.received++;
    const c = a.consumer;
    c.owner.deliverFromQueue(c, a.queue, e, redelivered);
  }

  private tick(): void {
    const now = Date.now();
    // Pings to the homes this node consumes from.
    const ids = new Map<string, number[]>();
    for (const a of this.attached.values()) {
      let l = ids.get(a.home);
      if (l === undefined) ids.set(a.home, (l = []));
      l.push(a.id);
    }
    for (const home of this.gotOut.keys()) if (!ids.has(home)) ids.set(home, []);
    for (const [home, list] of ids) this.ping(home, list);
    // Proxies of nodes that went silent.
    for (const p of [...this.proxies.values()]) {
      const heard = this.lastHeard.get(p.node) ?? 0;
      if (now - heard > this.silenceMs) {
        this.log.warn({ node: p.node, queue: p.consumer.queue.name }, 'cluster: no word from a remote consumer\'s node: its unacknowledged messages go back to the queue');
        this.dropProxy(p);
      }
    }
    for (const [node, got] of this.gotBy) {
      if (now - (this.lastHeard.get(node) ?? 0) <= this.silenceMs) continue;
      this.gotBy.delete(node);
      for (const g of got.values()) g.queue.requeue(g.entry);
    }
  }

  private ping(home: string, list: number[]): void {
    const w = this.start_(OP_PING, 0);
    w.u32(list.length);
    for (const id of list) w.u32(id);
    this.bus.request(this.homeSubject(home), this.takeFor(home, w), this.timeoutMs).then(
      (answer) => {
        this.misses.delete(home);
        const r = this.r.reset(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength));
        const n = r.u32();
        for (let i = 0; i < n; i++) {
          const a = this.attached.get(r.u32());
          if (a !== undefined) this.cancelLocal(a, `home node '${home}' no longer knows the consumer`);
        }
      },
      (e: unknown) => {
        const misses = (this.misses.get(home) ?? 0) + 1;
        this.misses.set(home, misses);
        if (!(e instanceof NoResponderError) && misses < this.missesAllowed) return;
        this.misses.delete(home);
        this.gotOut.delete(home); // settling them would reach nobody: the home requeues them when it is back
        for (const a of [...this.attached.values()]) if (a.home === home) this.cancelLocal(a, `home node '${home}' is not running`);
      },
    );
  }

  // ---- home side ------------------------------------------------------------------------------

  private onHomeMessage(data: Uint8Array, reply: ((data: Uint8Array) => void) | undefined): void {
    const r = this.r.reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const op = r.u8();
    const node = r.str16();
    const id = r.u32();
    this.lastHeard.set(node, Date.now());
    switch (op) {
      case OP_BATCH:
        try {
          for (let n = r.u32(); n > 0; n--) this.oneWay(node, r.u8(), r.u32(), r);
        } catch (e) {
          this.log.warn({ node, err: e }, 'cluster: a batch of remote consumer settlements could not be read to its end');
        }
        return;
      case OP_SETTLE:
      case OP_CANCEL:
        this.oneWay(node, op, id, r);
        return;
      case OP_GET: {
        let answer: Uint8Array;
        try {
          answer = this.answerGet(node, r);
        } catch (e) {
          answer = this.failure(e);
        }
        reply?.(answer);
        return;
      }
      case OP_PURGE: {
        const purged = (n: number): void => {
          const w = this.w.reset();
          w.u8(OK);
          w.u32(n);
          reply?.(this.take(w));
        };
        try {
          const q = this.homeQueue(r);
          // A queue that became replicated here: purged on every node and in its log.
          if (q.forwarder?.purge === undefined) purged(q.purge());
          else q.forwarder.purge(q).then(purged, (e: unknown) => reply?.(this.failure(e)));
        } catch (e) {
          reply?.(this.failure(e));
        }
        return;
      }
      case OP_PING: {
        // The list is every consumer the node has on this home: a proxy it no longer lists (its
        // consume timed out there and was given up) is dropped. A consume sent after the ping
        // arrives after it, so no proxy is dropped before it was listed.
        const n = r.u32();
        const unknown: number[] = [];
        const listed = new Set<number>();
        for (let i = 0; i < n; i++) {
          const x = r.u32();
          listed.add(x);
          if (!this.proxies.has(`${node}/${x}`)) unknown.push(x);
        }
        for (const p of [...this.proxies.values()]) if (p.node === node && !listed.has(p.id)) this.dropProxy(p);
        const w = this.w.reset();
        w.u32(unknown.length);
        for (const x of unknown) w.u32(x);
        reply?.(this.take(w));
        return;
      }
      case OP_CONSUME: {
        let answer: Uint8Array = ANSWER_OK;
        try {
          this.addProxy(node, id, r);
        } catch (e) {
          answer = this.failure(e);
        }
        reply?.(answer);
        return;
      }
      default:
        if (reply !== undefined) {
          const w = this.w.reset();
          w.u8(FAILED);
          w.u16(ReplyCode.NOT_IMPLEMENTED);
          w.str16('unknown remote consumer operation');
          reply(this.take(w));
        }
    }
  }

  /** A settlement or cancel from `node` (alone, or one record of a batch). */
  private oneWay(node: string, op: number, id: number, r: ByteReader): void {
    if (op === OP_CANCEL) {
      const p = this.proxies.get(`${node}/${id}`);
      if (p !== undefined) this.dropProxy(p);
      return;
    }
    if (op !== OP_SETTLE) throw BrokerError.notImplemented('unknown remote consumer operation in a batch');
    const tag = r.u32();
    const how = r.u8();
    if (id === GET_ID) {
      this.settleGot(node, tag, how);
      return;
    }
    const p = this.proxies.get(`${node}/${id}`);
    if (p !== undefined) this.settleProxy(p, tag, how);
  }

  /** Starts a record to the consuming node of `p` in its batch (`size`: bytes after kind and id). */
  private nodeRecord(p: ProxyConsumer, kind: number, size: number): ByteWriter {
    let b = this.toNode.get(p.node);
    if (b === undefined) this.toNode.set(p.node, (b = new Batch(p.subject, writeDeliveryBatch)));
    const w = this.turn.record(b, 5 + size);
    w.u8(kind);
    w.u32(p.id);
    return w;
  }

  private failure(e: unknown): Uint8Array {
    const err = e instanceof BrokerError ? e : BrokerError.internal(e instanceof Error ? e.message : String(e));
    const w = this.w.reset();
    w.u8(FAILED);
    w.u16(err.code);
    w.str16(err.text.slice(0, 1000));
    return this.take(w);
  }

  private homeQueue(r: ByteReader): Queue {
    const vhostName = r.str16();
    const queueName = r.str16();
    const q = this.core.vhosts.get(vhostName)?.queues.get(queueName);
    if (q === undefined || q.deleted) throw BrokerError.notFound(`no queue '${queueName}' in vhost '${vhostName}' on node '${this.nodeName}'`);
    // A stand-in of a queue homed elsewhere (a queue that became replicated here still serves the
    // consumers other nodes attach to it through this node).
    if (q.remote !== undefined) throw BrokerError.notFound(`queue '${queueName}' does not live on node '${this.nodeName}'`);
    return q;
  }

  private answerGet(node: string, r: ByteReader): Uint8Array {
    const q = this.homeQueue(r);
    const noAck = r.u8() === 1;
    const taken = q.take(noAck);
    if (taken === undefined) return EMPTY;
    const e = taken.entry;
    const tag = this.nextGetTag++;
    if (!noAck) {
      let got = this.gotBy.get(node);
      if (got === undefined) this.gotBy.set(node, (got = new Map()));
      got.set(tag, { queue: q, entry: e });
    }
    const w = this.w.reset();
    w.u8(GOT);
    w.u32(tag);
    w.u8(taken.redelivered ? 1 : 0);
    w.u32(e.deliveryCount);
    w.f64(e.expiresAt);
    w.u32(q.readyCount);
    this.writeMessage(w, q.messageFor(e));
    return this.take(w);
  }

  private settleGot(node: string, tag: number, how: number): void {
    const got = this.gotBy.get(node);
    const g = got?.get(tag);
    if (got === undefined || g === undefined) return;
    got.delete(tag);
    if (got.size === 0) this.gotBy.delete(node);
    if (how === 0) g.queue.ack(g.entry);
    else if (how === 1) g.queue.requeue(g.entry, true);
    else if (how === 3) g.queue.requeue(g.entry);
    else g.queue.reject(g.entry);
  }

  private addProxy(node: string, id: number, r: ByteReader): void {
    const q = this.homeQueue(r);
    const flags = r.u8();
    const priority = r.i32();
    const prefetch = r.u32();
    const key = `${node}/${id}`;
    if (this.proxies.has(key)) return;
    const p = new ProxyConsumer(this, node, id, key, this.deliverySubject(node));
    const c = new Consumer(`${node}:${id}`, q, p, p, (flags & 1) !== 0, (flags & 2) !== 0, priority, prefetch, {});
    p.consumer = c;
    q.addConsumer(c);
    this.proxies.set(key, p);
  }

  private settleProxy(p: ProxyConsumer, tag: number, how: number): void {
    const e = p.unacked.get(tag);
    if (e === undefined) return;
    p.unacked.delete(tag);
    const c = p.consumer;
    c.unacked--;
    const q = c.queue;
    if (how === 0) q.ack(e);
    else if (how === 1) q.requeue(e, true);
    else if (how === 3) q.requeue(e);
    else q.reject(e);
    q.kick();
  }

  /** The proxy's node cancelled, went silent or is gone: its unacknowledged messages go back. */
  private dropProxy(p: ProxyConsumer): void {
    if (this.proxies.get(p.key) !== p) return;
    this.proxies.delete(p.key);
    this.stats.proxiesDropped++;
    const c = p.consumer;
    const q = c.queue;
    for (const e of p.unacked.values()) q.requeue(e);
    c.unacked = 0;
    p.unacked.clear();
    q.removeConsumer(c);
  }

  /** The home's queue went away (deleted): the remote consumer is cancelled. */
  proxyCancelled(p: ProxyConsumer): void {
    if (this.proxies.get(p.key) !== p) return;
    this.proxies.delete(p.key);
    p.unacked.clear();
    this.nodeRecord(p, KIND_CANCELLED, 0);
  }

  sendDelivery(p: ProxyConsumer, q: Queue, e: QueueEntry, tag: number, redelivered: boolean): void {
    const m = e.returns === 0 ? e.msg : q.messageFor(e);
    const w = this.nodeRecord(p, KIND_DELIVER, DELIVERY_OVERHEAD + m.exchange.length + m.routingKey.length + m.body.length);
    w.u32(tag);
    w.u8(redelivered ? 1 : 0);
    w.u32(e.deliveryCount);
    w.f64(e.expiresAt);
    this.writeMessage(w, m);
    this.stats.delivered++;
  }

  // ---- framing ------------------------------------------------------------------------------

  private start_(op: number, id: number): ByteWriter {
    const w = this.w.reset();
    w.u8(op);
    w.str16(this.nodeName);
    w.u32(id);
    return w;
  }

  /** A copy of what was written: the bus may hold on to it after this returns. */
  private take(w: ByteWriter): Uint8Array {
    return Buffer.from(w.buf.subarray(0, w.pos));
  }
}

const ANSWER_OK = Uint8Array.of(OK);
const EMPTY = Uint8Array.of(OK);

function writeDeliveryBatch(w: ByteWriter): void {
  w.u8(KIND_BATCH);
}

/** Reads past a delivery record's fields after its kind and id. */
function skipDelivery(r: ByteReader): void {
  r.skip(4 + 1 + 4 + 8);
  r.str16();
  r.str16();
  readProperties(r);
  r.bytes32();
}
