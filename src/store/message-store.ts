import { createHash } from 'node:crypto';
import { existsSync, fdatasync, mkdirSync, readdirSync, statSync, unlinkSync, writev } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Core } from '../core/core.js';
import { BrokerError, ReplyCode, SETTLED, importDefinitions, latencyTrace, tableFromJson, traceNow, TraceSpan, type ImportReport } from '../core/index.js';
import type { DefinitionChange, Persistence, QueueSpill, QueueStore } from '../core/persistence.js';
import type { QueueEntry } from '../core/queues/entry.js';
import type { Queue } from '../core/queues/queue.js';
import type { StreamLimits, StreamStore } from '../core/queues/stream-store.js';
import type { StoredMessage } from '../core/types.js';
import type { Logger } from '../logger.js';
import { Arena } from './arena.js';
import { startupError } from './errors.js';
import { DefinitionsLog, type DefinitionEntry, type DefinitionsWrite } from './definitions-log.js';
import { allEntries, changeKey, currentEntry, metaEntries } from './definitions-state.js';
import { describeErrno, errnoCode, fsyncDir, fsyncDirSync, readIfExists } from './fs-util.js';
import { MessageLog, type BatchContext } from './message-log.js';
import { QueueLog, type QueueLogHost } from './queue-log.js';
import { SHARED_PENDING } from './segment.js';
import { RecordStore } from './record-store.js';
import { OffHeapSpill } from './spill.js';
import { StreamLog } from './stream-log.js';
import { releaseLock, takeLock } from './lock.js';
import type { MessageLoc } from './records.js';

export interface StoreOptions {
  dataDir: string;
  log: Logger;
  /**
   * Bytes of ready messages (body + 64 per message) a durable queue keeps in memory; beyond this,
   * persistent messages are paged to disk and read back in order. 0 = never page.
   */
  queueMemoryBudget?: number;
  /** A segment file is closed and a new one started once it grows past this many bytes. */
  segmentSize?: number;
  /** Only read (offline export, even while a broker runs on the directory): no lock, no writes. */
  readOnly?: boolean;
  /** The definitions log is compacted into a snapshot only once it is larger than this. */
  definitionsCompactBytes?: number;
}

export const DEFAULT_QUEUE_MEMORY_BUDGET = 16 * 1024 * 1024;
export const DEFAULT_SEGMENT_SIZE = 8 * 1024 * 1024;

/** The definitions file of older data directories: read once, then replaced by the definitions log. */
export const DEFINITIONS_FILE = 'definitions.json';

/** What recovery did, for the startup log line. */
export interface RecoverySummary {
  queues: number;
  messages: number;
  inMemory: number;
  paged: number;
  lost: number;
  ms: number;
  definitions: ImportReport | undefined;
}

/** One batch's settlement: every enqueue in the batch waits on the same promise. */
class Batch {
  readonly promise: Promise<void>;
  resolve!: () => void;
  reject!: (e: Error) => void;
  constructor() {
    this.promise = new Promise<void>((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    this.promise.catch(() => undefined);
  }
}

const NO_LOCS: ReadonlyMap<StoredMessage, MessageLoc> = new Map();

/** The directory of a queue: derived from its vhost and name, so it needs no index. */
export function queueDirName(vhost: string, name: string): string {
  return createHash('sha256').update(vhost).update('\u0000').update(name).digest('hex').slice(0, 32);
}

interface QueueMeta {
  vhost: string;
  name: string;
  auto_delete?: boolean;
  arguments?: unknown;
}

function writevAll(fd: number, parts: Buffer[], position: number, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => {
    writev(fd, parts, position, (err, written) => {
      if (err) reject(err);
      else if (written !== bytes) reject(Object.assign(new Error(`short write: ${written} of ${bytes} bytes`), { code: 'ENOSPC' }));
      else resolve();
    });
  });
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/**
 * The embedded message store: one {@link QueueLog} per durable queue, the shared message log, and
 * the definitions file, all under the data directory. Writes are group-committed: everything the
 * core asks for while a batch is being written waits, then goes to disk as the next batch, with
 * one write and one fdatasync per file; the batch's enqueues settle together once it is durable.
 */
export class MessageStore implements Persistence, QueueLogHost {
  readonly messages: MessageLog;
  readonly segmentSize: number;
  readonly queueMemoryBudget: number;
  readonly dataDir: string;
  readonly log: Logger;
  flushing = false;

  private core: Core | undefined;
  private productVersion = '0.0.0';
  /** The definitions log and snapshot (what is on disk). */
  readonly definitionsLog: DefinitionsLog;
  /** Definitions read from an older data directory's definitions.json (replaced after recovery). */
  private legacyDefinitions = false;
  private readonly logs = new Set<QueueLog>();
  /** The logs of stream queues (under `streams/`). */
  private readonly streams = new Set<StreamLog>();
  private readonly recordStores = new Map<string, RecordStore>();
  /** Queue directories found at startup, not yet claimed by a queue. */
  private readonly unclaimed = new Map<string, QueueMeta | undefined>();
  private savedDefinitions: unknown;
  private recovering = false;
  private closed = false;

  // ---- the batch being collected ----
  private dirty: QueueLog[] = [];
  private spareDirty: QueueLog[] = [];
  private shared: StoredMessage[] = [];
  private lastMsg: StoredMessage | undefined;
  private lastEntry: QueueEntry | undefined;
  private batch: Batch | undefined;
  /** Exchanges, queues and bindings changed since the last batch was built, by key. */
  private defsChanged = new Map<string, DefinitionChange>();
  /** Vhosts, users, permissions or policies changed: compared as a whole. */
  private defsMeta = false;
  /** A definitions write failed: the next batch compares everything. */
  private defsResync = false;
  /** The batch the latest definition change waits for. */
  private defsWaiting: Promise<void> | undefined;
  private scheduled = false;
  private readonly arena = new Arena();
  private idleWaiters: (() => void)[] = [];
  private afterFlush: (() => void)[] = [];
  private failures = 0;
  /** Failed batches in a row: retries back off. */
  private failing = 0;

  private readonly readOnly: boolean;

  private constructor(opts: StoreOptions, private readonly lockFd: number) {
    this.readOnly = opts.readOnly === true;
    this.dataDir = opts.dataDir;
    this.log = opts.log;
    this.segmentSize = opts.segmentSize ?? DEFAULT_SEGMENT_SIZE;
    this.queueMemoryBudget = opts.queueMemoryBudget ?? DEFAULT_QUEUE_MEMORY_BUDGET;
    this.messages = new MessageLog(join(this.dataDir, 'messages'), this.segmentSize, this.log);
    this.definitionsLog = new DefinitionsLog(this.dataDir, this.log, opts.definitionsCompactBytes);
  }

  /**
   * Opens the data directory: creates it if needed, takes its lock, reads the definitions file and
   * lists the queue directories. A directory that cannot be used is a `startup` StoreError whose
   * message says why.
   */
  static open(opts: StoreOptions): MessageStore {
    const dir = opts.dataDir;
    if (opts.readOnly === true) {
      let ok = false;
      try {
        ok = statSync(dir).isDirectory();
      } catch {
        // reported below
      }
      if (!ok) throw startupError(`no data directory '${dir}'`);
      const store = new MessageStore(opts, -1);
      store.readDefinitionsFile();
      store.scanQueueDirs();
      return store;
    }
    let isDir = false;
    try {
      isDir = statSync(dir).isDirectory();
      if (!isDir) throw startupError(`data directory '${dir}' is not a directory`);
    } catch (e) {
      if (e instanceof Error && e.name === 'StoreError') throw e;
    }
    if (!isDir) {
      try {
        mkdirSync(dir, { recursive: true });
      } catch (e) {
        throw startupError(`cannot create data directory '${dir}': ${describeErrno(e)}`);
      }
    }
    const lockFd = takeLock(dir, opts.log);
    const store = new MessageStore(opts, lockFd);
    try {
      for (const sub of ['queues', 'messages']) mkdirSync(join(dir, sub), { recursive: true });
      store.readDefinitionsFile();
      store.scanQueueDirs();
      store.messages.open();
    } catch (e) {
      store.releaseLock();
      if (e instanceof Error && e.name === 'StoreError') throw e;
      throw startupError(`cannot use data directory '${dir}': ${describeErrno(e)}`);
    }
    return store;
  }

  /** The definitions found in the data directory (RabbitMQ JSON), if any. */
  get definitions(): unknown {
    return this.savedDefinitions;
  }

  /**
   * Reads the definitions: the snapshot and log, or else (an older data directory) the
   * definitions.json file.
   */
  private readDefinitionsFile(): void {
    const loaded = this.definitionsLog.load(this.readOnly);
    for (const issue of loaded.issues) this.log.warn(`definitions: ${issue}`);
    const file = join(this.dataDir, DEFINITIONS_FILE);
    if (loaded.found) {
      this.savedDefinitions = this.definitionsLog.toDefinitions();
      // Left by a migration that stopped before removing it: the log is the newer truth.
      this.legacyDefinitions = existsSync(file);
      return;
    }
    const raw = readIfExists(file);
    if (raw === undefined) return;
    this.legacyDefinitions = true;
    try {
      this.savedDefinitions = JSON.parse(raw.toString('utf8'));
    } catch (e) {
      throw startupError(
        `definitions file '${file}' is not valid JSON (${(e as Error).message}); restore it from a backup or an export, ` +
          `or remove it: durable queues are then recovered from their own directories, without exchanges, bindings or users`,
      );
    }
  }

  private scanQueueDirs(): void {
    const root = join(this.dataDir, 'queues');
    let names: string[] = [];
    try {
      names = readdirSync(root);
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
    }
    for (const name of names) {
      const full = join(root, name);
      if (name.includes('.deleted-')) {
        if (this.readOnly) continue;
        rm(full, { recursive: true, force: true }).catch((err: unknown) => this.log.error({ err, dir: full }, 'cannot remove a deleted queue directory'));
        continue;
      }
      if (!/^[0-9a-f]{32}$/.test(name)) continue;
      let meta: QueueMeta | undefined;
      const raw = readIfExists(join(full, 'queue.json'));
      if (raw !== undefined) {
        try {
          const m = JSON.parse(raw.toString('utf8')) as Partial<QueueMeta>;
          if (typeof m.vhost === 'string' && typeof m.name === 'string' && queueDirName(m.vhost, m.name) === name) meta = m as QueueMeta;
        } catch {
          // unreadable: the queue can still be matched by name through the definitions
        }
      }
      this.unclaimed.set(name, meta);
    }
  }

  /** Connects the store to the core whose queues it keeps. */
  attach(core: Core, productVersion = '0.0.0'): void {
    this.core = core;
    this.productVersion = productVersion;
    core.persistence = this;
  }

  get version(): string {
    return this.productVersion;
  }

  /**
   * Restores the core from the data directory: definitions first (vhosts, users, permissions,
   * policies, exchanges, queues, bindings), then every durable queue's messages.
   */
  recover(opts: { messages?: boolean } = {}): RecoverySummary {
    const withMessages = opts.messages !== false;
    const core = this.core;
    if (core === undefined) throw new Error('MessageStore.recover() before attach()');
    const t0 = performance.now();
    this.recovering = true;
    const summary: RecoverySummary = { queues: 0, messages: 0, inMemory: 0, paged: 0, lost: 0, ms: 0, definitions: undefined };
    try {
      if (this.savedDefinitions !== undefined) {
        summary.definitions = importDefinitions(core, this.savedDefinitions, { replaceUsers: true });
        for (const w of summary.definitions.warnings) this.log.warn(`definitions: ${w}`);
      } else if (this.unclaimed.size > 0) {
        this.log.warn(
          { dataDir: this.dataDir, queues: this.unclaimed.size },
          `definitions file missing: durable queues are recovered from their own directories; exchanges, bindings, users and permissions are not`,
        );
      } else this.log.info({ dataDir: this.dataDir }, 'new data directory');
      // Queue directories whose queue is not in the definitions (a crash before the definitions
      // were written, or a missing file): the queue is declared again from its own metadata.
      for (const [dirName, meta] of [...this.unclaimed]) {
        if (meta === undefined) continue;
        const vhost = core.addVhost(meta.vhost);
        if (vhost.queues.has(meta.name)) continue;
        try {
          vhost.declareQueue(meta.name, { durable: true, autoDelete: meta.auto_delete === true, arguments: tableFromJson(meta.arguments) }, false, 0);
          this.log.warn({ queue: meta.name, vhost: meta.vhost }, 'queue recovered from its directory: it was not in the definitions file');
        } catch (e) {
          this.log.error({ err: e, queue: meta.name, vhost: meta.vhost, dir: dirName }, 'cannot recover a queue from its directory');
        }
      }
      for (const [dirName] of this.unclaimed) {
        this.log.error({ dir: join(this.dataDir, 'queues', dirName) }, 'queue directory left alone: no queue of this name is defined and its metadata is unreadable');
      }
      if (!withMessages) {
        if (!this.readOnly) this.rewriteDefinitions();
        return summary;
      }
      for (const ql of this.logs) {
        const t = performance.now();
        const r = ql.recover();
        summary.queues++;
        summary.messages += r.messages;
        summary.inMemory += r.inMemory;
        summary.paged += r.paged;
        summary.lost += r.lost;
        for (const issue of r.issues) this.log.warn({ queue: ql.queue.name, vhost: ql.queue.host.name }, issue);
        if (r.messages > 0 || r.issues.length > 0) {
          this.log.info(
            { queue: ql.queue.name, vhost: ql.queue.host.name, messages: r.messages, paged: r.paged, segments: r.segments, ms: Math.round(performance.now() - t) },
            'queue recovered',
          );
        }
      }
      const dropped = this.messages.collectAll();
      if (dropped > 0) this.log.info({ segments: dropped }, 'shared message segments no queue refers to were deleted');
    } finally {
      this.recovering = false;
      if (withMessages) this.unclaimed.clear();
    }
    summary.ms = Math.round(performance.now() - t0);
    this.log.info(
      { queues: summary.queues, messages: summary.messages, paged: summary.paged, lost: summary.lost, ms: summary.ms },
      `recovered ${summary.messages} messages in ${summary.queues} durable queues in ${summary.ms} ms`,
    );
    if (!this.readOnly) this.rewriteDefinitions();
    return summary;
  }

  // ---- Persistence ------------------------------------------------------------------------

  openQueue(queue: Queue): QueueStore | undefined {
    if (this.closed) return undefined;
    const dirName = queueDirName(queue.host.name, queue.name);
    const existed = this.unclaimed.has(dirName);
    if (existed) this.unclaimed.delete(dirName);
    const budget = queue.maxPriority > 0 ? 0 : this.queueMemoryBudget;
    const ql = new QueueLog(this, queue, join(this.dataDir, 'queues', dirName), budget, existed);
    this.logs.add(ql);
    return ql;
  }

  openSpill(queue: Queue): QueueSpill {
    return new OffHeapSpill(queue.maxPriority > 0 ? 0 : this.queueMemoryBudget);
  }

  openStream(queue: Queue, limits: StreamLimits): StreamStore {
    const dir = join(this.dataDir, 'streams', queueDirName(queue.host.name, queue.name));
    const s = new StreamLog(dir, limits, this.log, () => this.streams.delete(s));
    this.streams.add(s);
    return s;
  }

  definitionsChanged(change?: DefinitionChange): Promise<void> {
    if (this.recovering || this.core === undefined || this.closed || this.readOnly) return SETTLED;
    if (change === undefined) this.defsMeta = true;
    else this.defsChanged.set(changeKey(change), change);
    this.schedule();
    const p = (this.batch ??= new Batch()).promise;
    this.defsWaiting = p;
    return p;
  }

  definitionsSettled(): Promise<void> {
    return this.defsWaiting ?? SETTLED;
  }

  /**
   * After recovery: the definitions on disk become exactly the core's (a new snapshot and an
   * empty log); an older data directory's definitions.json goes once that is written.
   */
  private rewriteDefinitions(): void {
    const entries = allEntries(this.core!);
    try {
      this.definitionsLog.rewriteSync(entries);
    } catch (e) {
      throw startupError(`cannot write the definitions to '${this.dataDir}': ${describeErrno(e)}`);
    }
    if (this.legacyDefinitions) {
      unlinkSync(join(this.dataDir, DEFINITIONS_FILE));
      fsyncDirSync(this.dataDir);
      this.legacyDefinitions = false;
      this.log.info({ definitions: entries.size }, 'definitions.json migrated to the definitions log');
    }
  }

  /** The changes since the last batch, against what is on disk. */
  private definitionOps(): { key: string; entry: DefinitionEntry | null }[] {
    const core = this.core!;
    const disk = this.definitionsLog;
    const ops = new Map<string, DefinitionEntry | null>();
    const changed = (key: string, now: DefinitionEntry | null): void => {
      const old = disk.get(key);
      if (now === null ? old !== undefined : old?.json !== now.json) ops.set(key, now);
    };
    if (this.defsResync) {
      const all = allEntries(core);
      for (const key of [...disk.meta.keys(), ...disk.topo.keys()]) if (!all.has(key)) ops.set(key, null);
      for (const [key, e] of all) changed(key, e);
    } else {
      if (this.defsMeta) {
        const now = metaEntries(core);
        let goneVhosts: Set<string> | undefined;
        for (const [key, e] of disk.meta) {
          if (now.has(key)) continue;
          ops.set(key, null);
          if (e.kind === 'v' && !core.vhosts.has(e.vhost)) (goneVhosts ??= new Set()).add(e.vhost);
        }
        for (const [key, e] of now) changed(key, e);
        // A deleted vhost takes every definition in it along.
        if (goneVhosts !== undefined) for (const [key, e] of disk.topo) if (goneVhosts.has(e.vhost)) ops.set(key, null);
      }
      for (const [key, c] of this.defsChanged) changed(key, currentEntry(core, c));
    }
    this.defsResync = false;
    this.defsMeta = false;
    this.defsChanged.clear();
    const out: { key: string; entry: DefinitionEntry | null }[] = [];
    for (const [key, entry] of ops) out.push({ key, entry });
    return out;
  }

  /** Resolves once the definitions as they are now are on disk (at once when nothing is pending). */
  definitionsWritten(): Promise<void> {
    return this.definitionsSettled();
  }

  // ---- QueueLogHost -----------------------------------------------------------------------

  nextMessageId(): number {
    return this.core!.nextMessageId();
  }

  enqueued(ql: QueueLog, e: QueueEntry): Promise<void> {
    const m = e.msg;
    if (m === this.lastMsg) {
      // The same message routed to another durable queue: its body goes to the shared log once.
      const first = this.lastEntry!;
      if (first.mseg !== SHARED_PENDING) {
        first.mseg = SHARED_PENDING;
        this.shared.push(m);
      }
      e.mseg = SHARED_PENDING;
    }
    this.lastMsg = m;
    this.lastEntry = e;
    if (!ql.inBatch) {
      ql.inBatch = true;
      this.dirty.push(ql);
    }
    if (!this.scheduled && !this.flushing) {
      this.scheduled = true;
      setImmediate(this.runBound);
    }
    return (this.batch ??= new Batch()).promise;
  }

  touched(ql: QueueLog): void {
    if (!ql.inBatch) {
      ql.inBatch = true;
      this.dirty.push(ql);
    }
    this.schedule();
  }

  whenIdle(fn: () => void): void {
    if (this.flushing) this.afterFlush.push(fn);
    else fn();
  }

  forget(ql: QueueLog): void {
    this.logs.delete(ql);
  }

  // ---- group commit -----------------------------------------------------------------------

  private schedule(): void {
    if (this.scheduled || this.flushing) return;
    this.scheduled = true;
    setImmediate(this.runBound);
  }

  private readonly runBound = (): void => {
    this.scheduled = false;
    this.run();
  };

  private get defsDirty(): boolean {
    return this.defsChanged.size > 0 || this.defsMeta || this.defsResync;
  }

  private hasWork(): boolean {
    return this.dirty.length > 0 || this.defsDirty || this.batch !== undefined;
  }

  /** Builds the collected work into one batch, writes it, and settles it. */
  private run(): void {
    if (this.flushing) return;
    if (!this.hasWork()) {
      this.notifyIdle();
      return;
    }
    this.flushing = true;
    const trace = latencyTrace;
    const t0 = trace !== null ? traceNow() : 0;
    const batch = this.batch;
    this.batch = undefined;
    const logs = this.dirty;
    this.dirty = this.spareDirty;
    this.spareDirty = logs;
    const shared = this.shared;
    this.shared = [];
    this.lastMsg = undefined;
    this.lastEntry = undefined;
    const ctx: BatchContext = { writes: [], dirs: new Set() };
    this.arena.reset();
    let failure: unknown;
    let defs: DefinitionsWrite | undefined;
    if (this.defsDirty) {
      try {
        const ops = this.definitionOps();
        if (ops.length > 0) defs = this.definitionsLog.prepare(ops);
      } catch (err) {
        this.defsResync = true;
        failure = err;
      }
    }
    let locs = NO_LOCS;
    if (shared.length > 0) {
      try {
        const m = new Map<StoredMessage, MessageLoc>();
        this.messages.build(this.arena, ctx, shared, m);
        locs = m;
      } catch (err) {
        failure = err;
      }
    }
    for (const ql of logs) {
      if (failure !== undefined) ql.abandon();
      else {
        try {
          ql.build(this.arena, ctx, locs);
        } catch (err) {
          failure = err;
        }
      }
    }
    // The synchronous part of a commit (building the batch) runs on the event loop; the writes do not.
    if (trace !== null) trace.span(TraceSpan.STORE_COMMIT, t0);
    this.write(ctx, defs, failure).then(
      (err) => this.complete(logs, ctx, defs, batch, err),
      (err: unknown) => this.complete(logs, ctx, defs, batch, err ?? new Error('write failed')),
    );
  }

  private async write(ctx: BatchContext, defs: DefinitionsWrite | undefined, failure: unknown): Promise<unknown> {
    if (failure !== undefined) return failure;
    try {
      const jobs: Promise<void>[] = ctx.writes.map(async (w) => {
        if (w.bytes === 0) return;
        await writevAll(w.fd, w.parts, w.position, w.bytes);
        if (w.sync) await datasync(w.fd);
      });
      if (defs !== undefined) jobs.push(defs.run());
      // Wait for every write, failed or not, before anything is undone or closed.
      for (const r of await Promise.allSettled(jobs)) if (r.status === 'rejected') return r.reason ?? new Error('write failed');
      if (ctx.dirs.size > 0) await Promise.all([...ctx.dirs].map(fsyncLiveDir));
      return undefined;
    } catch (err) {
      return err;
    }
  }

  private complete(logs: QueueLog[], ctx: BatchContext, defs: DefinitionsWrite | undefined, batch: Batch | undefined, failure: unknown): void {
    const ok = failure === undefined;
    defs?.done(ok);
    if (!ok) {
      for (const w of ctx.writes) QueueLog.truncate(w.fd, w.position);
      if (defs !== undefined) this.defsResync = true;
      this.failures++;
      this.failing++;
      // Once per failure, then once a minute while it lasts (a full disk fails every batch).
      if (this.failing === 1 || this.failing % 600 === 0) {
        this.log.error({ err: failure, failures: this.failures }, 'message store write failed: the publishes of this batch are refused');
      }
    } else if (this.failing > 0) {
      this.log.warn({ failed: this.failing }, 'message store writes succeed again');
      this.failing = 0;
    }
    for (const w of ctx.writes) w.done?.(ok);
    for (const ql of logs) ql.afterWrite(ok);
    logs.length = 0;
    this.messages.collect();
    this.flushing = false;
    const closers = this.afterFlush;
    if (closers.length > 0) {
      this.afterFlush = [];
      for (const fn of closers) fn();
    }
    if (batch !== undefined) {
      if (this.defsWaiting === batch.promise) this.defsWaiting = undefined;
      if (ok) batch.resolve();
      else batch.reject(new BrokerError(ReplyCode.INTERNAL_ERROR, `message store write failed: ${describeErrno(failure)}`));
    }
    // Definitions still to be written: a redeclare confirms only once the retry is on disk.
    if (!ok && this.defsDirty) this.defsWaiting = (this.batch ??= new Batch()).promise;
    if (this.hasWork()) {
      // After a failure, give the disk a moment before trying again.
      if (ok) this.run();
      else setTimeout(() => this.schedule(), Math.min(100 * this.failing, 1000)).unref();
    } else this.notifyIdle();
  }

  private notifyIdle(): void {
    if (this.idleWaiters.length === 0) return;
    const ws = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of ws) w();
  }

  /** Resolves once everything asked of the store so far is written. */
  flush(): Promise<void> {
    if (!this.flushing && !this.hasWork() && !this.scheduled) return Promise.resolve();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.schedule();
    });
  }

  /** Flushes (unless told not to), closes every file and releases the data directory. */
  async close(opts: { flush?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    if (opts.flush !== false) {
      // A store that cannot write (a full disk) still lets the broker stop.
      let timer: NodeJS.Timeout | undefined;
      const gaveUp = await Promise.race([
        this.flush().then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 10_000))),
      ]);
      clearTimeout(timer);
      if (gaveUp) {
        this.log.error('message store: pending writes could not be completed before closing');
        if (this.flushing) {
          // A write is still out: its files stay open (the process is going away anyway).
          this.closed = true;
          this.releaseLock();
          return;
        }
      }
    }
    for (const st of this.streams) await st.idle();
    for (const st of [...this.streams]) st.close();
    for (const rs of this.recordStores.values()) await rs.close();
    this.recordStores.clear();
    this.closed = true;
    for (const ql of this.logs) ql.close();
    this.logs.clear();
    this.messages.close();
    this.definitionsLog.close();
    this.releaseLock();
  }

  private releaseLock(): void {
    if (this.lockFd < 0) return;
    releaseLock(this.dataDir, this.lockFd);
  }

  /**
   * A durable key/value store under `<dataDir>/records/<name>.log`, for state that is not a queue
   * (the MQTT adapter's retained messages, session state and delayed wills); closed with the store.
   */
  records(name: string): RecordStore {
    if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) throw new Error(`invalid record store name '${name}'`);
    if (this.readOnly || this.closed) throw startupError(`record store '${name}' is not available: the message store is ${this.closed ? 'closed' : 'read-only'}`);
    let rs = this.recordStores.get(name);
    if (rs === undefined) {
      rs = RecordStore.open(join(this.dataDir, 'records', `${name}.log`), this.log);
      this.recordStores.set(name, rs);
    }
    return rs;
  }
}

/**
 * fsync a queue's directory, unless it is gone: a queue deleted while the batch was being written
 * has had its directory renamed away, and nothing in it needs to survive. Any other error fails
 * the batch.
 */
async function fsyncLiveDir(dir: string): Promise<void> {
  try {
    await fsyncDir(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
