import {
  closeSync,
  constants,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Deque } from '../core/deque.js';
import { tableToJson } from '../core/definitions.js';
import type { PageSink, QueueStore } from '../core/persistence.js';
import { newEntry, type QueueEntry } from '../core/queues/entry.js';
import type { Queue } from '../core/queues/queue.js';
import type { StoredMessage } from '../core/types.js';
import type { Logger } from '../logger.js';
import { FileWrite, type Arena } from './arena.js';
import { encodePropertiesScratch, type MessageContent } from './codec.js';
import { StoreError } from './errors.js';
import { FILE_HEADER, MAX_RECORD, RECORD_HEADER, checkHeader, describeIssue, fileHeader, scanRecords } from './format.js';
import { errnoCode, readIfExists, segName } from './fs-util.js';
import type { BatchContext, MessageLog } from './message-log.js';
import {
  T_ENQ,
  T_REF,
  entryBodyLen,
  entryExpiresAt,
  entrySeq,
  inRanges,
  isEntryRecord,
  readAcks,
  readInlineMessage,
  refLoc,
  writeAcks,
  writeEnqueue,
  writeRef,
  type MessageLoc,
} from './records.js';

/** QueueEntry.pstate values (0: not persisted). */
export const QUEUED = 1;
/** Record built into a batch (in flight or on disk). */
export const WRITTEN = 2;
/** Like WRITTEN, and counted in its segment's `paged` (the queue holds no copy). */
export const WRITTEN_PAGED = 3;
export const GONE = 4;
/** QueueEntry.mseg while the body waits to be written to the shared log in the current batch. */
export const SHARED_PENDING = -1;

/** How far the delivery frontier jumps ahead each time it is written. */
const FRONTIER_STEP = 1024;
/** Bytes read from a segment at a time when paging messages back in. */
const READ_CHUNK = 1 << 20;
/** At most this many messages per pageIn call (bounds the time spent decoding). */
const PAGE_IN_MAX = 4096;
/** What the core counts per message besides its body (vhost.ts: size = body + 64). */
const MESSAGE_OVERHEAD = 64;

/** What a queue log needs from the store. */
export interface QueueLogHost {
  readonly messages: MessageLog;
  readonly log: Logger;
  readonly segmentSize: number;
  /** True while a batch is being written. */
  readonly flushing: boolean;
  nextMessageId(): number;
  /** A persistent message joined `log`: it goes into the current batch; returns its promise. */
  enqueued(log: QueueLog, e: QueueEntry): Promise<void>;
  /** `log` has acks or ranges to write. */
  touched(log: QueueLog): void;
  /** Runs `fn` once no batch is being written (file descriptors may be closed then). */
  whenIdle(fn: () => void): void;
  /** The queue was deleted. */
  forget(log: QueueLog): void;
}

interface Segment {
  readonly num: number;
  fd: number;
  /** Bytes built (including a batch in flight). */
  size: number;
  /** Bytes known to be written. */
  durable: number;
  /** Records not yet removed. */
  live: number;
  /** Live records the queue holds no copy of (paged). */
  paged: number;
  sealed: boolean;
  ackFd: number;
  ackSize: number;
  ackDurable: number;
  /** Acked offsets and removed seq ranges known from recovery, for the paged-message reader. */
  acked: Set<number> | undefined;
  ranges: number[] | undefined;
}

/** What recovery of one queue found. */
export interface QueueRecovery {
  messages: number;
  inMemory: number;
  paged: number;
  lost: number;
  segments: number;
  issues: string[];
}

export function storedMessage(m: MessageContent, id: number): StoredMessage {
  // Same field order as the vhost's own StoredMessage literal (one hidden class).
  return {
    exchange: m.exchange,
    routingKey: m.routingKey,
    properties: m.properties,
    body: m.body,
    rawProperties: m.rawProperties,
    id,
    size: m.body.length + MESSAGE_OVERHEAD,
    persistent: true,
    refs: 0,
    publisherId: 0,
  };
}

function newSegment(num: number): Segment {
  return {
    num,
    fd: -1,
    size: FILE_HEADER,
    durable: FILE_HEADER,
    live: 0,
    paged: 0,
    sealed: false,
    ackFd: -1,
    ackSize: FILE_HEADER,
    ackDurable: FILE_HEADER,
    acked: undefined,
    ranges: undefined,
  };
}

let deletedCounter = 0;

function closeQuietly(fd: number): void {
  if (fd < 0) return;
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to release
  }
}

/**
 * The persistent messages of one durable queue: a directory of append-only segment files
 * (`NNNNNNNN.seg`) with one record per message, an ack file per segment (`NNNNNNNN.ack`) recording
 * which records left the queue, and a `frontier` file (every message at or below that sequence
 * number may have been delivered). A segment and its ack file are deleted once all its records are
 * removed.
 */
export class QueueLog implements QueueStore {
  frontier = 0;
  /** The frontier found at recovery: messages at or below it come back flagged redelivered. */
  private recoveredFrontier = 0;
  private readonly segs = new Map<number, Segment>();
  private cur: Segment | undefined;
  private nextNum = 1;
  private dirReady: boolean;
  private frontierFd = -1;
  private readonly frontierBuf = Buffer.alloc(16);
  private gone = false;

  // ---- the current batch ----
  /** Set while the log is in the store's list of logs to build. */
  inBatch = false;
  private pending: QueueEntry[] = [];
  private spare: QueueEntry[] = [];
  /** (segment, offset) pairs to ack. */
  private acks: number[] = [];
  /** (segment, first seq, last seq) triples to ack. */
  private ranges: number[] = [];
  /** What the batch in flight built, to undo it if the write fails. */
  private built: QueueEntry[] = [];
  private builtAcks: number[] = [];
  private builtRanges: number[] = [];
  private readonly maybeEmpty = new Set<Segment>();
  /** Highest seq ever enqueued. */
  private lastSeq = 0;
  /** Live REF records per shared message segment (released when the queue is deleted). */
  private readonly msegRefs = new Map<number, number>();

  // ---- paged messages ----
  /** Paged messages not yet read back. */
  private tailCount = 0;
  /** Every message with seq >= this that is still paged is read back from disk. */
  private tailNext = 0;
  private readSeg = 0;
  private readPos = 0;
  /** Paged messages whose records are not known to be on disk yet, in order. */
  private readonly pendingPaged = new Deque<QueueEntry>();
  private rbuf: Buffer | undefined;
  private rbufSeg = -1;
  private rbufStart = 0;
  private rbufEnd = 0;
  // The record found by diskNext():
  private recSeg: Segment | undefined;
  private recPos = 0;
  private recS = 0;
  private recE = 0;
  private recSeq = 0;

  constructor(
    private readonly host: QueueLogHost,
    readonly queue: Queue,
    readonly dir: string,
    readonly memoryBudget: number,
    exists: boolean,
  ) {
    this.dirReady = exists;
  }

  // ---- QueueStore --------------------------------------------------------------------------

  enqueue(e: QueueEntry, paged: boolean): Promise<void> {
    e.pstate = QUEUED;
    this.pending.push(e);
    this.lastSeq = e.seq;
    if (paged) {
      if (this.tailCount === 0) this.startTail(e.seq);
      this.tailCount++;
      this.pendingPaged.push(e);
    }
    return this.host.enqueued(this, e);
  }

  remove(e: QueueEntry): void {
    if (this.gone) return;
    const st = e.pstate;
    if (st === QUEUED) {
      e.pstate = GONE;
      return;
    }
    if (st !== WRITTEN && st !== WRITTEN_PAGED) return;
    e.pstate = GONE;
    const seg = this.segs.get(e.seg);
    if (seg !== undefined) {
      if (st === WRITTEN_PAGED) seg.paged--;
      if (--seg.live <= 0) this.maybeEmpty.add(seg);
    }
    if (e.mseg > 0) this.unrefShared(e.mseg);
    this.acks.push(e.seg, e.pos);
    this.host.touched(this);
  }

  delivering(seq: number): void {
    const f = seq + FRONTIER_STEP;
    this.frontier = f;
    try {
      this.ensureDir();
      if (this.frontierFd < 0) {
        this.frontierFd = openSync(join(this.dir, 'frontier'), constants.O_RDWR | constants.O_CREAT, 0o644);
      }
      const b = this.frontierBuf;
      b.writeDoubleLE(f, 0);
      b.writeUInt32LE(crc32(b.subarray(0, 8)), 8);
      writeSync(this.frontierFd, b, 0, 12, 0);
    } catch (err) {
      this.host.log.error({ err, queue: this.queue.name, vhost: this.queue.host.name }, 'cannot write the delivery frontier');
    }
  }

  pageIn(maxBytes: number, sink: PageSink): void {
    let bytes = 0;
    let n = 0;
    const pp = this.pendingPaged;
    while (this.tailCount > 0 && bytes < maxBytes && n < PAGE_IN_MAX) {
      while (pp.length > 0 && pp.peek()!.seq < this.tailNext) pp.shift();
      const p = pp.peek();
      const onDisk = this.diskNext();
      if (onDisk && (p === undefined || this.recSeq <= p.seq)) {
        const seg = this.recSeg!;
        const seq = this.recSeq;
        const size = entryBodyLen(this.rbuf!, this.recS) + MESSAGE_OVERHEAD;
        const e = this.decodeRecord(seg, this.recPos, this.recS, this.recE);
        this.readPos = this.recPos + RECORD_HEADER + (this.recE - this.recS);
        seg.paged--;
        if (p !== undefined && p.seq === seq) pp.shift();
        this.tailNext = seq + 1;
        this.tailCount--;
        if (e === undefined) sink.pagedLost(size);
        else {
          bytes += e.msg.size;
          n++;
          sink.paged(e);
        }
      } else if (p !== undefined) {
        pp.shift();
        if (p.pstate === WRITTEN_PAGED) {
          const seg = this.segs.get(p.seg);
          if (seg !== undefined) seg.paged--;
          p.pstate = WRITTEN;
        }
        this.tailNext = p.seq + 1;
        this.tailCount--;
        bytes += p.msg.size;
        n++;
        sink.paged(p);
      } else {
        this.host.log.error({ queue: this.queue.name, vhost: this.queue.host.name, missing: this.tailCount }, 'paged messages could not be found on disk');
        this.tailCount = 0;
      }
    }
    if (this.tailCount === 0) this.endTail();
  }

  dropPaged(): void {
    if (this.tailCount === 0) return;
    const from = this.tailNext;
    const to = this.lastSeq;
    // Records on disk: release the shared bodies they point to.
    let lastDisk = -1;
    while (this.diskNext()) {
      const buf = this.rbuf!;
      if (buf[this.recS] === T_REF) this.unrefShared(refLoc(buf, this.recS).seg);
      lastDisk = this.recSeq;
      this.readPos = this.recPos + RECORD_HEADER + (this.recE - this.recS);
      this.tailNext = this.recSeq + 1;
    }
    for (const e of this.pendingPaged) {
      if (e.pstate === QUEUED) e.pstate = GONE;
      else if (e.pstate === WRITTEN_PAGED) {
        if (e.seq > lastDisk && e.mseg > 0) this.unrefShared(e.mseg);
        e.pstate = GONE;
      }
    }
    this.pendingPaged.clear();
    for (const seg of this.segs.values()) {
      if (seg.paged === 0) continue;
      seg.live -= seg.paged;
      seg.paged = 0;
      if (seg.live > 0 || seg === this.cur) this.ranges.push(seg.num, from, to);
      else this.maybeEmpty.add(seg);
    }
    this.tailCount = 0;
    this.endTail();
    this.host.touched(this);
  }

  deleted(): void {
    if (this.gone) return;
    this.gone = true;
    for (const e of this.pending) if (e.pstate === QUEUED) e.pstate = GONE;
    this.pendingPaged.clear();
    this.tailCount = 0;
    for (const [mseg, n] of this.msegRefs) this.host.messages.unref(mseg, n);
    this.msegRefs.clear();
    this.host.forget(this);
    let moved: string | undefined;
    if (this.dirReady) {
      moved = `${this.dir}.deleted-${process.pid}-${++deletedCounter}`;
      try {
        renameSync(this.dir, moved);
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') this.host.log.error({ err, dir: this.dir }, 'cannot remove the directory of a deleted queue');
        moved = undefined;
      }
    }
    this.host.whenIdle(() => {
      this.closeFiles();
      if (moved !== undefined) {
        rm(moved, { recursive: true, force: true }).catch((err: unknown) =>
          this.host.log.error({ err, dir: moved }, 'cannot remove the directory of a deleted queue'),
        );
      }
    });
  }

  // ---- files ------------------------------------------------------------------------------

  private ensureDir(): void {
    if (this.dirReady) return;
    mkdirSync(this.dir, { recursive: true });
    const q = this.queue;
    const meta = {
      vhost: q.host.name,
      name: q.name,
      durable: q.durable,
      auto_delete: q.autoDelete,
      arguments: tableToJson(q.args),
    };
    writeFileSync(join(this.dir, 'queue.json'), `${JSON.stringify(meta)}\n`);
    this.dirReady = true;
  }

  private roll(ctx: BatchContext): Segment {
    const old = this.cur;
    if (old !== undefined) {
      old.sealed = true;
      if (old.live <= 0) this.maybeEmpty.add(old);
    }
    this.ensureDir();
    const num = this.nextNum++;
    const seg = newSegment(num);
    seg.fd = openSync(join(this.dir, segName(num, 'seg')), 'w+');
    writeSync(seg.fd, fileHeader('queue'), 0, FILE_HEADER, 0);
    this.segs.set(num, seg);
    this.cur = seg;
    ctx.dirs.add(this.dir);
    return seg;
  }

  private segFd(seg: Segment): number {
    if (seg.fd < 0) seg.fd = openSync(join(this.dir, segName(seg.num, 'seg')), 'r+');
    return seg.fd;
  }

  private ackFd(seg: Segment, ctx: BatchContext): number {
    if (seg.ackFd >= 0) return seg.ackFd;
    const file = join(this.dir, segName(seg.num, 'ack'));
    if (seg.ackSize > FILE_HEADER) seg.ackFd = openSync(file, 'r+');
    else {
      seg.ackFd = openSync(file, 'w+');
      writeSync(seg.ackFd, fileHeader('acks'), 0, FILE_HEADER, 0);
      ctx.dirs.add(this.dir);
    }
    return seg.ackFd;
  }

  private closeFiles(): void {
    for (const s of this.segs.values()) this.closeSegment(s);
    closeQuietly(this.frontierFd);
    this.frontierFd = -1;
  }

  private closeSegment(s: Segment): void {
    closeQuietly(s.fd);
    closeQuietly(s.ackFd);
    s.fd = -1;
    s.ackFd = -1;
  }

  close(): void {
    this.closeFiles();
  }

  private unrefShared(mseg: number): void {
    this.host.messages.unref(mseg);
    const n = (this.msegRefs.get(mseg) ?? 0) - 1;
    if (n <= 0) this.msegRefs.delete(mseg);
    else this.msegRefs.set(mseg, n);
  }

  private refShared(mseg: number): void {
    this.host.messages.ref(mseg);
    this.msegRefs.set(mseg, (this.msegRefs.get(mseg) ?? 0) + 1);
  }

  // ---- batches ----------------------------------------------------------------------------

  /** Encodes what this log has pending into the batch. */
  build(arena: Arena, ctx: BatchContext, shared: ReadonlyMap<StoredMessage, MessageLoc>): void {
    this.inBatch = false;
    const pending = this.pending;
    this.pending = this.spare;
    this.spare = pending;
    this.built = pending;
    if (this.gone) {
      pending.length = 0;
      this.acks.length = 0;
      this.ranges.length = 0;
      return;
    }
    let w: FileWrite | undefined;
    let seg = this.cur;
    const tailFrom = this.tailCount > 0 ? this.tailNext : Number.POSITIVE_INFINITY;
    for (const e of pending) {
      if (e.pstate !== QUEUED) continue;
      if (seg === undefined || seg.sealed || (seg.size > FILE_HEADER && seg.size >= this.host.segmentSize)) {
        if (w !== undefined) arena.end();
        seg = this.roll(ctx);
        w = undefined;
      }
      if (w === undefined) w = this.beginSegmentWrite(arena, ctx, seg);
      e.seg = seg.num;
      e.pos = seg.size;
      let len: number;
      if (e.mseg === SHARED_PENDING) {
        const loc = shared.get(e.msg)!;
        len = writeRef(arena, e, loc);
        e.mseg = loc.seg;
        this.refShared(loc.seg);
      } else len = writeEnqueue(arena, e, encodePropertiesScratch(e.msg.properties));
      seg.size += len;
      seg.live++;
      if (e.seq >= tailFrom) {
        seg.paged++;
        e.pstate = WRITTEN_PAGED;
      } else e.pstate = WRITTEN;
    }
    if (w !== undefined) arena.end();
    if (this.acks.length > 0 || this.ranges.length > 0) this.buildAcks(arena, ctx);
  }

  /** The batch failed before this log was built: its pending work is undone like a failed write. */
  abandon(): void {
    this.inBatch = false;
    const pending = this.pending;
    this.pending = this.spare;
    this.spare = pending;
    this.built = pending;
  }

  private beginSegmentWrite(arena: Arena, ctx: BatchContext, seg: Segment): FileWrite {
    const w = new FileWrite(seg.fd, seg.size, true);
    w.done = (ok) => {
      if (ok) seg.durable = w.position + w.bytes;
      else {
        seg.size = seg.durable;
        seg.sealed = true;
      }
    };
    ctx.writes.push(w);
    arena.begin(w);
    return w;
  }

  private buildAcks(arena: Arena, ctx: BatchContext): void {
    const acks = this.acks;
    const ranges = this.ranges;
    this.acks = this.builtAcks;
    this.ranges = this.builtRanges;
    this.builtAcks = acks;
    this.builtRanges = ranges;
    // Group by segment; a segment with no live record left is deleted after this batch instead.
    const bySeg = new Map<number, { acks: number[]; ranges: number[] }>();
    const group = (num: number): { acks: number[]; ranges: number[] } | undefined => {
      const s = this.segs.get(num);
      if (s === undefined || (s.live <= 0 && s !== this.cur)) return undefined;
      let g = bySeg.get(num);
      if (g === undefined) bySeg.set(num, (g = { acks: [], ranges: [] }));
      return g;
    };
    for (let i = 0; i < acks.length; i += 2) group(acks[i]!)?.acks.push(acks[i + 1]!);
    for (let i = 0; i < ranges.length; i += 3) group(ranges[i]!)?.ranges.push(ranges[i + 1]!, ranges[i + 2]!);
    for (const [num, g] of bySeg) {
      const seg = this.segs.get(num)!;
      const w = new FileWrite(this.ackFd(seg, ctx), seg.ackSize, false);
      w.done = (ok) => {
        if (ok) seg.ackDurable = w.position + w.bytes;
        else seg.ackSize = seg.ackDurable;
      };
      ctx.writes.push(w);
      arena.begin(w);
      seg.ackSize += writeAcks(arena, g.acks, g.ranges);
      arena.end();
    }
  }

  /** The batch this log took part in is written (ok) or failed (every write of it was undone). */
  afterWrite(ok: boolean): void {
    if (ok) {
      // Paged records now on disk: the queue reads them back from there.
      const pp = this.pendingPaged;
      for (let e = pp.peek(); e !== undefined && (e.pstate === WRITTEN || e.pstate === WRITTEN_PAGED); e = pp.peek()) pp.shift();
    } else {
      for (const e of this.built) {
        if (e.pstate === QUEUED) {
          e.pstate = 0;
          e.mseg = 0;
          continue;
        }
        if (e.pstate !== WRITTEN && e.pstate !== WRITTEN_PAGED) continue;
        const seg = this.segs.get(e.seg);
        if (seg !== undefined) {
          if (e.pstate === WRITTEN_PAGED) seg.paged--;
          if (--seg.live <= 0) this.maybeEmpty.add(seg);
        }
        if (e.mseg > 0) this.unrefShared(e.mseg);
        e.mseg = 0;
        e.pstate = 0; // memory only from now on
      }
      // Acks of records that are on disk are written with the next batch.
      for (let i = 0; i < this.builtAcks.length; i += 2) {
        const seg = this.segs.get(this.builtAcks[i]!);
        if (seg !== undefined && this.builtAcks[i + 1]! < seg.durable) this.acks.push(this.builtAcks[i]!, this.builtAcks[i + 1]!);
      }
      for (let i = 0; i < this.builtRanges.length; i += 3) {
        this.ranges.push(this.builtRanges[i]!, this.builtRanges[i + 1]!, this.builtRanges[i + 2]!);
      }
      if (this.acks.length > 0 || this.ranges.length > 0) this.host.touched(this);
    }
    this.built.length = 0;
    this.builtAcks.length = 0;
    this.builtRanges.length = 0;
    this.collect();
  }

  /**
   * Deletes segments with no live record. Runs between batches (nothing is writing to them) and
   * before the batch settles: an ack skipped because its segment goes must not outlive a crash.
   */
  private collect(): void {
    if (this.maybeEmpty.size === 0) return;
    const cur = this.cur;
    if (cur !== undefined && cur.live <= 0 && cur.size >= this.host.segmentSize / 2) {
      // A large current segment with nothing left in it goes too; the next message starts a new one.
      cur.sealed = true;
      this.cur = undefined;
      this.maybeEmpty.add(cur);
    }
    for (const s of this.maybeEmpty) {
      if (s.live > 0 || s === this.cur || this.segs.get(s.num) !== s) continue;
      this.segs.delete(s.num);
      this.closeSegment(s);
      if (this.rbufSeg === s.num) this.rbufSeg = -1;
      try {
        this.removeSegmentFiles(s.num);
      } catch (err) {
        this.host.log.error({ err, dir: this.dir, segment: s.num }, 'cannot delete a queue segment');
      }
    }
    this.maybeEmpty.clear();
  }

  // ---- reading paged messages ---------------------------------------------------------------

  private startTail(seq: number): void {
    this.tailNext = seq;
    // Every record built from now on comes after this point; older ones are skipped by seq.
    if (this.cur !== undefined && !this.cur.sealed) {
      this.readSeg = this.cur.num;
      this.readPos = this.cur.size;
    } else {
      this.readSeg = this.nextNum;
      this.readPos = FILE_HEADER;
    }
  }

  private endTail(): void {
    this.tailNext = 0;
    this.readSeg = 0;
    this.readPos = 0;
    this.rbufSeg = -1;
  }

  /** Makes `n` bytes at `pos` of `seg` available in `rbuf`; false if they are not on disk. */
  private load(seg: Segment, pos: number, n: number): boolean {
    if (this.rbufSeg === seg.num && pos >= this.rbufStart && pos + n <= this.rbufEnd) return true;
    if (pos + n > seg.durable) return false;
    const want = Math.min(Math.max(n, READ_CHUNK), seg.durable - pos);
    if (this.rbuf === undefined || this.rbuf.length < want) this.rbuf = Buffer.allocUnsafe(Math.max(want, READ_CHUNK));
    const got = readSync(this.segFd(seg), this.rbuf, 0, want, pos);
    this.rbufSeg = seg.num;
    this.rbufStart = pos;
    this.rbufEnd = pos + got;
    return got >= n;
  }

  /**
   * Finds the next paged record on disk (seq >= tailNext, not acked) from the read position,
   * leaving it in `rec*`; false when none is written yet.
   */
  private diskNext(): boolean {
    const last = Math.max(this.cur?.num ?? 0, this.nextNum - 1);
    for (;;) {
      const seg = this.segs.get(this.readSeg);
      if (seg === undefined) {
        if (this.readSeg < last) {
          this.readSeg++;
          this.readPos = FILE_HEADER;
          continue;
        }
        return false;
      }
      if (this.readPos >= seg.durable) {
        // Move on only once nothing more is being written to this segment.
        if (seg !== this.cur && seg.size === seg.durable && this.readSeg < last) {
          closeQuietly(seg.fd);
          seg.fd = -1;
          this.readSeg++;
          this.readPos = FILE_HEADER;
          continue;
        }
        return false;
      }
      const pos = this.readPos;
      if (!this.load(seg, pos, RECORD_HEADER)) return false;
      const buf = this.rbuf!;
      let at = pos - this.rbufStart;
      const len = buf.readUInt32LE(at);
      if (len === 0 || len > MAX_RECORD || pos + RECORD_HEADER + len > seg.durable || !this.load(seg, pos, RECORD_HEADER + len)) {
        this.badRecord(seg, pos, 'an invalid length');
        continue;
      }
      at = pos - this.rbufStart;
      const s = at + RECORD_HEADER;
      const e = s + len;
      if (crc32(this.rbuf!.subarray(s, e)) !== this.rbuf!.readUInt32LE(at + 4)) {
        this.badRecord(seg, pos, 'a bad checksum');
        continue;
      }
      const rb = this.rbuf!;
      if (!isEntryRecord(rb, s, e)) {
        this.readPos = pos + RECORD_HEADER + len;
        continue;
      }
      const seq = entrySeq(rb, s);
      if (seq < this.tailNext || seg.acked?.has(pos) === true || (seg.ranges !== undefined && inRanges(seg.ranges, seq))) {
        this.readPos = pos + RECORD_HEADER + len;
        continue;
      }
      this.recSeg = seg;
      this.recPos = pos;
      this.recS = s;
      this.recE = e;
      this.recSeq = seq;
      return true;
    }
  }

  /** A damaged record while reading paged messages: the rest of that segment is unreadable. */
  private badRecord(seg: Segment, pos: number, what: string): void {
    this.host.log.error(
      { queue: this.queue.name, vhost: this.queue.host.name, segment: segName(seg.num, 'seg'), offset: pos },
      `record with ${what} while reading paged messages: the rest of the segment is skipped`,
    );
    this.readPos = seg.durable;
  }

  /** A paged record back into an entry; undefined if it cannot be decoded (it is then acked). */
  private decodeRecord(seg: Segment, pos: number, s: number, e: number): QueueEntry | undefined {
    const buf = this.rbuf!;
    const type = buf[s];
    const seq = entrySeq(buf, s);
    let content: MessageContent;
    let mseg = 0;
    try {
      if (type === T_ENQ) content = readInlineMessage(buf, s, e);
      else {
        const loc = refLoc(buf, s);
        mseg = loc.seg;
        content = this.host.messages.read(loc);
      }
    } catch (err) {
      this.host.log.error(
        { err, queue: this.queue.name, vhost: this.queue.host.name, segment: segName(seg.num, 'seg'), offset: pos },
        'a paged message cannot be read back: dropped',
      );
      seg.live--;
      if (mseg > 0) this.unrefShared(mseg);
      this.acks.push(seg.num, pos);
      this.host.touched(this);
      return undefined;
    }
    const entry = newEntry(storedMessage(content, this.host.nextMessageId()), seq, seq <= this.recoveredFrontier ? 1 : 0, entryExpiresAt(buf, s), 0);
    entry.pstate = WRITTEN;
    entry.seg = seg.num;
    entry.pos = pos;
    entry.mseg = mseg;
    return entry;
  }

  // ---- recovery ---------------------------------------------------------------------------

  /**
   * Reads the queue's directory back: restores unacknowledged messages into the queue in order
   * (up to the memory budget; the rest stays paged on disk), truncates torn or zeroed tails and
   * skips corrupt records, with a line in `issues` for each.
   */
  recover(): QueueRecovery {
    const q = this.queue;
    const out: QueueRecovery = { messages: 0, inMemory: 0, paged: 0, lost: 0, segments: 0, issues: [] };
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return out;
      throw err;
    }
    const fr = readIfExists(join(this.dir, 'frontier'));
    if (fr !== undefined && fr.length >= 12 && crc32(fr.subarray(0, 8)) === fr.readUInt32LE(8)) {
      this.frontier = this.recoveredFrontier = fr.readDoubleLE(0);
    } else if (fr !== undefined && fr.length > 0) {
      out.issues.push(`${this.dir}/frontier: unreadable, every recovered message is flagged redelivered`);
      this.recoveredFrontier = Number.MAX_SAFE_INTEGER;
    }
    const nums = names
      .map((n) => /^(\d{8})\.seg$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const pageable = q.maxPriority === 0 && this.memoryBudget > 0;
    let memBytes = 0;
    let paging = false;
    let pagedBytes = 0;
    let maxSeq = 0;
    for (const num of nums) {
      if (num >= this.nextNum) this.nextNum = num + 1;
      const file = join(this.dir, segName(num, 'seg'));
      const buf = readFileSync(file);
      try {
        checkHeader(buf, 'queue', file);
      } catch (err) {
        out.issues.push(`${(err as StoreError).message}: segment set aside as ${file}.bad`);
        renameSync(file, `${file}.bad`);
        continue;
      }
      const seg = newSegment(num);
      const acked = new Set<number>();
      const ranges: number[] = [];
      this.readAckFile(seg, acked, ranges, out);
      const scan = scanRecords(buf, FILE_HEADER, (b, s, e, offset) => {
        if (!isEntryRecord(b, s, e)) {
          out.issues.push(`${file}: record of unknown type ${b[s] ?? '?'} at offset ${offset} skipped`);
          return;
        }
        const seq = entrySeq(b, s);
        if (seq > maxSeq) maxSeq = seq;
        if (acked.has(offset) || (ranges.length > 0 && inRanges(ranges, seq))) return;
        const isRef = b[s] === T_REF;
        const loc = isRef ? refLoc(b, s) : undefined;
        if (loc !== undefined && !this.host.messages.has(loc.seg)) {
          out.issues.push(`${file}: message at offset ${offset} refers to missing shared segment ${loc.seg}: lost`);
          out.lost++;
          acked.add(offset);
          return;
        }
        const size = entryBodyLen(b, s) + MESSAGE_OVERHEAD;
        seg.live++;
        out.messages++;
        if (loc !== undefined) this.refShared(loc.seg);
        if (!paging && (!pageable || memBytes + size <= this.memoryBudget)) {
          let content: MessageContent;
          try {
            content = loc !== undefined ? this.host.messages.read(loc) : readInlineMessage(b, s, e);
          } catch (err) {
            out.issues.push(`${file}: message at offset ${offset} cannot be decoded (${(err as Error).message}): lost`);
            out.lost++;
            out.messages--;
            seg.live--;
            if (loc !== undefined) this.unrefShared(loc.seg);
            this.acks.push(num, offset);
            return;
          }
          const msg = storedMessage(content, this.host.nextMessageId());
          const entry = newEntry(msg, seq, seq <= this.recoveredFrontier ? 1 : 0, entryExpiresAt(b, s), q.levelFor(msg));
          entry.pstate = WRITTEN;
          entry.seg = num;
          entry.pos = offset;
          entry.mseg = loc?.seg ?? 0;
          q.restoreEntry(entry);
          memBytes += size;
          out.inMemory++;
        } else {
          if (!paging) {
            paging = true;
            this.tailNext = seq;
            this.readSeg = num;
            this.readPos = offset;
          }
          seg.paged++;
          this.tailCount++;
          pagedBytes += size;
          out.paged++;
        }
      });
      for (const issue of scan.issues) out.issues.push(describeIssue(file, issue));
      seg.size = seg.durable = scan.end;
      if (scan.end < buf.length) {
        try {
          truncateSync(file, scan.end);
        } catch (err) {
          out.issues.push(`${file}: cannot truncate (${(err as Error).message})`);
          seg.sealed = true;
        }
      }
      if (paging && (acked.size > 0 || ranges.length > 0)) {
        seg.acked = acked.size > 0 ? acked : undefined;
        seg.ranges = ranges.length > 0 ? ranges : undefined;
      }
      if (seg.live <= 0) {
        this.removeSegmentFiles(num);
        continue;
      }
      this.segs.set(num, seg);
      out.segments++;
    }
    // Appends continue in the last segment if it has room.
    const lastNum = nums.length > 0 ? nums[nums.length - 1]! : 0;
    const last = this.segs.get(lastNum);
    if (last !== undefined && !last.sealed && last.size < this.host.segmentSize) {
      try {
        last.fd = openSync(join(this.dir, segName(lastNum, 'seg')), 'r+');
        this.cur = last;
      } catch (err) {
        out.issues.push(`${this.dir}: cannot reopen segment ${lastNum} (${(err as Error).message}); a new one is started`);
      }
    }
    for (const s of this.segs.values()) if (s !== this.cur) s.sealed = true;
    if (this.recoveredFrontier === Number.MAX_SAFE_INTEGER) this.recoveredFrontier = maxSeq;
    this.lastSeq = Math.max(maxSeq, this.frontier >= Number.MAX_SAFE_INTEGER ? 0 : this.frontier);
    q.restoreSeq(this.lastSeq);
    if (out.paged > 0) q.restorePaged(out.paged, pagedBytes);
    if (this.acks.length > 0) this.host.touched(this);
    return out;
  }

  private readAckFile(seg: Segment, acked: Set<number>, ranges: number[], out: QueueRecovery): void {
    const file = join(this.dir, segName(seg.num, 'ack'));
    const buf = readIfExists(file);
    if (buf === undefined) return;
    try {
      checkHeader(buf, 'acks', file);
    } catch (err) {
      out.issues.push(`${(err as StoreError).message}: its acknowledgements are ignored (messages may be redelivered)`);
      renameSync(file, `${file}.bad`);
      return;
    }
    const scan = scanRecords(buf, FILE_HEADER, (b, s, e, offset) => {
      try {
        readAcks(b, s, e, acked, ranges);
      } catch (err) {
        out.issues.push(`${file}: ack record at offset ${offset} skipped (${(err as Error).message})`);
      }
    });
    for (const issue of scan.issues) out.issues.push(describeIssue(file, issue));
    if (scan.end < buf.length) {
      try {
        truncateSync(file, scan.end);
      } catch (err) {
        out.issues.push(`${file}: cannot truncate (${(err as Error).message})`);
      }
    }
    seg.ackSize = seg.ackDurable = scan.end;
  }

  private removeSegmentFiles(num: number): void {
    for (const ext of ['seg', 'ack']) {
      try {
        unlinkSync(join(this.dir, segName(num, ext)));
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
      }
    }
  }

  /** Undoes a failed batch's write on one file (the data after `position` is not trusted). */
  static truncate(fd: number, position: number): void {
    try {
      ftruncateSync(fd, position);
    } catch {
      // The file is sealed anyway: nothing is appended after a failed write.
    }
  }
}
