import type { QueueEntry } from './queues/entry.js';

/**
 * What the core asks of durable storage. The core calls these synchronously on its hot path; an
 * implementation batches writes and fsyncs them together (group commit).
 */
export interface Persistence {
  /**
   * Records a persistent message entering durable queue `queueId`. Returns a promise that resolves
   * once the record is on disk, or undefined when nothing has to be waited for.
   */
  enqueue(queueId: string, entry: QueueEntry): Promise<void> | undefined;
  /** The message left the queue for good (acked, dropped, expired, dead-lettered). */
  remove(queueId: string, entry: QueueEntry): void;
  /** The message was delivered (so recovery marks it redelivered). */
  delivered(queueId: string, entry: QueueEntry): void;
  /** All messages of the queue are gone (purge or delete). */
  clear(queueId: string, deleted: boolean): void;
  /** Durable definitions changed: vhosts, exchanges, queues, bindings, users, permissions. */
  definitionsChanged(): void;
}

/** Keeps nothing: every queue is memory-only. */
export const NO_PERSISTENCE: Persistence = {
  enqueue: () => undefined,
  remove: () => undefined,
  delivered: () => undefined,
  clear: () => undefined,
  definitionsChanged: () => undefined,
};
