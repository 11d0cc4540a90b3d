import type { DeliverySink, FieldTable } from '../types.js';
import type { QueueEntry } from './entry.js';
import type { Queue } from './queue.js';

/** The channel side of a consumer: channel-wide credit and the delivery itself. */
export interface ConsumerOwner {
  /** Id of the owning connection (exclusivity, no-local). */
  readonly connectionId: number;
  /** False while the channel is out of global credit or paused by channel.flow. */
  canDeliver(): boolean;
  /**
   * Hands an entry taken from `queue` to the consumer; false when it could not be delivered (the
   * owner has then rejected an acknowledged delivery; a no-ack one is the queue's to settle).
   */
  deliverFromQueue(consumer: Consumer, queue: Queue, entry: QueueEntry, redelivered: boolean): boolean;
  /** The queue went away: the consumer is gone (AMQP sends basic.cancel). */
  consumerCancelled(consumer: Consumer): void;
  /** The owner's connection is closed and its teardown is still to come (see Teardown). */
  readonly closing: boolean;
  /** Finishes that teardown now. */
  finishClose(): void;
}

export class Consumer {
  /** Deliveries not yet acknowledged. */
  unacked = 0;

  constructor(
    readonly tag: string,
    readonly queue: Queue,
    readonly owner: ConsumerOwner,
    readonly sink: DeliverySink,
    readonly noAck: boolean,
    readonly exclusive: boolean,
    readonly priority: number,
    /** 0 = unlimited. */
    public prefetch: number,
    readonly args: FieldTable,
  ) {}

  get hasCredit(): boolean {
    return (
      (this.noAck || this.prefetch === 0 || this.unacked < this.prefetch) &&
      !this.sink.congested &&
      this.owner.canDeliver()
    );
  }
}
