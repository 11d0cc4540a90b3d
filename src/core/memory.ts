/**
 * A buffer that holds bytes for a while (an outbound socket buffer, a decoder's unread input).
 * Polled at sample time while it is tracked; once it reports 0 it is no longer polled.
 */
export interface MemorySource {
  readonly heldBytes: number;
}

/**
 * What the broker itself holds in memory, counted where it is held rather than guessed from the
 * resident set size (which the allocator keeps high long after the bytes are freed):
 *
 * - `messageBytes`: messages the queues hold in memory (ready and unacknowledged), each message
 *   once however many queues it was routed to, at its `size` (body plus a fixed overhead). Paged
 *   messages are not counted: they are on disk.
 * - `bufferedBytes`: bytes waiting in socket buffers and decoders, summed from the sources that
 *   currently hold any (`track`) at each `poll`. An idle connection is never polled.
 *
 * Counting is process-wide, like the memory it describes: every broker and decoder in this
 * process reports into `processMemory`.
 */
export class MemoryAccount {
  messageBytes = 0;
  /** Buffered bytes at the last poll. */
  bufferedBytes = 0;
  /** Sources that held bytes when last seen. */
  private readonly busy = new Set<MemorySource>();
  /**
   * `messageBytes` at which `onThreshold` runs (set by the memory alarm between samples, so a
   * fast publisher cannot run far past the watermark before the next timed sample).
   */
  private threshold = Number.POSITIVE_INFINITY;
  private onThreshold: (() => void) | undefined;

  /** A message enters memory (its first in-memory queue reference). */
  hold(bytes: number): void {
    if ((this.messageBytes += bytes) >= this.threshold) this.crossed();
  }

  /** A message leaves memory (its last in-memory queue reference is gone). */
  release(bytes: number): void {
    this.messageBytes -= bytes;
  }

  /** `source` holds bytes now: it is polled until it reports 0. Cheap to call again. */
  track(source: MemorySource): void {
    this.busy.add(source);
  }

  /** Stops polling `source` (it was closed). */
  untrack(source: MemorySource): void {
    this.busy.delete(source);
  }

  /** Sums the buffered bytes of every tracked source and forgets those holding none. */
  poll(): number {
    let sum = 0;
    for (const s of this.busy) {
      const n = s.heldBytes;
      if (n > 0) sum += n;
      else this.busy.delete(s);
    }
    this.bufferedBytes = sum;
    return sum;
  }

  /** Sources polled at the next sample. */
  get trackedSources(): number {
    return this.busy.size;
  }

  /** Runs `fn` once `messageBytes` reaches `bytes` (Infinity: never); replaces any earlier one. */
  notifyAt(bytes: number, fn: () => void): void {
    this.threshold = bytes;
    this.onThreshold = fn;
  }

  /** Cancels `fn` if it is the one `notifyAt` set. */
  cancelNotify(fn: () => void): void {
    if (this.onThreshold !== fn) return;
    this.threshold = Number.POSITIVE_INFINITY;
    this.onThreshold = undefined;
  }

  private crossed(): void {
    this.threshold = Number.POSITIVE_INFINITY;
    this.onThreshold?.();
  }
}

/** The account every queue, outbound writer and decoder of this process reports into. */
export const processMemory = new MemoryAccount();
