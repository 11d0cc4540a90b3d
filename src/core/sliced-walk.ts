import { latencyTrace, traceNow } from './latency-trace.js';

/**
 * A periodic walk over a large collection, taken a slice per turn of the event loop: `visit` sees
 * at most `slice` items per turn, so ten thousand connections never make one long task. A walk
 * started while the previous one still runs starts over (the newer instant wins). Items are read
 * from the collection's live iterator, so a `Set` or `Map` skips what was deleted meanwhile.
 */
export class SlicedWalk<T> {
  private cursor: Iterator<T> | undefined;
  private scheduled = false;

  constructor(
    private readonly slice: number,
    private readonly visit: (item: T) => void,
    /** The latency trace's span (a TraceSpan) for one slice. */
    private readonly span: number,
  ) {}

  /** True while a walk has items left to visit. */
  get running(): boolean {
    return this.cursor !== undefined;
  }

  /** Starts a walk over `items` (abandoning one in progress) and takes its first slice now. */
  start(items: Iterable<T>): void {
    this.cursor = items[Symbol.iterator]();
    this.step();
  }

  /** Abandons the walk in progress. */
  stop(): void {
    this.cursor = undefined;
  }

  private step(): void {
    const it = this.cursor;
    if (it === undefined) return;
    const trace = latencyTrace;
    const t0 = trace !== null ? traceNow() : 0;
    let done = false;
    for (let n = 0; n < this.slice && this.cursor === it; n++) {
      const r = it.next();
      if (r.done === true) {
        done = true;
        break;
      }
      this.visit(r.value);
    }
    if (trace !== null) trace.span(this.span, t0);
    // `visit` may have stopped or restarted the walk: only the walk this slice read is finished.
    if (done && this.cursor === it) this.cursor = undefined;
    else if (this.cursor !== undefined && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.next);
    }
  }

  private readonly next = (): void => {
    this.scheduled = false;
    this.step();
  };
}
