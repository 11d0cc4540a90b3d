import type { StoredMessage } from '../types.js';

/** A message's place in one queue; the message itself is shared between queues. */
export interface QueueEntry {
  readonly msg: StoredMessage;
  /** Per-queue publish order; requeued messages return to this position. */
  readonly seq: number;
  /** Deliveries so far (0 = never delivered; >0 means redelivered). */
  deliveryCount: number;
  /** Failed deliveries: returned by nack/reject with requeue (a quorum queue's delivery count). */
  returns: number;
  /** Absolute expiry in ms since the epoch; 0 = never. */
  expiresAt: number;
  /** Priority level index (0 when the queue has no priorities). */
  level: number;
  /** Store bookkeeping, 0 while the entry is not persisted (the store's own states otherwise). */
  pstate: number;
  /** Segment number and byte offset of the entry's record in its queue's log. */
  seg: number;
  pos: number;
  /** Shared message segment holding the body when it is stored once for several queues, else 0. */
  mseg: number;
}

/** Creates an entry; every entry has the same shape, whichever path made it. */
export function newEntry(msg: StoredMessage, seq: number, deliveryCount: number, expiresAt: number, level: number): QueueEntry {
  return { msg, seq, deliveryCount, returns: 0, expiresAt, level, pstate: 0, seg: 0, pos: 0, mseg: 0 };
}
