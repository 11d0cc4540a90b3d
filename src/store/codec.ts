import { Decimal, setOwn, type FieldTable, type FieldValue, type MessageProperties } from '../core/index.js';
import { corrupt } from './errors.js';

/**
 * The store's own binary encoding of messages: properties (every FieldValue type, no length limits
 * beyond u16 strings for names), the AMQP raw property bytes when the publisher spoke AMQP (so an
 * AMQP consumer gets them back bit for bit after a restart), routing information and the body.
 *
 *   u8 flags (bit 0: raw properties follow)
 *   u16 exchange length, exchange (UTF-8)
 *   u16 routing key length, routing key (UTF-8)
 *   u32 properties length, properties (see `writeProperties`)
 *   [u32 raw length, raw AMQP property bytes]
 *   u32 body length, body
 */

const HAS_RAW = 1;

/** Property presence bits, in the AMQP order. */
const P = {
  contentType: 1 << 0,
  contentEncoding: 1 << 1,
  headers: 1 << 2,
  deliveryMode: 1 << 3,
  priority: 1 << 4,
  correlationId: 1 << 5,
  replyTo: 1 << 6,
  expiration: 1 << 7,
  messageId: 1 << 8,
  timestamp: 1 << 9,
  type: 1 << 10,
  userId: 1 << 11,
  appId: 1 << 12,
  clusterId: 1 << 13,
} as const;

/** A growable byte writer; `reset()` keeps the allocation for the next use. */
export class ByteWriter {
  buf: Buffer;
  pos = 0;

  constructor(size = 4096) {
    this.buf = Buffer.allocUnsafe(size);
  }

  reset(): this {
    this.pos = 0;
    return this;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16LE(v, this.pos);
    this.pos += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }

  i32(v: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(v, this.pos);
    this.pos += 4;
  }

  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  i64(v: bigint): void {
    this.ensure(8);
    this.buf.writeBigInt64LE(v, this.pos);
    this.pos += 8;
  }

  u64(v: bigint): void {
    this.ensure(8);
    this.buf.writeBigUInt64LE(v, this.pos);
    this.pos += 8;
  }

  /** u16 length + UTF-8. */
  str16(s: string): void {
    this.ensure(2 + s.length * 3);
    const n = this.buf.write(s, this.pos + 2, 'utf8');
    if (n > 0xffff) throw corrupt(`string of ${n} bytes does not fit a u16 length`);
    this.buf.writeUInt16LE(n, this.pos);
    this.pos += 2 + n;
  }

  /** u32 length + UTF-8. */
  str32(s: string): void {
    this.ensure(4 + s.length * 3);
    const n = this.buf.write(s, this.pos + 4, 'utf8');
    this.buf.writeUInt32LE(n, this.pos);
    this.pos += 4 + n;
  }

  /** u32 length + bytes. */
  bytes32(b: Uint8Array): void {
    this.ensure(4 + b.length);
    this.buf.writeUInt32LE(b.length, this.pos);
    this.buf.set(b, this.pos + 4);
    this.pos += 4 + b.length;
  }

  raw(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  /** A copy of what was written. */
  toBuffer(): Buffer {
    return Buffer.from(this.buf.subarray(0, this.pos));
  }
}

/** Reads what ByteWriter wrote; every read is bounds-checked (a corrupt record throws). */
export class ByteReader {
  buf: Buffer = Buffer.alloc(0);
  pos = 0;
  end = 0;

  reset(buf: Buffer, pos = 0, end = buf.length): this {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    return this;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): number {
    const at = this.pos;
    if (at + n > this.end) throw corrupt(`record truncated: need ${n} bytes at ${at}, have ${this.end - at}`);
    this.pos = at + n;
    return at;
  }

  u8(): number {
    return this.buf[this.need(1)]!;
  }

  u16(): number {
    return this.buf.readUInt16LE(this.need(2));
  }

  u32(): number {
    return this.buf.readUInt32LE(this.need(4));
  }

  i32(): number {
    return this.buf.readInt32LE(this.need(4));
  }

  f64(): number {
    return this.buf.readDoubleLE(this.need(8));
  }

  i64(): bigint {
    return this.buf.readBigInt64LE(this.need(8));
  }

  u64(): bigint {
    return this.buf.readBigUInt64LE(this.need(8));
  }

  str16(): string {
    const n = this.u16();
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  }

  str32(): string {
    const n = this.u32();
    const at = this.need(n);
    return this.buf.toString('utf8', at, at + n);
  }

  /** u32 length + bytes, copied (the result does not pin the read buffer). */
  bytes32(): Buffer {
    const n = this.u32();
    const at = this.need(n);
    return Buffer.from(this.buf.subarray(at, at + n));
  }

  /** u32 length + bytes, as a view of the read buffer (which the result keeps alive). */
  view32(): Buffer {
    const n = this.u32();
    const at = this.need(n);
    return this.buf.subarray(at, at + n);
  }

  skip(n: number): void {
    this.need(n);
  }
}

// ---- field values ------------------------------------------------------------------------------

const T_STRING = 0x73; // s
const T_INT = 0x69; // i
const T_DOUBLE = 0x64; // d
const T_I64 = 0x6c; // l
const T_U64 = 0x4c; // L
const T_TRUE = 0x74; // t
const T_FALSE = 0x66; // f
const T_NULL = 0x56; // V
const T_BYTES = 0x78; // x
const T_DATE = 0x54; // T
const T_DECIMAL = 0x44; // D
const T_ARRAY = 0x41; // A
const T_TABLE = 0x46; // F

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

export function writeValue(w: ByteWriter, v: FieldValue): void {
  switch (typeof v) {
    case 'string':
      w.u8(T_STRING);
      w.str32(v);
      return;
    case 'number':
      if (Number.isInteger(v) && v >= -2147483648 && v <= 2147483647 && !Object.is(v, -0)) {
        w.u8(T_INT);
        w.i32(v);
      } else {
        w.u8(T_DOUBLE);
        w.f64(v);
      }
      return;
    case 'bigint':
      if (v >= I64_MIN && v <= I64_MAX) {
        w.u8(T_I64);
        w.i64(v);
      } else {
        w.u8(T_U64);
        w.u64(BigInt.asUintN(64, v));
      }
      return;
    case 'boolean':
      w.u8(v ? T_TRUE : T_FALSE);
      return;
    default:
      break;
  }
  if (v === null) w.u8(T_NULL);
  else if (Buffer.isBuffer(v)) {
    w.u8(T_BYTES);
    w.bytes32(v);
  } else if (v instanceof Date) {
    w.u8(T_DATE);
    w.f64(v.getTime());
  } else if (v instanceof Decimal) {
    w.u8(T_DECIMAL);
    w.u8(v.scale);
    w.f64(v.value);
  } else if (Array.isArray(v)) {
    w.u8(T_ARRAY);
    w.u32(v.length);
    for (const x of v) writeValue(w, x);
  } else {
    w.u8(T_TABLE);
    writeTable(w, v);
  }
}

export function readValue(r: ByteReader): FieldValue {
  const t = r.u8();
  switch (t) {
    case T_STRING:
      return r.str32();
    case T_INT:
      return r.i32();
    case T_DOUBLE:
      return r.f64();
    case T_I64:
      return r.i64();
    case T_U64:
      return r.u64();
    case T_TRUE:
      return true;
    case T_FALSE:
      return false;
    case T_NULL:
      return null;
    case T_BYTES:
      return r.bytes32();
    case T_DATE:
      return new Date(r.f64());
    case T_DECIMAL: {
      const scale = r.u8();
      return new Decimal(scale, r.f64());
    }
    case T_ARRAY: {
      const n = r.u32();
      if (n > r.remaining) throw corrupt(`array of ${n} values in ${r.remaining} bytes`);
      const out: FieldValue[] = [];
      for (let i = 0; i < n; i++) out.push(readValue(r));
      return out;
    }
    case T_TABLE:
      return readTable(r);
    default:
      throw corrupt(`unknown field value tag 0x${t.toString(16)}`);
  }
}

export function writeTable(w: ByteWriter, t: FieldTable): void {
  const keys = Object.keys(t);
  let n = 0;
  for (const k of keys) if (t[k] !== undefined) n++;
  w.u32(n);
  for (const k of keys) {
    const v = t[k];
    if (v === undefined) continue;
    w.str16(k);
    writeValue(w, v);
  }
}

export function readTable(r: ByteReader): FieldTable {
  const n = r.u32();
  if (n > r.remaining) throw corrupt(`table of ${n} entries in ${r.remaining} bytes`);
  const t: FieldTable = {};
  for (let i = 0; i < n; i++) {
    const k = r.str16();
    setOwn(t, k, readValue(r)); // a stored key '__proto__' stays a key
  }
  return t;
}

// ---- properties --------------------------------------------------------------------------------

export function writeProperties(w: ByteWriter, p: MessageProperties): void {
  const flagsAt = w.pos;
  w.u16(0);
  let f = 0;
  if (p.contentType != null) {
    f |= P.contentType;
    w.str16(p.contentType);
  }
  if (p.contentEncoding != null) {
    f |= P.contentEncoding;
    w.str16(p.contentEncoding);
  }
  if (p.headers != null) {
    f |= P.headers;
    writeTable(w, p.headers);
  }
  if (p.deliveryMode != null) {
    f |= P.deliveryMode;
    w.u8(p.deliveryMode);
  }
  if (p.priority != null) {
    f |= P.priority;
    w.u8(p.priority);
  }
  if (p.correlationId != null) {
    f |= P.correlationId;
    w.str16(p.correlationId);
  }
  if (p.replyTo != null) {
    f |= P.replyTo;
    w.str16(p.replyTo);
  }
  if (p.expiration != null) {
    f |= P.expiration;
    w.str16(p.expiration);
  }
  if (p.messageId != null) {
    f |= P.messageId;
    w.str16(p.messageId);
  }
  if (p.timestamp != null) {
    f |= P.timestamp;
    w.f64(p.timestamp);
  }
  if (p.type != null) {
    f |= P.type;
    w.str16(p.type);
  }
  if (p.userId != null) {
    f |= P.userId;
    w.str16(p.userId);
  }
  if (p.appId != null) {
    f |= P.appId;
    w.str16(p.appId);
  }
  if (p.clusterId != null) {
    f |= P.clusterId;
    w.str16(p.clusterId);
  }
  w.buf.writeUInt16LE(f, flagsAt);
}

export function readProperties(r: ByteReader): MessageProperties {
  const f = r.u16();
  const p: MessageProperties = {};
  if (f & P.contentType) p.contentType = r.str16();
  if (f & P.contentEncoding) p.contentEncoding = r.str16();
  if (f & P.headers) p.headers = readTable(r);
  if (f & P.deliveryMode) p.deliveryMode = r.u8();
  if (f & P.priority) p.priority = r.u8();
  if (f & P.correlationId) p.correlationId = r.str16();
  if (f & P.replyTo) p.replyTo = r.str16();
  if (f & P.expiration) p.expiration = r.str16();
  if (f & P.messageId) p.messageId = r.str16();
  if (f & P.timestamp) p.timestamp = r.f64();
  if (f & P.type) p.type = r.str16();
  if (f & P.userId) p.userId = r.str16();
  if (f & P.appId) p.appId = r.str16();
  if (f & P.clusterId) p.clusterId = r.str16();
  return p;
}

// ---- messages ----------------------------------------------------------------------------------

/** What the store keeps of a message. */
export interface MessageContent {
  exchange: string;
  routingKey: string;
  properties: MessageProperties;
  rawProperties?: Buffer | undefined;
  body: Buffer;
}

const scratch = new ByteWriter(1024);

/**
 * The encoded properties of a message, in a scratch buffer valid until the next call. Encoding them
 * first gives the exact record size before anything is written to a batch.
 */
export function encodePropertiesScratch(p: MessageProperties): Buffer {
  writeProperties(scratch.reset(), p);
  return scratch.buf.subarray(0, scratch.pos);
}

/**
 * An upper bound of the bytes `writeMessageHead` writes for these strings and encoded properties
 * (the body is not included).
 */
export function messageHeadBound(m: MessageContent, props: Buffer): number {
  return 1 + 2 + m.exchange.length * 3 + 2 + m.routingKey.length * 3 + 4 + props.length + 4 + (m.rawProperties?.length ?? 0) + 4;
}

/**
 * Writes everything of a message but the body bytes (the body length is written last, so the body
 * may follow in place or as a separate buffer). Returns the new position.
 */
export function writeMessageHead(buf: Buffer, pos: number, m: MessageContent, props: Buffer): number {
  const raw = m.rawProperties;
  buf[pos++] = raw !== undefined ? HAS_RAW : 0;
  let n = buf.write(m.exchange, pos + 2, 'utf8');
  if (n > 0xffff) throw corrupt(`exchange name of ${n} bytes`);
  buf.writeUInt16LE(n, pos);
  pos += 2 + n;
  n = buf.write(m.routingKey, pos + 2, 'utf8');
  if (n > 0xffff) throw corrupt(`routing key of ${n} bytes`);
  buf.writeUInt16LE(n, pos);
  pos += 2 + n;
  buf.writeUInt32LE(props.length, pos);
  props.copy(buf, pos + 4);
  pos += 4 + props.length;
  if (raw !== undefined) {
    buf.writeUInt32LE(raw.length, pos);
    raw.copy(buf, pos + 4);
    pos += 4 + raw.length;
  }
  buf.writeUInt32LE(m.body.length, pos);
  return pos + 4;
}

/** Encodes a whole message into a fresh buffer (for small stores and tests). */
export function encodeMessage(m: MessageContent): Buffer {
  const props = Buffer.from(encodePropertiesScratch(m.properties));
  const out = Buffer.allocUnsafe(messageHeadBound(m, props) + m.body.length);
  let pos = writeMessageHead(out, 0, m, props);
  m.body.copy(out, pos);
  pos += m.body.length;
  return out.subarray(0, pos);
}

/**
 * Decodes a message; every buffer in the result is a copy, or with `copy` false a view of the
 * reader's buffer (for a reader that keeps that buffer anyway).
 */
export function readMessage(r: ByteReader, copy = true): MessageContent {
  const flags = r.u8();
  const exchange = r.str16();
  const routingKey = r.str16();
  const propsLen = r.u32();
  const propsEnd = r.pos + propsLen;
  if (propsEnd > r.end) throw corrupt(`properties of ${propsLen} bytes overrun the record`);
  const outerEnd = r.end;
  r.end = propsEnd;
  const properties = readProperties(r);
  if (r.pos !== propsEnd) throw corrupt(`${propsEnd - r.pos} stray bytes after the properties`);
  r.end = outerEnd;
  const rawProperties = (flags & HAS_RAW) !== 0 ? (copy ? r.bytes32() : r.view32()) : undefined;
  const body = copy ? r.bytes32() : r.view32();
  return { exchange, routingKey, properties, rawProperties, body };
}

export function decodeMessage(buf: Buffer): MessageContent {
  const r = new ByteReader().reset(buf);
  const m = readMessage(r);
  if (r.remaining !== 0) throw corrupt(`${r.remaining} stray bytes after the message`);
  return m;
}
