/**
 * A log-linear latency histogram in whole microseconds, in the manner of HdrHistogram: values below
 * 64 µs are exact, above that each power of two is split into 64 buckets (relative error < 1.6 %).
 * Fixed memory, O(1) record, and mergeable, so each consumer process keeps one and the parent sums them.
 */
const SUB_BITS = 6;
const SUB = 1 << SUB_BITS;
const MAX_US = 2 ** 31 - 1; // ~36 minutes; longer latencies are clamped
const BUCKETS = SUB + (31 - SUB_BITS) * SUB;

/** Sparse form for IPC: [bucket index, count] pairs. */
export type HistogramSnapshot = Array<[number, number]>;

function bucketOf(us: number): number {
  if (us < SUB) return us;
  const exp = 31 - Math.clz32(us);
  const shift = exp - SUB_BITS;
  return SUB + shift * SUB + ((us >>> shift) - SUB);
}

/** A representative value (µs) for a bucket: its midpoint. */
function valueOf(bucket: number): number {
  if (bucket < SUB) return bucket;
  const shift = Math.floor((bucket - SUB) / SUB);
  const mantissa = SUB + ((bucket - SUB) % SUB);
  return (mantissa + 0.5) * 2 ** shift;
}

export class Histogram {
  private readonly counts = new Float64Array(BUCKETS);
  private total = 0;

  get count(): number {
    return this.total;
  }

  recordMs(ms: number): void {
    const us = ms <= 0 ? 0 : Math.min(MAX_US, Math.round(ms * 1000));
    this.counts[bucketOf(us)]! += 1;
    this.total++;
  }

  snapshot(): HistogramSnapshot {
    const out: HistogramSnapshot = [];
    for (let i = 0; i < BUCKETS; i++) {
      const c = this.counts[i]!;
      if (c > 0) out.push([i, c]);
    }
    return out;
  }

  merge(snapshot: HistogramSnapshot): void {
    for (const [i, c] of snapshot) {
      if (i < 0 || i >= BUCKETS) continue;
      this.counts[i]! += c;
      this.total += c;
    }
  }

  /** The largest recorded value (its bucket's midpoint) in milliseconds, or null when empty. */
  maxMs(): number | null {
    for (let i = BUCKETS - 1; i >= 0; i--) if (this.counts[i]! > 0) return valueOf(i) / 1000;
    return null;
  }

  /** The q-quantile (0 < q <= 1) in milliseconds, or null when empty. */
  quantileMs(q: number): number | null {
    if (this.total === 0) return null;
    const rank = Math.max(1, Math.ceil(q * this.total));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return valueOf(i) / 1000;
    }
    return valueOf(BUCKETS - 1) / 1000;
  }
}
