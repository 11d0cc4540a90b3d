import { Deque } from '../deque.js';
import { BrokerError } from '../errors.js';
import { latencyTrace } from '../latency-trace.js';
import { processMemory } from '../memory.js';
import type { Binding } from '../exchanges/exchange.js';
import type { PageSink, Persistence, QueueSpill, QueueStore } from '../persistence.js';
import { epochMs, msSinceStart } from '../stats.js';
import type { FieldTable, FieldValue, StoredMessage } from '../types.js';
import type { Consumer } from './consumer.js';
import { newEntry, type QueueEntry } from './entry.js';
import { QUORUM } from './quorum.js';
import { queueTypeOf, type QueueType } from './queue-type.js';
import { ReadyList } from './ready-list.js';
import { RequeueDelays, requeueDelayFor } from './requeue-delay.js';

/** Why a message left a queue without being acknowledged (x-death `reason`). */
export type DeadLetterReason = 'rejected' | 'expired' | 'maxlen' | 'delivery_limit';

/** What a queue needs from its vhost. */
export interface QueueHost {
  readonly name: string;
  readonly persistence: Persistence;
  /**
   * `undeliverable`: rejected by the broker because a consumer could not be sent the message; it
   * is never dead-lettered into a queue it already died in, so a dead-letter cycle cannot spin.
   */
  deadLetter(queue: Queue, msg: StoredMessage, reason: DeadLetterReason, undeliverable?: boolean): void;
  /** x-expires ran out or an auto-delete queue lost its last consumer. */
  removeQueue(queue: Queue): void;
}

export type Overflow = 'drop-head' | 'reject-publish' | 'reject-publish-dlx';

/** Counters the management API and metrics read. */
export interface QueueStats {
  published: number;
  delivered: number;
  redelivered: number;
  acked: number;
  got: number;
}

const DISPATCH_BUDGET = 512;
/** Bytes read back from disk at a time when a paged queue's in-memory messages run out. */
const PAGE_IN_BYTES = 4 << 20;
/**
 * A memory-only queue with more ready messages than this on the heap spills the next ones off it
 * (see QueueSpill), as it does past its spill's byte budget. A message on the heap costs a few
 * hundred bytes of objects whatever its size, and every collection of the young generation walks
 * the pages they fill: a backlog of millions there makes every other queue's tail wait on it.
 */
const SPILL_AFTER_MESSAGES = 16384;
/** Below this many ready messages a queue does not look for a spill. */
const SPILL_MIN_MESSAGES = 1024;
/** Message bytes read back from a spill at a time (a short synchronous task). */
const SPILL_READ_BACK_BYTES = 64 << 10;

/** The longest delay Node's timers honour (a longer one runs after 1 ms). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function intArg(args: FieldTable, name: string, min: number, queue: string): number | undefined {
  const v: FieldValue | undefined = args[name];
  if (v === undefined || v === null) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < min) {
    throw BrokerError.precondition(
      `invalid arg '${name}' for queue '${queue}': ${String(v)} is not an integer >= ${min}`,
    );
  }
  return n;
}

/** A queue now references `msg` in memory: the first reference puts it in the memory account. */
function hold(msg: StoredMessage): void {
  if (msg.refs++ === 0) processMemory.hold(msg.size);
}

/** A queue drops its in-memory reference to `msg`: the last one takes it out of the account. */
function release(msg: StoredMessage): void {
  if (--msg.refs === 0) processMemory.release(msg.size);
}

function strArg(args: FieldTable, name: string): string | undefined {
  const v = args[name];
  return typeof v === 'string' ? v : undefined;
}

/** The `tail` of every queue that never paged: empty, never pushed to (a queue makes its own first). */
const NO_TAIL = new Deque<QueueEntry>(0);

/**
 * The ready list of every single-level queue that never held a message (a subscribed session's
 * queue is empty most of its life): read only, a queue makes its own before the first message.
 * Frozen: a write that missed making its own would throw instead of reaching every other queue.
 */
const NO_LEVEL = new ReadyList();
Object.freeze(NO_LEVEL);
const NO_LEVELS: readonly ReadyList[] = Object.freeze([NO_LEVEL]);

/** Timer and immediate callbacks take the queue as their argument: no closures per queue. */
function runScheduled(q: Queue): void {
  q.runNow();
}
function expireScheduled(q: Queue): void {
  q.expireHeads();
}

/** Hands a message routed to a queue to the node where the queue lives (a cluster seam). */
export interface QueueForwarder {
  /** Resolves once the home node has the message (as a local enqueue settles); rejects when it cannot. */
  forward(queue: Queue, msg: StoredMessage): Promise<void>;
  /**
   * Why the queue cannot take a message now (its home is known to be down), else undefined: a
   * publish does not count the queue as a route (a mandatory publish with no other route is
   * returned) and is not confirmed.
   */
  unavailable?(queue: Queue): string | undefined;
  /**
   * queue.purge of a queue whose messages this forwarder keeps elsewhere (a replicated log, also
   * while the queue's messages move there): every ready message goes, on every node and in the
   * log (what consumers hold stays); resolves with how many.
   */
  purge?(queue: Queue): Promise<number>;
}

/**
 * The consumer side of a queue whose messages live on another node of a cluster (a cluster seam).
 * A consumer attached here is registered with the home, which delivers to it; the entries it
 * receives are stand-ins made by the implementation, and their settlement travels back.
 */
export interface RemoteQueue {
  /** A consumer attached here (already in `queue.consumers`): register it with the home. */
  attach(queue: Queue, c: Consumer): void;
  /** The consumer left (cancel, channel closed): the home forgets it. */
  detach(queue: Queue, c: Consumer): void;
  /** A delivery of the home was settled here: 0 ack, 1 returned (failed), 2 rejected, 3 returned (its channel closed). */
  settle(queue: Queue, e: QueueEntry, how: 0 | 1 | 2 | 3): void;
  /** basic.get: the home takes its next ready message; undefined when it has none. */
  get(queue: Queue, noAck: boolean): Promise<RemoteTaken | undefined>;
  /** queue.purge: the home drops its ready messages; resolves with how many. */
  purge(queue: Queue): Promise<number>;
}

/** A message basic.get took from a queue on another node. */
export interface RemoteTaken {
  readonly entry: QueueEntry;
  readonly redelivered: boolean;
  /** Messages still ready on the home. */
  readonly messageCount: number;
}

/**
 * A queue whose messages live in a replicated log (a cluster seam): publishes go to the log (the
 * queue's `forwarder`), and the queue on each node holds, in memory only, what that node pulled
 * for its consumers. A pulled entry's `seq` is its sequence in the log.
 */
export interface QueueReplica {
  /** The queue wants messages (a consumer came, credit may be free). */
  wanted(queue: Queue): void;
  /** A pulled entry left the queue for good (acked, dead-lettered, purged): the log drops it. */
  settled(queue: Queue, e: QueueEntry): void;
  /** A pulled entry goes back to the log for redelivery (to any node) after `delayMs`. */
  returned(queue: Queue, e: QueueEntry, delayMs: number): void;
  /** A basic.get found nothing pulled here: pull one for the next get. */
  getEmpty(queue: Queue): void;
}

/** A queue's limits, from its arguments and policy (read-only: a change replaces the record). */
export interface QueueLimits {
  readonly messageTtl: number | undefined;
  readonly expires: number | undefined;
  readonly maxLength: number | undefined;
  readonly maxLengthBytes: number | undefined;
  readonly overflow: Overflow;
  readonly deadLetterExchange: string | undefined;
  readonly deadLetterRoutingKey: string | undefined;
  /** Failed deliveries a message may have before it is dead-lettered (queue type and x-delivery-limit). */
  readonly deliveryLimit: number | undefined;
  /** x-consumer-timeout (ms; 0 = none), undefined = the broker default. */
  readonly consumerTimeout: number | undefined;
  /** x-requeue-delay / x-requeue-delay-max (ms): returned messages wait before they are ready again. */
  readonly requeueDelay: number | undefined;
  readonly requeueDelayMax: number | undefined;
}

/** The limits of a queue declared without any (most queues): one record for all of them. */
const NO_LIMITS: QueueLimits = Object.freeze({
  messageTtl: undefined,
  expires: undefined,
  maxLength: undefined,
  maxLengthBytes: undefined,
  overflow: 'drop-head',
  deadLetterExchange: undefined,
  deadLetterRoutingKey: undefined,
  deliveryLimit: undefined,
  consumerTimeout: undefined,
  requeueDelay: undefined,
  requeueDelayMax: undefined,
});

function sameLimits(a: QueueLimits, b: QueueLimits): boolean {
  return (
    a.messageTtl === b.messageTtl &&
    a.expires === b.expires &&
    a.maxLength === b.maxLength &&
    a.maxLengthBytes === b.maxLengthBytes &&
    a.overflow === b.overflow &&
    a.deadLetterExchange === b.deadLetterExchange &&
    a.deadLetterRoutingKey === b.deadLetterRoutingKey &&
    a.deliveryLimit === b.deliveryLimit &&
    a.consumerTimeout === b.consumerTimeout &&
    a.requeueDelay === b.requeueDelay &&
    a.requeueDelayMax === b.requeueDelayMax
  );
}

/**
 * A queue: ready messages in order, delivery to consumers by credit, TTL, length limits and
 * dead-lettering. Unacknowledged messages are held by the channels that received them.
 *
 * A durable queue has a store. Once its ready messages in memory exceed the store's budget, new
 * persistent messages are paged: written, not kept, and read back in order when the messages in
 * memory run out. Transient messages arriving meanwhile wait in memory behind them (`tail`).
 */
export class Queue implements PageSink, QueueStats {
  /** Routing's mark (see RouteSet): which publish last took this queue. */
  routeMark = 0;
  /** Made with the first consumer at its exact size (a pushed-to empty array reserves 17 slots). */
  consumers: Consumer[] = [];
  /** When it was declared (or recovered), as ms since the process started (see declaredAt). */
  private readonly declaredSince = msSinceStart();
  // Message counters (QueueStats): fields of the queue itself, no object of their own.
  published = 0;
  delivered = 0;
  redelivered = 0;
  acked = 0;
  got = 0;
  readyCount = 0;
  readyBytes = 0;
  unackedCount = 0;
  /**
   * Ready messages held only on disk (persistent ones of a durable queue) or spilled off the heap
   * (a memory-only queue's, see QueueSpill); all after the in-memory ones.
   */
  pagedCount = 0;
  pagedBytes = 0;
  deleted = false;
  /**
   * Set when the queue's messages live on another node of a cluster (its home): a publish routed
   * here is handed to this instead of being enqueued, and settles when the home has it.
   */
  forwarder: QueueForwarder | undefined = undefined;
  /**
   * Set with `forwarder` when the queue lives on another node: consumers attached here get the
   * home's messages through it, and settle them through it.
   */
  remote: RemoteQueue | undefined = undefined;
  /** Set on a replicated queue of a cluster (see {@link QueueReplica}). */
  replica: QueueReplica | undefined = undefined;
  /** Set once `destroy` ran (a deleted queue may wait for it while its connection's close is pending). */
  destroyed = false;
  /**
   * The bindings that lead here: a delete removes only these. One binding (an MQTT session's
   * usual case) is held as is; a Set from the second on.
   */
  inbound: Binding | Set<Binding> | undefined = undefined;
  /** Where persistent messages go; undefined for memory-only queues. */
  readonly store: QueueStore | undefined;
  /** Transient messages that arrived while messages were paged, in order. */
  private tail: Deque<QueueEntry> = NO_TAIL;
  /** A memory-only queue's spill, opened when it first holds many messages. */
  private spill: QueueSpill | undefined = undefined;
  /** Set once a consumer has ever attached (auto-delete needs it). */
  private hadConsumer = false;
  /** NO_LEVELS until the first message here or on disk (see ownLevels). */
  private levels: readonly ReadyList[];
  private seq = 0;
  private rr = 0;
  private scheduled = false;
  private ttlTimer: NodeJS.Timeout | undefined;
  private ttlAt = 0;
  private expiresTimer: NodeJS.Timeout | undefined;

  /** See `limits`. */
  private ownLimits: QueueLimits = NO_LIMITS;
  /** Returned messages waiting out their requeue delay (made on first use). */
  private delays: RequeueDelays | undefined;
  readonly maxPriority: number;
  readonly singleActiveConsumer: boolean;
  /** Classic, quorum or stream: what differs between queue types. */
  readonly type: QueueType;

  constructor(
    readonly host: QueueHost,
    readonly name: string,
    readonly durable: boolean,
    readonly exclusive: boolean,
    readonly autoDelete: boolean,
    readonly args: FieldTable,
    /** Owning connection id for exclusive queues, else 0. */
    readonly owner: number,
    /** `args` with a matching policy folded in; `args` itself stays what was declared. */
    effectiveArgs: FieldTable = args,
  ) {
    this.type = queueTypeOf(host.name, name, args, QUORUM);
    this.setLimits(effectiveArgs);
    this.maxPriority = Math.min(intArg(args, 'x-max-priority', 0, name) ?? 0, 255);
    this.singleActiveConsumer = args['x-single-active-consumer'] === true;
    this.levels = this.maxPriority === 0 ? NO_LEVELS : Array.from({ length: this.maxPriority + 1 }, () => new ReadyList());
    this.touch();
    // A stream keeps its own log (stream-queue.ts), not a queue store.
    this.store = durable && this.type.name !== 'stream' ? host.persistence.openQueue(this) : undefined;
  }

  private setLimits(a: FieldTable): void {
    const name = this.name;
    const overflow = strArg(a, 'x-overflow') ?? 'drop-head';
    if (overflow !== 'drop-head' && overflow !== 'reject-publish' && overflow !== 'reject-publish-dlx') {
      throw BrokerError.precondition(`invalid arg 'x-overflow' for queue '${name}': '${overflow}'`);
    }
    const limits: QueueLimits = {
      messageTtl: intArg(a, 'x-message-ttl', 0, name),
      expires: intArg(a, 'x-expires', 1, name),
      maxLength: intArg(a, 'x-max-length', 0, name),
      maxLengthBytes: intArg(a, 'x-max-length-bytes', 0, name),
      overflow,
      deadLetterExchange: strArg(a, 'x-dead-letter-exchange'),
      deadLetterRoutingKey: strArg(a, 'x-dead-letter-routing-key'),
      deliveryLimit: this.type.deliveryLimit(a),
      consumerTimeout: intArg(a, 'x-consumer-timeout', 0, name),
      requeueDelay: intArg(a, 'x-requeue-delay', 0, name),
      requeueDelayMax: intArg(a, 'x-requeue-delay-max', 0, name),
    };
    this.ownLimits = sameLimits(limits, NO_LIMITS) ? NO_LIMITS : limits;
  }

  /**
   * A policy changed: take the new limits. A lower length limit drops from the head at once, as
   * RabbitMQ does; a new message TTL applies to messages published from now on.
   */
  applyArguments(effective: FieldTable): void {
    if (this.deleted) return;
    this.setLimits(effective);
    if (this.limits.overflow === 'drop-head') this.dropHeadOverLimit();
    this.touch();
  }

  /**
   * Limits from the declared arguments with a matching policy folded in (see applyArguments); a
   * queue without any shares one frozen record.
   */
  get limits(): QueueLimits {
    return this.ownLimits;
  }

  /** Key for the store: `<vhost>/<name>` is unique broker-wide. Made when asked for (not kept). */
  get id(): string {
    return [this.host.name, this.name].join('/');
  }

  /** When it was declared or recovered (ms since the epoch). */
  get declaredAt(): number {
    return epochMs(this.declaredSince);
  }

  /** The queue's message counters: the queue itself. */
  get stats(): QueueStats {
    return this;
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  /** Ready messages held only on disk (a durable queue's paged persistent messages). */
  get pagedOutCount(): number {
    return this.store === undefined ? 0 : this.pagedCount;
  }

  /** Ready messages a memory-only queue holds encoded, off the heap (see QueueSpill). */
  get offHeapCount(): number {
    return this.store === undefined ? this.pagedCount : 0;
  }

  /**
   * Appends a routed message. Returns the store's promise for a persisted message, undefined when
   * nothing is pending, or false when the queue refused it (x-overflow reject-publish).
   */
  enqueue(msg: StoredMessage): Promise<void> | undefined | false {
    if (this.deleted) return undefined;
    if (this.limits.overflow !== 'drop-head' && this.isFullFor(msg.size)) {
      if (this.limits.overflow === 'reject-publish-dlx') this.host.deadLetter(this, msg, 'maxlen');
      return false;
    }
    let expiresAt = 0;
    const ttl = this.effectiveTtl(msg);
    if (ttl !== undefined) expiresAt = Date.now() + ttl;
    const level = this.maxPriority === 0 ? 0 : Math.min(msg.properties.priority ?? 0, this.maxPriority);
    const entry = newEntry(msg, ++this.seq, 0, expiresAt, level);
    const trace = latencyTrace;
    if (trace !== null) trace.enqueue();
    this.readyCount++;
    this.readyBytes += msg.size;
    this.published++;
    let pending: Promise<void> | undefined;
    const store = this.store;
    if (store === undefined && this.spills()) {
      this.ownLevels();
      this.spill!.push(entry);
      this.pagedCount++;
      this.pagedBytes += msg.size;
    } else if (store === undefined || !msg.persistent) {
      hold(msg);
      if (this.pagedCount === 0) this.ownLevels()[level]!.push(entry);
      else (this.tail === NO_TAIL ? (this.tail = new Deque<QueueEntry>()) : this.tail).push(entry);
    } else if (
      this.pagedCount > 0 ||
      (this.maxPriority === 0 && store.memoryBudget > 0 && this.readyBytes - this.pagedBytes > store.memoryBudget)
    ) {
      this.ownLevels();
      this.pagedCount++;
      this.pagedBytes += msg.size;
      pending = store.enqueue(entry, true);
    } else {
      hold(msg);
      this.ownLevels()[level]!.push(entry);
      pending = store.enqueue(entry, false);
    }
    if (this.limits.overflow === 'drop-head') this.dropHeadOverLimit();
    if (expiresAt !== 0) this.scheduleTtl(expiresAt);
    if (this.consumers.length > 0) this.kick();
    return pending;
  }

  /**
   * Whether a memory-only queue's new message (counted in `readyCount` already) goes to its spill:
   * while any are spilled (they are older), or once it holds more than SPILL_AFTER_MESSAGES or its
   * spill's budget of bytes on the heap. A queue with priorities keeps its messages on the heap, as
   * every queue does with a budget of 0.
   */
  private spills(): boolean {
    if (this.pagedCount > 0) return true;
    if (this.readyCount <= SPILL_MIN_MESSAGES || this.maxPriority !== 0) return false;
    const spill = (this.spill ??= this.host.persistence.openSpill?.(this));
    return spill !== undefined && spill.memoryBudget > 0 && (this.readyCount > SPILL_AFTER_MESSAGES || this.readyBytes > spill.memoryBudget);
  }

  /**
   * A replicated queue's message pulled from its log for this node's consumers: held in memory
   * only (the log keeps it), with its log sequence and the deliveries the log counted.
   */
  enqueuePulled(msg: StoredMessage, logSeq: number, previousDeliveries: number, expiresAt = 0): QueueEntry | undefined {
    if (this.deleted) return undefined;
    const entry = newEntry(msg, logSeq, previousDeliveries, expiresAt, 0);
    entry.returns = previousDeliveries;
    hold(msg);
    this.ownLevels()[0]!.push(entry);
    this.readyCount++;
    this.readyBytes += msg.size;
    this.published++;
    if (expiresAt !== 0) this.scheduleTtl(expiresAt);
    if (this.consumers.length > 0) this.kick();
    return entry;
  }

  /** Recovery: puts a ready entry back at the end of the in-memory messages. */
  restoreEntry(entry: QueueEntry): void {
    hold(entry.msg);
    this.ownLevels()[entry.level]!.push(entry);
    this.readyCount++;
    this.readyBytes += entry.msg.size;
    if (entry.seq > this.seq) this.seq = entry.seq;
    if (entry.expiresAt !== 0) this.scheduleTtl(entry.expiresAt);
  }

  /** Recovery: `count` more persistent messages wait on disk, after every restored entry. */
  restorePaged(count: number, bytes: number): void {
    this.ownLevels();
    this.pagedCount += count;
    this.pagedBytes += bytes;
    this.readyCount += count;
    this.readyBytes += bytes;
  }

  /** Recovery: new messages get sequence numbers above `seq`. */
  restoreSeq(seq: number): void {
    if (seq > this.seq) this.seq = seq;
  }

  /** Level for a recovered or paged-in message. */
  levelFor(msg: StoredMessage): number {
    return this.maxPriority === 0 ? 0 : Math.min(msg.properties.priority ?? 0, this.maxPriority);
  }

  // ---- paging (PageSink) --------------------------------------------------------------------

  /** A paged message was read back: it joins the in-memory ones, after older transient ones. */
  paged(e: QueueEntry): void {
    const head = this.levels[0]!;
    const tail = this.tail;
    while (tail.length > 0 && tail.peek()!.seq < e.seq) head.push(tail.shift()!);
    hold(e.msg);
    this.pagedCount--;
    this.pagedBytes -= e.msg.size;
    head.push(e);
    if (e.expiresAt !== 0) this.scheduleTtl(e.expiresAt);
  }

  pagedLost(bytes: number): void {
    this.pagedCount--;
    this.pagedBytes -= bytes;
    this.readyCount--;
    this.readyBytes -= bytes;
  }

  /** Reads paged (or spilled) messages back into memory; once none is left, the transient tail follows. */
  private pageIn(): void {
    const store = this.store;
    const spill = this.spill;
    if (this.pagedCount > 0 && (store !== undefined || spill !== undefined)) {
      const before = this.pagedCount;
      if (store !== undefined) store.pageIn(Math.max(Math.min(PAGE_IN_BYTES, store.memoryBudget >> 1), 1), this);
      else spill!.pageIn(SPILL_READ_BACK_BYTES, this);
      if (this.pagedCount === before) {
        // The store has nothing more to give: never spin on messages that are not there.
        this.readyCount -= this.pagedCount;
        this.readyBytes -= this.pagedBytes;
        this.pagedCount = 0;
        this.pagedBytes = 0;
      }
    }
    if (this.pagedCount === 0) {
      const head = this.levels[0]!;
      for (let t = this.tail.shift(); t !== undefined; t = this.tail.shift()) head.push(t);
    }
  }

  /** How long a message may wait in this queue (its `expiration`, the queue's `x-message-ttl`: the shorter), if at all. */
  effectiveTtl(msg: StoredMessage): number | undefined {
    const exp = msg.properties.expiration;
    const perMsg = exp === undefined ? undefined : Number(exp);
    if (perMsg === undefined) return this.limits.messageTtl;
    if (this.limits.messageTtl === undefined) return perMsg;
    return Math.min(perMsg, this.limits.messageTtl);
  }

  private isFullFor(size: number): boolean {
    return (
      (this.limits.maxLength !== undefined && this.readyCount >= this.limits.maxLength) ||
      (this.limits.maxLengthBytes !== undefined && this.readyBytes + size > this.limits.maxLengthBytes)
    );
  }

  private dropHeadOverLimit(): void {
    while (
      (this.limits.maxLength !== undefined && this.readyCount > this.limits.maxLength) ||
      (this.limits.maxLengthBytes !== undefined && this.readyBytes > this.limits.maxLengthBytes && this.readyCount > 0)
    ) {
      const e = this.shiftReady();
      if (!e) return;
      this.deadLetterEntry(e, 'maxlen');
    }
  }

  /**
   * The queue's own ready lists, made here on first use. Made before anything is ready or paged, so
   * a queue still on NO_LEVELS has nothing to read back and never writes to the shared list.
   */
  private ownLevels(): readonly ReadyList[] {
    if (this.levels === NO_LEVELS) this.levels = [new ReadyList()];
    return this.levels;
  }

  private topLevel(): ReadyList | undefined {
    const levels = this.levels;
    if (levels.length === 1) {
      const l = levels[0]!;
      if (l.length > 0) return l;
      if (this.pagedCount === 0 && this.tail.length === 0) return undefined;
      this.pageIn();
      return l.length > 0 ? l : undefined;
    }
    for (let i = levels.length - 1; i >= 0; i--) if (levels[i]!.length > 0) return levels[i];
    return undefined;
  }

  private peekReady(): QueueEntry | undefined {
    return this.topLevel()?.peek();
  }

  private shiftReady(): QueueEntry | undefined {
    const e = this.topLevel()?.shift();
    if (e) {
      this.readyCount--;
      this.readyBytes -= e.msg.size;
    }
    return e;
  }

  /** Schedules a dispatch run; runs coalesce within one turn of the event loop. */
  kick(): void {
    if (this.replica !== undefined && this.consumers.length > 0) this.replica.wanted(this);
    if (this.scheduled || this.deleted || this.remote !== undefined) return;
    this.scheduled = true;
    setImmediate(runScheduled, this);
  }

  /** The scheduled dispatch run (see `kick`). */
  runNow(): void {
    this.scheduled = false;
    this.run();
  }

  private run(): void {
    if (this.deleted || this.consumers.length === 0) return;
    let now = 0;
    for (let n = 0; n < DISPATCH_BUDGET; n++) {
      const e = this.peekReady();
      if (e === undefined) return;
      if (e.expiresAt !== 0) {
        if (now === 0) now = Date.now();
        if (e.expiresAt <= now) {
          this.shiftReady();
          this.deadLetterEntry(e, 'expired');
          continue;
        }
      }
      const c = this.pickConsumer();
      if (c === undefined) return;
      this.shiftReady();
      this.deliverTo(c, e);
    }
    if (this.readyCount > 0) this.kick();
  }

  private pickConsumer(): Consumer | undefined {
    const cs = this.consumers;
    const n = cs.length;
    if (n === 0) return undefined;
    if (n === 1 || this.singleActiveConsumer) {
      const c = cs[0]!;
      return c.hasCredit ? c : undefined;
    }
    let best: Consumer | undefined;
    let bestIdx = 0;
    for (let k = 0; k < n; k++) {
      const i = (this.rr + k) % n;
      const c = cs[i]!;
      if ((best === undefined || c.priority > best.priority) && c.hasCredit) {
        best = c;
        bestIdx = i;
      }
    }
    if (best !== undefined) this.rr = (bestIdx + 1) % n;
    return best;
  }

  private deliverTo(c: Consumer, e: QueueEntry): void {
    const trace = latencyTrace;
    if (trace !== null) trace.dispatch();
    const redelivered = e.deliveryCount > 0;
    e.deliveryCount++;
    this.delivered++;
    if (redelivered) this.redelivered++;
    const store = this.store;
    if (store !== undefined && this.replica === undefined && e.msg.persistent && e.seq > store.frontier) store.delivering(e.seq);
    if (!c.noAck) {
      this.unackedCount++;
      c.owner.deliverFromQueue(c, this, e, redelivered);
    } else if (c.owner.deliverFromQueue(c, this, e, redelivered)) this.settle(e);
    else this.undeliverable(e);
  }

  /**
   * basic.get: takes the next ready message. The caller tracks it as unacked unless noAck.
   */
  take(noAck: boolean): { entry: QueueEntry; redelivered: boolean } | undefined {
    this.touch();
    let now = 0;
    for (;;) {
      const e = this.shiftReady();
      if (e === undefined) {
        this.replica?.getEmpty(this);
        return undefined;
      }
      if (e.expiresAt !== 0) {
        if (now === 0) now = Date.now();
        if (e.expiresAt <= now) {
          this.deadLetterEntry(e, 'expired');
          continue;
        }
      }
      const redelivered = e.deliveryCount > 0;
      e.deliveryCount++;
      this.got++;
      const store = this.store;
      if (store !== undefined && this.replica === undefined && e.msg.persistent && e.seq > store.frontier) store.delivering(e.seq);
      if (noAck) this.settle(e);
      else this.unackedCount++;
      return { entry: e, redelivered };
    }
  }

  /** The consumer acknowledged the entry. */
  ack(e: QueueEntry): void {
    if (this.remote !== undefined) return this.remote.settle(this, e, 0);
    this.unackedCount--;
    this.acked++;
    this.settle(e);
  }

  /** The message a consumer receives for an entry (a quorum queue adds `x-delivery-count`). */
  messageFor(e: QueueEntry): StoredMessage {
    return this.type.messageFor(e);
  }

  /**
   * Back to its original position, flagged redelivered. `failed`: the consumer returned it
   * (nack/reject with requeue), which counts against the delivery limit.
   */
  requeue(e: QueueEntry, failed = false): void {
    if (this.remote !== undefined) return this.remote.settle(this, e, failed ? 1 : 3);
    this.unackedCount--;
    if (this.deleted) {
      this.settle(e);
      return;
    }
    if (failed) {
      e.returns++;
      if (this.limits.deliveryLimit !== undefined && e.returns > this.limits.deliveryLimit) {
        this.deadLetterEntry(e, 'delivery_limit');
        return;
      }
      if (this.replica !== undefined) {
        this.giveBack(e, this.limits.requeueDelay !== undefined && this.limits.requeueDelay > 0 ? requeueDelayFor(e.returns, this.limits.requeueDelay, this.limits.requeueDelayMax) : 0);
        return;
      }
      if (this.limits.requeueDelay !== undefined && this.limits.requeueDelay > 0) {
        (this.delays ??= new RequeueDelays((r) => this.requeueReady(r))).hold(e, requeueDelayFor(e.returns, this.limits.requeueDelay, this.limits.requeueDelayMax));
        return;
      }
    }
    if (this.replica !== undefined) this.giveBack(e, 0);
    else this.requeueReady(e);
  }

  /** A replicated queue's entry goes back to its log, not to this node's ready messages. */
  private giveBack(e: QueueEntry, delayMs: number): void {
    release(e.msg);
    this.replica!.returned(this, e, delayMs);
    if (this.consumers.length > 0) this.kick();
  }

  /** A replicated queue without consumers here: what this node pulled goes back for the others. */
  returnPulled(): void {
    if (this.readyCount === 0 || this.replica === undefined) return;
    const back: QueueEntry[] = [];
    for (const level of this.levels) level.drain((e) => back.push(e));
    this.readyCount = 0;
    this.readyBytes = 0;
    for (const e of back) {
      release(e.msg);
      this.replica!.returned(this, e, 0);
    }
  }

  /** Messages returned by a consumer that wait out the queue's requeue delay. */
  get delayedCount(): number {
    return this.delays?.count ?? 0;
  }

  private requeueReady(e: QueueEntry): void {
    if (this.deleted) {
      this.settle(e);
      return;
    }
    this.ownLevels()[e.level]!.requeue(e);
    this.readyCount++;
    this.readyBytes += e.msg.size;
    if (e.expiresAt !== 0) this.scheduleTtl(e.expiresAt);
    if (this.consumers.length > 0) this.kick();
  }

  /**
   * Rejected without requeue: dead-lettered if the queue has a dead-letter exchange.
   * `undeliverable`: by the broker, because the consumer could not be sent it.
   */
  reject(e: QueueEntry, undeliverable = false): void {
    if (this.remote !== undefined) return this.remote.settle(this, e, 2);
    this.unackedCount--;
    if (this.deleted) this.settle(e);
    else this.deadLetterEntry(e, 'rejected', undeliverable);
  }

  /** A no-ack delivery that could not be sent: the entry is rejected by the broker. */
  private undeliverable(e: QueueEntry): void {
    this.deadLetterEntry(e, 'rejected', true);
  }

  /** The message leaves this queue for good. */
  private settle(e: QueueEntry): void {
    release(e.msg);
    if (this.replica !== undefined) {
      this.replica.settled(this, e);
      if (this.consumers.length > 0) this.kick();
      return;
    }
    if (e.pstate !== 0) this.store!.remove(e);
  }

  private deadLetterEntry(e: QueueEntry, reason: DeadLetterReason, undeliverable = false): void {
    if (this.limits.deadLetterExchange !== undefined) this.host.deadLetter(this, e.msg, reason, undeliverable);
    this.settle(e);
  }

  /**
   * Consumers whose connection is closing but not yet torn down (see Teardown) stay attached
   * until then, unable to receive. Whoever needs the queue's consumers as they will be (a new
   * consumer, an if-unused delete) finishes those closes first, so unacknowledged messages are
   * back in order and no departed exclusive consumer stands in the way.
   */
  finishClosingConsumers(): void {
    const cs = this.consumers;
    for (let i = 0; i < cs.length; i++) {
      if (!cs[i]!.owner.closing) continue;
      for (const c of [...cs]) if (c.owner.closing) c.owner.finishClose();
      return;
    }
  }

  addConsumer(c: Consumer): void {
    this.finishClosingConsumers();
    if (c.exclusive && this.consumers.length > 0) {
      throw BrokerError.accessRefused(`queue '${this.name}' in vhost '${this.host.name}' in exclusive use`);
    }
    if (this.consumers.some((x) => x.exclusive)) {
      throw BrokerError.accessRefused(`queue '${this.name}' in vhost '${this.host.name}' in exclusive use`);
    }
    if (this.consumers.length === 0) this.consumers = [c];
    else this.consumers.push(c);
    this.hadConsumer = true;
    if (this.remote !== undefined) {
      this.remote.attach(this, c);
      return;
    }
    this.touch();
    this.kick();
  }

  removeConsumer(c: Consumer): void {
    const i = this.consumers.indexOf(c);
    if (i < 0) return;
    this.consumers.splice(i, 1);
    if (this.rr > i) this.rr--;
    if (this.remote !== undefined) {
      // The home node decides about auto-delete and expiry: its own consumer count includes this one.
      this.remote.detach(this, c);
      return;
    }
    if (this.consumers.length === 0) {
      if (this.replica !== undefined) this.returnPulled();
      if (this.autoDelete && this.hadConsumer) {
        this.host.removeQueue(this);
        return;
      }
      this.touch();
    } else this.kick();
  }

  /** Resets the x-expires timer: the queue was used. */
  touch(): void {
    if (this.limits.expires === undefined || this.deleted) return;
    if (this.expiresTimer) clearTimeout(this.expiresTimer);
    this.expiresTimer = undefined;
    // A queue homed on another node expires there (its stand-in here goes with it).
    if (this.consumers.length > 0 || this.remote !== undefined) return;
    this.armExpires(Date.now() + this.limits.expires);
  }

  private armExpires(deadline: number): void {
    // Node runs a timer of more than 2^31-1 ms after 1 ms: a long x-expires waits in steps
    this.expiresTimer = setTimeout(() => {
      this.expiresTimer = undefined;
      if (Date.now() < deadline) this.armExpires(deadline);
      else if (this.consumers.length === 0 && !this.deleted) this.host.removeQueue(this);
    }, Math.min(Math.max(0, deadline - Date.now()), MAX_TIMER_MS));
    this.expiresTimer.unref();
  }

  private scheduleTtl(at: number): void {
    if (this.ttlTimer !== undefined && this.ttlAt <= at) return;
    if (this.ttlTimer !== undefined) clearTimeout(this.ttlTimer);
    this.ttlAt = at;
    // capped like x-expires: a far expiry is re-checked when the capped timer runs
    this.ttlTimer = setTimeout(expireScheduled, Math.min(Math.max(0, at - Date.now()) + 1, MAX_TIMER_MS), this);
    this.ttlTimer.unref();
  }

  /** Drops expired messages at the head of each level (RabbitMQ expires at the head). */
  expireHeads(): void {
    this.ttlTimer = undefined;
    if (this.deleted) return;
    const now = Date.now();
    let next = 0;
    for (const level of this.levels) {
      for (let e = this.peekLevel(level); e !== undefined; e = this.peekLevel(level)) {
        if (e.expiresAt === 0) break;
        if (e.expiresAt > now) {
          if (next === 0 || e.expiresAt < next) next = e.expiresAt;
          break;
        }
        level.shift();
        this.readyCount--;
        this.readyBytes -= e.msg.size;
        this.deadLetterEntry(e, 'expired');
      }
    }
    if (next !== 0) this.scheduleTtl(next);
  }

  /** The head of a level; a single-level queue reads paged messages back when it runs dry. */
  private peekLevel(level: ReadyList): QueueEntry | undefined {
    const e = level.peek();
    if (e !== undefined || this.levels.length > 1 || (this.pagedCount === 0 && this.tail.length === 0)) return e;
    this.pageIn();
    return level.peek();
  }

  /** Removes all ready messages; returns how many. */
  purge(): number {
    const n = this.readyCount;
    for (const level of this.levels) level.drain((e) => this.settle(e));
    for (let t = this.tail.shift(); t !== undefined; t = this.tail.shift()) this.settle(t);
    if (this.pagedCount > 0) this.store?.dropPaged();
    this.spill?.clear();
    this.pagedCount = 0;
    this.pagedBytes = 0;
    this.readyCount = 0;
    this.readyBytes = 0;
    return n;
  }

  /** Marks the queue deleted: cancels its consumers and drops its ready messages. */
  destroy(): number {
    const n = this.readyCount;
    this.deleted = true;
    this.destroyed = true;
    for (const level of this.levels) level.drain((e) => release(e.msg));
    for (let t = this.tail.shift(); t !== undefined; t = this.tail.shift()) release(t.msg);
    this.pagedCount = 0;
    this.pagedBytes = 0;
    this.readyCount = 0;
    this.readyBytes = 0;
    if (this.delays !== undefined) for (const e of this.delays.drain()) e.msg.refs--;
    this.store?.deleted();
    this.spill?.clear();
    if (this.ttlTimer) clearTimeout(this.ttlTimer);
    if (this.expiresTimer) clearTimeout(this.expiresTimer);
    return n;
  }

  /** Ready messages held in memory, in order, without removing them (management peek). */
  *entries(): IterableIterator<QueueEntry> {
    for (let i = this.levels.length - 1; i >= 0; i--) yield* this.levels[i]!;
  }
}
