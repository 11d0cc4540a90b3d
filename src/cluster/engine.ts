/**
 * What a Warren node asks of the distributed engine, in the broker's terms. The cluster code is
 * written against these interfaces only; `nats/` implements them on NATS JetStream and
 * `memory-engine.ts` in one process (unit tests). The single-node broker uses none of it.
 */

/** A handler for messages on a subject; `reply` is set when the sender waits for an answer. */
export type BusHandler = (data: Uint8Array, subject: string, reply: ((data: Uint8Array) => void) | undefined) => void;

export interface BusSubscription {
  unsubscribe(): void;
}

/**
 * The routing fabric between nodes: fire-and-forget messages on subjects (at most once), and
 * requests that wait for one answer. Subjects are dot-separated tokens; `*` matches one token and
 * `>` the rest, as in NATS.
 */
export interface ClusterBus {
  publish(subject: string, data: Uint8Array): void;
  subscribe(subject: string, handler: BusHandler, opts?: { queueGroup?: string }): BusSubscription;
  /** Rejects with {@link NoResponderError} when nobody listens, or on timeout. */
  request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array>;
}

/**
 * The pause before try `attempt + 1` of a request that nothing answered (a subject the engine
 * server does not know yet): from 50 ms, doubling, at most 800 ms.
 */
export function unknownSubjectPauseMs(attempt: number): number {
  return Math.min(800, 50 * 2 ** (attempt - 1));
}

/** A request found no subscriber (the node it was meant for is not there). */
export class NoResponderError extends Error {
  override readonly name = 'NoResponderError';
  constructor(readonly subject: string) {
    super(`no node answers on ${subject}`);
  }
}

/** One key's current value; `value` is undefined for a deletion. */
export interface KvEntry {
  readonly key: string;
  readonly value: Uint8Array | undefined;
  /** Increases with every write to the bucket: the version to compare-and-set against. */
  readonly revision: number;
}

export interface KvWatch {
  /** Resolves once every value that existed when the watch started has been passed on. */
  readonly ready: Promise<void>;
  stop(): void;
}

export interface BucketOptions {
  /** Copies kept by the engine (1, 3 or 5). */
  replicas: number;
  /** Entries older than this are dropped by the engine (a heartbeat bucket); 0 = kept. */
  ttlMs?: number;
}

/**
 * A replicated key-value bucket. Keys are made of `[-_=/.A-Za-z0-9]`. Writes resolve once the
 * engine has them (a majority of its replicas); every write gets a new revision.
 */
export interface ClusterKV {
  readonly bucket: string;
  get(key: string): Promise<KvEntry | undefined>;
  put(key: string, value: Uint8Array): Promise<number>;
  /** Writes only if the key has no value; undefined when it has one. */
  create(key: string, value: Uint8Array): Promise<number | undefined>;
  /** Writes only if the key is still at `revision`; undefined when someone wrote it since. */
  compareAndSet(key: string, value: Uint8Array, revision: number): Promise<number | undefined>;
  delete(key: string): Promise<void>;
  /**
   * Passes on the current value of every key (deleted ones included, `value` undefined), then
   * every change as it happens, in the bucket's order.
   */
  watch(onEntry: (e: KvEntry) => void): Promise<KvWatch>;
}

/** How a replicated log is kept and consumed. */
export interface LogOptions {
  /** Copies kept by the engine; capped by the number of servers it has. */
  replicas: number;
  /** A message pulled and neither acked nor nakked nor marked in progress for this long is due again. */
  ackWaitMs: number;
  /** Deliveries after which a message is not handed out again; undefined or 0: unlimited. */
  maxDeliver?: number;
  /** Bytes kept at most (`x-max-length-bytes`); undefined: no limit. */
  maxBytes?: number;
  /** Messages older than this are dropped (`x-message-ttl`); undefined: kept until acked. */
  maxAgeMs?: number;
  /**
   * When `maxBytes` is reached: true refuses the append with {@link LogFullError} (`x-overflow:
   * reject-publish`), otherwise the oldest message is dropped (`drop-head`).
   */
  rejectWhenFull?: boolean;
}

/** An append refused because the log is full (at its byte limit, or at the queue's length limit). */
export class LogFullError extends Error {
  override readonly name = 'LogFullError';
}

/** One pulled message: `deliveries` is 1 the first time it is handed out. */
export interface LogMessage {
  readonly seq: number;
  readonly data: Uint8Array;
  readonly deliveries: number;
  /** When the engine took it (ms since the epoch, the engine's clock). */
  readonly appendedAt: number;
}

/** Where a log's copies are, as the engine reports them. */
export interface LogStatus {
  /** The engine server that leads the log's replication; undefined while it has none. */
  readonly leader: string | undefined;
  /** Every server that holds a copy, leader first. */
  readonly members: string[];
  /** The members that are up and current. */
  readonly online: string[];
  /** Messages stored (not yet acked). */
  readonly messages: number;
  /**
   * Per member, in the order of `members`: the log's entries it has yet to apply of those the
   * leader has (0 for the leader, and for a copy that is current).
   */
  readonly lag: readonly number[];
}

/**
 * A replicated, ordered log with shared consumption (a replicated queue): every node that opens
 * it pulls from the same cursor, so a message is handed to one puller at a time; a message not
 * acked within the ack wait (its puller died) is handed out again, to any puller.
 */
export interface ReplicatedLog {
  readonly name: string;
  /**
   * Appends, resolving with the message's sequence once the engine has it (a majority of its
   * replicas). `msgId` deduplicates a retried append (the first one's sequence is returned);
   * `expectedSeq` fences a writer (rejects unless the log's last sequence is that). Rejects with
   * {@link NoResponderError} when the engine does not know the log there yet (created through
   * another server a moment ago): the same append succeeds a little later.
   */
  append(data: Uint8Array, opts: { msgId: string; expectedSeq?: number }): Promise<number>;
  /**
   * Up to `max` messages not yet handed out (or due again). When there are none, waits up to
   * `waitMs` (default 0: answers at once) for the first to be appended or fall due, and answers
   * as soon as there is any, without waiting for `max` (a long poll).
   */
  pull(max: number, waitMs?: number): Promise<LogMessage[]>;
  /** Done with a message this connection pulled: it is removed. */
  ack(seq: number): void;
  /** Hands a message back for redelivery, after `delayMs`. */
  nak(seq: number, delayMs?: number): void;
  /** The message is still being worked on: its redelivery timer starts again. */
  inProgress(seq: number): void;
  /**
   * How many of its messages were never handed out (the queue's ready messages; as JetStream
   * counts, a message handed out once counts as handed out until it is acked, even after a nak).
   */
  ready(): Promise<number>;
  status(): Promise<LogStatus>;
  /**
   * Keeps `replicas` copies from now on; the messages, the cursor and what is handed out stay.
   * More than the servers the connection knows of is as many as those (and never fewer copies
   * than the log has: a server that is down is not one fewer asked for).
   */
  setReplicas(replicas: number): Promise<void>;
  /** Removes the log and every message in it, for every node. */
  destroy(): Promise<void>;
}

/** How a replicated stream is kept: limits retention, oldest messages dropped first. */
export interface StreamLogOptions {
  /** Copies kept by the engine; capped by the number of servers it has. */
  replicas: number;
  /** Bytes kept; undefined: no limit. */
  maxBytes?: number;
  /** Messages older than this are dropped; undefined: no limit. */
  maxAgeMs?: number;
}

/** One message of a replicated stream. */
export interface StreamEntry {
  readonly seq: number;
  readonly data: Uint8Array;
}

/** The sequences a replicated stream holds: `first` is `last + 1` when it holds none. */
export interface StreamBounds {
  readonly first: number;
  readonly last: number;
}

export interface StreamFollow {
  stop(): void;
}

/**
 * A replicated, append-only stream read by every node in full (a stream queue): messages stay
 * until retention drops them, and sequences start at 1 and increase by one per message.
 */
export interface ReplicatedStream {
  readonly name: string;
  /** As {@link ReplicatedLog.append}: resolves with the sequence once a majority of replicas has it. */
  append(data: Uint8Array, opts: { msgId: string }): Promise<number>;
  bounds(): Promise<StreamBounds>;
  /**
   * Passes on every message from sequence `fromSeq` on (or the first still held, if retention
   * dropped it), in order, without gaps or repeats, then each new one as it is appended, until
   * stopped; across connection losses and server changes.
   */
  follow(fromSeq: number, onEntry: (e: StreamEntry) => void): StreamFollow;
  /** Where the stream's replicas are, as {@link ReplicatedLog.status}. */
  status(): Promise<LogStatus>;
  /** Removes the stream and every message in it, for every node. */
  destroy(): Promise<void>;
}

/** What the engine's server said about itself when the node connected. */
export interface EngineInfo {
  readonly serverName: string;
  readonly version: string;
  /** Servers in the engine's cluster the node knows of (1 when not clustered). */
  readonly clusterSize: number;
}

/** A connection to the engine. */
export interface ClusterEngine {
  readonly bus: ClusterBus;
  readonly info: EngineInfo;
  openKV(name: string, opts: BucketOptions): Promise<ClusterKV>;
  /**
   * Opens (creating it when it does not exist) a replicated log; `name` is made of
   * `[-_A-Za-z0-9]`. Every connection opening the same name shares its messages and cursor.
   */
  openLog(name: string, opts: LogOptions): Promise<ReplicatedLog>;
  /** The names of the replicated logs there are whose names start with `prefix`. */
  logNames(prefix: string): Promise<string[]>;
  /**
   * Opens (creating it when it does not exist) a replicated stream; `name` as for
   * {@link openLog}. A stream that exists keeps its replicas, its limits follow `opts`.
   */
  openStream(name: string, opts: StreamLogOptions): Promise<ReplicatedStream>;
  /** Called when the connection to the engine is lost for good or comes back. */
  onStatus(listener: (connected: boolean) => void): void;
  close(): Promise<void>;
}

/** The engine refuses to serve as a cluster engine (no JetStream, unreachable). */
export class EngineError extends Error {
  override readonly name = 'EngineError';
}

const ENC = new TextEncoder();
const DEC = new TextDecoder();

export function encodeJson(v: unknown): Uint8Array {
  return ENC.encode(JSON.stringify(v));
}

export function decodeJson(b: Uint8Array): unknown {
  return JSON.parse(DEC.decode(b));
}

/**
 * The copies a log keeps after {@link ReplicatedLog.setReplicas}: `asked`, but not more than the
 * `servers` known, and never fewer than `current` only because fewer servers are known than asked
 * for.
 */
export function scaledReplicas(current: number, asked: number, servers: number): number {
  if (asked < current) return Math.max(1, asked);
  return Math.max(current, Math.min(asked, servers));
}
