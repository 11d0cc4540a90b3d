import type { QueueEntry } from './queues/entry.js';
import type { Queue } from './queues/queue.js';

/**
 * What the core asks of durable storage: one {@link QueueStore} per durable queue, and a hook for
 * definition changes. The core calls these synchronously on its hot path; an implementation batches
 * writes and fsyncs them together (group commit).
 */
export interface Persistence {
  /**
   * The store of a durable queue, called once when the queue is created (declared or recovered).
   * Undefined keeps the queue in memory only.
   */
  openQueue(queue: Queue): QueueStore | undefined;
  /** Durable definitions changed: vhosts, exchanges, queues, bindings, users, permissions. */
  definitionsChanged(): void;
}

/** Receives messages read back from disk by {@link QueueStore.pageIn}, in queue order. */
export interface PageSink {
  paged(entry: QueueEntry): void;
  /** A paged message could not be read back (corrupt record); it is gone. */
  pagedLost(bytes: number): void;
}

/** The persistent messages of one durable queue. */
export interface QueueStore {
  /**
   * Ready messages are kept in memory up to about this many bytes (body + overhead); beyond it,
   * persistent messages are paged out: written and dropped from memory, read back in order.
   * 0 = never page.
   */
  readonly memoryBudget: number;
  /**
   * Every message with a sequence number <= this may have been delivered: recovery flags those
   * redelivered. Raise it with {@link delivering} before delivering anything above it.
   */
  readonly frontier: number;
  /**
   * Records a persistent message entering the queue. `paged`: the queue keeps no copy and reads it
   * back with {@link pageIn}. Resolves once the record is on disk (fsynced), rejects if the write
   * failed.
   */
  enqueue(entry: QueueEntry, paged: boolean): Promise<void>;
  /** The message left the queue for good (acked, dropped, expired, dead-lettered, purged). */
  remove(entry: QueueEntry): void;
  /** Raises the frontier above `seq` (written before it returns). */
  delivering(seq: number): void;
  /** Reads paged messages back, oldest first, about `maxBytes` of them. */
  pageIn(maxBytes: number, sink: PageSink): void;
  /** Every paged message is dropped (purge). */
  dropPaged(): void;
  /** The queue was deleted: its records go. */
  deleted(): void;
}

/** Keeps nothing: every queue is memory-only. */
export const NO_PERSISTENCE: Persistence = {
  openQueue: () => undefined,
  definitionsChanged: () => undefined,
};
