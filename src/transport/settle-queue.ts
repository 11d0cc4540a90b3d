import { PauseReason } from './link.js';

/**
 * Unsettled publishes one connection may have, whatever its protocol (AMQP confirms, MQTT QoS 1/2,
 * STOMP receipts): above it the connection stops being read until acknowledgements drain to half.
 */
export const MAX_UNSETTLED_PUBLISHES = 4096;

/** Where a SettleQueue hands the acknowledgements it releases, in the order they were pushed. */
export interface SettleTarget<T> {
  /**
   * `item` is settled and every item pushed before it has been released. `last` is false while
   * more settled items follow in the same run, so acknowledgements can be coalesced.
   */
  settledInOrder(item: T, last: boolean): void;
  /** `item` failed to settle (`err` from the core), in order; `last` as for `settledInOrder`. */
  settleFailed(item: T, err: unknown, last: boolean): void;
}

/** What a SettleQueue needs of the connection's transport (a Link). */
export interface SettleFlow {
  pause(reason: number): void;
  unpause(reason: number): void;
  readonly guard: { contain(err: unknown): void };
}

/**
 * The per-connection bound on unsettled publishes, shared by the connection's SettleQueues (one
 * per AMQP channel, one for an MQTT or STOMP connection): above `bound` the connection stops
 * being read (PauseReason.UNSETTLED) until half have drained.
 */
export class SettleBudget {
  /** Publishes of this connection waiting to be acknowledged to the client. */
  unsettled = 0;
  private paused = false;

  constructor(
    readonly flow: SettleFlow,
    readonly bound = MAX_UNSETTLED_PUBLISHES,
  ) {}

  take(): void {
    if (++this.unsettled > this.bound && !this.paused) {
      this.paused = true;
      this.flow.pause(PauseReason.UNSETTLED);
    }
  }

  give(n: number): void {
    this.unsettled -= n;
    if (this.paused && this.unsettled <= this.bound >> 1) {
      this.paused = false;
      this.flow.unpause(PauseReason.UNSETTLED);
    }
  }
}

const PENDING = 0;
const OK = 1;
const FAILED = 2;
const DROPPED = 3;

interface Entry<T> {
  readonly item: T;
  state: number;
  error: unknown;
}

/**
 * The one ordered "settled -> client acknowledgement" path of every protocol: the core's
 * `settled` results, which complete in any order, become acknowledgements released in publish
 * order (coalesced by the target where the protocol allows it). What waits counts against the
 * connection's SettleBudget. A publish that is already settled, with nothing ahead of it, goes
 * straight to the target without an entry.
 */
export class SettleQueue<T> {
  private entries: Entry<T>[] = [];
  private head = 0;

  constructor(
    private readonly target: SettleTarget<T>,
    private readonly budget: SettleBudget,
  ) {}

  /** Acknowledgements not yet released. */
  get length(): number {
    return this.entries.length - this.head;
  }

  /**
   * Queues the acknowledgement of one publish: `settled` is the core's promise, or undefined when
   * the publish is settled already.
   */
  push(item: T, settled?: Promise<void>): void {
    if (settled === undefined && this.length === 0) {
      this.target.settledInOrder(item, true);
      return;
    }
    const e: Entry<T> = { item, state: settled === undefined ? OK : PENDING, error: undefined };
    this.entries.push(e);
    this.budget.take();
    if (settled !== undefined) {
      settled.then(
        () => this.settle(e, OK, undefined),
        (err: unknown) => this.settle(e, FAILED, err),
      );
    } else this.flush();
  }

  /** The connection is gone: nothing more is released, later settlements are ignored. */
  clear(): void {
    const n = this.length;
    for (let i = this.head; i < this.entries.length; i++) this.entries[i]!.state = DROPPED;
    this.entries = [];
    this.head = 0;
    this.budget.give(n);
  }

  private settle(e: Entry<T>, state: number, err: unknown): void {
    if (e.state !== PENDING) return;
    e.state = state;
    e.error = err;
    try {
      this.flush();
    } catch (thrown) {
      this.budget.flow.guard.contain(thrown);
    }
  }

  private flush(): void {
    const entries = this.entries;
    while (this.head < entries.length) {
      const e = entries[this.head]!;
      if (e.state === PENDING) break;
      this.head++;
      this.budget.give(1);
      const next = entries[this.head];
      const last = next === undefined || next.state === PENDING;
      if (e.state === OK) this.target.settledInOrder(e.item, last);
      else if (e.state === FAILED) this.target.settleFailed(e.item, e.error, last);
      if (this.entries !== entries) return; // cleared by the target
    }
    if (this.head === entries.length) {
      this.entries.length = 0;
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= entries.length) {
      this.entries = entries.slice(this.head);
      this.head = 0;
    }
  }
}
