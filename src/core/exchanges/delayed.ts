import { DueQueue } from '../delay-heap.js';
import { BrokerError } from '../errors.js';
import { SETTLED, type FieldTable, type FieldValue, type Message, type PublishResult } from '../types.js';
import type { Exchange } from './exchange.js';
import { HeldMessages, type HeldCodec } from './held.js';

/** The exchange type of the (archived) rabbitmq-delayed-message-exchange plugin. */
export const DELAYED_EXCHANGE_TYPE = 'x-delayed-message';

/** Delays above this route at once, as the plugin does (Erlang's largest timer: 2^32 - 1 ms). */
export const MAX_DELAY_MS = 0xffffffff;

/** Released messages routed per turn of the event loop; the rest follow after I/O has run. */
const RELEASE_BUDGET = 4096;

/**
 * The routing type of an `x-delayed-message` exchange: its `x-delayed-type` argument, with the
 * plugin's errors when it is missing or names the delayed type itself.
 */
export function delayedTypeOf(args: FieldTable): string {
  const t = args['x-delayed-type'];
  if (t === DELAYED_EXCHANGE_TYPE) {
    throw BrokerError.precondition(`Invalid argument, 'x-delayed-type' can't be '${DELAYED_EXCHANGE_TYPE}'`);
  }
  if (typeof t !== 'string' || t === '') {
    throw BrokerError.precondition(`Invalid argument, 'x-delayed-type' must be an existing exchange type`);
  }
  return t;
}

/**
 * The `x-delay` header of a message published to a delayed exchange, in ms: undefined when the
 * message is to be routed now (missing, not a number, zero, negative or beyond {@link MAX_DELAY_MS}).
 */
export function delayOf(headers: FieldTable | undefined): number | undefined {
  if (headers === undefined) return undefined;
  const v: FieldValue | undefined = headers['x-delay'];
  if (v === undefined) return undefined;
  const n = typeof v === 'bigint' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isFinite(n)) return undefined;
  const ms = Math.floor(n);
  return ms > 0 && ms <= MAX_DELAY_MS ? ms : undefined;
}

/** Durable storage of held messages (persistent messages to durable exchanges). */
export interface DelayedStore {
  /** Writes a held message; `written` resolves once it is on disk. */
  add(vhost: string, exchange: string, due: number, msg: Message): { key: string; written: Promise<void> };
  /** The message was released (and its routing settled) or dropped. */
  remove(key: string): void;
  /** Every stored message, for recovery. */
  load(): Iterable<{ key: string; vhost: string; exchange: string; due: number; message: Message }>;
}

/** What the holder needs from its vhost. */
export interface DelayedHost {
  /** Routes a released message through `ex` as a publish of it would, without delaying it again. */
  releaseDelayed(ex: Exchange, msg: Message, publisherId: number): PublishResult;
}

/**
 * Messages held by one exchange until they are due, then routed as the exchange routes. A binary
 * heap keyed by due time and a single timer for the earliest: O(log n) per message, and routing
 * of other messages never looks at the held ones.
 */
export class DelayedMessages {
  /** Slots of `held`, by due time. */
  private readonly due: DueQueue<number>;
  private readonly held: HeldMessages;

  constructor(
    readonly exchange: Exchange,
    private readonly host: DelayedHost,
    /** Set for a durable exchange when the broker has a store. */
    private readonly store: DelayedStore | undefined,
    codec: HeldCodec | undefined,
  ) {
    this.held = new HeldMessages(codec);
    this.due = new DueQueue((slot) => this.route(slot), RELEASE_BUDGET);
  }

  /** Messages waiting. */
  get count(): number {
    return this.due.size;
  }

  /**
   * Holds `msg` for `delay` ms. The result reports no route (a mandatory publish comes back, as
   * with the plugin) and settles once a persistent message to a durable exchange is on disk.
   */
  hold(msg: Message, publisherId: number, delay: number): PublishResult {
    const due = Date.now() + delay;
    let settled = SETTLED;
    let key: string | undefined;
    if (this.store !== undefined && msg.properties.deliveryMode === 2) {
      const w = this.store.add(this.exchange.vhost, this.exchange.name, due, msg);
      key = w.key;
      settled = w.written;
    }
    this.due.push(due, this.held.put(msg, publisherId, key));
    return { routed: 0, settled, delayed: true };
  }

  /** Recovery: a stored message is held again (already on disk). */
  restore(key: string, due: number, msg: Message): void {
    this.due.push(due, this.held.put(msg, 0, key));
  }

  /** The exchange was deleted: held messages are dropped, stored ones deleted. */
  destroy(): void {
    for (const slot of this.due.stop()) {
      const key = this.held.key(slot);
      if (key !== undefined) this.store!.remove(key);
      this.held.free(slot);
    }
  }

  private route(slot: number): void {
    const held = this.held;
    const key = held.key(slot);
    let r: PublishResult | undefined;
    try {
      const msg = held.message(slot);
      const publisherId = held.publisher(slot);
      held.free(slot);
      r = this.host.releaseDelayed(this.exchange, msg, publisherId);
    } catch {
      r = undefined; // the exchange went away meanwhile (or the bytes are unreadable): the message is dropped
    }
    if (key === undefined) {
      if (r !== undefined && r.settled !== SETTLED) r.settled.catch(() => undefined);
      return;
    }
    const store = this.store!;
    // The stored copy goes only once the queues hold the message durably (a crash in between
    // releases it again: at least once).
    if (r === undefined || r.settled === SETTLED) store.remove(key);
    else
      r.settled.then(
        () => store.remove(key),
        () => store.remove(key),
      );
  }
}
