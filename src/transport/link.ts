import type { Duplex } from 'node:stream';
import { latencyTrace, processMemory, traceNow, TraceSpan, type MemorySource, type Teardown, type TeardownWork } from '../core/index.js';
import type { Logger } from '../logger.js';
import type { TransportControl } from './adapter.js';
import { InputGuard, type GuardedConnection } from './guard.js';

/** Bytes buffered for the client above which the link reports `congested` and deliveries stop. */
export const HIGH_WATERMARK = 1 << 20;
/** Bytes buffered for the client below which a congested link reports `drained` again. */
export const LOW_WATERMARK = 256 << 10;
/** Bytes buffered above which the client is dead to us (a slow consumer): the stream is destroyed. */
export const HARD_LIMIT = 256 << 20;
/**
 * Writes of at most this many bytes are copied into one buffer per turn of the event loop (a
 * delivery, an ack: one write to the stream, whatever their number); larger ones are handed to
 * the stream as they are, behind what was copied before them.
 */
const COALESCE_MAX = 4096;
/** How often the one sweep over all links checks heartbeats, keep-alives and deadlines. */
export const SWEEP_INTERVAL_MS = 250;
/** Links one turn of the event loop sweeps; more wait for the next turn (no long task for 10,000 links). */
export const SWEEP_SLICE = 1000;

/** The close reason of a connection whose client simply went away. */
export const CLOSED_BY_CLIENT = 'client closed the connection';

/** Why a link is not being read; reading resumes when no reason is left. */
export const PauseReason = {
  /** A resource alarm is raised and this connection publishes. */
  ALARM: 1,
  /** Too many publishes wait to be settled (see SettleQueue). */
  UNSETTLED: 2,
  /** The protocol holds input behind a reply that waits for the disk. */
  HELD: 4,
  /** An access token is being verified: nothing else the client sent is handled before it. */
  AUTH: 8,
} as const;

/** What a link reports to the protocol processor that uses it. */
export interface LinkOwner extends GuardedConnection {
  /** The client has taken in enough of what was buffered for it: deliveries may resume. */
  linkDrained(): void;
  /** The stream is gone (end, reset, destroy); called once, under the guard. */
  linkClosed(reason: string): void;
  /**
   * The sweep found a deadline passed: `handshake` (no authentication in time) or `silence`
   * (nothing received within the expected interval). True when the owner closes the connection
   * itself (with its protocol's message, then `closeAfter`); false and the link destroys the stream.
   */
  linkExpired(kind: 'handshake' | 'silence'): boolean;
  /**
   * The core's teardown queue: with it, a client's end of stream and the close that follows are
   * taken a slice per event-loop turn when thousands come at once (see Teardown); without it,
   * at once.
   */
  readonly teardown?: Teardown | undefined;
}

const LINK = Symbol('warren.link');
type Linked = Duplex & { [LINK]?: Link };

/** Deadline kinds, in the one `deadline` field. */
const enum Deadline {
  NONE = 0,
  HANDSHAKE = 1,
  CLOSE = 2,
}

/** Ticks of the sweep's wheel: a link due later than this many ticks ahead is looked at then, and put back. */
const WHEEL_TICKS = 512;
/** `Link.sweepTick` of a link in no bucket of the wheel (not swept, or due and being looked at). */
const NOT_IN_WHEEL = -1;

/**
 * The sweep: one interval timer for every link that has a heartbeat, a keep-alive, a handshake
 * deadline or a close deadline (no timer per connection). It also keeps a coarse clock that
 * links stamp their traffic with, so a write costs no `Date.now()`.
 *
 * Links wait in a wheel of buckets, one per tick, each in the bucket of the tick its earliest
 * deadline falls in: a tick looks only at the links due then, not at every link. Traffic moves a
 * link's deadlines later without touching the wheel; when its tick comes and nothing is due yet,
 * it goes to the bucket of its new deadline. So an idle connection with a keep-alive of a minute
 * is looked at about once a minute, and ten thousand of them cost a hundred and some looks a
 * second. A deadline set earlier than the link's tick (a handshake, a close) moves it at once.
 * Due links are looked at a slice of SWEEP_SLICE per turn of the event loop.
 */
class Sweep {
  private readonly wheel: Set<Link>[] = Array.from({ length: WHEEL_TICKS }, () => new Set<Link>());
  /** Links whose tick has come, looked at a slice per turn. */
  private readonly due = new Set<Link>();
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  /** The last tick whose bucket was emptied into `due`. */
  private lastTick: number;
  private scheduled = false;
  /** Milliseconds since the sweep's epoch, updated at every tick (and when a link starts). */
  now = 0;
  private readonly epoch = Date.now();
  /** Links looked at so far (tests and metrics). */
  visits = 0;
  /** Ticks so far (tests). */
  ticks = 0;

  constructor() {
    this.lastTick = Math.floor(this.clock() / SWEEP_INTERVAL_MS);
  }

  add(l: Link): void {
    this.count++;
    if (this.timer === undefined) {
      this.clock();
      this.timer = setInterval(this.tick, SWEEP_INTERVAL_MS);
      this.timer.unref();
    }
    this.schedule(l);
  }

  delete(l: Link): void {
    this.unplace(l);
    this.due.delete(l);
    this.count--;
    if (this.count === 0 && this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /**
   * Puts a link in the bucket of its earliest deadline (`Link.sweepDue`), unless it waits in an
   * earlier one already or is due now.
   */
  schedule(l: Link): void {
    if (this.due.has(l)) return;
    const at = Math.ceil(l.sweepDue(this.now) / SWEEP_INTERVAL_MS);
    // Infinity (nothing pending) and deadlines beyond the wheel wait in its last bucket.
    const tick = Math.min(Math.max(at, this.lastTick + 1), this.lastTick + WHEEL_TICKS - 1);
    if (l.sweepTick !== NOT_IN_WHEEL && l.sweepTick <= tick) return;
    this.unplace(l);
    l.sweepTick = tick;
    this.wheel[tick % WHEEL_TICKS]!.add(l);
  }

  private unplace(l: Link): void {
    if (l.sweepTick === NOT_IN_WHEEL) return;
    this.wheel[l.sweepTick % WHEEL_TICKS]!.delete(l);
    l.sweepTick = NOT_IN_WHEEL;
  }

  /**
   * The clock, read afresh (used when a deadline is set). Truncated so that it is a small integer:
   * the difference of two Date.now() values is a boxed number, and every link stamping it would
   * keep boxes of its own for its last read and write.
   */
  clock(): number {
    return (this.now = Math.trunc(Date.now() - this.epoch));
  }

  get size(): number {
    return this.count;
  }

  private readonly tick = (): void => {
    this.ticks++;
    const t = Math.floor(this.clock() / SWEEP_INTERVAL_MS);
    if (t < this.lastTick) {
      // The wall clock went back: every link is looked at, and placed again from the new time.
      for (const bucket of this.wheel) {
        for (const l of bucket) {
          l.sweepTick = NOT_IN_WHEEL;
          this.due.add(l);
        }
        bucket.clear();
      }
      this.lastTick = t;
    }
    // Every bucket up to this tick (the timer may have been late), each at most once.
    const from = Math.max(this.lastTick + 1, t - WHEEL_TICKS + 1);
    for (let k = from; k <= t; k++) {
      const bucket = this.wheel[k % WHEEL_TICKS]!;
      for (const l of bucket) {
        l.sweepTick = NOT_IN_WHEEL;
        this.due.add(l);
      }
      bucket.clear();
    }
    this.lastTick = Math.max(this.lastTick, t);
    this.step();
  };

  /** Looks at up to SWEEP_SLICE due links, and leaves the rest for the next turn. */
  private step(): void {
    const trace = latencyTrace;
    const t0 = trace !== null ? traceNow() : 0;
    let n = 0;
    for (const l of this.due) {
      if (n++ === SWEEP_SLICE) break;
      this.due.delete(l);
      this.visits++;
      l.sweepAt();
      // Still swept and not placed by what it did (a close deadline): back to its next deadline.
      if (l.isSwept && l.sweepTick === NOT_IN_WHEEL) this.schedule(l);
    }
    if (trace !== null) trace.span(TraceSpan.HEARTBEAT_SWEEP, t0);
    if (this.due.size > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(this.next);
    }
  }

  private readonly next = (): void => {
    this.scheduled = false;
    this.step();
  };
}

const sweep = new Sweep();

/** Links the sweep looks at (for tests and metrics). */
export function sweptLinks(): number {
  return sweep.size;
}

/** How many times the sweep has looked at a link, and how many ticks it has had (tests). */
export function sweepCounts(): { visits: number; ticks: number } {
  return { visits: sweep.visits, ticks: sweep.ticks };
}

/**
 * A connection's transport, the same for every protocol and every transport (TCP, TLS,
 * WebSocket, an in-memory pair): stream events without closures per connection, failure
 * isolation (InputGuard), the corked outbound buffer with high and low watermarks, byte counters,
 * the reasons reading is paused, heartbeats and keep-alives through one sweep, the handshake and
 * close deadlines, and the `closed` promise. Transports differ only below it: they hand a Duplex
 * and, when they buffer whole messages, a TransportControl.
 */
export class Link implements GuardedConnection, MemorySource, TeardownWork {
  readonly guard: InputGuard;
  bytesIn = 0;
  bytesOut = 0;
  framesOut = 0;
  /** Also counted here once set: the connection's traffic as management reports it. */
  traffic: { sendOct: number; sendCnt: number; recvOct: number } | undefined;
  /** Why the connection ended, for its closing log line. */
  closeReason = CLOSED_BY_CLIENT;
  /** A flush of this turn's writes is scheduled. */
  private flushDue = false;
  /** A flush in the turn's check phase is scheduled (see `writeAfterDeliveries`). */
  private lateFlushDue = false;
  /** The stream is corked (a large write went to it this turn). */
  private corked = false;
  /** This turn's small writes, not yet given to the stream: the first, and any after it. */
  private first: Buffer | undefined;
  private more: (Buffer | undefined)[] | undefined;
  private moreCount = 0;
  private pendingBytes = 0;
  private congestedNow = false;
  private paused = 0;
  private lastIn: number;
  private lastOut: number;
  /** Send `heartbeat` after this long without a write (0 = never). */
  private sendIdleMs = 0;
  /** Expire after this long without a read (0 = never). */
  private expectMs = 0;
  private heartbeat: Buffer | undefined;
  private deadline = 0;
  private deadlineKind = Deadline.NONE;
  private swept = false;
  /** The sweep's bucket this link waits in (see Sweep), or -1. */
  sweepTick = NOT_IN_WHEEL;
  private gone = false;
  /** The client ended its side; ending ours waits in the teardown queue. */
  private endDue = false;
  /** The stream closed; telling the owner waits in the teardown queue. */
  private closeDue = false;
  private closedPromise: Promise<void> | undefined;
  private resolveClosed: (() => void) | undefined;

  constructor(
    readonly stream: Duplex,
    private readonly owner: LinkOwner,
    log: Logger,
    readonly transport: string,
    private readonly control?: TransportControl,
    private readonly high = HIGH_WATERMARK,
    private readonly low = LOW_WATERMARK,
    private readonly hard = HARD_LIMIT,
  ) {
    (stream as Linked)[LINK] = this;
    this.lastIn = this.lastOut = sweep.now;
    // The guard is the one 'data' listener: it hands each chunk to `onInput` below.
    this.guard = new InputGuard(stream, this, log);
    stream.on('drain', Link.onDrain);
    stream.on('error', Link.onError);
    stream.on('close', Link.onClose);
    // A TCP socket ends itself when the peer does; other duplexes (WebSocket) may stay half-open.
    stream.on('end', Link.onEnd);
  }

  /** GuardedConnection: bytes from the client, counted, then decoded by the owner (under the guard). */
  onInput(chunk: Buffer): void {
    const trace = latencyTrace;
    if (trace !== null) trace.lastRead = traceNow();
    this.lastIn = sweep.now;
    this.bytesIn += chunk.length;
    const t = this.traffic;
    if (t !== undefined) t.recvOct += chunk.length;
    this.owner.onInput(chunk);
  }

  /** GuardedConnection: the owner closes with its protocol's internal error. */
  failInternal(err: unknown): void {
    this.owner.failInternal(err);
  }

  // Shared by every stream: no closures per connection.
  private static onDrain(this: Duplex): void {
    const l = (this as Linked)[LINK];
    if (l !== undefined) l.drained();
  }

  private static onError(this: Duplex, e: Error): void {
    const l = (this as Linked)[LINK];
    if (l !== undefined && !l.gone) l.closeReason = `socket error: ${e.message}`;
  }

  private static onEnd(this: Duplex): void {
    const l = (this as Linked)[LINK];
    const t = l?.owner.teardown;
    if (l === undefined || t === undefined) {
      if (!this.writableEnded) this.end();
      return;
    }
    l.endDue = true;
    t.add(l);
  }

  /** TeardownWork: the part of a close that was waiting for its slice. */
  finishTeardown(): void {
    if (this.closeDue) {
      this.closeDue = false;
      this.endDue = false;
      this.notify();
    } else if (this.endDue) {
      this.endDue = false;
      const s = this.stream;
      if (s.destroyed || s.writableEnded) return;
      this.writePending();
      // A TCP client that ended its side, with nothing left to send it: closing the socket sends
      // the same FIN as ending it, without a shutdown request and its callback first (a storm's
      // teardown is mostly this).
      if (this.transport === 'tcp' && s.writableLength === 0) {
        s.destroy();
        // The stream is gone now: the owner is told in this same slice, not after its 'close'
        // event has waited for a turn of its own at the back of the queue.
        this.gone = true;
        this.updateSweep();
        this.notify();
      } else s.end();
    }
  }

  private static onClose(this: Duplex): void {
    const l = (this as Linked)[LINK];
    if (l !== undefined) l.finish();
  }

  private static flushTurn(l: Link): void {
    l.flushDue = false;
    const s = l.stream;
    if (s.destroyed || s.writableEnded) {
      l.dropPending();
      return;
    }
    l.writePending();
    const trace = latencyTrace;
    if (trace !== null) trace.flush(s.writableLength);
    if (l.corked) {
      l.corked = false;
      s.uncork();
    }
    // Bytes the socket did not take at once are held until it drains: the memory account polls them.
    if (s.writableLength > 0) processMemory.track(l);
  }

  /** Gives this turn's small writes to the stream as one buffer. */
  private writePending(): void {
    const first = this.first;
    if (first === undefined) return;
    this.first = undefined;
    const n = this.moreCount;
    if (n === 0) {
      this.pendingBytes = 0;
      this.stream.write(first);
      return;
    }
    const out = Buffer.allocUnsafe(this.pendingBytes);
    let at = first.copy(out, 0);
    const more = this.more!;
    for (let i = 0; i < n; i++) {
      at += more[i]!.copy(out, at);
      more[i] = undefined;
    }
    this.moreCount = 0;
    this.pendingBytes = 0;
    this.stream.write(out);
  }

  private dropPending(): void {
    this.first = undefined;
    if (this.more !== undefined) this.more.fill(undefined, 0, this.moreCount);
    this.moreCount = 0;
    this.pendingBytes = 0;
  }

  /** MemorySource: bytes waiting in the stream's write buffer (0 once it is destroyed). */
  get heldBytes(): number {
    const s = this.stream;
    return s.destroyed ? 0 : s.writableLength + this.pendingBytes;
  }

  /** True once the stream has closed. */
  get isClosed(): boolean {
    return this.gone;
  }

  /** Resolves when the stream has closed and the owner has released the connection. */
  get closed(): Promise<void> {
    if (this.closedPromise === undefined) {
      if (this.gone) this.closedPromise = Promise.resolve();
      else this.closedPromise = new Promise<void>((r) => (this.resolveClosed = r));
    }
    return this.closedPromise;
  }

  // ---- outbound -----------------------------------------------------------------------------

  /**
   * Buffers `buf` for the client; everything written in one tick leaves in one syscall. `buf` is
   * not copied at once: it must not change until the end of the tick.
   */
  write(buf: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.writableEnded) return;
    if (!this.flushDue) {
      this.flushDue = true;
      process.nextTick(Link.flushTurn, this);
    }
    this.append(s, buf);
  }

  /**
   * As `write`, for a publisher's acknowledgement made while its message is routed: unless
   * something else is flushed this turn anyway, the bytes leave in the turn's check phase, after
   * the dispatch runs the publish scheduled (queues dispatch from `setImmediate`). The delivery's
   * system call goes first, so the subscriber does not wait behind the acknowledgement's write
   * (and behind the publisher it wakes, on a machine with few cores).
   */
  writeAfterDeliveries(buf: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.writableEnded) return;
    if (!this.flushDue && !this.lateFlushDue) {
      this.lateFlushDue = true;
      setImmediate(Link.lateFlush, this);
    }
    this.append(s, buf);
  }

  private static lateFlush(l: Link): void {
    l.lateFlushDue = false;
    // Nothing left when a turn's flush ran meanwhile and took these bytes with it.
    if (l.first !== undefined) Link.flushTurn(l);
  }

  private append(s: Duplex, buf: Buffer): void {
    this.bytesOut += buf.length;
    this.framesOut++;
    this.lastOut = sweep.now;
    const t = this.traffic;
    if (t !== undefined) {
      t.sendOct += buf.length;
      t.sendCnt++;
    }
    if (buf.length > COALESCE_MAX) {
      // Large: to the stream as it is, corked until the turn ends, behind the small ones before it.
      if (!this.corked) {
        this.corked = true;
        s.cork();
      }
      this.writePending();
      s.write(buf);
    } else if (this.first === undefined) {
      this.first = buf;
      this.pendingBytes = buf.length;
    } else {
      const more = (this.more ??= []);
      if (this.moreCount < more.length) more[this.moreCount] = buf;
      else more.push(buf);
      this.moreCount++;
      this.pendingBytes += buf.length;
    }
    const buffered = s.writableLength + this.pendingBytes;
    if (buffered > this.high) {
      this.congestedNow = true;
      if (buffered > this.hard) {
        this.closeReason = 'slow consumer: outbound buffer over limit';
        s.destroy(new Error(this.closeReason));
      }
    }
  }

  /** Bytes written but not yet taken by the client's socket. */
  get buffered(): number {
    return this.stream.writableLength + this.pendingBytes;
  }

  /** Over the high watermark: deliveries to this connection stop until `linkDrained`. */
  get congested(): boolean {
    // A stream that is gone takes nothing: deliveries stop until its close is handled (a slice away).
    if (this.gone) return true;
    if (!this.congestedNow) return false;
    if (this.stream.writableLength + this.pendingBytes > this.low) return true;
    this.congestedNow = false;
    return false;
  }

  private drained(): void {
    if (this.gone) return;
    // Node's 'drain' comes when the buffer is empty (below `low`).
    this.congestedNow = false;
    this.guard.run(Link.notifyDrained, this.owner);
  }

  private static notifyDrained(o: LinkOwner): void {
    o.linkDrained();
  }

  /** Writes what is buffered (and `buf`), then ends the stream. */
  end(buf?: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.writableEnded) return;
    if (buf !== undefined) this.write(buf);
    this.writePending();
    // Ending uncorks the stream: nothing is left for the turn's flush.
    this.corked = false;
    s.end();
  }

  /**
   * Ends the stream after what is buffered, and destroys it if the client has not closed within
   * `ms` (the close discipline: a peer that stops reading cannot keep the socket).
   */
  closeAfter(ms: number, buf?: Buffer): void {
    this.end(buf);
    this.setDeadline(Deadline.CLOSE, ms);
  }

  /** Destroys the stream if the client has not closed within `ms` (after a protocol close was sent). */
  destroyAfter(ms: number): void {
    this.setDeadline(Deadline.CLOSE, ms);
  }

  /** Destroys the stream now (its close event releases the connection). */
  destroy(reason?: string): void {
    if (reason !== undefined && !this.gone) this.closeReason = reason;
    if (!this.stream.destroyed) this.stream.destroy();
  }

  // ---- inbound flow -------------------------------------------------------------------------

  /** Stops reading for `reason` (PauseReason); reasons add up. */
  pause(reason: number): void {
    if (this.paused === 0 && !this.gone) this.stream.pause();
    this.paused |= reason;
  }

  /** Drops `reason`; reading resumes when no reason is left. */
  unpause(reason: number): void {
    if ((this.paused & reason) === 0) return;
    this.paused &= ~reason;
    if (this.paused === 0 && !this.gone) {
      // A link that was not read could not hear the client: its silence starts now.
      this.lastIn = sweep.now;
      this.stream.resume();
    }
  }

  /** The reasons reading is paused (0 = reading). */
  get pausedBy(): number {
    return this.paused;
  }

  // ---- authentication, heartbeats, deadlines ------------------------------------------------

  /** The client must authenticate within `ms`, or `linkExpired('handshake')` and the end. */
  expectHandshake(ms: number): void {
    this.setDeadline(Deadline.HANDSHAKE, ms);
  }

  /**
   * The client has authenticated: the handshake deadline goes, and a transport that buffers
   * whole messages lifts its pre-authentication limit to `maxFrame`.
   */
  authenticated(maxFrame: number): void {
    if (this.deadlineKind === Deadline.HANDSHAKE) this.deadlineKind = Deadline.NONE;
    this.control?.authenticated(maxFrame);
    this.updateSweep();
  }

  /**
   * Heartbeats and keep-alive: `frame` is written after `sendIdleMs` without a write (0 = none),
   * and the connection expires after `expectMs` without a read (0 = never), unless it is paused.
   */
  keepAlive(sendIdleMs: number, frame: Buffer | undefined, expectMs: number): void {
    this.sendIdleMs = frame === undefined ? 0 : sendIdleMs;
    this.heartbeat = frame;
    // Whole milliseconds: a small integer, where 1.5 x a keep-alive would be a boxed number.
    this.expectMs = Math.trunc(expectMs);
    this.lastIn = this.lastOut = sweep.clock();
    this.updateSweep();
  }

  private setDeadline(kind: Deadline, ms: number): void {
    if (this.gone) return;
    if (this.deadlineKind === Deadline.CLOSE && kind !== Deadline.CLOSE) return;
    const at = sweep.clock() + ms;
    if (this.deadlineKind === Deadline.CLOSE && this.deadline <= at) return;
    this.deadline = at;
    this.deadlineKind = kind;
    this.updateSweep();
  }

  private updateSweep(): void {
    const want = !this.gone && (this.sendIdleMs > 0 || this.expectMs > 0 || this.deadlineKind !== Deadline.NONE);
    if (want === this.swept) {
      // A deadline may have come earlier than the tick the link waits for.
      if (want) sweep.schedule(this);
      return;
    }
    this.swept = want;
    if (want) sweep.add(this);
    else sweep.delete(this);
  }

  /** Whether the sweep has this link. */
  get isSwept(): boolean {
    return this.swept;
  }

  /**
   * When the sweep must look at this link next (sweep clock ms): its earliest deadline, the end of
   * its silence, its next heartbeat. A paused link's silence does not count: it is looked at again
   * after a whole silence from now. Infinity when nothing is pending (a link closing).
   */
  sweepDue(now: number): number {
    let due = Number.POSITIVE_INFINITY;
    if (this.deadlineKind !== Deadline.NONE) due = this.deadline;
    if (this.expectMs > 0) due = Math.min(due, (this.paused === 0 ? this.lastIn : now) + this.expectMs + 1);
    if (this.sendIdleMs > 0) due = Math.min(due, this.lastOut + this.sendIdleMs);
    return due;
  }

  /** One sweep tick for this link (under its guard). */
  sweepAt(): void {
    this.guard.run(Link.check, this);
  }

  private static check(l: Link): void {
    const now = sweep.now;
    if (l.deadlineKind !== Deadline.NONE && now >= l.deadline) {
      const kind = l.deadlineKind;
      l.deadlineKind = Deadline.NONE;
      if (kind === Deadline.HANDSHAKE) {
        l.closeReason = 'handshake timeout';
        if (l.owner.linkExpired('handshake')) return;
      }
      l.destroy();
      return;
    }
    if (l.expectMs > 0 && l.paused === 0 && now - l.lastIn > l.expectMs) {
      l.expectMs = 0;
      l.closeReason = 'missed heartbeats';
      if (!l.owner.linkExpired('silence')) l.destroy();
      return;
    }
    if (l.sendIdleMs > 0 && now - l.lastOut >= l.sendIdleMs) l.write(l.heartbeat!);
  }

  private finish(): void {
    if (this.gone) return;
    this.gone = true;
    this.updateSweep();
    const t = this.owner.teardown;
    if (t === undefined) return this.notify();
    this.closeDue = true;
    t.add(this);
  }

  private notify(): void {
    this.guard.run(Link.notifyClosed, this);
    this.resolveClosed?.();
  }

  private static notifyClosed(l: Link): void {
    l.owner.linkClosed(l.closeReason);
  }
}
