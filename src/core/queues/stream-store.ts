import type { StoredMessage } from '../types.js';

/** One message of a stream, as readers see it (shared by every reader of the stream). */
export interface StreamRecord {
  readonly offset: number;
  /** Its `x-stream-filter-value`, if the publisher set one. */
  readonly filter: string | undefined;
  /** The message, with header `x-stream-offset` already set. */
  readonly msg: StoredMessage;
}

/** A run of committed records: the chunk holding `offset`, from the first record at or after it. */
export interface StreamSlice {
  readonly records: readonly StreamRecord[];
  /** Index of the first record to deliver. */
  readonly start: number;
  /** The offset after this chunk (chunks that cannot match the filter are skipped). */
  readonly next: number;
}

/** Retention and layout of a stream, from its arguments (or a policy). */
export interface StreamLimits {
  /** Total bytes kept (x-max-length-bytes); whole oldest segments go beyond it. */
  readonly maxBytes: number | undefined;
  /** Age in ms after which a whole segment goes (x-max-age). */
  readonly maxAgeMs: number | undefined;
  /** A segment file is closed once it holds this many bytes (x-stream-max-segment-size-bytes). */
  readonly segmentBytes: number;
  /** Size of each chunk's Bloom filter (x-stream-filter-size-bytes). */
  readonly filterBytes: number;
}

/**
 * The append-only log behind a stream queue. Offsets start at 0 and increase by one per message;
 * records become readable once their chunk is on disk (fsynced), and leave only when retention
 * deletes the whole segment holding them.
 */
export interface StreamStore {
  /** The oldest offset kept (== `end` when empty). */
  readonly first: number;
  /** One past the last committed (readable) offset. */
  readonly end: number;
  /** Bytes of segment files on disk. */
  readonly bytes: number;
  /** Segment files. */
  readonly segments: number;
  /** Called after every commit: new records are readable. */
  onCommit: (() => void) | undefined;
  /** Appends a message; resolves once it is on disk, rejects if the write failed. */
  append(msg: StoredMessage, filter: string | undefined): Promise<void>;
  /**
   * The committed records of the chunk holding `offset` (or the next one that may match the
   * filter) from `offset` on; undefined when nothing at or after `offset` is committed.
   */
  slice(offset: number, filters: readonly string[] | undefined, matchUnfiltered: boolean): StreamSlice | undefined;
  /** The first offset of the last chunk (RabbitMQ's `last`); `end` when empty. */
  lastChunkOffset(): number;
  /** The first offset of the first chunk written at or after `ms` (epoch); `end` if none. */
  offsetAt(ms: number): number;
  setLimits(limits: StreamLimits): void;
  /**
   * Drops every record and makes `offset` the next one appended (a copy of a stream kept
   * elsewhere that starts, or starts again, past its beginning). Only while no append is pending.
   */
  restartAt(offset: number): void;
  /** The stream was deleted: its files go. */
  deleted(): void;
}
