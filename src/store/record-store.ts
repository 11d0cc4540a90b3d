import { closeSync, fdatasync, fdatasyncSync, mkdirSync, openSync, renameSync, truncateSync, writeSync, writev } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter } from './codec.js';
import { StoreError } from './errors.js';
import { FILE_HEADER, RECORD_HEADER, checkHeader, describeIssue, fileHeader, scanRecords, sealRecord } from './format.js';
import { errnoCode, fsyncDirSync, readIfExists } from './fs-util.js';

const OP_SET = 1;
const OP_DELETE = 2;
/** Rewrite the file once it holds this much more than its live content (and at least this much). */
const COMPACT_MIN_BYTES = 1 << 20;

/**
 * A small durable key/value store in one append-only file: for state that is not a queue, such as
 * MQTT retained messages, session state and delayed wills. Every value is also kept in memory.
 *
 * Each change is a record (SET: key and value, DELETE: key) in the common framing (length, crc32,
 * payload; torn tails truncated and corrupt records skipped on load). Changes made in the same
 * turn of the event loop are written together with one fdatasync; the promise of each resolves
 * once its record is durable. When dead records outweigh live ones the file is rewritten
 * atomically (temp, fsync, rename).
 */
export class RecordStore {
  private readonly map = new Map<string, Buffer>();
  private fd: number;
  private size: number;
  private liveBytes = 0;
  private pending: Array<[string, Buffer | null]> = [];
  private waiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private scheduled = false;
  private writing = false;
  private closed = false;
  private readonly w = new ByteWriter(4096);
  private idle: Array<() => void> = [];

  private constructor(
    readonly file: string,
    private readonly log: Logger,
  ) {
    mkdirSync(dirname(file), { recursive: true });
    const buf = readIfExists(file);
    if (buf === undefined || buf.length === 0) {
      this.fd = openSync(file, 'w+');
      writeSync(this.fd, fileHeader('records'), 0, FILE_HEADER, 0);
      this.size = FILE_HEADER;
      fsyncDirSync(dirname(file));
      return;
    }
    checkHeader(buf, 'records', file);
    const r = new ByteReader();
    const scan = scanRecords(buf, FILE_HEADER, (b, s, e, offset) => {
      try {
        r.reset(b, s, e);
        const op = r.u8();
        const key = r.str16();
        if (op === OP_SET) {
          const value = r.bytes32();
          this.put(key, value);
        } else if (op === OP_DELETE) this.drop(key);
        else throw new StoreError('corrupt', `unknown operation ${op}`);
      } catch (err) {
        log.warn({ file, offset }, `record skipped: ${(err as Error).message}`);
      }
    });
    for (const issue of scan.issues) log.warn({ file }, describeIssue(file, issue));
    if (scan.end < buf.length) truncateSync(file, scan.end);
    this.size = scan.end;
    this.fd = openSync(file, 'r+');
  }

  /** Opens (creating if needed) the store in `file`; a damaged file is a `corrupt` StoreError. */
  static open(file: string, log: Logger): RecordStore {
    return new RecordStore(file, log);
  }

  get count(): number {
    return this.map.size;
  }

  get(key: string): Buffer | undefined {
    return this.map.get(key);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  keys(): IterableIterator<string> {
    return this.map.keys();
  }

  entries(): IterableIterator<[string, Buffer]> {
    return this.map.entries();
  }

  /** Stores `value` under `key`; resolves once it is on disk. */
  set(key: string, value: Buffer): Promise<void> {
    this.put(key, value);
    return this.queue(key, value);
  }

  /** Removes `key`; resolves once that is on disk. */
  delete(key: string): Promise<void> {
    if (!this.map.has(key)) return Promise.resolve();
    this.drop(key);
    return this.queue(key, null);
  }

  private put(key: string, value: Buffer): void {
    this.drop(key);
    this.map.set(key, value);
    this.liveBytes += key.length + value.length + 16;
  }

  private drop(key: string): void {
    const old = this.map.get(key);
    if (old === undefined) return;
    this.map.delete(key);
    this.liveBytes -= key.length + old.length + 16;
  }

  private queue(key: string, value: Buffer | null): Promise<void> {
    if (this.closed) return Promise.reject(new StoreError('startup', `record store ${this.file} is closed`));
    this.pending.push([key, value]);
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (!this.scheduled && !this.writing) {
      this.scheduled = true;
      setImmediate(this.writeBound);
    }
    return p;
  }

  private readonly writeBound = (): void => {
    this.scheduled = false;
    this.writeBatch();
  };

  private writeBatch(): void {
    if (this.pending.length === 0) {
      for (const f of this.idle.splice(0)) f();
      return;
    }
    this.writing = true;
    const ops = this.pending;
    const waiters = this.waiters;
    this.pending = [];
    this.waiters = [];
    const w = this.w.reset();
    for (const [key, value] of ops) {
      const at = w.pos;
      w.ensure(RECORD_HEADER);
      w.pos += RECORD_HEADER;
      w.u8(value === null ? OP_DELETE : OP_SET);
      w.str16(key);
      if (value !== null) w.bytes32(value);
      sealRecord(w.buf, at, w.pos);
    }
    const data = Buffer.from(w.buf.subarray(0, w.pos));
    const position = this.size;
    const done = (err: Error | null): void => {
      this.writing = false;
      if (err) {
        try {
          truncateSync(this.file, position);
        } catch {
          // the next write starts at the same place anyway
        }
        this.log.error({ err, file: this.file }, 'record store write failed');
        for (const x of waiters) x.reject(err);
      } else {
        this.size = position + data.length;
        for (const x of waiters) x.resolve();
        this.maybeCompact();
      }
      if (this.pending.length > 0) this.writeBatch();
      else for (const f of this.idle.splice(0)) f();
    };
    writev(this.fd, [data], position, (err, n) => {
      if (err) return done(err);
      if (n !== data.length) return done(Object.assign(new Error(`short write: ${n} of ${data.length} bytes`), { code: 'ENOSPC' }));
      fdatasync(this.fd, (e) => done(e));
    });
  }

  /** Rewrites the file with only the live records, atomically. */
  private maybeCompact(): void {
    const garbage = this.size - FILE_HEADER - this.liveBytes;
    if (garbage < COMPACT_MIN_BYTES || garbage < this.liveBytes) return;
    const tmp = `${this.file}.compact`;
    try {
      const w = new ByteWriter(Math.max(4096, this.liveBytes + FILE_HEADER));
      w.raw(fileHeader('records'));
      for (const [key, value] of this.map) {
        const at = w.pos;
        w.ensure(RECORD_HEADER);
        w.pos += RECORD_HEADER;
        w.u8(OP_SET);
        w.str16(key);
        w.bytes32(value);
        sealRecord(w.buf, at, w.pos);
      }
      const fd = openSync(tmp, 'w');
      try {
        for (let off = 0; off < w.pos; ) off += writeSync(fd, w.buf, off, w.pos - off);
        fdatasyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.file);
      fsyncDirSync(dirname(this.file));
      closeSync(this.fd);
      this.fd = openSync(this.file, 'r+');
      this.size = w.pos;
    } catch (err) {
      this.log.error({ err, file: this.file }, 'record store compaction failed (the old file is kept)');
    }
  }

  /** Resolves once every change so far is on disk. */
  flush(): Promise<void> {
    if (!this.writing && !this.scheduled && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.flush();
    this.closed = true;
    try {
      closeSync(this.fd);
    } catch (err) {
      if (errnoCode(err) !== 'EBADF') throw err;
    }
  }
}
