/**
 * A small Bloom filter over a chunk's `x-stream-filter-value`s, kept in the chunk header. A reader
 * interested in some values skips every chunk whose filter cannot hold any of them.
 */

/** Bits set per value. */
const HASHES = 3;

/** RabbitMQ's default (and minimum) `x-stream-filter-size-bytes`. */
export const DEFAULT_FILTER_BYTES = 16;
export const MAX_FILTER_BYTES = 255;

/** FNV-1a over the UTF-16 code units, with a seed so two independent hashes come from one loop. */
function fnv(value: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < value.length; i++) {
    h ^= value.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // final avalanche so short values spread over every bit
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  return h >>> 0;
}

/** Sets the bits of `value` in `bloom`. */
export function bloomAdd(bloom: Buffer, value: string): void {
  const bits = bloom.length * 8;
  if (bits === 0) return;
  const h1 = fnv(value, 0);
  const h2 = fnv(value, 0x5bd1e995) | 1;
  for (let i = 0; i < HASHES; i++) {
    const b = ((h1 + Math.imul(i, h2)) >>> 0) % bits;
    bloom[b >>> 3]! |= 1 << (b & 7);
  }
}

/** False only when `value` was certainly never added to `bloom`. */
export function bloomMayContain(bloom: Buffer, value: string): boolean {
  const bits = bloom.length * 8;
  if (bits === 0) return true;
  const h1 = fnv(value, 0);
  const h2 = fnv(value, 0x5bd1e995) | 1;
  for (let i = 0; i < HASHES; i++) {
    const b = ((h1 + Math.imul(i, h2)) >>> 0) % bits;
    if ((bloom[b >>> 3]! & (1 << (b & 7))) === 0) return false;
  }
  return true;
}
