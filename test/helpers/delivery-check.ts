/**
 * The verdict of a failover run over one queue, from what the test's clients saw: every message
 * the broker confirmed must be delivered at least once, nothing may be delivered that no client
 * published, and a message delivered again must carry `redelivered`.
 */

export interface Delivery {
  readonly id: string;
  readonly redelivered: boolean;
}

export interface DeliveryVerdict {
  /** Confirmed and never delivered. */
  readonly lost: string[];
  /** Delivered, and never published. */
  readonly unknown: string[];
  /** Delivered again without `redelivered` (the second delivery of each such id counts once). */
  readonly unflaggedRepeats: string[];
  /** Distinct ids delivered. */
  readonly delivered: number;
  /** Deliveries of an id after its first. */
  readonly repeats: number;
  readonly ok: boolean;
}

/**
 * `published`: every id a client tried to publish (confirmed, nacked, or with no answer before
 * its connection died); `confirmed`: those the broker confirmed; `deliveries`: in the order the
 * consumers saw them.
 */
export function checkDeliveries(published: Iterable<string>, confirmed: Iterable<string>, deliveries: readonly Delivery[]): DeliveryVerdict {
  const sent = new Set(published);
  const seen = new Set<string>();
  const unknown = new Set<string>();
  const unflagged = new Set<string>();
  let repeats = 0;
  for (const d of deliveries) {
    if (!sent.has(d.id)) unknown.add(d.id);
    if (!seen.has(d.id)) {
      seen.add(d.id);
      continue;
    }
    repeats++;
    if (!d.redelivered) unflagged.add(d.id);
  }
  const lost: string[] = [];
  for (const id of confirmed) if (!seen.has(id)) lost.push(id);
  const verdict = { lost, unknown: [...unknown], unflaggedRepeats: [...unflagged], delivered: seen.size, repeats };
  return { ...verdict, ok: lost.length === 0 && unknown.size === 0 && unflagged.size === 0 };
}

/** A short account of a verdict for an assertion message. */
export function describeVerdict(v: DeliveryVerdict): string {
  const few = (ids: string[]): string => `${ids.length}${ids.length > 0 ? ` (${ids.slice(0, 5).join(', ')}${ids.length > 5 ? ', ...' : ''})` : ''}`;
  return `delivered ${v.delivered} (${v.repeats} repeats); lost ${few(v.lost)}; unknown ${few(v.unknown)}; repeats without redelivered ${few(v.unflaggedRepeats)}`;
}

/** Waits until every id of `ids` is in `seen`, or `ms` passes; resolves with whether they were. */
export async function deliveredWithin(seen: ReadonlySet<string>, ids: Iterable<string>, ms: number): Promise<boolean> {
  const want = [...ids];
  const deadline = Date.now() + ms;
  for (;;) {
    if (want.every((id) => seen.has(id))) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** mulberry32: a small seeded generator of floats in [0, 1), for failover checks that can be run again. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}
