import { closeSync, mkdirSync, openSync, readdirSync, readSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { StoredMessage } from '../core/index.js';
import type { Logger } from '../logger.js';
import { FileWrite, type Arena } from './arena.js';
import type { MessageContent } from './codec.js';
import { encodePropertiesScratch } from './codec.js';
import { corrupt } from './errors.js';
import { FILE_HEADER, RECORD_HEADER, fileHeader } from './format.js';
import { errnoCode, segName } from './fs-util.js';
import { readSharedMessage, writeShared, type MessageLoc } from './records.js';

/** What a batch being built collects: the writes to issue and the directories to fsync. */
export interface BatchContext {
  readonly writes: FileWrite[];
  readonly dirs: Set<string>;
}

interface MessageSegment {
  readonly num: number;
  fd: number;
  size: number;
  durable: number;
  /** Queue records (REF) pointing into this segment. */
  refs: number;
  /** No more appends (rolled over, or a failed write left it). */
  sealed: boolean;
}

/**
 * The shared message log: bodies of persistent messages routed to several durable queues are
 * written here once, and each queue's segment holds a small REF record pointing at them. A segment
 * is deleted once no queue record refers to it. Reference counts are not written anywhere: recovery
 * rebuilds them from the queue segments.
 */
export class MessageLog {
  private readonly segs = new Map<number, MessageSegment>();
  private cur: MessageSegment | undefined;
  private nextNum = 1;
  private dirReady = false;
  private readonly maybeEmpty = new Set<MessageSegment>();
  private readBuf = Buffer.allocUnsafe(64 * 1024);

  constructor(
    readonly dir: string,
    private readonly segmentSize: number,
    private readonly log: Logger,
  ) {}

  /** Lists the existing segments (their content is read only when a queue refers to it). */
  open(): void {
    let names: string[] = [];
    try {
      names = readdirSync(this.dir);
      this.dirReady = true;
    } catch (e) {
      if (errnoCode(e) !== 'ENOENT') throw e;
    }
    for (const n of names) {
      const m = /^(\d{8})\.seg$/.exec(n);
      if (!m) continue;
      const num = Number(m[1]);
      this.segs.set(num, { num, fd: -1, size: 0, durable: 0, refs: 0, sealed: true });
      if (num >= this.nextNum) this.nextNum = num + 1;
    }
  }

  get segmentCount(): number {
    return this.segs.size;
  }

  ref(num: number, n = 1): void {
    const s = this.segs.get(num);
    if (s) s.refs += n;
  }

  unref(num: number, n = 1): void {
    const s = this.segs.get(num);
    if (!s) return;
    s.refs -= n;
    if (s.refs <= 0) this.maybeEmpty.add(s);
  }

  has(num: number): boolean {
    return this.segs.has(num);
  }

  private roll(ctx: BatchContext): MessageSegment {
    if (this.cur) {
      this.cur.sealed = true;
      if (this.cur.refs <= 0) this.maybeEmpty.add(this.cur);
    }
    if (!this.dirReady) {
      mkdirSync(this.dir, { recursive: true });
      this.dirReady = true;
    }
    const num = this.nextNum++;
    const fd = openSync(join(this.dir, segName(num, 'seg')), 'w+');
    writeSync(fd, fileHeader('messages'), 0, FILE_HEADER, 0);
    const s: MessageSegment = { num, fd, size: FILE_HEADER, durable: FILE_HEADER, refs: 0, sealed: false };
    this.segs.set(num, s);
    this.cur = s;
    ctx.dirs.add(this.dir);
    return s;
  }

  /** Encodes the shared messages of a batch; their locations go to `out`. */
  build(arena: Arena, ctx: BatchContext, msgs: readonly StoredMessage[], out: Map<StoredMessage, MessageLoc>): void {
    let w: FileWrite | undefined;
    let seg = this.cur;
    for (const m of msgs) {
      if (seg === undefined || seg.sealed || (seg.size > FILE_HEADER && seg.size >= this.segmentSize)) {
        if (w !== undefined) arena.end();
        seg = this.roll(ctx);
        w = undefined;
      }
      if (w === undefined) {
        const s = seg;
        const fw = new FileWrite(s.fd, s.size, true);
        fw.done = (ok) => {
          if (ok) s.durable = fw.position + fw.bytes;
          else {
            s.size = s.durable;
            s.sealed = true;
          }
        };
        w = fw;
        ctx.writes.push(fw);
        arena.begin(fw);
      }
      const pos = seg.size;
      const len = writeShared(arena, m, encodePropertiesScratch(m.properties));
      seg.size += len;
      out.set(m, { seg: seg.num, pos, len });
    }
    if (w !== undefined) arena.end();
  }

  private fdOf(s: MessageSegment): number {
    if (s.fd < 0) s.fd = openSync(join(this.dir, segName(s.num, 'seg')), 'r');
    return s.fd;
  }

  /** Reads a shared message back; throws a `corrupt` StoreError if it is missing or damaged. */
  read(loc: MessageLoc): MessageContent {
    const s = this.segs.get(loc.seg);
    if (!s) throw corrupt(`shared message segment ${loc.seg} is missing`);
    if (loc.len < RECORD_HEADER + 1) throw corrupt(`shared message record of ${loc.len} bytes`);
    if (this.readBuf.length < loc.len) this.readBuf = Buffer.allocUnsafe(loc.len);
    const buf = this.readBuf;
    const n = readSync(this.fdOf(s), buf, 0, loc.len, loc.pos);
    if (n !== loc.len) throw corrupt(`shared message at ${loc.seg}:${loc.pos} is truncated`);
    const len = buf.readUInt32LE(0);
    if (len !== loc.len - RECORD_HEADER || crc32(buf.subarray(RECORD_HEADER, loc.len)) !== buf.readUInt32LE(4)) {
      throw corrupt(`shared message at ${loc.seg}:${loc.pos} fails its checksum`);
    }
    return readSharedMessage(buf, RECORD_HEADER, loc.len);
  }

  /** After recovery: segments no queue refers to are deleted. */
  collectAll(): number {
    let n = 0;
    for (const s of this.segs.values()) {
      if (s.refs <= 0) {
        this.maybeEmpty.add(s);
        n++;
      }
    }
    this.collect();
    return n;
  }

  /** Deletes segments no queue refers to any more (between batches: nothing is writing them). */
  collect(): void {
    if (this.maybeEmpty.size === 0) return;
    for (const s of this.maybeEmpty) {
      if (s.refs > 0 || s === this.cur || this.segs.get(s.num) !== s) continue;
      this.segs.delete(s.num);
      if (s.fd >= 0) closeSync(s.fd);
      s.fd = -1;
      const file = join(this.dir, segName(s.num, 'seg'));
      try {
        unlinkSync(file);
      } catch (e) {
        if (errnoCode(e) !== 'ENOENT') this.log.error({ err: e, file }, 'cannot delete a message segment');
      }
    }
    this.maybeEmpty.clear();
  }

  close(): void {
    for (const s of this.segs.values()) {
      if (s.fd >= 0) closeSync(s.fd);
      s.fd = -1;
    }
    this.cur = undefined;
  }
}
