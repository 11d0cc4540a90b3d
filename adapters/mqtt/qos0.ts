import { Deque, type Delivery, type DeliverySink } from '../../src/core/index.js';

/**
 * QoS 0 messages one session may have waiting for a client that does not keep up (Mosquitto's
 * `max_queued_messages`, whose default is the same); beyond it the oldest is dropped.
 */
export const MAX_QUEUED_QOS0 = 1000;
/** Payload bytes of those messages, beyond which the oldest are dropped too. */
export const MAX_QUEUED_QOS0_BYTES = 8 << 20;

/** What the QoS 0 sink needs from its connection. */
export interface Qos0Host {
  /** The connection's transport is over its high watermark. */
  readonly linkCongested: boolean;
  /** Encodes and writes one delivery (the connection's own deliver). */
  deliverNow(d: Delivery): void;
  /** A delivery that could not be encoded when its turn came (logged by the core, dropped). */
  undeliverable(d: Delivery, err: unknown): void;
  /** Messages dropped for this connection because it did not keep up. */
  dropped(n: number): void;
  cancelled(consumerTag: string): void;
}

/**
 * The sink of a session queue consumed without acknowledgements (every subscription QoS 0). It
 * never reports itself congested, so the queue does not grow behind a client that stops reading:
 * while the connection's link is over its watermark, deliveries wait here, at most
 * MAX_QUEUED_QOS0 (and MAX_QUEUED_QOS0_BYTES), the oldest dropped and counted; they go out in
 * order when the link drains. A QoS 0 message is "at most once": dropping it for a stuck
 * subscriber is what the protocol allows, and the memory it may cost is bounded per session.
 */
export class Qos0Sink implements DeliverySink {
  private waiting: Deque<Delivery> | undefined;
  private bytes = 0;

  constructor(private readonly host: Qos0Host) {}

  get congested(): boolean {
    return false;
  }

  /** Deliveries waiting for the link to drain. */
  get length(): number {
    return this.waiting?.length ?? 0;
  }

  deliver(d: Delivery): void {
    const w = this.waiting;
    if ((w === undefined || w.length === 0) && !this.host.linkCongested) {
      this.host.deliverNow(d);
      return;
    }
    const q = (this.waiting ??= new Deque<Delivery>());
    q.push(d);
    this.bytes += d.message.body.length;
    let dropped = 0;
    while (q.length > MAX_QUEUED_QOS0 || (this.bytes > MAX_QUEUED_QOS0_BYTES && q.length > 1)) {
      this.bytes -= q.shift()!.message.body.length;
      dropped++;
    }
    if (dropped > 0) this.host.dropped(dropped);
    if (!this.host.linkCongested) this.flush();
  }

  /** Writes what waits, in order, until the link is congested again. */
  flush(): void {
    const q = this.waiting;
    if (q === undefined) return;
    while (q.length > 0 && !this.host.linkCongested) {
      const d = q.shift()!;
      this.bytes -= d.message.body.length;
      try {
        this.host.deliverNow(d);
      } catch (err) {
        this.host.undeliverable(d, err);
      }
    }
  }

  cancelled(consumerTag: string): void {
    this.host.cancelled(consumerTag);
  }
}
