import { constants, ftruncateSync, mkdirSync, openSync, renameSync, writeFileSync, writeSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Deque, tableToJson } from '../core/index.js';
import type { PageSink, QueueStore } from '../core/persistence.js';
import { newEntry, type QueueEntry } from '../core/queues/entry.js';
import type { Queue } from '../core/queues/queue.js';
import type { StoredMessage } from '../core/types.js';
import type { Logger } from '../logger.js';
import { FileWrite, type Arena } from './arena.js';
import { encodePropertiesScratch, type MessageContent } from './codec.js';
import { FILE_HEADER, fileHeader } from './format.js';
import { errnoCode, segName } from './fs-util.js';
import type { BatchContext, MessageLog } from './message-log.js';
import { recoverQueueDir, type QueueRecovery } from './queue-recovery.js';
import { T_ENQ, T_REF, entryBodyLen, entryExpiresAt, entrySeq, readInlineMessage, refLoc, writeAcks, writeEnqueue, writeRef, type MessageLoc } from './records.js';
import { SegmentReader, type SegmentSource } from './segment-reader.js';
import {
  GONE,
  MESSAGE_OVERHEAD,
  QUEUED,
  SHARED_PENDING,
  WRITTEN,
  WRITTEN_PAGED,
  closeQuietly,
  newSegment,
  removeSegmentFiles,
  storedMessage,
  type Segment,
} from './segment.js';

/** How far the delivery frontier jumps ahead each time it is written. */
const FRONTIER_STEP = 1024;
/** At most this many messages per pageIn call (bounds the time spent decoding). */
const PAGE_IN_MAX = 4096;

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

let deletedCounter = 0;

/**
 * The persistent messages of one durable queue: a directory of append-only segment files
 * (`NNNNNNNN.seg`) with one record per message, an ack file per segment (`NNNNNNNN.ack`) recording
 * which records left the queue, and a `frontier` file (every message at or below that sequence
 * number may have been delivered). A segment and its ack file are deleted once all its records are
 * removed. Writing (batches, acks, segment rolls) lives here; reading paged messages back is
 * `SegmentReader` (segment-reader.ts) and startup recovery is `recoverQueueDir` (queue-recovery.ts).
 */
export class QueueLog implements QueueStore, SegmentSource {
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
  /** Paged messages whose records are not known to be on disk yet, in order. */
  private readonly pendingPaged = new Deque<QueueEntry>();
  /** Reads paged messages back from the segments, from the first one still paged. */
  private readonly reader = new SegmentReader(this);

  constructor(
    private readonly host: QueueLogHost,
    readonly queue: Queue,
    readonly dir: string,
    readonly memoryBudget: number,
    exists: boolean,
  ) {
    this.dirReady = exists;
  }

  // ---- SegmentSource -----------------------------------------------------------------------

  segment(num: number): Segment | undefined {
    return this.segs.get(num);
  }

  get appending(): Segment | undefined {
    return this.cur;
  }

  get lastSegment(): number {
    return Math.max(this.cur?.num ?? 0, this.nextNum - 1);
  }

  /** A damaged record while reading paged messages: the rest of that segment is unreadable. */
  badRecord(seg: Segment, pos: number, what: string): void {
    this.host.log.error(
      { queue: this.queue.name, vhost: this.queue.host.name, segment: segName(seg.num, 'seg'), offset: pos },
      `record with ${what} while reading paged messages: the rest of the segment is skipped`,
    );
  }

  // ---- QueueStore --------------------------------------------------------------------------

  enqueue(e: QueueEntry, paged: boolean): Promise<void> {
    e.pstate = QUEUED;
    this.pending.push(e);
    this.lastSeq = e.seq;
    if (paged) {
      if (this.tailCount === 0) this.reader.begin(e.seq, this.nextNum);
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
    const r = this.reader;
    while (this.tailCount > 0 && bytes < maxBytes && n < PAGE_IN_MAX) {
      while (pp.length > 0 && pp.peek()!.seq < r.next) pp.shift();
      const p = pp.peek();
      const onDisk = r.find();
      if (onDisk && (p === undefined || r.foundSeq <= p.seq)) {
        const seg = r.foundSeg!;
        const seq = r.foundSeq;
        const size = entryBodyLen(r.buf, r.start) + MESSAGE_OVERHEAD;
        const e = this.decodeRecord(seg, r.foundPos, r.start, r.end);
        r.take();
        seg.paged--;
        if (p !== undefined && p.seq === seq) pp.shift();
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
        r.next = p.seq + 1;
        this.tailCount--;
        bytes += p.msg.size;
        n++;
        sink.paged(p);
      } else {
        this.host.log.error({ queue: this.queue.name, vhost: this.queue.host.name, missing: this.tailCount }, 'paged messages could not be found on disk');
        this.tailCount = 0;
      }
    }
    if (this.tailCount === 0) r.reset();
  }

  dropPaged(): void {
    if (this.tailCount === 0) return;
    const r = this.reader;
    const from = r.next;
    const to = this.lastSeq;
    // Records on disk: release the shared bodies they point to.
    let lastDisk = -1;
    while (r.find()) {
      if (r.buf[r.start] === T_REF) this.unrefShared(refLoc(r.buf, r.start).seg);
      lastDisk = r.foundSeq;
      r.take();
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
    r.reset();
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
    const tailFrom = this.tailCount > 0 ? this.reader.next : Number.POSITIVE_INFINITY;
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
      this.reader.forget(s.num);
      try {
        removeSegmentFiles(this.dir, s.num);
      } catch (err) {
        this.host.log.error({ err, dir: this.dir, segment: s.num }, 'cannot delete a queue segment');
      }
    }
    this.maybeEmpty.clear();
  }

  // ---- reading paged messages ---------------------------------------------------------------

  /** A paged record back into an entry; undefined if it cannot be decoded (it is then acked). */
  private decodeRecord(seg: Segment, pos: number, s: number, e: number): QueueEntry | undefined {
    const buf = this.reader.buf;
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

  /** Reads the queue's directory back (see `recoverQueueDir`) and continues from what it found. */
  recover(): QueueRecovery {
    const r = recoverQueueDir({
      dir: this.dir,
      queue: this.queue,
      memoryBudget: this.memoryBudget,
      segmentSize: this.host.segmentSize,
      messages: this.host.messages,
      nextMessageId: () => this.host.nextMessageId(),
    });
    this.frontier = r.frontier;
    this.recoveredFrontier = r.recoveredFrontier;
    this.nextNum = Math.max(this.nextNum, r.nextNum);
    for (const [num, seg] of r.segs) this.segs.set(num, seg);
    this.cur = r.cur;
    this.lastSeq = r.lastSeq;
    for (const [mseg, n] of r.sharedRefs) this.msegRefs.set(mseg, (this.msegRefs.get(mseg) ?? 0) + n);
    if (r.tail !== undefined) {
      this.tailCount = r.tail.count;
      this.reader.at(r.tail.seq, r.tail.seg, r.tail.pos);
    }
    this.acks.push(...r.acks);
    if (this.acks.length > 0) this.host.touched(this);
    return r.report;
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
