import { crc32 } from 'node:zlib';
import { corrupt } from './errors.js';

/**
 * Every store file starts with an 8-byte header: four ASCII bytes naming the kind of file and a u32
 * schema version. Then come records: u32 payload length, u32 crc32 of the payload, the payload
 * (all little-endian). A zero length never occurs in a valid record, so preallocated or zeroed
 * space reads as the end of the file.
 */
export const SCHEMA_VERSION = 1;
export const FILE_HEADER = 8;
export const RECORD_HEADER = 8;
/** No record is larger (a message body is limited far below this by the broker). */
export const MAX_RECORD = 1 << 30;

export type FileKind = 'queue' | 'acks' | 'messages' | 'records' | 'definitions-log' | 'definitions-snapshot';

const MAGIC: Record<FileKind, string> = {
  queue: 'WRNQ',
  acks: 'WRNA',
  messages: 'WRNM',
  records: 'WRNK',
  'definitions-log': 'WRND',
  'definitions-snapshot': 'WRNS',
};

export function fileHeader(kind: FileKind): Buffer {
  const b = Buffer.alloc(FILE_HEADER);
  b.write(MAGIC[kind], 0, 'latin1');
  b.writeUInt32LE(SCHEMA_VERSION, 4);
  return b;
}

/** Throws a clear `corrupt` error unless `buf` starts with the header of `kind`. */
export function checkHeader(buf: Buffer, kind: FileKind, file: string): void {
  if (buf.length < FILE_HEADER) throw corrupt(`${file}: ${buf.length}-byte file has no header`);
  const magic = buf.toString('latin1', 0, 4);
  if (magic !== MAGIC[kind]) throw corrupt(`${file}: not a ${kind} file (magic '${magic}')`);
  const version = buf.readUInt32LE(4);
  if (version !== SCHEMA_VERSION) {
    throw corrupt(`${file}: schema version ${version}, this build reads version ${SCHEMA_VERSION}`);
  }
}

/** The end of the valid record at `off` (its header and payload), or -1 when there is none. */
export function recordEnd(buf: Buffer, off: number): number {
  return validAt(buf, off);
}

/** Fills in the length and checksum of the record whose payload is `buf[at+8, end)`. */
export function sealRecord(buf: Buffer, at: number, end: number): void {
  buf.writeUInt32LE(end - at - RECORD_HEADER, at);
  buf.writeUInt32LE(crc32(buf.subarray(at + RECORD_HEADER, end)), at + 4);
}

/** A region of a file that held no valid record. */
export interface ScanIssue {
  /** `corrupt`: bad bytes followed by valid records (skipped); `torn`/`zeroed`: the end of the file. */
  kind: 'corrupt' | 'torn' | 'zeroed';
  offset: number;
  bytes: number;
}

export interface ScanResult {
  /** Just past the last valid record: where appending continues. */
  end: number;
  records: number;
  issues: ScanIssue[];
}

/** Called for each valid record with the payload's bounds in `buf`. */
export type RecordVisitor = (buf: Buffer, start: number, end: number, recordOffset: number) => void;

function validAt(buf: Buffer, off: number): number {
  if (off + RECORD_HEADER > buf.length) return -1;
  const len = buf.readUInt32LE(off);
  if (len === 0 || len > MAX_RECORD) return -1;
  const end = off + RECORD_HEADER + len;
  if (end > buf.length) return -1;
  if (crc32(buf.subarray(off + RECORD_HEADER, end)) !== buf.readUInt32LE(off + 4)) return -1;
  return end;
}

function allZero(buf: Buffer, from: number): boolean {
  for (let i = from; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}

/**
 * Visits every valid record from `start`. A bad record followed by valid ones is skipped (the next
 * valid record is found by trying each later offset: a false match needs a length that fits and a
 * matching crc32); a bad region running to the end of the buffer is the torn or zeroed tail.
 */
export function scanRecords(buf: Buffer, start: number, visit: RecordVisitor): ScanResult {
  const issues: ScanIssue[] = [];
  let off = start;
  let records = 0;
  while (off < buf.length) {
    const end = validAt(buf, off);
    if (end > 0) {
      visit(buf, off + RECORD_HEADER, end, off);
      records++;
      off = end;
      continue;
    }
    if (allZero(buf, off)) {
      issues.push({ kind: 'zeroed', offset: off, bytes: buf.length - off });
      break;
    }
    let next = -1;
    for (let p = off + 1; p + RECORD_HEADER < buf.length; p++) {
      if (validAt(buf, p) > 0) {
        next = p;
        break;
      }
    }
    if (next < 0) {
      issues.push({ kind: 'torn', offset: off, bytes: buf.length - off });
      break;
    }
    issues.push({ kind: 'corrupt', offset: off, bytes: next - off });
    off = next;
  }
  return { end: issues.length > 0 && issues[issues.length - 1]!.kind !== 'corrupt' ? issues[issues.length - 1]!.offset : off, records, issues };
}

/** One line for the log about a scan issue. */
export function describeIssue(file: string, i: ScanIssue): string {
  switch (i.kind) {
    case 'corrupt':
      return `${file}: skipped ${i.bytes} corrupt bytes at offset ${i.offset}`;
    case 'torn':
      return `${file}: truncated a torn tail of ${i.bytes} bytes at offset ${i.offset}`;
    case 'zeroed':
      return `${file}: truncated a zeroed tail of ${i.bytes} bytes at offset ${i.offset}`;
  }
}
