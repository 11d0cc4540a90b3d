import { readSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { FILE_HEADER, MAX_RECORD, RECORD_HEADER } from './format.js';
import { entrySeq, inRanges, isEntryRecord } from './records.js';
import { closeQuietly, segmentFd, type Segment } from './segment.js';

/** Bytes read from a segment at a time when paging messages back in. */
const READ_CHUNK = 1 << 20;

/** The segments of one queue, as the reader sees them. */
export interface SegmentSource {
  /** The queue's directory. */
  readonly dir: string;
  segment(num: number): Segment | undefined;
  /** The segment being appended to, if any. */
  readonly appending: Segment | undefined;
  /** The highest segment number in use. */
  readonly lastSegment: number;
  /** A damaged record at `pos` of `seg`: the reader skips the rest of the segment. */
  badRecord(seg: Segment, pos: number, what: string): void;
}

/**
 * Reads paged messages back from a queue's segment files in order: from a read position, the
 * next entry record whose sequence number is at least `next` and that is not acked. Reads in
 * chunks of 1 MiB into one reused buffer; the record found stays in `buf` (from `start` to
 * `end`) until the next call.
 */
export class SegmentReader {
  /** Every paged message with seq >= this is still to be read back. */
  next = 0;
  private seg = 0;
  private pos = 0;
  private rbuf: Buffer | undefined;
  private rbufSeg = -1;
  private rbufStart = 0;
  private rbufEnd = 0;
  // The record found by find():
  foundSeg: Segment | undefined;
  foundPos = 0;
  start = 0;
  end = 0;
  foundSeq = 0;

  constructor(private readonly source: SegmentSource) {}

  /** The buffer holding the record last found. */
  get buf(): Buffer {
    return this.rbuf!;
  }

  /** Reading starts at `seq`: every record built from now on comes after this point. */
  begin(seq: number, nextNum: number): void {
    this.next = seq;
    // Older records are skipped by seq.
    const cur = this.source.appending;
    if (cur !== undefined && !cur.sealed) this.at(seq, cur.num, cur.size);
    else this.at(seq, nextNum, FILE_HEADER);
  }

  /** Reading starts at offset `pos` of segment `num` (recovery: the first paged record). */
  at(seq: number, num: number, pos: number): void {
    this.next = seq;
    this.seg = num;
    this.pos = pos;
  }

  /** Nothing is paged any more. */
  reset(): void {
    this.next = 0;
    this.seg = 0;
    this.pos = 0;
    this.rbufSeg = -1;
  }

  /** Segment `num` was deleted: what is buffered of it is stale. */
  forget(num: number): void {
    if (this.rbufSeg === num) this.rbufSeg = -1;
  }

  /** Moves past the record found, which was taken: `next` follows it. */
  take(): void {
    this.pos = this.foundPos + RECORD_HEADER + (this.end - this.start);
    this.next = this.foundSeq + 1;
  }

  /** Makes `n` bytes at `pos` of `seg` available in `rbuf`; false if they are not on disk. */
  private load(seg: Segment, pos: number, n: number): boolean {
    if (this.rbufSeg === seg.num && pos >= this.rbufStart && pos + n <= this.rbufEnd) return true;
    if (pos + n > seg.durable) return false;
    const want = Math.min(Math.max(n, READ_CHUNK), seg.durable - pos);
    if (this.rbuf === undefined || this.rbuf.length < want) this.rbuf = Buffer.allocUnsafe(Math.max(want, READ_CHUNK));
    const got = readSync(segmentFd(this.source.dir, seg), this.rbuf, 0, want, pos);
    this.rbufSeg = seg.num;
    this.rbufStart = pos;
    this.rbufEnd = pos + got;
    return got >= n;
  }

  private bad(seg: Segment, pos: number, what: string): void {
    this.source.badRecord(seg, pos, what);
    this.pos = seg.durable;
  }

  /**
   * Finds the next paged record on disk (seq >= next, not acked) from the read position, leaving
   * it in `found*`, `start`, `end`; false when none is written yet.
   */
  find(): boolean {
    const src = this.source;
    const cur = src.appending;
    const last = src.lastSegment;
    for (;;) {
      const seg = src.segment(this.seg);
      if (seg === undefined) {
        if (this.seg < last) {
          this.seg++;
          this.pos = FILE_HEADER;
          continue;
        }
        return false;
      }
      if (this.pos >= seg.durable) {
        // Move on only once nothing more is being written to this segment.
        if (seg !== cur && seg.size === seg.durable && this.seg < last) {
          closeQuietly(seg.fd);
          seg.fd = -1;
          this.seg++;
          this.pos = FILE_HEADER;
          continue;
        }
        return false;
      }
      const pos = this.pos;
      if (!this.load(seg, pos, RECORD_HEADER)) return false;
      const buf = this.rbuf!;
      let at = pos - this.rbufStart;
      const len = buf.readUInt32LE(at);
      if (len === 0 || len > MAX_RECORD || pos + RECORD_HEADER + len > seg.durable || !this.load(seg, pos, RECORD_HEADER + len)) {
        this.bad(seg, pos, 'an invalid length');
        continue;
      }
      at = pos - this.rbufStart;
      const s = at + RECORD_HEADER;
      const e = s + len;
      if (crc32(this.rbuf!.subarray(s, e)) !== this.rbuf!.readUInt32LE(at + 4)) {
        this.bad(seg, pos, 'a bad checksum');
        continue;
      }
      const rb = this.rbuf!;
      if (!isEntryRecord(rb, s, e)) {
        this.pos = pos + RECORD_HEADER + len;
        continue;
      }
      const seq = entrySeq(rb, s);
      if (seq < this.next || seg.acked?.has(pos) === true || (seg.ranges !== undefined && inRanges(seg.ranges, seq))) {
        this.pos = pos + RECORD_HEADER + len;
        continue;
      }
      this.foundSeg = seg;
      this.foundPos = pos;
      this.start = s;
      this.end = e;
      this.foundSeq = seq;
      return true;
    }
  }
}
