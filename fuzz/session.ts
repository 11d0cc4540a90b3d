import type { Rng } from './prng.js';

/** Where a length field sits in a part, so a mutation can make it lie. */
export interface LengthField {
  offset: number;
  /** Bytes of a big-endian integer, of an MQTT variable byte integer, or of ASCII digits. */
  width: number;
  kind: 'be' | 'varint' | 'ascii';
}

/** One unit of a session: usually a frame or packet, with its length fields marked. */
export interface Part {
  bytes: Buffer;
  lengths: LengthField[];
}

/** A valid (or nearly valid) byte stream of one connection, as a list of parts. */
export class Session {
  readonly parts: Part[] = [];

  add(bytes: Buffer, lengths: LengthField[] = []): this {
    this.parts.push({ bytes, lengths });
    return this;
  }

  get size(): number {
    let n = 0;
    for (const p of this.parts) n += p.bytes.length;
    return n;
  }
}

/** Byte sequences that are not UTF-8: lone continuation bytes, overlong forms, surrogates, > U+10FFFF, truncated. */
export const INVALID_UTF8: readonly Buffer[] = [
  Buffer.from([0x80]),
  Buffer.from([0xc0, 0xaf]),
  Buffer.from([0xc3, 0x28]),
  Buffer.from([0xe0, 0x80, 0xaf]),
  Buffer.from([0xed, 0xa0, 0x80]),
  Buffer.from([0xf4, 0x90, 0x80, 0x80]),
  Buffer.from([0xf0, 0x9f, 0x98]),
  Buffer.from([0xfe]),
  Buffer.from([0xff, 0xff]),
  Buffer.from([0x00]),
];

const INTERESTING_BYTES = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0xce, 0x0a, 0x0d, 0x3a, 0x5c, 0x2f, 0x23, 0x2b, 0x2a];

/** Largest block a "huge" mutation inserts; bigger sizes are only ever claimed by length fields. */
const HUGE_BLOCK = 1 << 20;

function lieAbout(rng: Rng, current: number, width: number, kind: LengthField['kind']): number {
  const max = kind === 'varint' ? 268_435_455 : kind === 'ascii' ? 10 ** Math.min(width, 15) - 1 : width >= 4 ? 0xffff_ffff : 256 ** width - 1;
  switch (rng.int(8)) {
    case 0:
      return 0;
    case 1:
      return Math.max(0, current - 1);
    case 2:
      return Math.min(max, current + 1);
    case 3:
      return max;
    case 4:
      return Math.min(max, current * 2 + rng.int(64));
    case 5:
      return Math.min(max, 0x7fff_ffff);
    case 6:
      return Math.max(0, current - rng.range(1, 16));
    default:
      return rng.int(Math.min(max, 0x1_0000_0000));
  }
}

function writeLength(rng: Rng, part: Part, f: LengthField): Buffer {
  const b = part.bytes;
  if (f.offset + f.width > b.length) return b;
  if (f.kind === 'be') {
    let cur = 0;
    for (let i = 0; i < f.width; i++) cur = cur * 256 + b[f.offset + i]!;
    let v = lieAbout(rng, cur, f.width, 'be');
    const out = Buffer.from(b);
    for (let i = f.width - 1; i >= 0; i--) {
      out[f.offset + i] = v % 256;
      v = Math.floor(v / 256);
    }
    return out;
  }
  if (f.kind === 'ascii') {
    const cur = Number(b.subarray(f.offset, f.offset + f.width).toString('latin1'));
    const v = rng.chance(0.15) ? rng.pick(['-1', '1e3', '0x10', ' 5', '99999999999999999999', '', 'abc']) : String(lieAbout(rng, Number.isFinite(cur) ? cur : 0, f.width, 'ascii'));
    return Buffer.concat([b.subarray(0, f.offset), Buffer.from(v, 'latin1'), b.subarray(f.offset + f.width)]);
  }
  // MQTT variable byte integer: re-encode a lie, or write a malformed 5-byte form
  const enc: number[] = [];
  if (rng.chance(0.2)) enc.push(0xff, 0xff, 0xff, 0xff, 0x7f);
  else {
    let v = lieAbout(rng, 0, 4, 'varint');
    do {
      let d = v % 128;
      v = Math.floor(v / 128);
      if (v > 0) d |= 0x80;
      enc.push(d);
    } while (v > 0);
  }
  return Buffer.concat([b.subarray(0, f.offset), Buffer.from(enc), b.subarray(f.offset + f.width)]);
}

export interface MutateOptions {
  /** Another valid session of the same target, for splicing. */
  other: () => Session;
  /** Text protocols get invalid UTF-8 more often. */
  text?: boolean;
  /** The bytes of the session cannot be longer than this after mutation (memory of the runner). */
  maxBytes?: number;
}

/**
 * Mutates a session: lying length fields first (while the marked offsets are still right), then
 * whole parts (repeat, drop, swap, splice with another session), then bytes (bit flips,
 * interesting values, inserts, deletes, invalid UTF-8, a huge block, truncation). Returns the
 * bytes as the chunks to write, split at part boundaries or at random points.
 */
export function mutate(rng: Rng, session: Session, opts: MutateOptions): Buffer[] {
  let parts = session.parts.map((p) => ({ bytes: p.bytes, lengths: p.lengths }));
  const rounds = rng.chance(0.1) ? 0 : rng.chance(0.6) ? 1 : rng.range(2, 6);
  const structural: string[] = [];
  for (let r = 0; r < rounds; r++) {
    const op = rng.int(14);
    if (parts.length === 0) break;
    const i = rng.int(parts.length);
    const p = parts[i]!;
    switch (op) {
      case 0:
      case 1: {
        // a lying length field
        const withLengths = parts.filter((q) => q.lengths.length > 0);
        if (withLengths.length === 0) break;
        const q = rng.pick(withLengths);
        q.bytes = writeLength(rng, q, rng.pick(q.lengths));
        q.lengths = [];
        structural.push('length');
        break;
      }
      case 2: {
        // repeated part
        const n = rng.chance(0.8) ? rng.range(1, 8) : rng.range(9, 200);
        const copies = Array.from({ length: n }, () => ({ bytes: p.bytes, lengths: p.lengths }));
        parts.splice(i, 0, ...copies);
        break;
      }
      case 3:
        parts.splice(i, 1);
        break;
      case 4: {
        const j = rng.int(parts.length);
        parts[i] = parts[j]!;
        parts[j] = p;
        break;
      }
      case 5: {
        // splice: our prefix, another session's suffix
        const o = opts.other().parts;
        const cut = rng.int(o.length + 1);
        parts = parts.slice(0, i + 1).concat(o.slice(cut).map((q) => ({ bytes: q.bytes, lengths: q.lengths })));
        break;
      }
      case 6: {
        // bit flips
        const n = rng.range(1, 4);
        const b = Buffer.from(p.bytes);
        for (let k = 0; k < n && b.length > 0; k++) b[rng.int(b.length)]! ^= 1 << rng.int(8);
        p.bytes = b;
        break;
      }
      case 7: {
        const b = Buffer.from(p.bytes);
        if (b.length > 0) b[rng.int(b.length)] = rng.pick(INTERESTING_BYTES);
        p.bytes = b;
        break;
      }
      case 8: {
        // insert bytes
        const at = rng.int(p.bytes.length + 1);
        const ins = rng.chance(0.5) ? rng.bytes(rng.range(1, 8)) : Buffer.alloc(rng.range(1, 8), rng.pick(INTERESTING_BYTES));
        p.bytes = Buffer.concat([p.bytes.subarray(0, at), ins, p.bytes.subarray(at)]);
        break;
      }
      case 9: {
        // delete bytes
        if (p.bytes.length === 0) break;
        const at = rng.int(p.bytes.length);
        const n = rng.range(1, Math.min(16, p.bytes.length - at));
        p.bytes = Buffer.concat([p.bytes.subarray(0, at), p.bytes.subarray(at + n)]);
        break;
      }
      case 10:
      case 11: {
        if (!opts.text && op === 11) break;
        const at = rng.int(p.bytes.length + 1);
        p.bytes = Buffer.concat([p.bytes.subarray(0, at), rng.pick(INVALID_UTF8), p.bytes.subarray(at)]);
        break;
      }
      case 12: {
        // a huge block
        if (!rng.chance(0.25)) break;
        const at = rng.int(p.bytes.length + 1);
        const n = rng.range(4096, HUGE_BLOCK);
        p.bytes = Buffer.concat([p.bytes.subarray(0, at), Buffer.alloc(n, rng.pick([0x41, 0x00, 0xff, 0x2f, 0x0a])), p.bytes.subarray(at)]);
        break;
      }
      default: {
        // truncation of the whole session
        let total = 0;
        for (const q of parts) total += q.bytes.length;
        let cut = rng.int(total + 1);
        const kept: Part[] = [];
        for (const q of parts) {
          if (cut <= 0) break;
          kept.push(cut >= q.bytes.length ? q : { bytes: q.bytes.subarray(0, cut), lengths: [] });
          cut -= q.bytes.length;
        }
        parts = kept;
      }
    }
  }
  const max = opts.maxBytes ?? 8 << 20;
  const chunks: Buffer[] = [];
  let total = 0;
  for (const p of parts) {
    if (total + p.bytes.length > max) break;
    chunks.push(p.bytes);
    total += p.bytes.length;
  }
  return rechunk(rng, chunks);
}

/** The same bytes written part by part, all at once, or in random pieces (fragmentation). */
export function rechunk(rng: Rng, chunks: Buffer[]): Buffer[] {
  const mode = rng.int(4);
  if (mode <= 1 || chunks.length === 0) return chunks;
  const all = Buffer.concat(chunks);
  if (mode === 2) return [all];
  const out: Buffer[] = [];
  for (let off = 0; off < all.length; ) {
    const n = Math.min(all.length - off, rng.chance(0.5) ? rng.range(1, 7) : rng.range(8, 1500));
    out.push(all.subarray(off, off + n));
    off += n;
    if (out.length > 400) {
      out.push(all.subarray(off));
      break;
    }
  }
  return out;
}
