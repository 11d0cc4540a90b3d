import { closeSync, fdatasync, fdatasyncSync, ftruncateSync, openSync, renameSync, writeSync, writev } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter } from './codec.js';
import { corrupt, startupError } from './errors.js';
import { FILE_HEADER, RECORD_HEADER, checkHeader, fileHeader, recordEnd, sealRecord } from './format.js';
import { errnoCode, fsyncDir, fsyncDirSync, readIfExists } from './fs-util.js';

/**
 * The durable definitions (vhosts, users, permissions, topic permissions, policies, exchanges,
 * queues, bindings) as an append-only log of changes plus a snapshot.
 *
 * Every definition has a key and a value: its entry in RabbitMQ's definitions JSON. The log
 * (`definitions.log`) holds one record per change: SET key value, or DEL key. The snapshot
 * (`definitions.snap`) holds a SET for every definition that existed when it was written. Both
 * files start with a file header and a META record carrying a generation number; records use the
 * common framing (length, crc32, payload).
 *
 * Recovery reads the snapshot, then replays the log if it has the snapshot's generation, stopping
 * at the first torn or corrupt record (the log is truncated there). Compaction writes a new
 * snapshot (generation g+1) through a temporary file and a rename, then replaces the log with an
 * empty one of generation g+1 the same way: a crash between the two renames leaves a log of the
 * older generation, which recovery ignores because the snapshot already holds everything in it.
 *
 * Records:
 *   META: u8 3 | f64 generation
 *   SET:  u8 1 | str32 key | str32 value (JSON)
 *   DEL:  u8 2 | str32 key
 */

export const DEFINITIONS_LOG = 'definitions.log';
export const DEFINITIONS_SNAPSHOT = 'definitions.snap';

const OP_SET = 1;
const OP_DEL = 2;
const OP_META = 3;

/** Compact once the log is larger than this and than twice the live definitions. */
export const DEFAULT_DEFINITIONS_COMPACT_BYTES = 1 << 20;

/** The sections of RabbitMQ's definitions JSON a key can belong to, by the key's first element. */
const SECTIONS = {
  v: 'vhosts',
  u: 'users',
  p: 'permissions',
  t: 'topic_permissions',
  P: 'policies',
  x: 'exchanges',
  q: 'queues',
  b: 'bindings',
} as const;

export type DefinitionKind = keyof typeof SECTIONS;
export type DefinitionSection = (typeof SECTIONS)[DefinitionKind];

/** Kinds compared as a whole on a change without details (small sets). */
const META_KINDS: ReadonlySet<string> = new Set<DefinitionKind>(['v', 'u', 'p', 't', 'P']);

/** One definition: the JSON text of its entry in the definitions file. */
export interface DefinitionEntry {
  readonly kind: DefinitionKind;
  /** The vhost it belongs to ('' for users). */
  readonly vhost: string;
  readonly json: string;
}

/** A change to write: the entry's new value, or null when it is gone. */
export interface DefinitionOp {
  readonly key: string;
  readonly entry: DefinitionEntry | null;
}

/** The key of a definition: unambiguous whatever characters the names hold. */
export function definitionKey(kind: DefinitionKind, ...names: string[]): string {
  return JSON.stringify([kind, ...names]);
}

function parseKey(key: string): { kind: DefinitionKind; vhost: string } {
  const parts: unknown = JSON.parse(key);
  if (!Array.isArray(parts) || typeof parts[0] !== 'string' || !(parts[0] in SECTIONS)) throw corrupt(`bad definition key ${key}`);
  const kind = parts[0] as DefinitionKind;
  const vhost = kind === 'u' ? '' : parts[1];
  if (typeof vhost !== 'string') throw corrupt(`bad definition key ${key}`);
  return { kind, vhost };
}

function recordBytes(key: string, json: string): number {
  return RECORD_HEADER + 9 + Buffer.byteLength(key) + Buffer.byteLength(json);
}

/** One batch's write to the definitions files; `run` does the I/O, `done` applies the outcome. */
export interface DefinitionsWrite {
  /** Bytes this write puts on disk. */
  readonly bytes: number;
  /** Whether it is a compaction (snapshot + new log) rather than an append. */
  readonly snapshot: boolean;
  run(): Promise<void>;
  done(ok: boolean): void;
}

/** What loading found, for the startup log. */
export interface DefinitionsLoad {
  /** A snapshot or a log existed. */
  found: boolean;
  records: number;
  issues: string[];
}

export class DefinitionsLog {
  /** Vhosts, users, permissions, topic permissions, policies, as they are on disk. */
  readonly meta = new Map<string, DefinitionEntry>();
  /** Exchanges, queues, bindings, as they are on disk. */
  readonly topo = new Map<string, DefinitionEntry>();
  /** Bytes written to the definitions files since they were opened (appends, snapshots). */
  bytesWritten = 0;
  /** Compactions since opened. */
  snapshots = 0;
  private fd = -1;
  private size = 0;
  private generation = 0;
  /** Sum of the record sizes of every live definition: what a snapshot would hold. */
  private liveBytes = 0;
  /** The log on disk is older than the snapshot (a compaction failed half-way): only a snapshot may follow. */
  private needSnapshot = false;
  private readonly w = new ByteWriter(64 * 1024);
  private readonly logFile: string;
  private readonly snapFile: string;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
    /** The log is compacted only once it is larger than this. */
    private readonly compactBytes = DEFAULT_DEFINITIONS_COMPACT_BYTES,
  ) {
    this.logFile = join(dir, DEFINITIONS_LOG);
    this.snapFile = join(dir, DEFINITIONS_SNAPSHOT);
  }

  get count(): number {
    return this.meta.size + this.topo.size;
  }

  get(key: string): DefinitionEntry | undefined {
    return this.topo.get(key) ?? this.meta.get(key);
  }

  /** The size of the log file now. */
  get logSize(): number {
    return this.size;
  }

  /**
   * Reads the snapshot and replays the log. `readOnly`: nothing is truncated or opened for
   * writing (a broker may be writing the files at the same time).
   */
  load(readOnly: boolean): DefinitionsLoad {
    // A reader beside a running broker can see a compaction half-way (the new log with the old
    // snapshot): it reads again.
    for (let attempt = 1; ; attempt++) {
      const out = this.loadOnce(readOnly);
      if (!readOnly || !this.raced || attempt === 5) return out;
      this.meta.clear();
      this.topo.clear();
      this.liveBytes = 0;
    }
  }

  /** The last load found a log newer than the snapshot. */
  private raced = false;

  private loadOnce(readOnly: boolean): DefinitionsLoad {
    this.raced = false;
    const out: DefinitionsLoad = { found: false, records: 0, issues: [] };
    let snapGen = 0;
    const snap = readIfExists(this.snapFile);
    if (snap !== undefined) {
      out.found = true;
      checkHeader(snap, 'definitions-snapshot', this.snapFile);
      const r = this.replay(snap, this.snapFile, out);
      if (r.generation === undefined) throw startupError(`${this.snapFile}: no generation record; restore the data directory from a backup or remove the file`);
      snapGen = r.generation;
      if (r.end < snap.length) out.issues.push(`${this.snapFile}: ${snap.length - r.end} unreadable bytes at offset ${r.end} ignored`);
    }
    this.generation = snapGen;
    const logBuf = readIfExists(this.logFile);
    if (logBuf !== undefined && logBuf.length > 0) {
      out.found = true;
      checkHeader(logBuf, 'definitions-log', this.logFile);
      const first = recordEnd(logBuf, FILE_HEADER);
      const gen = first > 0 ? this.metaGeneration(logBuf, FILE_HEADER + RECORD_HEADER, first) : undefined;
      if (gen === undefined) {
        out.issues.push(`${this.logFile}: no generation record (a torn start): no changes replayed`);
        this.needSnapshot = true;
      } else if (gen < snapGen) {
        // A compaction wrote the snapshot but not the new log: the snapshot already holds it all.
        this.needSnapshot = true;
      } else {
        if (gen > snapGen) {
          this.raced = true;
          out.issues.push(`${this.logFile}: generation ${gen} is newer than the snapshot's (${snapGen}): replayed anyway`);
        }
        this.generation = gen;
        const r = this.replay(logBuf, this.logFile, out);
        this.size = r.end;
        if (r.end < logBuf.length) {
          out.issues.push(`${this.logFile}: stopped at a torn or corrupt record at offset ${r.end} (${logBuf.length - r.end} bytes dropped)`);
          if (!readOnly) {
            const fd = openSync(this.logFile, 'r+');
            try {
              ftruncateSync(fd, r.end);
              fdatasyncSync(fd);
            } finally {
              closeSync(fd);
            }
          }
        }
        if (!readOnly) this.fd = openSync(this.logFile, 'r+');
      }
    }
    if (this.fd < 0 && !readOnly && !this.needSnapshot) {
      // No log yet: start one of the snapshot's generation.
      this.replaceLogSync(this.generation);
    }
    return out;
  }

  private metaGeneration(buf: Buffer, s: number, e: number): number | undefined {
    if (buf[s] !== OP_META || e - s !== 9) return undefined;
    return buf.readDoubleLE(s + 1);
  }

  /** Applies every record from the first one on, up to the first invalid one. */
  private replay(buf: Buffer, file: string, out: DefinitionsLoad): { end: number; generation: number | undefined } {
    const r = new ByteReader();
    let generation: number | undefined;
    let off = FILE_HEADER;
    while (off < buf.length) {
      const end = recordEnd(buf, off);
      if (end < 0) break;
      const s = off + RECORD_HEADER;
      try {
        r.reset(buf, s, end);
        const op = r.u8();
        if (op === OP_META) {
          if (off !== FILE_HEADER) throw corrupt('generation record after the start');
          generation = r.f64();
        } else if (op === OP_SET) {
          const key = r.str32();
          const json = r.str32();
          const { kind, vhost } = parseKey(key);
          this.apply(key, { kind, vhost, json });
        } else if (op === OP_DEL) this.apply(r.str32(), null);
        else throw corrupt(`unknown operation ${op}`);
        if (r.remaining !== 0) throw corrupt(`${r.remaining} stray bytes`);
      } catch (err) {
        out.issues.push(`${file}: record at offset ${off} unreadable (${(err as Error).message}): stopped there`);
        return { end: off, generation };
      }
      out.records++;
      off = end;
    }
    return { end: off, generation };
  }

  private mapOf(kind: DefinitionKind): Map<string, DefinitionEntry> {
    return META_KINDS.has(kind) ? this.meta : this.topo;
  }

  private apply(key: string, entry: DefinitionEntry | null): void {
    const old = this.get(key);
    if (old !== undefined) {
      this.mapOf(old.kind).delete(key);
      this.liveBytes -= recordBytes(key, old.json);
    }
    if (entry !== null) {
      this.mapOf(entry.kind).set(key, entry);
      this.liveBytes += recordBytes(key, entry.json);
    }
  }

  /** The definitions as RabbitMQ's JSON (for import into the core), or undefined when there are none. */
  toDefinitions(): Record<DefinitionSection, unknown[]> {
    const out: Record<DefinitionSection, unknown[]> = {
      vhosts: [],
      users: [],
      permissions: [],
      topic_permissions: [],
      policies: [],
      exchanges: [],
      queues: [],
      bindings: [],
    };
    for (const map of [this.meta, this.topo]) {
      for (const e of map.values()) out[SECTIONS[e.kind]].push(JSON.parse(e.json) as unknown);
    }
    return out;
  }

  // ---- writing ------------------------------------------------------------------------------

  private encodeRecord(op: number, key: string, json: string | undefined): void {
    const w = this.w;
    const at = w.pos;
    w.ensure(RECORD_HEADER);
    w.pos += RECORD_HEADER;
    w.u8(op);
    w.str32(key);
    if (json !== undefined) w.str32(json);
    sealRecord(w.buf, at, w.pos);
  }

  private encodeMeta(generation: number): void {
    const w = this.w;
    const at = w.pos;
    w.ensure(RECORD_HEADER + 9);
    w.pos += RECORD_HEADER;
    w.u8(OP_META);
    w.f64(generation);
    sealRecord(w.buf, at, w.pos);
  }

  /** A snapshot of the live definitions with `ops` applied, as file bytes. */
  private encodeSnapshot(ops: readonly DefinitionOp[], generation: number): Buffer {
    const w = this.w.reset();
    w.raw(fileHeader('definitions-snapshot'));
    this.encodeMeta(generation);
    const changed = new Map<string, DefinitionEntry | null>();
    for (const op of ops) changed.set(op.key, op.entry);
    for (const map of [this.meta, this.topo]) {
      for (const [key, e] of map) if (!changed.has(key)) this.encodeRecord(OP_SET, key, e.json);
    }
    for (const [key, e] of changed) if (e !== null) this.encodeRecord(OP_SET, key, e.json);
    return Buffer.from(w.buf.subarray(0, w.pos));
  }

  private emptyLog(generation: number): Buffer {
    const w = this.w.reset();
    w.raw(fileHeader('definitions-log'));
    this.encodeMeta(generation);
    return Buffer.from(w.buf.subarray(0, w.pos));
  }

  /** Live bytes once `ops` are applied. */
  private liveAfter(ops: readonly DefinitionOp[]): number {
    let live = this.liveBytes;
    for (const op of ops) {
      const old = this.get(op.key);
      if (old !== undefined) live -= recordBytes(op.key, old.json);
      if (op.entry !== null) live += recordBytes(op.key, op.entry.json);
    }
    return live;
  }

  /**
   * Prepares the write of one batch of changes: appended to the log, or, when the log has grown
   * well past the live definitions, a compaction that writes them all as a new snapshot.
   */
  prepare(ops: readonly DefinitionOp[]): DefinitionsWrite {
    const w = this.w.reset();
    for (const op of ops) this.encodeRecord(op.entry === null ? OP_DEL : OP_SET, op.key, op.entry?.json);
    const appendBytes = w.pos;
    const projected = this.size + appendBytes;
    if (this.needSnapshot || this.fd < 0 || (projected > this.compactBytes && projected > 2 * this.liveAfter(ops) + FILE_HEADER)) {
      return this.prepareSnapshot(ops);
    }
    const data = Buffer.from(w.buf.subarray(0, appendBytes));
    const fd = this.fd;
    const position = this.size;
    return {
      bytes: data.length,
      snapshot: false,
      run: () =>
        new Promise<void>((resolve, reject) => {
          writev(fd, [data], position, (err, n) => {
            if (err) return reject(err);
            if (n !== data.length) return reject(Object.assign(new Error(`short write: ${n} of ${data.length} bytes`), { code: 'ENOSPC' }));
            fdatasync(fd, (e) => (e ? reject(e) : resolve()));
          });
        }),
      done: (ok) => {
        if (!ok) {
          try {
            ftruncateSync(fd, position);
          } catch {
            // the log is replaced by the next write anyway
          }
          // Whatever the failure left in the log, the next write starts a new one from a snapshot.
          this.needSnapshot = true;
          return;
        }
        this.size = position + data.length;
        this.bytesWritten += data.length;
        for (const op of ops) this.apply(op.key, op.entry);
      },
    };
  }

  private prepareSnapshot(ops: readonly DefinitionOp[]): DefinitionsWrite {
    const generation = this.generation + 1;
    const snap = this.encodeSnapshot(ops, generation);
    const fresh = this.emptyLog(generation);
    let renamed = false;
    let newFd = -1;
    return {
      bytes: snap.length + fresh.length,
      snapshot: true,
      run: async () => {
        await writeFileDurably(`${this.snapFile}.tmp`, snap);
        await rename(`${this.snapFile}.tmp`, this.snapFile);
        renamed = true;
        await fsyncDir(this.dir);
        await writeFileDurably(`${this.logFile}.tmp`, fresh);
        await rename(`${this.logFile}.tmp`, this.logFile);
        await fsyncDir(this.dir);
        newFd = openSync(this.logFile, 'r+');
      },
      done: (ok) => {
        if (renamed) this.generation = generation;
        if (!ok) {
          // The old log is now older than the snapshot on disk: appending to it would be lost.
          if (renamed) this.needSnapshot = true;
          if (newFd >= 0) closeSync(newFd);
          return;
        }
        this.swapLog(newFd, fresh.length);
        this.needSnapshot = false;
        this.bytesWritten += snap.length + fresh.length;
        this.snapshots++;
        for (const op of ops) this.apply(op.key, op.entry);
      },
    };
  }

  private swapLog(fd: number, size: number): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        // already closed
      }
    }
    this.fd = fd;
    this.size = size;
  }

  private replaceLogSync(generation: number): void {
    const fresh = this.emptyLog(generation);
    writeFileDurablySync(`${this.logFile}.tmp`, fresh);
    renameSync(`${this.logFile}.tmp`, this.logFile);
    fsyncDirSync(this.dir);
    this.swapLog(openSync(this.logFile, 'r+'), fresh.length);
    this.bytesWritten += fresh.length;
  }

  /**
   * Replaces everything on disk with `entries` (startup, after recovery and migration): a new
   * snapshot and an empty log, written synchronously.
   */
  rewriteSync(entries: ReadonlyMap<string, DefinitionEntry>): void {
    const ops: DefinitionOp[] = [];
    for (const key of [...this.meta.keys(), ...this.topo.keys()]) if (!entries.has(key)) ops.push({ key, entry: null });
    for (const [key, entry] of entries) {
      const old = this.get(key);
      if (old === undefined || old.json !== entry.json) ops.push({ key, entry });
    }
    const generation = this.generation + 1;
    const snap = this.encodeSnapshot(ops, generation);
    writeFileDurablySync(`${this.snapFile}.tmp`, snap);
    renameSync(`${this.snapFile}.tmp`, this.snapFile);
    fsyncDirSync(this.dir);
    this.generation = generation;
    this.bytesWritten += snap.length;
    this.replaceLogSync(generation);
    this.needSnapshot = false;
    for (const op of ops) this.apply(op.key, op.entry);
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      closeSync(this.fd);
    } catch (err) {
      if (errnoCode(err) !== 'EBADF') this.log.warn({ err }, 'cannot close the definitions log');
    }
    this.fd = -1;
  }
}

async function writeFileDurably(file: string, data: Buffer): Promise<void> {
  const h = await open(file, 'w');
  try {
    await h.writeFile(data);
    await h.datasync();
  } finally {
    await h.close();
  }
}

function writeFileDurablySync(file: string, data: Buffer): void {
  const fd = openSync(file, 'w');
  try {
    for (let off = 0; off < data.length; ) off += writeSync(fd, data, off, data.length - off);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
