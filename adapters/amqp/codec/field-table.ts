import { BrokerError, ReplyCode, Decimal, type FieldTable, type FieldValue } from '../../../src/core/index.js';
import { FieldTag } from './constants.js';

/**
 * AMQP 0-9-1 primitive types, field tables and field arrays (spec §4.2.5 with RabbitMQ's type
 * tags from its errata, which all real clients use), plus the reader and writer the rest of the
 * codec builds on. Decoded values own their memory: nothing returned points into the input.
 */

const EMPTY = Buffer.alloc(0);
const TWO_32 = 4294967296;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
/** Bounds recursion: a nested table costs 6 bytes, so one frame could otherwise nest ~20k deep. */
const MAX_DEPTH = 64;

/** Truncated or overrunning input: RabbitMQ answers `FRAME_ERROR - cannot decode ...`. */
function truncated(pos: number, need: number, left: number): BrokerError {
  return new BrokerError(
    ReplyCode.FRAME_ERROR,
    `cannot decode: ${need} octets needed at offset ${pos}, ${Math.max(left, 0)} left`,
  );
}

/**
 * A bounds-checked cursor over `buf[pos, end)`. Every read checks first, so malformed input gives a
 * {@link BrokerError} and never a RangeError. One instance can be reused: `reset` it per input.
 */
export class WireReader {
  buf: Buffer = EMPTY;
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

  need(n: number): void {
    if (this.end - this.pos < n) throw truncated(this.pos, n, this.end - this.pos);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  i8(): number {
    this.need(1);
    return this.buf.readInt8(this.pos++);
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  i16(): number {
    this.need(2);
    const v = this.buf.readInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i32(): number {
    this.need(4);
    const v = this.buf.readInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  /** Unsigned 64-bit as a number: exact up to 2^53, rounded above (delivery tags, sizes). */
  u64(): number {
    this.need(8);
    const v = this.buf.readUInt32BE(this.pos) * TWO_32 + this.buf.readUInt32BE(this.pos + 4);
    this.pos += 8;
    return v;
  }

  /** Signed 64-bit: a number when it is a safe integer, else a bigint (no precision lost). */
  i64(): number | bigint {
    this.need(8);
    const hi = this.buf.readInt32BE(this.pos);
    const lo = this.buf.readUInt32BE(this.pos + 4);
    const v = hi * TWO_32 + lo; // exact whenever the result is a safe integer
    const out = Number.isSafeInteger(v) ? v : this.buf.readBigInt64BE(this.pos);
    this.pos += 8;
    return out;
  }

  f32(): number {
    this.need(4);
    const v = this.buf.readFloatBE(this.pos);
    this.pos += 4;
    return v;
  }

  f64(): number {
    this.need(8);
    const v = this.buf.readDoubleBE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A view of the next `n` bytes (callers copy what they keep). */
  view(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  shortstr(): string {
    const len = this.u8();
    if (len === 0) return '';
    this.need(len);
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }

  longstr(): string {
    const len = this.u32();
    if (len === 0) return '';
    this.need(len);
    const s = this.buf.toString('utf8', this.pos, this.pos + len);
    this.pos += len;
    return s;
  }

  /** A long string as owned bytes (SASL responses, byte arrays). */
  longstrBytes(): Buffer {
    const len = this.u32();
    return len === 0 ? Buffer.alloc(0) : Buffer.from(this.view(len));
  }

  table(depth = 0): FieldTable {
    const len = this.u32();
    this.need(len);
    const outerEnd = this.end;
    this.end = this.pos + len;
    const t: FieldTable = {};
    while (this.pos < this.end) {
      const key = this.shortstr();
      const value = this.fieldValue(depth);
      // a plain assignment to '__proto__' would replace the prototype instead of adding a key
      if (key === '__proto__') {
        Object.defineProperty(t, key, { value, enumerable: true, writable: true, configurable: true });
      } else {
        t[key] = value;
      }
    }
    this.end = outerEnd;
    return t;
  }

  array(depth = 0): FieldValue[] {
    const len = this.u32();
    this.need(len);
    const outerEnd = this.end;
    this.end = this.pos + len;
    const a: FieldValue[] = [];
    while (this.pos < this.end) a.push(this.fieldValue(depth));
    this.end = outerEnd;
    return a;
  }

  /** One tagged value. Tags as RabbitMQ's `rabbit_binary_parser` reads them. */
  fieldValue(depth = 0): FieldValue {
    const tag = this.u8();
    switch (tag) {
      case FieldTag.LONG_STRING:
        return this.longstr();
      case FieldTag.INT32:
        return this.i32();
      case FieldTag.BOOLEAN:
        return this.u8() !== 0;
      case FieldTag.TABLE:
        if (depth >= MAX_DEPTH) throw tooDeep();
        return this.table(depth + 1);
      case FieldTag.ARRAY:
        if (depth >= MAX_DEPTH) throw tooDeep();
        return this.array(depth + 1);
      case FieldTag.INT64:
      case FieldTag.INT64_L:
        return this.i64();
      case FieldTag.TIMESTAMP: // seconds since the epoch, unsigned
        return new Date(this.u64() * 1000);
      case FieldTag.INT8:
        return this.i8();
      case FieldTag.UINT8:
        return this.u8();
      case FieldTag.INT16:
        return this.i16();
      case FieldTag.UINT16:
        return this.u16();
      case FieldTag.UINT32:
        return this.u32();
      case FieldTag.FLOAT:
        return this.f32();
      case FieldTag.DOUBLE:
        return this.f64();
      case FieldTag.DECIMAL: {
        // scale octet + unsigned 32-bit value, as RabbitMQ and amqplib read it
        const scale = this.u8();
        return new Decimal(scale, this.u32());
      }
      case FieldTag.BYTE_ARRAY:
        return this.longstrBytes();
      case FieldTag.VOID:
        return null;
      default:
        throw new BrokerError(
          ReplyCode.SYNTAX_ERROR,
          `unknown field value type 0x${tag.toString(16).padStart(2, '0')} at offset ${this.pos - 1}`,
        );
    }
  }
}

function tooDeep(): BrokerError {
  return new BrokerError(ReplyCode.SYNTAX_ERROR, `field tables nested more than ${MAX_DEPTH} deep`);
}

function badValue(text: string): BrokerError {
  return new BrokerError(ReplyCode.SYNTAX_ERROR, text);
}

/**
 * A growable output buffer. Encoders write into one long-lived instance and copy the result out
 * at its exact size, so a frame costs one allocation however it is built.
 */
export class WireWriter {
  buf: Buffer;
  pos = 0;
  private readonly initial: number;

  constructor(initial = 4096) {
    this.initial = initial;
    this.buf = Buffer.allocUnsafe(initial);
  }

  /** Starts over; drops a buffer that grew huge for one large frame. */
  reset(): this {
    if (this.buf.length > 1 << 20) this.buf = Buffer.allocUnsafe(this.initial);
    this.pos = 0;
    return this;
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  /** An owned copy of everything written since `reset`. */
  toBuffer(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }

  u8(v: number): void {
    this.ensure(1);
    this.pos = this.buf.writeUInt8(v, this.pos);
  }

  i8(v: number): void {
    this.ensure(1);
    this.pos = this.buf.writeInt8(v, this.pos);
  }

  u16(v: number): void {
    this.ensure(2);
    this.pos = this.buf.writeUInt16BE(v, this.pos);
  }

  i16(v: number): void {
    this.ensure(2);
    this.pos = this.buf.writeInt16BE(v, this.pos);
  }

  u32(v: number): void {
    this.ensure(4);
    this.pos = this.buf.writeUInt32BE(v, this.pos);
  }

  i32(v: number): void {
    this.ensure(4);
    this.pos = this.buf.writeInt32BE(v, this.pos);
  }

  /** Unsigned 64-bit from a non-negative safe integer. */
  u64(v: number): void {
    if (!Number.isSafeInteger(v) || v < 0) throw badValue(`${v} is not an unsigned 64-bit integer`);
    this.ensure(8);
    const hi = Math.floor(v / TWO_32);
    this.buf.writeUInt32BE(hi, this.pos);
    this.buf.writeUInt32BE(v - hi * TWO_32, this.pos + 4);
    this.pos += 8;
  }

  i64(v: number | bigint): void {
    this.ensure(8);
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw badValue(`${v} is not a safe integer`);
    if (typeof v === 'bigint') {
      if (v < INT64_MIN || v > INT64_MAX) throw badValue(`${v} does not fit a signed 64-bit integer`);
      this.pos = this.buf.writeBigInt64BE(v, this.pos);
      return;
    }
    const hi = Math.floor(v / TWO_32);
    this.buf.writeInt32BE(hi, this.pos);
    this.buf.writeUInt32BE(v - hi * TWO_32, this.pos + 4);
    this.pos += 8;
  }

  f32(v: number): void {
    this.ensure(4);
    this.pos = this.buf.writeFloatBE(v, this.pos);
  }

  f64(v: number): void {
    this.ensure(8);
    this.pos = this.buf.writeDoubleBE(v, this.pos);
  }

  bytes(b: Buffer): void {
    this.ensure(b.length);
    this.pos += b.copy(this.buf, this.pos);
  }

  /** A short string; more than 255 UTF-8 bytes is an error, never a silent truncation. */
  shortstr(s: string, what = 'shortstr'): void {
    this.ensure(1 + s.length * 3); // UTF-16 code unit -> at most 3 UTF-8 bytes
    const n = s.length === 0 ? 0 : this.buf.write(s, this.pos + 1, 'utf8');
    if (n > 255) throw badValue(`${what} is ${n} bytes long, a shortstr holds at most 255`);
    this.buf[this.pos] = n;
    this.pos += 1 + n;
  }

  longstr(s: string | Buffer): void {
    if (typeof s !== 'string') {
      this.u32(s.length);
      this.bytes(s);
      return;
    }
    const max = s.length > 4096 ? Buffer.byteLength(s, 'utf8') : s.length * 3;
    this.ensure(4 + max);
    const n = s.length === 0 ? 0 : this.buf.write(s, this.pos + 4, 'utf8');
    this.buf.writeUInt32BE(n, this.pos);
    this.pos += 4 + n;
  }

  table(t: FieldTable, depth = 0): void {
    if (depth > MAX_DEPTH) throw tooDeep();
    this.ensure(4);
    const start = this.pos;
    this.pos += 4;
    for (const key of Object.keys(t)) {
      this.shortstr(key, 'field table key');
      this.fieldValue(t[key], depth);
    }
    this.buf.writeUInt32BE(this.pos - start - 4, start);
  }

  array(a: readonly (FieldValue | undefined)[], depth = 0): void {
    if (depth > MAX_DEPTH) throw tooDeep();
    this.ensure(4);
    const start = this.pos;
    this.pos += 4;
    for (let i = 0; i < a.length; i++) this.fieldValue(a[i], depth);
    this.buf.writeUInt32BE(this.pos - start - 4, start);
  }

  /**
   * One tagged value; the tag follows the JS type: string S, boolean t, int32 I, other safe
   * integer l, other number d, bigint l, Buffer x, Date T, Decimal D, null/undefined V, array A,
   * object F.
   */
  fieldValue(v: FieldValue | undefined, depth = 0): void {
    switch (typeof v) {
      case 'string':
        this.u8(FieldTag.LONG_STRING);
        this.longstr(v);
        return;
      case 'boolean':
        this.u8(FieldTag.BOOLEAN);
        this.u8(v ? 1 : 0);
        return;
      case 'number':
        if (Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff) {
          this.u8(FieldTag.INT32);
          this.i32(v);
        } else if (Number.isSafeInteger(v)) {
          this.u8(FieldTag.INT64);
          this.i64(v);
        } else {
          this.u8(FieldTag.DOUBLE);
          this.f64(v);
        }
        return;
      case 'bigint':
        this.u8(FieldTag.INT64);
        this.i64(v);
        return;
      case 'undefined':
        this.u8(FieldTag.VOID);
        return;
      case 'object':
        break;
      default:
        throw badValue(`cannot encode a ${typeof v} in a field table`);
    }
    if (v === null) {
      this.u8(FieldTag.VOID);
    } else if (Buffer.isBuffer(v)) {
      this.u8(FieldTag.BYTE_ARRAY);
      this.longstr(v);
    } else if (Array.isArray(v)) {
      this.u8(FieldTag.ARRAY);
      this.array(v, depth + 1);
    } else if (v instanceof Date) {
      const ms = v.getTime();
      if (!(ms >= 0)) throw badValue(`cannot encode timestamp ${String(v)}`);
      this.u8(FieldTag.TIMESTAMP);
      this.u64(Math.floor(ms / 1000));
    } else if (v instanceof Decimal) {
      const { scale, value } = v;
      if (!Number.isInteger(scale) || scale < 0 || scale > 255) throw badValue(`decimal scale ${scale} is not 0..255`);
      // Written as 32 bits: negative int32 values keep their two's complement bits (Java's
      // encoding), though RabbitMQ and amqplib read the value back unsigned.
      if (!Number.isInteger(value) || value < -0x80000000 || value > 0xffffffff) {
        throw badValue(`decimal value ${value} does not fit 32 bits`);
      }
      this.u8(FieldTag.DECIMAL);
      this.u8(scale);
      this.u32(value >>> 0);
    } else {
      this.u8(FieldTag.TABLE);
      this.table(v as FieldTable, depth + 1);
    }
  }
}

const reader = new WireReader();
const writer = new WireWriter();

/** Encodes a field table in wire form: a 32-bit length, then the entries. */
export function encodeFieldTable(table: FieldTable): Buffer {
  writer.reset().table(table);
  return writer.toBuffer();
}

/** Decodes a field table in wire form (32-bit length first); `buf` must hold exactly one table. */
export function decodeFieldTable(buf: Buffer): FieldTable {
  const t = reader.reset(buf).table();
  if (reader.pos !== buf.length) throw trailing(buf.length - reader.pos);
  return t;
}

/** Encodes a field array in wire form: a 32-bit length, then tagged values. */
export function encodeFieldArray(values: readonly FieldValue[]): Buffer {
  writer.reset().array(values);
  return writer.toBuffer();
}

/** Decodes a field array in wire form; `buf` must hold exactly one array. */
export function decodeFieldArray(buf: Buffer): FieldValue[] {
  const a = reader.reset(buf).array();
  if (reader.pos !== buf.length) throw trailing(buf.length - reader.pos);
  return a;
}

/** The error for octets left over after a complete structure (RabbitMQ: frame_error). */
export function trailing(n: number): BrokerError {
  return new BrokerError(ReplyCode.FRAME_ERROR, `cannot decode: ${n} unexpected trailing octets`);
}
