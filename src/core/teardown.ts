import { Deque } from './deque.js';

/** Something whose teardown may wait: running it twice does nothing the second time. */
export interface TeardownWork {
  finishTeardown(): void;
}

/** Time spent on closes per event-loop turn before the rest waits for the next turn. */
export const TEARDOWN_BUDGET_MS = 2;
/** Closes per event-loop turn before the rest waits for the next turn. */
export const TEARDOWN_BUDGET_ITEMS = 256;

/**
 * Closes processed in slices. A close runs at once while the current event-loop turn has budget
 * left (a single close is finished before `close()` returns); beyond the budget, closes wait in
 * order and a `setImmediate` loop finishes them a slice per turn, so that a storm of closes (a
 * gateway restart dropping thousands of sessions) leaves room between slices for new connections
 * and deliveries.
 *
 * Only the part of a close that nothing else can observe is deferred: what a new client could
 * collide with (an exclusive queue's name) is released before the work is queued, and whoever
 * needs a closing object finished (a new consumer on its queue) finishes it on the spot.
 */
export class Teardown {
  private readonly pending = new Deque<TeardownWork>();
  private scheduled = false;
  /** Budget spent in the current turn (reset by the next `setImmediate`). */
  private spentMs = 0;
  private spentItems = 0;
  private turnOpen = false;
  /** True while a slice of waiting closes runs. */
  private draining = false;
  /** Closes running now (more than one when a close hands work on). */
  private running = 0;
  /** Closes finished since the broker started (management, tests, the bench). */
  finished = 0;
  /**
   * Connections closed during the current storm whose own log line was left out (see
   * {@link storming}); reported in one line when the storm is over, then reset.
   */
  quietCloses = 0;
  /** When the current storm's first close was held back (ms, `performance.now()`). */
  private stormStart = 0;

  constructor(
    /** A close that threw: reported, and the others go on. */
    private readonly onError: (err: unknown) => void,
    private readonly budgetMs = TEARDOWN_BUDGET_MS,
    private readonly budgetItems = TEARDOWN_BUDGET_ITEMS,
    /**
     * A storm is over (nothing waits any more): `closed` connections went without a log line of
     * their own in `ms` milliseconds.
     */
    private readonly onStormOver?: (closed: number, ms: number) => void,
  ) {}

  /** Closes waiting for a later turn. */
  get size(): number {
    return this.pending.length;
  }

  /**
   * True while closes wait or a slice of them runs: a storm of closes, in which a connection's
   * close is counted in {@link quietCloses} rather than logged on its own line.
   */
  get storming(): boolean {
    return this.draining || this.pending.length > 0;
  }

  /** Runs `w` now if this turn has budget left and nothing waits before it, else queues it. */
  add(w: TeardownWork): void {
    // Work that a close in progress hands on (a link's close telling its connection, which
    // closes its core connection) is part of that close: done now, on that close's budget.
    if (this.running > 0) return this.runNested(w);
    if (this.pending.length === 0 && this.spentItems < this.budgetItems && this.spentMs < this.budgetMs) {
      this.runOne(w);
      this.openTurn();
      return;
    }
    if (this.pending.length === 0 && !this.draining) this.stormStart = performance.now();
    this.pending.push(w);
    this.schedule();
  }

  /** Finishes every waiting close now (broker shutdown). */
  flush(): void {
    const was = this.draining;
    this.draining = true;
    for (let w = this.pending.shift(); w !== undefined; w = this.pending.shift()) this.runOne(w);
    this.draining = was;
    this.stormOver();
  }

  private stormOver(): void {
    const quiet = this.quietCloses;
    if (quiet === 0) return;
    this.quietCloses = 0;
    this.onStormOver?.(quiet, performance.now() - this.stormStart);
  }

  private runOne(w: TeardownWork): void {
    const t0 = performance.now();
    this.running++;
    try {
      w.finishTeardown();
    } catch (err) {
      this.onError(err);
    } finally {
      this.running--;
      this.spentMs += performance.now() - t0;
      this.spentItems++;
      this.finished++;
    }
  }

  private runNested(w: TeardownWork): void {
    try {
      w.finishTeardown();
    } catch (err) {
      this.onError(err);
    } finally {
      this.finished++;
    }
  }

  /** The budget is per turn: the next check phase starts a new one. */
  private openTurn(): void {
    if (this.turnOpen) return;
    this.turnOpen = true;
    setImmediate(this.newTurn);
  }

  private readonly newTurn = (): void => {
    this.turnOpen = false;
    this.spentMs = 0;
    this.spentItems = 0;
  };

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.drain);
  }

  private readonly drain = (): void => {
    this.scheduled = false;
    this.spentMs = 0;
    this.spentItems = 0;
    this.draining = true;
    while (this.spentItems < this.budgetItems && this.spentMs < this.budgetMs) {
      const w = this.pending.shift();
      if (w === undefined) break;
      this.runOne(w);
    }
    this.draining = false;
    if (this.pending.length > 0) return this.schedule();
    this.openTurn();
    this.stormOver();
  };
}
