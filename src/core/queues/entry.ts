import type { StoredMessage } from '../types.js';

/** A message's place in one queue; the message itself is shared between queues. */
export interface QueueEntry {
  readonly msg: StoredMessage;
  /** Per-queue publish order; requeued messages return to this position. */
  readonly seq: number;
  /** Deliveries so far (0 = never delivered; >0 means redelivered). */
  deliveryCount: number;
  /** Absolute expiry in ms since the epoch; 0 = never. */
  expiresAt: number;
  /** Priority level index (0 when the queue has no priorities). */
  level: number;
}
