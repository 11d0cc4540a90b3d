import type { QueueEntry } from './queues/entry.js';
import type { Queue } from './queues/queue.js';
import type { StreamLimits, StreamStore } from './queues/stream-store.js';
import { SETTLED } from './types.js';

/**
 * Which durable definition changed. Without one, the change is to users, vhosts, permissions,
 * topic permissions or policies (small sets the store compares as a whole).
 */
export type DefinitionChange =
  | { readonly kind: 'exchange' | 'queue'; readonly vhost: string; readonly name: string }
  /** `key` is the binding's key in its source exchange's `bindings`. */
  | { readonly kind: 'binding'; readonly vhost: string; readonly source: string; readonly key: string };

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
  /**
   * The log of a stream queue (`x-queue-type: stream`), opened (and recovered) once when the queue
   * is created. Without it streams cannot be declared.
   */
  openStream?(queue: Queue, limits: StreamLimits): StreamStore;
  /**
   * Off-heap room for the ready messages of a memory-only queue, asked for once the queue holds
   * many (see {@link QueueSpill}). Without it such queues keep all of theirs on the heap.
   */
  openSpill?(queue: Queue): QueueSpill;
  /**
   * A durable definition changed (an exchange, queue or binding; without `change`: vhosts, users,
   * permissions, topic permissions, policies). The store writes the current state of what changed
   * with the next group commit. Resolves once it is on disk (fsynced); rejects (a 541 BrokerError)
   * if the write failed. The core ignores the promise (a reply waits through
   * {@link definitionsSettled}), so it must not count as an unhandled rejection when nobody waits.
   */
  definitionsChanged(change?: DefinitionChange): Promise<void>;
  /**
   * Resolves once every definition change made so far is on disk; {@link SETTLED} itself when
   * none is waiting, so a caller can answer at once without allocating.
   */
  definitionsSettled(): Promise<void>;
}

/** Receives messages read back from disk by {@link QueueStore.pageIn}, in queue order. */
export interface PageSink {
  paged(entry: QueueEntry): void;
  /** A paged message could not be read back (corrupt record); it is gone. */
  pagedLost(bytes: number): void;
}

/**
 * Where a memory-only queue keeps ready messages off the JavaScript heap once it holds many: in
 * order, encoded, read back oldest first. They cost the garbage collector nothing there. Nothing
 * is written to disk.
 */
export interface QueueSpill {
  /** Bytes of messages (their `size`) the queue keeps on the heap before it spills; 0 = never spill. */
  readonly memoryBudget: number;
  /** Keeps a copy of a ready entry and its message (the queue drops the objects). */
  push(entry: QueueEntry): void;
  /** Reads spilled entries back, oldest first: at most about `maxBytes`, at least one if any. */
  pageIn(maxBytes: number, sink: PageSink): void;
  /** Drops every spilled entry (purge, delete). */
  clear(): void;
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
  definitionsChanged: () => SETTLED,
  definitionsSettled: () => SETTLED,
};
