import type { Consumer } from './queues/consumer.js';
import type { Queue } from './queues/queue.js';
import type { QueueEntry } from './queues/entry.js';

/** A delivery handed out and not yet acknowledged. */
export interface Unacked {
  readonly entry: QueueEntry;
  readonly queue: Queue;
  /** null for basic.get. */
  readonly consumer: Consumer | null;
  /** When it was delivered (ms since the epoch): the consumer timeout and the oldest-unacked age. */
  readonly at: number;
}

/** Slots of a new log; a log that held more than SHRINK_CAPACITY and empties gives them back. */
const MIN_CAPACITY = 4;
const SHRINK_CAPACITY = 1024;
/** Holes tolerated beyond as many as the deliveries held, before the log is compacted. */
const SLACK = 16;

/**
 * A channel's unacknowledged deliveries by delivery tag, oldest first. Tags are handed out in
 * increasing order, so the log is two fixed-capacity arrays in tag order between a head and an
 * end index: adding appends, an ack of the oldest (the usual case) advances the head, any other
 * tag is found by binary search and leaves a hole. When the arrays are full, or holes are more
 * than half of the slots in use, the deliveries still held move to the front: memory stays
 * proportional to what is unacknowledged, whatever order the client acks in, and the arrays
 * are not reallocated while a channel keeps a steady number of deliveries in flight.
 *
 * A `Map` would do the same, but a long-lived hash table that sees an add and a delete per
 * message reallocates its backing store over and over, in the old generation once the table is
 * old: garbage that only a full collection reclaims.
 */
export class UnackedLog {
  private tags: number[] = new Array<number>(MIN_CAPACITY).fill(0);
  private recs: (Unacked | undefined)[] = new Array<Unacked | undefined>(MIN_CAPACITY).fill(undefined);
  private head = 0;
  private end = 0;
  private live = 0;

  get size(): number {
    return this.live;
  }

  /** Adds the delivery `tag`, which must be greater than every tag added before. */
  add(tag: number, u: Unacked): void {
    if (this.end === this.tags.length) {
      if (this.live * 2 <= this.tags.length) this.compact();
      else this.grow();
    }
    this.tags[this.end] = tag;
    this.recs[this.end] = u;
    this.end++;
    this.live++;
  }

  get(tag: number): Unacked | undefined {
    const i = this.indexOf(tag);
    return i < 0 ? undefined : this.recs[i];
  }

  /** Removes and returns the delivery `tag` (undefined if it is not held). */
  take(tag: number): Unacked | undefined {
    const i = this.indexOf(tag);
    if (i < 0) return undefined;
    const u = this.recs[i];
    this.removeAt(i);
    return u;
  }

  /**
   * Removes and returns the oldest delivery if its tag is at most `upTo` (a multiple ack takes
   * them one by one: what settling one causes on the channel is seen by the next call).
   */
  takeOldest(upTo: number): Unacked | undefined {
    if (this.live === 0 || this.tags[this.head]! > upTo) return undefined;
    const u = this.recs[this.head];
    this.removeAt(this.head);
    return u;
  }

  /** Removes every delivery for which `pick` is true, oldest first, handing each to `each`. */
  takeWhere(pick: (u: Unacked) => boolean, each: (u: Unacked) => void): void {
    // Deliveries that `each` causes are appended and visited too, as a Map's iterator would;
    // nothing moves until the walk ends.
    for (let i = this.head; i < this.end; i++) {
      const u = this.recs[i];
      if (u === undefined || !pick(u)) continue;
      this.recs[i] = undefined;
      this.live--;
      each(u);
    }
    this.trimFront();
  }

  /** The deliveries held, oldest first. */
  *values(): IterableIterator<Unacked> {
    for (let i = this.head; i < this.end; i++) {
      const u = this.recs[i];
      if (u !== undefined) yield u;
    }
  }

  /** Removes everything, handing each delivery to `each`, oldest first. */
  drain(each: (u: Unacked) => void): void {
    const recs = this.recs;
    const from = this.head;
    const to = this.end;
    this.tags = new Array<number>(MIN_CAPACITY).fill(0);
    this.recs = new Array<Unacked | undefined>(MIN_CAPACITY).fill(undefined);
    this.head = this.end = this.live = 0;
    for (let i = from; i < to; i++) {
      const u = recs[i];
      if (u !== undefined) each(u);
    }
  }

  private indexOf(tag: number): number {
    const tags = this.tags;
    let lo = this.head;
    if (lo < this.end && tags[lo] === tag) return this.recs[lo] === undefined ? -1 : lo;
    let hi = this.end - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = tags[mid]!;
      if (t === tag) return this.recs[mid] === undefined ? -1 : mid;
      if (t < tag) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  private removeAt(i: number): void {
    this.recs[i] = undefined;
    this.live--;
    if (i === this.head) this.trimFront();
    else if (this.end - this.head > 2 * this.live + SLACK) this.compact();
  }

  /** Advances the head over holes; an empty log starts again at slot 0. */
  private trimFront(): void {
    const recs = this.recs;
    while (this.head < this.end && recs[this.head] === undefined) this.head++;
    if (this.head < this.end) return;
    this.head = this.end = 0;
    if (this.tags.length > SHRINK_CAPACITY) {
      this.tags = new Array<number>(MIN_CAPACITY).fill(0);
      this.recs = new Array<Unacked | undefined>(MIN_CAPACITY).fill(undefined);
    }
  }

  /** Moves the deliveries still held to the front, in order, dropping every hole. */
  private compact(): void {
    const tags = this.tags;
    const recs = this.recs;
    let w = 0;
    for (let r = this.head; r < this.end; r++) {
      const u = recs[r];
      if (u === undefined) continue;
      tags[w] = tags[r]!;
      recs[w] = u;
      w++;
    }
    for (let r = w; r < this.end; r++) recs[r] = undefined;
    this.head = 0;
    this.end = w;
  }

  private grow(): void {
    this.compact();
    const cap = this.tags.length * 2;
    const tags = new Array<number>(cap).fill(0);
    const recs = new Array<Unacked | undefined>(cap).fill(undefined);
    for (let i = 0; i < this.end; i++) {
      tags[i] = this.tags[i]!;
      recs[i] = this.recs[i];
    }
    this.tags = tags;
    this.recs = recs;
  }
}
