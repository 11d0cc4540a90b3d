import { closeSync, fdatasync, fstatSync, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, rmSync, unlinkSync, write, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { processMemory, type MemorySource } from '../core/index.js';
import type { StreamLimits, StreamRecord, StreamSlice, StreamStore } from '../core/queues/stream-store.js';
import type { StoredMessage } from '../core/types.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter, encodePropertiesScratch, messageHeadBound, readMessage, writeMessageHead } from './codec.js';
import { fsyncDirSync } from './fs-util.js';
import { MESSAGE_OVERHEAD } from './segment.js';
import { bloomAdd, bloomMayContain } from './stream-bloom.js';

/*
 * A stream directory holds segment files named after their first offset (`<20 digits>.seg`).
 * Each file starts with an 8-byte header ('WRNT' + u32 version) and holds chunks; a chunk is one
 * group commit's worth of records:
 *
 *   u32 magic 'CHNK' | u32 crc32 of everything after it | u32 data length | u32 record count
 *   f64 first offset | f64 timestamp (ms) | u8 flags | u8 bloom length | bloom bytes | data
 *
 * and each record in the data is u32 length | u16 filter length | filter (utf8) | message.
 * Recovery reads the chunks in order and cuts the file at the first torn or corrupt one.
 *
 * The active segment is zero-filled ahead of its end (and the zeroes synced), so a chunk is
 * written over blocks the file already has: its fdatasync then flushes data only, without the
 * journal commit that growing the file costs. Recovery ends at the zeroes as at any end.
 */

const FILE_MAGIC = 'WRNT';
const FILE_VERSION = 1;
const FILE_HEADER = 8;
const CHUNK_MAGIC = 0x4b4e4843;
const CHUNK_FIXED = 34;
/** Set in a chunk's flags when one of its records has no filter value. */
const HAS_UNFILTERED = 1;
/**
 * Chunks kept in memory for readers, in bytes (counted in the memory account): a chunk just
 * written stays as written, and once read it is decoded once for every reader of it.
 */
const CACHE_BYTES = 64 << 20;
/** Memory a decoded record takes besides its bytes in the chunk (its objects). */
const RECORD_OVERHEAD = 256;
/**
 * Writes (each with its fdatasync) that may be in flight at once. One: appends that arrive while
 * a chunk is being written and synced all go out together as the next chunk.
 */
const MAX_IN_FLIGHT = 1;
/** A batch is cut into chunks of at most this many records. */
const MAX_CHUNK_RECORDS = 4096;
/** Bytes zero-filled ahead of the active segment's end at a time, once less than half is left. */
const PREALLOC_BYTES = 4 << 20;
const ZEROES = Buffer.alloc(1 << 20);
/** Scratch space for building a chunk; a larger one is dropped after use. */
const SCRATCH_BYTES = 1 << 20;
const OFFSET_KEY = Buffer.from('x-stream-offset', 'latin1');

interface Chunk {
  readonly seg: StreamSegment;
  readonly pos: number;
  /** Header + data. */
  readonly size: number;
  readonly first: number;
  readonly count: number;
  readonly ts: number;
  readonly flags: number;
  readonly bloom: Buffer;
}

interface StreamSegment {
  readonly first: number;
  readonly path: string;
  fd: number;
  size: number;
  /** Timestamp of its newest chunk. */
  lastTs: number;
  /** Committed chunks. */
  chunks: number;
  /** Writes in flight. */
  writing: number;
  /** The file's bytes up to here exist (zero-filled ahead of `size`, or written) and are synced. */
  zeroed: number;
  /** The zero fill in flight, and where it starts; chunks reaching past `fillFrom` wait for it. */
  filling: Promise<void> | undefined;
  fillFrom: number;
  /** Closed (or to be closed once its fill is done): no more fills. */
  dead: boolean;
}

function openSegment(first: number, path: string, fd: number): StreamSegment {
  return { first, path, fd, size: FILE_HEADER, lastTs: 0, chunks: 0, writing: 0, zeroed: 0, filling: undefined, fillFrom: 0, dead: false };
}

/** Closes a segment's file, after its zero fill if one is in flight (its fd must not be reused under it). */
function closeSegment(seg: StreamSegment): void {
  seg.dead = true;
  const close = (): void => {
    try {
      closeSync(seg.fd);
    } catch {
      // already closed
    }
  };
  if (seg.filling === undefined) close();
  else void seg.filling.then(close);
}

interface Pending {
  msg: StoredMessage;
  filter: string | undefined;
}

/** A chunk held for readers: the bytes as written or read, and its records once decoded. */
interface Cached {
  readonly buf: Buffer;
  records: StreamRecord[] | undefined;
  bytes: number;
}

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

function segFile(first: number): string {
  return `${String(first).padStart(20, '0')}.seg`;
}

function fileHeader(): Buffer {
  const b = Buffer.alloc(FILE_HEADER);
  b.write(FILE_MAGIC, 0, 'latin1');
  b.writeUInt32LE(FILE_VERSION, 4);
  return b;
}

function writeAt(fd: number, buf: Buffer, pos: number): Promise<void> {
  return new Promise((resolve, reject) => {
    write(fd, buf, 0, buf.length, pos, (err, n) => {
      if (err) reject(err);
      else if (n !== buf.length) reject(new Error(`short write: ${n} of ${buf.length} bytes`));
      else resolve();
    });
  });
}

function datasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

/**
 * AMQP basic properties (flags, then values: AMQP 0-9-1 §4.2.6.1) with `x-stream-offset` added
 * to the headers table, so an AMQP reader receives the publisher's own property bytes. Undefined
 * when the flags continue into a second word (never for basic) or the headers already hold it.
 */
function withOffsetHeader(raw: Buffer, offset: number): Buffer | undefined {
  if (raw.length < 2) return undefined;
  const flags = raw.readUInt16BE(0);
  if ((flags & 1) !== 0) return undefined;
  let pos = 2;
  if ((flags & 0x8000) !== 0) pos += 1 + raw[pos]!; // content-type
  if ((flags & 0x4000) !== 0) pos += 1 + raw[pos]!; // content-encoding
  const long = offset > 0x7fffffff;
  // shortstr key, type tag, value: 'I' (int32) or 'l' (int64), as the table encoder chooses
  const entry = 1 + OFFSET_KEY.length + 1 + (long ? 8 : 4);
  const hasHeaders = (flags & 0x2000) !== 0;
  if (hasHeaders && pos + 4 > raw.length) return undefined;
  const tableLen = hasHeaders ? raw.readUInt32BE(pos) : 0;
  const at = pos + 4 + tableLen;
  if (at > raw.length) return undefined;
  const out = Buffer.allocUnsafe(raw.length + entry + (hasHeaders ? 0 : 4));
  raw.copy(out, 0, 0, pos);
  out.writeUInt16BE(flags | 0x2000, 0);
  out.writeUInt32BE(tableLen + entry, pos);
  if (hasHeaders) raw.copy(out, pos + 4, pos + 4, at);
  let w = pos + 4 + tableLen;
  out[w++] = OFFSET_KEY.length;
  w += OFFSET_KEY.copy(out, w);
  if (long) {
    out[w++] = 0x6c; // 'l'
    out.writeUInt32BE(Math.floor(offset / 0x100000000), w);
    out.writeUInt32BE(offset >>> 0, w + 4);
    w += 8;
  } else {
    out[w++] = 0x49; // 'I'
    w = out.writeInt32BE(offset, w);
  }
  raw.copy(out, w, hasHeaders ? at : pos);
  return out;
}

let scratch = new ByteWriter(64 << 10);
const reader = new ByteReader();

/**
 * One stream's log on disk (see the format above). Appends are group-committed: everything
 * appended while a chunk is being written goes out as the next chunk, with one write and one
 * fdatasync. Readers see a record once its chunk is durable.
 */
export class StreamLog implements StreamStore, MemorySource {
  onCommit: (() => void) | undefined = undefined;
  private readonly segs: StreamSegment[] = [];
  private readonly chunks: Chunk[] = [];
  /** Index of the first live chunk in `chunks` (retention advances it; compacted now and then). */
  private head = 0;
  private nextOffset = 0;
  private committed = 0;
  private totalBytes = 0;
  private pending: Pending[] = [];
  private batch: Batch | undefined;
  private inFlight = 0;
  /** Settles once every write so far is committed (or failed). */
  private lastCommit: Promise<void> = Promise.resolve();
  private failed: Error | undefined;
  private scheduled = false;
  private closed = false;
  private limits: StreamLimits;
  /** Chunks held for readers by first offset; the map's order is the eviction order. */
  private readonly cache = new Map<number, Cached>();
  private cacheBytes = 0;
  private readonly nextId: () => number;

  constructor(
    readonly dir: string,
    limits: StreamLimits,
    private readonly log: Logger,
    /** Called once the log is closed or deleted. */
    private readonly forget?: () => void,
  ) {
    this.limits = limits;
    let id = 0;
    // Messages read back from disk get ids of their own, below every live message's.
    this.nextId = () => -++id;
    mkdirSync(dir, { recursive: true });
    this.recover();
  }

  get first(): number {
    return this.head < this.chunks.length ? this.chunks[this.head]!.first : this.committed;
  }

  get end(): number {
    return this.committed;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get segments(): number {
    return this.segs.length;
  }

  setLimits(limits: StreamLimits): void {
    this.limits = limits;
    this.applyRetention();
  }

  restartAt(offset: number): void {
    if (this.closed) throw new Error('stream is deleted');
    if (this.inFlight > 0 || this.pending.length > 0) throw new Error('stream has appends pending');
    for (const seg of this.segs) {
      try {
        closeSegment(seg);
        unlinkSync(seg.path);
      } catch (e) {
        this.log.warn({ stream: this.dir, segment: seg.path, err: e instanceof Error ? e.message : String(e) }, 'cannot delete stream segment');
      }
    }
    this.segs.length = 0;
    this.chunks.length = 0;
    this.head = 0;
    this.totalBytes = 0;
    this.cache.clear();
    this.cacheBytes = 0;
    this.nextOffset = offset;
    this.committed = offset;
    // An empty segment named after its first offset keeps the start across a restart.
    this.newSegment(offset);
  }

  // ---- recovery -----------------------------------------------------------------------------

  private recover(): void {
    const names = readdirSync(this.dir).filter((n) => /^\d{20}\.seg$/.test(n)).sort();
    for (const name of names) {
      const path = join(this.dir, name);
      const first = Number(name.slice(0, 20));
      if (this.chunks.length > 0 && first !== this.nextOffset) {
        // A gap (a segment lost by hand): start counting again from this file's first offset.
        this.log.warn({ stream: this.dir, expected: this.nextOffset, found: first }, 'stream segment does not follow the previous one');
      }
      const fd = openSync(path, 'r+');
      const seg = openSegment(first, path, fd);
      this.scanSegment(seg);
      if (seg.chunks === 0 && names.length > 1) {
        closeSync(fd);
        unlinkSync(path);
        continue;
      }
      this.segs.push(seg);
      this.totalBytes += seg.size;
      if (seg.chunks === 0) this.nextOffset = Math.max(this.nextOffset, first);
    }
    this.committed = this.nextOffset;
    this.applyRetention();
  }

  private scanSegment(seg: StreamSegment): void {
    const fileSize = fstatSync(seg.fd).size;
    const head = Buffer.alloc(FILE_HEADER);
    if (readSync(seg.fd, head, 0, FILE_HEADER, 0) < FILE_HEADER || head.toString('latin1', 0, 4) !== FILE_MAGIC) {
      // Empty or never finished: rewrite its header.
      ftruncateSync(seg.fd, 0);
      writeHeaderSync(seg.fd, fileHeader(), 0);
      seg.size = FILE_HEADER;
      seg.zeroed = FILE_HEADER;
      if (this.chunks.length === 0) this.nextOffset = seg.first;
      return;
    }
    let pos = FILE_HEADER;
    let expect = this.chunks.length === 0 ? seg.first : this.nextOffset;
    const fixed = Buffer.alloc(CHUNK_FIXED);
    for (;;) {
      if (pos + CHUNK_FIXED > fileSize) break;
      readSync(seg.fd, fixed, 0, CHUNK_FIXED, pos);
      if (fixed.readUInt32LE(0) !== CHUNK_MAGIC) break;
      const dataLen = fixed.readUInt32LE(8);
      const bloomLen = fixed[33]!;
      const size = CHUNK_FIXED + bloomLen + dataLen;
      if (pos + size > fileSize) break;
      const whole = Buffer.allocUnsafe(size);
      readSync(seg.fd, whole, 0, size, pos);
      if (crc32(whole.subarray(8)) !== whole.readUInt32LE(4)) break;
      const first = whole.readDoubleLE(16);
      if (seg.chunks === 0 && this.chunks.length === 0) expect = first;
      if (first !== expect) break;
      const count = whole.readUInt32LE(12);
      const ts = whole.readDoubleLE(24);
      const chunk: Chunk = { seg, pos, size, first, count, ts, flags: whole[32]!, bloom: Buffer.from(whole.subarray(CHUNK_FIXED, CHUNK_FIXED + bloomLen)) };
      this.chunks.push(chunk);
      seg.chunks++;
      seg.lastTs = ts;
      expect = first + count;
      pos += size;
    }
    seg.size = pos;
    seg.zeroed = fileSize;
    if (pos < fileSize && !zeroesFrom(seg.fd, pos, fileSize)) {
      this.log.warn({ stream: this.dir, segment: seg.path, at: pos, size: fileSize }, 'stream segment cut at a torn or corrupt chunk');
      ftruncateSync(seg.fd, pos);
      seg.zeroed = pos;
    }
    this.nextOffset = expect;
  }

  // ---- appending ----------------------------------------------------------------------------

  append(msg: StoredMessage, filter: string | undefined): Promise<void> {
    if (this.closed) return Promise.reject(new Error('stream is deleted'));
    if (this.failed !== undefined) return Promise.reject(this.failed);
    this.pending.push({ msg, filter });
    const b = (this.batch ??= new Batch());
    if (!this.scheduled && this.inFlight < MAX_IN_FLIGHT) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
    return b.promise;
  }

  private readonly flushBound = (): void => {
    this.scheduled = false;
    this.flush();
  };

  /**
   * Builds the pending records into chunks and writes them. Up to MAX_IN_FLIGHT writes (each with
   * its fdatasync) overlap, so appends arriving during one fsync need not wait for it; they are
   * committed (made readable, confirmed) strictly in order.
   */
  private flush(): void {
    if (this.closed || this.pending.length === 0 || this.inFlight >= MAX_IN_FLIGHT) return;
    if (this.failed !== undefined) {
      this.batch?.reject(this.failed);
      this.batch = undefined;
      this.pending = [];
      return;
    }
    const items = this.pending;
    const batch = this.batch!;
    this.pending = [];
    this.batch = undefined;
    let seg = this.activeSegment();
    if (seg.size >= this.limits.segmentBytes && seg.size > FILE_HEADER) seg = this.newSegment(this.nextOffset);
    const written: { chunk: Chunk; buf: Buffer }[] = [];
    const bufs: Buffer[] = [];
    const at = seg.size;
    let first = this.nextOffset;
    for (let i = 0; i < items.length; i += MAX_CHUNK_RECORDS) {
      const end = Math.min(items.length, i + MAX_CHUNK_RECORDS);
      const built = this.buildChunk(seg, seg.size, first, items, i, end);
      bufs.push(built.buf);
      written.push(built);
      seg.size += built.buf.length;
      first += end - i;
    }
    this.nextOffset = first;
    const all = bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs);
    this.totalBytes += all.length;
    seg.writing++;
    this.inFlight++;
    // A chunk reaching into a zero fill still in flight is written after it, never under it.
    const fill = seg.filling !== undefined && seg.size > seg.fillFrom ? seg.filling : undefined;
    const io = (fill === undefined ? writeAt(seg.fd, all, at) : fill.then(() => writeAt(seg.fd, all, at))).then(() => datasync(seg.fd));
    this.fillAhead(seg);
    const previous = this.lastCommit;
    this.lastCommit = Promise.all([io, previous]).then(
      () => {
        seg.writing--;
        this.inFlight--;
        if (this.closed) return;
        if (this.failed !== undefined) {
          batch.reject(this.failed);
        } else {
          for (const w of written) {
            this.chunks.push(w.chunk);
            seg.chunks++;
            seg.lastTs = w.chunk.ts;
            this.cachePut(w.chunk.first, { buf: w.buf, records: undefined, bytes: w.buf.length });
          }
          this.committed = first;
          batch.resolve();
          if (this.segs.length > 1) this.applyRetention();
          this.onCommit?.();
        }
        this.flush();
      },
      (e: unknown) => {
        seg.writing--;
        this.inFlight--;
        // The log stops taking appends: a chunk after a failed one would follow a hole.
        const err = e instanceof Error ? e : new Error(String(e));
        if (this.failed === undefined) {
          this.failed = err;
          this.log.error({ stream: this.dir, err: err.message }, 'stream write failed: the stream refuses publishes until the broker restarts');
        }
        batch.reject(this.failed);
        this.flush();
      },
    );
  }

  /**
   * Zero-fills the next PREALLOC_BYTES past the segment's end (up to its size limit) and syncs
   * them, once less than half of the current fill is left. Off the write path: chunks go on
   * being written below it meanwhile.
   */
  private fillAhead(seg: StreamSegment): void {
    if (seg.filling !== undefined || seg.dead || seg.zeroed - seg.size >= PREALLOC_BYTES >> 1) return;
    const from = Math.max(seg.zeroed, seg.size);
    const to = Math.min(from + PREALLOC_BYTES, this.limits.segmentBytes);
    if (to <= from) return;
    seg.fillFrom = from;
    seg.filling = (async () => {
      for (let pos = from; pos < to && !seg.dead; pos += ZEROES.length) await writeAt(seg.fd, ZEROES.subarray(0, Math.min(ZEROES.length, to - pos)), pos);
      if (!seg.dead) await datasync(seg.fd);
      if (!seg.dead) seg.zeroed = to;
    })().then(
      () => {
        seg.filling = undefined;
      },
      (e: unknown) => {
        // Chunks are simply appended past the end then (their syncs cost more).
        seg.filling = undefined;
        if (!seg.dead) this.log.warn({ stream: this.dir, segment: seg.path, err: e instanceof Error ? e.message : String(e) }, 'cannot zero-fill stream segment ahead');
      },
    );
  }

  /** Encodes items[from, to) into one chunk: one scratch buffer, one copy out of it. */
  private buildChunk(seg: StreamSegment, pos: number, first: number, items: Pending[], from: number, to: number): { buf: Buffer; chunk: Chunk } {
    const bloomLen = this.limits.filterBytes;
    const bloom = Buffer.alloc(bloomLen);
    let flags = 0;
    const w = scratch.reset();
    const head = CHUNK_FIXED + bloomLen;
    w.ensure(head);
    w.pos = head;
    for (let i = from; i < to; i++) {
      const p = items[i]!;
      const m = p.msg;
      const props = encodePropertiesScratch(m.properties);
      const f = p.filter;
      w.ensure(6 + (f === undefined ? 0 : f.length * 3) + messageHeadBound(m, props) + m.body.length);
      const rec = w.pos;
      let flen = 0;
      if (f === undefined) flags |= HAS_UNFILTERED;
      else {
        bloomAdd(bloom, f);
        flen = w.buf.write(f, rec + 6, 'utf8');
        // a filter value too long for its u16 length is kept in the Bloom filter only
        if (flen > 0xffff) flen = 0;
      }
      let at = writeMessageHead(w.buf, rec + 6 + flen, m, props);
      at += m.body.copy(w.buf, at);
      w.buf.writeUInt32LE(at - rec - 4, rec);
      w.buf.writeUInt16LE(flen, rec + 4);
      w.pos = at;
    }
    const buf = Buffer.allocUnsafe(w.pos);
    w.buf.copy(buf, 0, 0, w.pos);
    if (w.buf.length > SCRATCH_BYTES) scratch = new ByteWriter(64 << 10);
    const dataLen = buf.length - head;
    const count = to - from;
    buf.writeUInt32LE(CHUNK_MAGIC, 0);
    buf.writeUInt32LE(dataLen, 8);
    buf.writeUInt32LE(count, 12);
    const ts = Date.now();
    buf.writeDoubleLE(first, 16);
    buf.writeDoubleLE(ts, 24);
    buf[32] = flags;
    buf[33] = bloomLen;
    bloom.copy(buf, CHUNK_FIXED);
    buf.writeUInt32LE(crc32(buf.subarray(8)), 4);
    const chunk: Chunk = { seg, pos, size: buf.length, first, count, ts, flags, bloom };
    return { buf, chunk };
  }

  private activeSegment(): StreamSegment {
    const last = this.segs[this.segs.length - 1];
    if (last !== undefined) return last;
    return this.newSegment(this.committed);
  }

  private newSegment(first: number): StreamSegment {
    const path = join(this.dir, segFile(first));
    const fd = openSync(path, 'w+');
    writeHeaderSync(fd, fileHeader(), 0);
    fsyncDirSync(this.dir);
    const seg = openSegment(first, path, fd);
    seg.zeroed = FILE_HEADER;
    this.segs.push(seg);
    this.totalBytes += FILE_HEADER;
    return seg;
  }

  // ---- retention ----------------------------------------------------------------------------

  /** Deletes whole oldest segments beyond the byte limit or older than the age limit; never the active one. */
  applyRetention(): void {
    const { maxBytes, maxAgeMs } = this.limits;
    if (maxBytes === undefined && maxAgeMs === undefined) return;
    const now = Date.now();
    while (this.segs.length > 1) {
      const old = this.segs[0]!;
      if (old.writing > 0 || old.filling !== undefined) break;
      const overBytes = maxBytes !== undefined && this.totalBytes > maxBytes;
      const tooOld = maxAgeMs !== undefined && old.chunks > 0 && old.lastTs < now - maxAgeMs;
      if (!overBytes && !tooOld) break;
      this.segs.shift();
      this.totalBytes -= old.size;
      while (this.head < this.chunks.length && this.chunks[this.head]!.seg === old) {
        this.cacheDrop(this.chunks[this.head]!.first);
        this.head++;
      }
      try {
        closeSegment(old);
        unlinkSync(old.path);
      } catch (e) {
        this.log.warn({ stream: this.dir, segment: old.path, err: e instanceof Error ? e.message : String(e) }, 'cannot delete stream segment');
      }
    }
    if (this.head > 1024 && this.head > this.chunks.length >> 1) {
      this.chunks.splice(0, this.head);
      this.head = 0;
    }
  }

  // ---- reading ------------------------------------------------------------------------------

  /** Index of the chunk holding `offset` (the first one at or after it), or -1. */
  private chunkIndex(offset: number): number {
    let lo = this.head;
    let hi = this.chunks.length - 1;
    if (hi < lo) return -1;
    if (offset < this.chunks[lo]!.first) return lo;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid]!.first <= offset) lo = mid;
      else hi = mid - 1;
    }
    const c = this.chunks[lo]!;
    if (offset < c.first + c.count) return lo;
    return lo + 1 < this.chunks.length ? lo + 1 : -1;
  }

  slice(offset: number, filters: readonly string[] | undefined, matchUnfiltered: boolean): StreamSlice | undefined {
    let i = this.chunkIndex(offset);
    if (i < 0) return undefined;
    if (filters !== undefined) {
      for (; i < this.chunks.length; i++) {
        const c = this.chunks[i]!;
        if (matchUnfiltered && (c.flags & HAS_UNFILTERED) !== 0) break;
        let may = false;
        for (const f of filters) if (bloomMayContain(c.bloom, f)) may = true;
        if (may) break;
      }
      if (i >= this.chunks.length) return { records: [], start: 0, next: this.committed };
    }
    const c = this.chunks[i]!;
    const records = this.readChunk(c);
    const start = offset > c.first ? offset - c.first : 0;
    return { records, start, next: c.first + c.count };
  }

  private readChunk(c: Chunk): StreamRecord[] {
    const hit = this.cache.get(c.first);
    if (hit !== undefined) {
      // Move to the end: the map's order is the eviction order.
      this.cache.delete(c.first);
      this.cache.set(c.first, hit);
      if (hit.records !== undefined) return hit.records;
    }
    let buf = hit?.buf;
    if (buf === undefined) {
      buf = Buffer.allocUnsafe(c.size);
      readSync(c.seg.fd, buf, 0, c.size, c.pos);
    }
    const records = decodeChunk(c, buf, this.nextId);
    const bytes = buf.length + records.length * RECORD_OVERHEAD;
    if (hit !== undefined) {
      hit.records = records;
      this.cacheBytes += bytes - hit.bytes;
      hit.bytes = bytes;
      this.evict();
    } else this.cachePut(c.first, { buf, records, bytes });
    return records;
  }

  private cachePut(first: number, e: Cached): void {
    this.cache.set(first, e);
    this.cacheBytes += e.bytes;
    processMemory.track(this);
    this.evict();
  }

  private evict(): void {
    while (this.cacheBytes > CACHE_BYTES && this.cache.size > 1) {
      const oldest = this.cache.keys().next().value as number;
      this.cacheDrop(oldest);
    }
  }

  private cacheDrop(first: number): void {
    const e = this.cache.get(first);
    if (e === undefined) return;
    this.cache.delete(first);
    this.cacheBytes -= e.bytes;
  }

  /** MemorySource: the chunks held for readers. */
  get heldBytes(): number {
    return this.closed ? 0 : this.cacheBytes;
  }

  lastChunkOffset(): number {
    const n = this.chunks.length;
    return n > this.head ? this.chunks[n - 1]!.first : this.committed;
  }

  offsetAt(ms: number): number {
    for (let i = this.head; i < this.chunks.length; i++) if (this.chunks[i]!.ts >= ms) return this.chunks[i]!.first;
    return this.committed;
  }

  /** Closes the files (broker stop); pending appends are left to fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.segs) closeSegment(s);
    this.batch?.reject(new Error('stream closed'));
    this.cache.clear();
    this.cacheBytes = 0;
    processMemory.untrack(this);
    this.forget?.();
  }

  /** Resolves once no write is pending or in flight. */
  async idle(): Promise<void> {
    while (!this.closed && this.failed === undefined && (this.inFlight > 0 || this.pending.length > 0)) {
      await new Promise<void>((r) => setTimeout(r, 2));
    }
  }

  deleted(): void {
    this.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The records of a chunk read from `buf`; their bodies and property bytes are views of it. */
function decodeChunk(c: Chunk, buf: Buffer, nextId: () => number): StreamRecord[] {
  const records: StreamRecord[] = [];
  let at = CHUNK_FIXED + c.bloom.length;
  for (let i = 0; i < c.count; i++) {
    const len = buf.readUInt32LE(at);
    const flen = buf.readUInt16LE(at + 4);
    const filter = flen === 0 ? undefined : buf.toString('utf8', at + 6, at + 6 + flen);
    const m = readMessage(reader.reset(buf, at + 6 + flen, at + 4 + len), false);
    const offset = c.first + i;
    const p = m.properties;
    const headers = p.headers ?? {};
    const raw = m.rawProperties === undefined || headers['x-stream-offset'] !== undefined ? undefined : withOffsetHeader(m.rawProperties, offset);
    headers['x-stream-offset'] = offset;
    p.headers = headers;
    const msg: StoredMessage = {
      exchange: m.exchange,
      routingKey: m.routingKey,
      properties: p,
      body: m.body,
      rawProperties: raw,
      id: nextId(),
      size: m.body.length + MESSAGE_OVERHEAD,
      persistent: true,
      refs: 0,
      publisherId: 0,
    };
    records.push({ offset, filter, msg });
    at += 4 + len;
  }
  return records;
}

/** Whether the file's bytes [from, to) are all zero (a tail zero-filled ahead, never written). */
function zeroesFrom(fd: number, from: number, to: number): boolean {
  const buf = Buffer.allocUnsafe(Math.min(ZEROES.length, to - from));
  for (let pos = from; pos < to; ) {
    const n = readSync(fd, buf, 0, Math.min(buf.length, to - pos), pos);
    if (n <= 0) return false;
    for (let i = 0; i < n; i++) if (buf[i] !== 0) return false;
    pos += n;
  }
  return true;
}

/** Writes a small buffer (a file header) in place. */
function writeHeaderSync(fd: number, buf: Buffer, pos: number): void {
  let off = 0;
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off, pos + off);
}
