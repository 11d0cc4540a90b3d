/** Where routing puts what it matched: a `Set`, or a {@link RouteSet}. */
export interface RouteOut<T> {
  add(dest: T): unknown;
}

/** A destination a {@link RouteSet} can hold: it carries the mark of the last set that took it. */
export interface RouteMarked {
  routeMark: number;
}

/** Every set's marks are distinct: a mark is never reused, so a stale one never matches. */
let marks = 0;

/**
 * The distinct destinations of one publish, kept for the next publish: an array and a mark on
 * each destination. A long-lived `Set` would do the same, but clearing it (or adding to it and
 * deleting from it) makes the engine allocate a fresh hash table in the old generation each time:
 * a few hundred bytes per message that only a full collection gives back, and full collections
 * are what make a broker's tail latency.
 *
 * All of a set's additions for one publish happen before anything else routes (a dead-lettered
 * message routed while the publish is delivered uses a set of its own), so a destination marked by
 * another set in between is not added twice.
 */
export class RouteSet<T extends RouteMarked> implements RouteOut<T> {
  private readonly items: (T | undefined)[] = [];
  private n = 0;
  private mark = ++marks;

  add(dest: T): void {
    if (dest.routeMark === this.mark) return;
    dest.routeMark = this.mark;
    this.items[this.n++] = dest;
  }

  get size(): number {
    return this.n;
  }

  /** The i-th destination added (0 <= i < size). */
  at(i: number): T {
    return this.items[i] as T;
  }

  /** Empties the set, letting go of its destinations. */
  clear(): void {
    const items = this.items;
    for (let i = 0; i < this.n; i++) items[i] = undefined;
    this.n = 0;
    this.mark = ++marks;
  }
}
