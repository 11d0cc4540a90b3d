import { BrokerError } from '../errors.js';
import type { Persistence } from '../persistence.js';
import type { FieldTable, FieldValue, StoredMessage } from '../types.js';
import type { Consumer } from './consumer.js';
import type { QueueEntry } from './entry.js';
import { ReadyList } from './ready-list.js';

/** Why a message left a queue without being acknowledged (x-death `reason`). */
export type DeadLetterReason = 'rejected' | 'expired' | 'maxlen' | 'delivery_limit';

/** What a queue needs from its vhost. */
export interface QueueHost {
  readonly name: string;
  readonly persistence: Persistence;
  deadLetter(queue: Queue, msg: StoredMessage, reason: DeadLetterReason): void;
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

function strArg(args: FieldTable, name: string): string | undefined {
  const v = args[name];
  return typeof v === 'string' ? v : undefined;
}

/**
 * A queue: ready messages in order, delivery to consumers by credit, TTL, length limits and
 * dead-lettering. Unacknowledged messages are held by the channels that received them.
 */
export class Queue {
  /** Key for the store: `<vhost>/<name>` is unique broker-wide. */
  readonly id: string;
  readonly consumers: Consumer[] = [];
  readonly stats: QueueStats = { published: 0, delivered: 0, redelivered: 0, acked: 0, got: 0 };
  readyCount = 0;
  readyBytes = 0;
  unackedCount = 0;
  deleted = false;
  /** Set once a consumer has ever attached (auto-delete needs it). */
  private hadConsumer = false;
  private readonly levels: ReadyList[];
  private seq = 0;
  private rr = 0;
  private scheduled = false;
  private ttlTimer: NodeJS.Timeout | undefined;
  private ttlAt = 0;
  private expiresTimer: NodeJS.Timeout | undefined;

  readonly messageTtl: number | undefined;
  readonly expires: number | undefined;
  readonly maxLength: number | undefined;
  readonly maxLengthBytes: number | undefined;
  readonly overflow: Overflow;
  readonly deadLetterExchange: string | undefined;
  readonly deadLetterRoutingKey: string | undefined;
  readonly maxPriority: number;
  readonly singleActiveConsumer: boolean;

  constructor(
    readonly host: QueueHost,
    readonly name: string,
    readonly durable: boolean,
    readonly exclusive: boolean,
    readonly autoDelete: boolean,
    readonly args: FieldTable,
    /** Owning connection id for exclusive queues, else 0. */
    readonly owner: number,
  ) {
    this.id = `${host.name}/${name}`;
    this.messageTtl = intArg(args, 'x-message-ttl', 0, name);
    this.expires = intArg(args, 'x-expires', 1, name);
    this.maxLength = intArg(args, 'x-max-length', 0, name);
    this.maxLengthBytes = intArg(args, 'x-max-length-bytes', 0, name);
    this.maxPriority = Math.min(intArg(args, 'x-max-priority', 0, name) ?? 0, 255);
    const overflow = strArg(args, 'x-overflow') ?? 'drop-head';
    if (overflow !== 'drop-head' && overflow !== 'reject-publish' && overflow !== 'reject-publish-dlx') {
      throw BrokerError.precondition(`invalid arg 'x-overflow' for queue '${name}': '${overflow}'`);
    }
    this.overflow = overflow;
    this.deadLetterExchange = strArg(args, 'x-dead-letter-exchange');
    this.deadLetterRoutingKey = strArg(args, 'x-dead-letter-routing-key');
    this.singleActiveConsumer = args['x-single-active-consumer'] === true;
    this.levels = [];
    for (let i = 0; i <= this.maxPriority; i++) this.levels.push(new ReadyList());
    this.touch();
  }

  get consumerCount(): number {
    return this.consumers.length;
  }

  /** Whether persistent messages in this queue go to the store. */
  private persists(msg: StoredMessage): boolean {
    return this.durable && msg.persistent;
  }

  /**
   * Appends a routed message. Returns the store's promise for a persisted message, undefined when
   * nothing is pending, or false when the queue refused it (x-overflow reject-publish).
   */
  enqueue(msg: StoredMessage): Promise<void> | undefined | false {
    if (this.deleted) return undefined;
    if (this.overflow !== 'drop-head' && this.isFullFor(msg.size)) {
      if (this.overflow === 'reject-publish-dlx') this.host.deadLetter(this, msg, 'maxlen');
      return false;
    }
    let expiresAt = 0;
    const ttl = this.effectiveTtl(msg);
    if (ttl !== undefined) expiresAt = Date.now() + ttl;
    const level = this.maxPriority === 0 ? 0 : Math.min(msg.properties.priority ?? 0, this.maxPriority);
    const entry: QueueEntry = { msg, seq: ++this.seq, deliveryCount: 0, expiresAt, level };
    msg.refs++;
    this.levels[level]!.push(entry);
    this.readyCount++;
    this.readyBytes += msg.size;
    this.stats.published++;
    const pending = this.persists(msg) ? this.host.persistence.enqueue(this.id, entry) : undefined;
    if (this.overflow === 'drop-head') this.dropHeadOverLimit();
    if (expiresAt !== 0) this.scheduleTtl(expiresAt);
    if (this.consumers.length > 0) this.kick();
    return pending;
  }

  /** Puts a recovered entry back (the store's recovery path); keeps its delivery count. */
  restore(msg: StoredMessage, deliveryCount: number): QueueEntry {
    const level = this.maxPriority === 0 ? 0 : Math.min(msg.properties.priority ?? 0, this.maxPriority);
    const entry: QueueEntry = { msg, seq: ++this.seq, deliveryCount, expiresAt: 0, level };
    msg.refs++;
    this.levels[level]!.push(entry);
    this.readyCount++;
    this.readyBytes += msg.size;
    return entry;
  }

  private effectiveTtl(msg: StoredMessage): number | undefined {
    const exp = msg.properties.expiration;
    const perMsg = exp === undefined ? undefined : Number(exp);
    if (perMsg === undefined) return this.messageTtl;
    if (this.messageTtl === undefined) return perMsg;
    return Math.min(perMsg, this.messageTtl);
  }

  private isFullFor(size: number): boolean {
    return (
      (this.maxLength !== undefined && this.readyCount >= this.maxLength) ||
      (this.maxLengthBytes !== undefined && this.readyBytes + size > this.maxLengthBytes)
    );
  }

  private dropHeadOverLimit(): void {
    while (
      (this.maxLength !== undefined && this.readyCount > this.maxLength) ||
      (this.maxLengthBytes !== undefined && this.readyBytes > this.maxLengthBytes && this.readyCount > 0)
    ) {
      const e = this.shiftReady();
      if (!e) return;
      this.deadLetterEntry(e, 'maxlen');
    }
  }

  private topLevel(): ReadyList | undefined {
    const levels = this.levels;
    if (levels.length === 1) return levels[0]!.length > 0 ? levels[0] : undefined;
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
    if (this.scheduled || this.deleted) return;
    this.scheduled = true;
    setImmediate(this.runBound);
  }

  private readonly runBound = (): void => {
    this.scheduled = false;
    this.run();
  };

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
    const redelivered = e.deliveryCount > 0;
    e.deliveryCount++;
    this.stats.delivered++;
    if (redelivered) this.stats.redelivered++;
    if (c.noAck) {
      this.settle(e);
    } else {
      this.unackedCount++;
      if (this.persists(e.msg)) this.host.persistence.delivered(this.id, e);
    }
    c.owner.deliverFromQueue(c, this, e, redelivered);
  }

  /**
   * basic.get: takes the next ready message. The caller tracks it as unacked unless noAck.
   */
  take(noAck: boolean): { entry: QueueEntry; redelivered: boolean } | undefined {
    this.touch();
    let now = 0;
    for (;;) {
      const e = this.shiftReady();
      if (e === undefined) return undefined;
      if (e.expiresAt !== 0) {
        if (now === 0) now = Date.now();
        if (e.expiresAt <= now) {
          this.deadLetterEntry(e, 'expired');
          continue;
        }
      }
      const redelivered = e.deliveryCount > 0;
      e.deliveryCount++;
      this.stats.got++;
      if (noAck) this.settle(e);
      else {
        this.unackedCount++;
        if (this.persists(e.msg)) this.host.persistence.delivered(this.id, e);
      }
      return { entry: e, redelivered };
    }
  }

  /** The consumer acknowledged the entry. */
  ack(e: QueueEntry): void {
    this.unackedCount--;
    this.stats.acked++;
    this.settle(e);
  }

  /** Back to its original position, flagged redelivered. */
  requeue(e: QueueEntry): void {
    this.unackedCount--;
    if (this.deleted) {
      this.settle(e);
      return;
    }
    this.levels[e.level]!.requeue(e);
    this.readyCount++;
    this.readyBytes += e.msg.size;
    if (e.expiresAt !== 0) this.scheduleTtl(e.expiresAt);
    if (this.consumers.length > 0) this.kick();
  }

  /** Rejected without requeue: dead-lettered if the queue has a dead-letter exchange. */
  reject(e: QueueEntry): void {
    this.unackedCount--;
    if (this.deleted) this.settle(e);
    else this.deadLetterEntry(e, 'rejected');
  }

  /** The message leaves this queue for good. */
  private settle(e: QueueEntry): void {
    e.msg.refs--;
    if (this.persists(e.msg)) this.host.persistence.remove(this.id, e);
  }

  private deadLetterEntry(e: QueueEntry, reason: DeadLetterReason): void {
    if (this.deadLetterExchange !== undefined) this.host.deadLetter(this, e.msg, reason);
    this.settle(e);
  }

  addConsumer(c: Consumer): void {
    if (c.exclusive && this.consumers.length > 0) {
      throw BrokerError.accessRefused(`queue '${this.name}' in vhost '${this.host.name}' in exclusive use`);
    }
    if (this.consumers.some((x) => x.exclusive)) {
      throw BrokerError.accessRefused(`queue '${this.name}' in vhost '${this.host.name}' in exclusive use`);
    }
    this.consumers.push(c);
    this.hadConsumer = true;
    this.touch();
    this.kick();
  }

  removeConsumer(c: Consumer): void {
    const i = this.consumers.indexOf(c);
    if (i < 0) return;
    this.consumers.splice(i, 1);
    if (this.rr > i) this.rr--;
    if (this.consumers.length === 0) {
      if (this.autoDelete && this.hadConsumer) {
        this.host.removeQueue(this);
        return;
      }
      this.touch();
    } else this.kick();
  }

  /** Resets the x-expires timer: the queue was used. */
  touch(): void {
    if (this.expires === undefined || this.deleted) return;
    if (this.expiresTimer) clearTimeout(this.expiresTimer);
    this.expiresTimer = undefined;
    if (this.consumers.length > 0) return;
    this.expiresTimer = setTimeout(() => {
      this.expiresTimer = undefined;
      if (this.consumers.length === 0 && !this.deleted) this.host.removeQueue(this);
    }, this.expires);
    this.expiresTimer.unref();
  }

  private scheduleTtl(at: number): void {
    if (this.ttlTimer !== undefined && this.ttlAt <= at) return;
    if (this.ttlTimer !== undefined) clearTimeout(this.ttlTimer);
    this.ttlAt = at;
    this.ttlTimer = setTimeout(this.expireHeads, Math.max(0, at - Date.now()) + 1);
    this.ttlTimer.unref();
  }

  /** Drops expired messages at the head of each level (RabbitMQ expires at the head). */
  private readonly expireHeads = (): void => {
    this.ttlTimer = undefined;
    if (this.deleted) return;
    const now = Date.now();
    let next = 0;
    for (const level of this.levels) {
      for (let e = level.peek(); e !== undefined; e = level.peek()) {
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
  };

  /** Removes all ready messages; returns how many. */
  purge(): number {
    const n = this.readyCount;
    for (const level of this.levels) level.drain((e) => this.settle(e));
    this.readyCount = 0;
    this.readyBytes = 0;
    return n;
  }

  /** Marks the queue deleted: cancels its consumers and drops its ready messages. */
  destroy(): number {
    const n = this.readyCount;
    this.deleted = true;
    for (const level of this.levels) level.drain((e) => (e.msg.refs--));
    this.readyCount = 0;
    this.readyBytes = 0;
    if (this.durable) this.host.persistence.clear(this.id, true);
    if (this.ttlTimer) clearTimeout(this.ttlTimer);
    if (this.expiresTimer) clearTimeout(this.expiresTimer);
    return n;
  }

  /** Ready messages in order, without removing them (management peek, store snapshot). */
  *entries(): IterableIterator<QueueEntry> {
    for (let i = this.levels.length - 1; i >= 0; i--) yield* this.levels[i]!;
  }
}
