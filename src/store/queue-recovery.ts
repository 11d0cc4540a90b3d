import { openSync, readFileSync, readdirSync, renameSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { newEntry } from '../core/queues/entry.js';
import type { Queue } from '../core/queues/queue.js';
import type { MessageContent } from './codec.js';
import type { StoreError } from './errors.js';
import { FILE_HEADER, checkHeader, describeIssue, scanRecords } from './format.js';
import { errnoCode, readIfExists, segName } from './fs-util.js';
import type { MessageLog } from './message-log.js';
import { T_REF, entryBodyLen, entryExpiresAt, entrySeq, inRanges, isEntryRecord, readAcks, readInlineMessage, refLoc } from './records.js';
import { MESSAGE_OVERHEAD, WRITTEN, newSegment, removeSegmentFiles, storedMessage, type Segment } from './segment.js';

/** What recovery of one queue found. */
export interface QueueRecovery {
  messages: number;
  inMemory: number;
  paged: number;
  lost: number;
  segments: number;
  issues: string[];
}

/** What recovering a queue directory needs. */
export interface RecoveryInput {
  readonly dir: string;
  readonly queue: Queue;
  /** Bytes of ready messages restored into memory; the rest stays paged (0 = no paging). */
  readonly memoryBudget: number;
  readonly segmentSize: number;
  readonly messages: MessageLog;
  nextMessageId(): number;
}

/** The state of a queue log after recovery, for the log to continue from. */
export interface RecoveredLog {
  readonly report: QueueRecovery;
  readonly frontier: number;
  /** Messages at or below it come back flagged redelivered. */
  readonly recoveredFrontier: number;
  readonly nextNum: number;
  readonly segs: Map<number, Segment>;
  /** The last segment, reopened for appends when it has room. */
  readonly cur: Segment | undefined;
  readonly lastSeq: number;
  /** (segment, offset) pairs of records found unreadable: to be acked. */
  readonly acks: number[];
  /** Where the first message left on disk (paged) is, and how many there are. */
  readonly tail: { readonly count: number; readonly seq: number; readonly seg: number; readonly pos: number } | undefined;
  /** Live REF records per shared message segment (already counted in the shared log). */
  readonly sharedRefs: Map<number, number>;
}

function readAckFile(dir: string, seg: Segment, acked: Set<number>, ranges: number[], out: QueueRecovery): void {
  const file = join(dir, segName(seg.num, 'ack'));
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

/**
 * Reads a queue's directory back: restores unacknowledged messages into the queue in order (up
 * to the memory budget; the rest stays paged on disk), truncates torn or zeroed tails and skips
 * corrupt records, with a line in `issues` for each.
 */
export function recoverQueueDir(input: RecoveryInput): RecoveredLog {
  const { dir, queue: q, memoryBudget, messages } = input;
  const out: QueueRecovery = { messages: 0, inMemory: 0, paged: 0, lost: 0, segments: 0, issues: [] };
  const segs = new Map<number, Segment>();
  const acks: number[] = [];
  const sharedRefs = new Map<number, number>();
  let frontier = 0;
  let recoveredFrontier = 0;
  let nextNum = 1;
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      return { report: out, frontier, recoveredFrontier, nextNum, segs, cur: undefined, lastSeq: 0, acks, tail: undefined, sharedRefs };
    }
    throw err;
  }
  const ref = (mseg: number): void => {
    messages.ref(mseg);
    sharedRefs.set(mseg, (sharedRefs.get(mseg) ?? 0) + 1);
  };
  const unref = (mseg: number): void => {
    messages.unref(mseg);
    const n = (sharedRefs.get(mseg) ?? 0) - 1;
    if (n <= 0) sharedRefs.delete(mseg);
    else sharedRefs.set(mseg, n);
  };
  const fr = readIfExists(join(dir, 'frontier'));
  if (fr !== undefined && fr.length >= 12 && crc32(fr.subarray(0, 8)) === fr.readUInt32LE(8)) {
    frontier = recoveredFrontier = fr.readDoubleLE(0);
  } else if (fr !== undefined && fr.length > 0) {
    out.issues.push(`${dir}/frontier: unreadable, every recovered message is flagged redelivered`);
    recoveredFrontier = Number.MAX_SAFE_INTEGER;
  }
  const nums = names
    .map((n) => /^(\d{8})\.seg$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  const pageable = q.maxPriority === 0 && memoryBudget > 0;
  let memBytes = 0;
  let tail: { count: number; seq: number; seg: number; pos: number } | undefined;
  let pagedBytes = 0;
  let maxSeq = 0;
  for (const num of nums) {
    if (num >= nextNum) nextNum = num + 1;
    const file = join(dir, segName(num, 'seg'));
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
    readAckFile(dir, seg, acked, ranges, out);
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
      if (loc !== undefined && !messages.has(loc.seg)) {
        out.issues.push(`${file}: message at offset ${offset} refers to missing shared segment ${loc.seg}: lost`);
        out.lost++;
        acked.add(offset);
        return;
      }
      const size = entryBodyLen(b, s) + MESSAGE_OVERHEAD;
      seg.live++;
      out.messages++;
      if (loc !== undefined) ref(loc.seg);
      if (tail === undefined && (!pageable || memBytes + size <= memoryBudget)) {
        let content: MessageContent;
        try {
          content = loc !== undefined ? messages.read(loc) : readInlineMessage(b, s, e);
        } catch (err) {
          out.issues.push(`${file}: message at offset ${offset} cannot be decoded (${(err as Error).message}): lost`);
          out.lost++;
          out.messages--;
          seg.live--;
          if (loc !== undefined) unref(loc.seg);
          acks.push(num, offset);
          return;
        }
        const msg = storedMessage(content, input.nextMessageId());
        const entry = newEntry(msg, seq, seq <= recoveredFrontier ? 1 : 0, entryExpiresAt(b, s), q.levelFor(msg));
        entry.pstate = WRITTEN;
        entry.seg = num;
        entry.pos = offset;
        entry.mseg = loc?.seg ?? 0;
        q.restoreEntry(entry);
        memBytes += size;
        out.inMemory++;
      } else {
        tail ??= { count: 0, seq, seg: num, pos: offset };
        seg.paged++;
        tail.count++;
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
    if (tail !== undefined && (acked.size > 0 || ranges.length > 0)) {
      seg.acked = acked.size > 0 ? acked : undefined;
      seg.ranges = ranges.length > 0 ? ranges : undefined;
    }
    if (seg.live <= 0) {
      removeSegmentFiles(dir, num);
      continue;
    }
    segs.set(num, seg);
    out.segments++;
  }
  // Appends continue in the last segment if it has room.
  const lastNum = nums.length > 0 ? nums[nums.length - 1]! : 0;
  const last = segs.get(lastNum);
  let cur: Segment | undefined;
  if (last !== undefined && !last.sealed && last.size < input.segmentSize) {
    try {
      last.fd = openSync(join(dir, segName(lastNum, 'seg')), 'r+');
      cur = last;
    } catch (err) {
      out.issues.push(`${dir}: cannot reopen segment ${lastNum} (${(err as Error).message}); a new one is started`);
    }
  }
  for (const s of segs.values()) if (s !== cur) s.sealed = true;
  if (recoveredFrontier === Number.MAX_SAFE_INTEGER) recoveredFrontier = maxSeq;
  const lastSeq = Math.max(maxSeq, frontier >= Number.MAX_SAFE_INTEGER ? 0 : frontier);
  q.restoreSeq(lastSeq);
  if (out.paged > 0) q.restorePaged(out.paged, pagedBytes);
  return { report: out, frontier, recoveredFrontier, nextNum, segs, cur, lastSeq, acks, tail, sharedRefs };
}
