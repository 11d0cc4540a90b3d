import type { LengthField } from './session.js';

/**
 * A byte writer that remembers where it wrote length fields, so that the mutator can later make
 * them lie. Deliberately independent of the broker's own codecs: it writes whatever it is told,
 * including a short string longer than 255 bytes or a table nested ten thousand deep.
 */
export class Wire {
  private readonly bufs: Buffer[] = [];
  length = 0;
  readonly lengths: LengthField[] = [];

  raw(b: Buffer): this {
    this.bufs.push(b);
    this.length += b.length;
    return this;
  }

  u8(n: number): this {
    return this.raw(Buffer.from([n & 0xff]));
  }

  u16(n: number): this {
    const b = Buffer.allocUnsafe(2);
    b.writeUInt16BE(n & 0xffff);
    return this.raw(b);
  }

  u32(n: number): this {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(n >>> 0);
    return this.raw(b);
  }

  u64(n: bigint): this {
    const b = Buffer.allocUnsafe(8);
    b.writeBigUInt64BE(BigInt.asUintN(64, n));
    return this.raw(b);
  }

  /** A length field of `width` bytes holding `n`, marked. */
  len(n: number, width: 1 | 2 | 4): this {
    this.lengths.push({ offset: this.length, width, kind: 'be' });
    return width === 1 ? this.u8(n) : width === 2 ? this.u16(n) : this.u32(n);
  }

  /** A length-prefixed string; the prefix is the real length (truncated to the width). */
  str(s: string | Buffer, width: 1 | 2 | 4): this {
    const b = typeof s === 'string' ? Buffer.from(s) : s;
    return this.len(b.length, width).raw(b);
  }

  /** Appends another writer's bytes, with its marked lengths. */
  append(w: Wire): this {
    for (const f of w.lengths) this.lengths.push({ ...f, offset: f.offset + this.length });
    for (const b of w.bufs) this.raw(b);
    return this;
  }

  /** Appends `inner` prefixed by its length (a table, an array, a longstr). */
  sized(inner: Wire, width: 1 | 2 | 4 = 4): this {
    this.len(inner.length, width);
    return this.append(inner);
  }

  bytes(): Buffer {
    return this.bufs.length === 1 ? this.bufs[0]! : Buffer.concat(this.bufs, this.length);
  }
}
