import { BrokerError } from '../errors.js';
import type { FieldTable, FieldValue, StoredMessage } from '../types.js';
import type { Consumer } from './consumer.js';
import { newEntry, type QueueEntry } from './entry.js';
import { Queue, type QueueHost } from './queue.js';
import { describeQueue } from './queue-type.js';
import { parseDuration, streamLimits } from './stream.js';
import type { StreamLimits, StreamRecord, StreamStore } from './stream-store.js';

/**
 * Deliveries per dispatch run before the event loop gets a turn. Small, so deliveries leave in
 * several writes and a consumer's acks can come back (and give credit) while its window is still
 * being sent, rather than one burst per prefetch window.
 */
const DISPATCH_BUDGET = 128;
/**
 * Deliveries one consumer gets in a row before the next consumer's turn: with many consumers,
 * each connection's writes of a turn leave together rather than a few messages at a time.
 */
const CONSUMER_BURST = 32;

/** A consumer's place in the stream. */
interface StreamCursor {
  /** The next offset to look at. */
  next: number;
  /** The chunk being read (shared with every other reader of it) and the index in it. */
  recs: readonly StreamRecord[] | undefined;
  i: number;
  chunkEnd: number;
  /** x-stream-filter values; undefined = every message. */
  readonly filters: readonly string[] | undefined;
  readonly matchUnfiltered: boolean;
  /** Offset of the last message delivered; -1 before the first. */
  last: number;
}

/** Where a consumer starts, from `x-stream-offset` (AMQP argument, STOMP header, MQTT property). */
export function resolveStreamOffset(spec: FieldValue | undefined, log: StreamStore, what: string): number {
  if (spec === undefined || spec === null || spec === 'next') return log.end;
  if (spec === 'first') return log.first;
  if (spec === 'last') return log.lastChunkOffset();
  if (typeof spec === 'number' || typeof spec === 'bigint') {
    const n = Number(spec);
    if (!Number.isInteger(n) || n < 0) throw badOffset(spec, what);
    return Math.min(Math.max(n, log.first), log.end);
  }
  if (spec instanceof Date) return log.offsetAt(spec.getTime());
  if (typeof spec === 'string') {
    // RabbitMQ STOMP's forms, a bare number, or an interval back from now (`1h`, `30m`).
    const s = spec.trim();
    let m = /^(?:offset=)?(\d+)$/.exec(s);
    if (m !== null) return resolveStreamOffset(Number(m[1]), log, what);
    m = /^timestamp=(\d+)$/.exec(s);
    if (m !== null) return log.offsetAt(Number(m[1]) * 1000);
    const ms = parseDuration(s);
    if (ms !== undefined) return log.offsetAt(Date.now() - ms);
  }
  throw badOffset(spec, what);
}

function badOffset(spec: FieldValue, what: string): BrokerError {
  const shown = spec instanceof Date ? spec.toISOString() : typeof spec === 'object' ? `a value of type ${Array.isArray(spec) ? 'array' : 'table'}` : String(spec);
  return BrokerError.precondition(`invalid arg 'x-stream-offset' for ${what}: ${shown} is not first, last, next, an offset, a timestamp or an interval`);
}

function filtersOf(v: FieldValue | undefined, what: string): string[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return [v];
  if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string')) return v as string[];
  throw BrokerError.precondition(`invalid arg 'x-stream-filter' for ${what}: expected a string or an array of strings`);
}

/**
 * A stream queue: every routed message is appended to a log and stays there until retention
 * deletes its segment. Each consumer reads from its own offset through a cursor; a delivery carries
 * header `x-stream-offset`, and its ack only gives credit back. Many consumers read one copy: the
 * log's chunks (and their decoded messages) are shared.
 */
export class StreamQueue extends Queue {
  readonly log: StreamStore;
  private readonly cursors = new Map<Consumer, StreamCursor>();
  private streamScheduled = false;
  private readonly what: string;
  private currentLimits: StreamLimits;
  /** Told when a policy changes the stream's retention (a cluster keeps its replicated copy in step). */
  limitsChanged: ((limits: StreamLimits) => void) | undefined = undefined;

  constructor(host: QueueHost, name: string, args: FieldTable, effectiveArgs: FieldTable = args) {
    super(host, name, true, false, false, args, 0, effectiveArgs);
    this.what = describeQueue(host.name, name);
    const open = host.persistence.openStream;
    if (open === undefined) throw BrokerError.notImplemented(`streams need a data directory (${this.what})`);
    this.currentLimits = streamLimits(host.name, name, effectiveArgs);
    this.log = open.call(host.persistence, this, this.currentLimits);
    this.log.onCommit = this.committed;
    this.readyCount = this.log.end - this.log.first;
  }

  private readonly committed = (): void => {
    this.readyCount = this.log.end - this.log.first;
    if (this.consumers.length > 0) this.kick();
  };

  override enqueue(msg: StoredMessage): Promise<void> | undefined | false {
    if (this.deleted) return undefined;
    const f = msg.properties.headers?.['x-stream-filter-value'];
    this.stats.published++;
    return this.log.append(msg, typeof f === 'string' ? f : undefined);
  }

  override applyArguments(effective: FieldTable): void {
    super.applyArguments(effective);
    try {
      this.currentLimits = streamLimits(this.host.name, this.name, effective);
      this.log.setLimits(this.currentLimits);
      this.limitsChanged?.(this.currentLimits);
    } catch {
      // a policy with a value streams cannot use keeps the limits as they were
    }
    this.readyCount = this.log.end - this.log.first;
  }

  /** Retention and layout now (declared arguments with a matching policy folded in). */
  get streamLimits(): StreamLimits {
    return this.currentLimits;
  }

  override take(): { entry: QueueEntry; redelivered: boolean } | undefined {
    throw BrokerError.notImplemented(`basic.get not supported by stream queues ${this.what}`);
  }

  override ack(): void {
    this.unackedCount--;
    this.stats.acked++;
  }

  /** A nack or reject of a stream delivery only gives the credit back, as an ack does. */
  override requeue(): void {
    this.unackedCount--;
  }

  override reject(): void {
    this.unackedCount--;
  }

  override purge(): number {
    return 0;
  }

  override addConsumer(c: Consumer): void {
    if (c.prefetch === 0) throw BrokerError.precondition(`consumer prefetch count is not set for '${this.what}'`);
    if (c.noAck) throw BrokerError.notImplemented(`automatic acknowledgement not supported by stream queues ${this.what}`);
    const next = resolveStreamOffset(c.args['x-stream-offset'], this.log, this.what);
    const filters = filtersOf(c.args['x-stream-filter'], this.what);
    const cursor: StreamCursor = { next, recs: undefined, i: 0, chunkEnd: next, filters, matchUnfiltered: c.args['x-stream-match-unfiltered'] === true, last: -1 };
    super.addConsumer(c);
    this.cursors.set(c, cursor);
  }

  override removeConsumer(c: Consumer): void {
    this.cursors.delete(c);
    super.removeConsumer(c);
  }

  /** The offset a consumer will read next, and the last one it was sent (-1: none yet). */
  consumerOffset(c: Consumer): { next: number; last: number } | undefined {
    const cur = this.cursors.get(c);
    return cur === undefined ? undefined : { next: cur.next, last: cur.last };
  }

  /** Committed records from `offset` on, at most `count`, without consuming them (management). */
  peek(offset: number, count: number): StreamRecord[] {
    const out: StreamRecord[] = [];
    let at = Math.max(offset, this.log.first);
    while (out.length < count && at < this.log.end) {
      const s = this.log.slice(at, undefined, false);
      if (s === undefined) break;
      for (let i = s.start; i < s.records.length && out.length < count; i++) out.push(s.records[i]!);
      at = s.next;
    }
    return out;
  }

  override kick(): void {
    if (this.streamScheduled || this.deleted) return;
    this.streamScheduled = true;
    setImmediate(this.runStream);
  }

  private readonly runStream = (): void => {
    this.streamScheduled = false;
    if (this.deleted) return;
    let budget = DISPATCH_BUDGET;
    let progress = true;
    const burst = this.consumers.length > 1 ? CONSUMER_BURST : 1;
    const total = burst === 1 ? budget : budget * Math.min(this.consumers.length, 8);
    budget = total;
    while (budget > 0 && progress) {
      progress = false;
      for (const c of this.consumers) {
        const cur = this.cursors.get(c);
        if (cur === undefined) continue;
        for (let n = 0; n < burst && budget > 0 && c.hasCredit; n++) {
          const r = this.nextRecord(cur);
          if (r === undefined) break;
          cur.last = r.offset;
          this.unackedCount++;
          this.stats.delivered++;
          c.owner.deliverFromQueue(c, this, newEntry(r.msg, r.offset, 1, 0, 0), false);
          progress = true;
          budget--;
        }
        if (budget === 0) break;
      }
    }
    if (budget === 0) this.kick();
  };

  private nextRecord(cur: StreamCursor): StreamRecord | undefined {
    const log = this.log;
    for (;;) {
      const recs = cur.recs;
      if (recs !== undefined) {
        while (cur.i < recs.length) {
          const r = recs[cur.i++]!;
          if (r.offset < cur.next) continue;
          cur.next = r.offset + 1;
          if (cur.filters !== undefined && !(r.filter === undefined ? cur.matchUnfiltered : cur.filters.includes(r.filter))) continue;
          return r;
        }
        if (cur.next < cur.chunkEnd) cur.next = cur.chunkEnd;
        cur.recs = undefined;
      }
      if (cur.next < log.first) cur.next = log.first;
      if (cur.next >= log.end) return undefined;
      const s = log.slice(cur.next, cur.filters, cur.matchUnfiltered);
      if (s === undefined) return undefined;
      cur.chunkEnd = s.next;
      if (s.records.length === 0) {
        cur.next = s.next;
        continue;
      }
      cur.recs = s.records;
      cur.i = s.start;
    }
  }

  override destroy(): number {
    const n = this.readyCount;
    super.destroy();
    this.cursors.clear();
    this.log.deleted();
    return n;
  }
}
