import { crc32 } from 'node:zlib';
import type { QueueEntry } from '../core/queues/entry.js';
import type { Arena } from './arena.js';
import { ByteReader, messageHeadBound, readMessage, writeMessageHead, type MessageContent } from './codec.js';
import { corrupt } from './errors.js';
import { RECORD_HEADER, sealRecord } from './format.js';

/**
 * Record payloads.
 *
 * Queue segment (`NNNNNNNN.seg` in the queue's directory), one record per message entering the queue:
 *   ENQ: u8 type=1 | u8 flags | f64 seq | f64 expiresAt | u32 body length | message (codec.ts)
 *   REF: u8 type=2 | u8 flags | f64 seq | f64 expiresAt | u32 body length | u32 segment | u32 offset
 *        | u32 record length   — the message is in the shared message log
 * Shared message segment (`messages/NNNNNNNN.seg`):
 *   MSG: u8 type=3 | message
 * Ack file (`NNNNNNNN.ack`, next to its segment), one record per batch:
 *   entries of ACK: u8 1 | u32 record offset, or RANGE: u8 2 | f64 first seq | f64 last seq
 */
export const T_ENQ = 1;
export const T_REF = 2;
export const T_MSG = 3;

export const A_ACK = 1;
export const A_RANGE = 2;

/** Offsets inside ENQ/REF payloads. */
const O_SEQ = 2;
const O_EXPIRES = 10;
const O_BODYLEN = 18;
const O_MESSAGE = 22;
const O_MSEG = 22;
const O_MPOS = 26;
const O_MLEN = 30;
const REF_PAYLOAD = 34;

/** Bodies above this are written by reference (writev) instead of being copied into the batch. */
const BIG_BODY = 8192;

/** Location of a message record in the shared log. */
export interface MessageLoc {
  seg: number;
  pos: number;
  len: number;
}

/** Encodes an ENQ record for `e` at the arena position; returns the record's length on disk. */
export function writeEnqueue(arena: Arena, e: QueueEntry, props: Buffer): number {
  const m = e.msg;
  const bodyLen = m.body.length;
  const big = bodyLen > BIG_BODY;
  arena.reserve(RECORD_HEADER + O_MESSAGE + messageHeadBound(m, props) + (big ? 0 : bodyLen));
  const buf = arena.chunk;
  const at = arena.pos;
  const s = at + RECORD_HEADER;
  buf[s] = T_ENQ;
  buf[s + 1] = 0;
  buf.writeDoubleLE(e.seq, s + O_SEQ);
  buf.writeDoubleLE(e.expiresAt, s + O_EXPIRES);
  buf.writeUInt32LE(bodyLen, s + O_BODYLEN);
  return finishMessage(arena, at, writeMessageHead(buf, s + O_MESSAGE, m, props), m.body, big);
}

/** Encodes a MSG record for the shared log; returns its length on disk. */
export function writeShared(arena: Arena, m: MessageContent, props: Buffer): number {
  const bodyLen = m.body.length;
  const big = bodyLen > BIG_BODY;
  arena.reserve(RECORD_HEADER + 1 + messageHeadBound(m, props) + (big ? 0 : bodyLen));
  const buf = arena.chunk;
  const at = arena.pos;
  buf[at + RECORD_HEADER] = T_MSG;
  return finishMessage(arena, at, writeMessageHead(buf, at + RECORD_HEADER + 1, m, props), m.body, big);
}

function finishMessage(arena: Arena, at: number, p: number, body: Buffer, big: boolean): number {
  const buf = arena.chunk;
  if (!big) {
    body.copy(buf, p);
    p += body.length;
    sealRecord(buf, at, p);
    arena.pos = p;
    return p - at;
  }
  const head = buf.subarray(at + RECORD_HEADER, p);
  buf.writeUInt32LE(head.length + body.length, at);
  buf.writeUInt32LE(crc32(body, crc32(head)), at + 4);
  arena.pos = p;
  arena.attach(body);
  return p - at + body.length;
}

/** Encodes a REF record; returns its length on disk. */
export function writeRef(arena: Arena, e: QueueEntry, loc: MessageLoc): number {
  arena.reserve(RECORD_HEADER + REF_PAYLOAD);
  const buf = arena.chunk;
  const at = arena.pos;
  const s = at + RECORD_HEADER;
  buf[s] = T_REF;
  buf[s + 1] = 0;
  buf.writeDoubleLE(e.seq, s + O_SEQ);
  buf.writeDoubleLE(e.expiresAt, s + O_EXPIRES);
  buf.writeUInt32LE(e.msg.body.length, s + O_BODYLEN);
  buf.writeUInt32LE(loc.seg, s + O_MSEG);
  buf.writeUInt32LE(loc.pos, s + O_MPOS);
  buf.writeUInt32LE(loc.len, s + O_MLEN);
  const end = s + REF_PAYLOAD;
  sealRecord(buf, at, end);
  arena.pos = end;
  return end - at;
}

/** Encodes one ack-file record holding `acks` (offsets) and `ranges` ([first, last] seq pairs). */
export function writeAcks(arena: Arena, acks: readonly number[], ranges: readonly number[]): number {
  const n = RECORD_HEADER + acks.length * 5 + (ranges.length / 2) * 17;
  arena.reserve(n);
  const buf = arena.chunk;
  const at = arena.pos;
  let p = at + RECORD_HEADER;
  for (const pos of acks) {
    buf[p] = A_ACK;
    buf.writeUInt32LE(pos, p + 1);
    p += 5;
  }
  for (let i = 0; i < ranges.length; i += 2) {
    buf[p] = A_RANGE;
    buf.writeDoubleLE(ranges[i]!, p + 1);
    buf.writeDoubleLE(ranges[i + 1]!, p + 9);
    p += 17;
  }
  sealRecord(buf, at, p);
  arena.pos = p;
  return p - at;
}

/** Applies an ack-file record's payload to the acked offsets and seq ranges. */
export function readAcks(buf: Buffer, s: number, e: number, acked: Set<number>, ranges: number[]): void {
  let p = s;
  while (p < e) {
    const t = buf[p];
    if (t === A_ACK && p + 5 <= e) {
      acked.add(buf.readUInt32LE(p + 1));
      p += 5;
    } else if (t === A_RANGE && p + 17 <= e) {
      ranges.push(buf.readDoubleLE(p + 1), buf.readDoubleLE(p + 9));
      p += 17;
    } else throw corrupt(`unknown ack entry ${t ?? 'past the end'} at ${p}`);
  }
}

export function inRanges(ranges: readonly number[], seq: number): boolean {
  for (let i = 0; i < ranges.length; i += 2) if (seq >= ranges[i]! && seq <= ranges[i + 1]!) return true;
  return false;
}

// ---- reading queue records ---------------------------------------------------------------------

/** The fixed part of an ENQ or REF record. */
export interface EntryHead {
  type: number;
  seq: number;
  expiresAt: number;
  bodyLen: number;
}

export function recordType(buf: Buffer, s: number): number {
  return buf[s] ?? 0;
}

/** Whether the payload is an ENQ or REF long enough to read its fixed part. */
export function isEntryRecord(buf: Buffer, s: number, e: number): boolean {
  const t = buf[s];
  return (t === T_ENQ && e - s >= O_MESSAGE) || (t === T_REF && e - s >= REF_PAYLOAD);
}

export function entrySeq(buf: Buffer, s: number): number {
  return buf.readDoubleLE(s + O_SEQ);
}

export function entryExpiresAt(buf: Buffer, s: number): number {
  return buf.readDoubleLE(s + O_EXPIRES);
}

export function entryBodyLen(buf: Buffer, s: number): number {
  return buf.readUInt32LE(s + O_BODYLEN);
}

export function refLoc(buf: Buffer, s: number): MessageLoc {
  return { seg: buf.readUInt32LE(s + O_MSEG), pos: buf.readUInt32LE(s + O_MPOS), len: buf.readUInt32LE(s + O_MLEN) };
}

const reader = new ByteReader();

/** The message of an ENQ record. */
export function readInlineMessage(buf: Buffer, s: number, e: number): MessageContent {
  const r = reader.reset(buf, s + O_MESSAGE, e);
  const m = readMessage(r);
  if (r.remaining !== 0) throw corrupt(`${r.remaining} stray bytes after an inline message`);
  return m;
}

/** The message of a MSG record. */
export function readSharedMessage(buf: Buffer, s: number, e: number): MessageContent {
  if (buf[s] !== T_MSG) throw corrupt(`expected a message record, found type ${buf[s] ?? 'none'}`);
  const r = reader.reset(buf, s + 1, e);
  const m = readMessage(r);
  if (r.remaining !== 0) throw corrupt(`${r.remaining} stray bytes after a shared message`);
  return m;
}
