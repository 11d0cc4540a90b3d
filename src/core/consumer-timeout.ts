import { CoreChannel } from './channel.js';
import { TraceSpan } from './latency-trace.js';
import { SlicedWalk } from './sliced-walk.js';
import type { Consumer } from './queues/consumer.js';

/** Default sweep period: timeouts are minutes long, so a second of lateness is fine. */
const DEFAULT_SWEEP_MS = 1000;
/** Connections the timed sweep reads per turn of the event loop (10,000 idle ones are no long task). */
const SWEEP_SLICE = 1000;

/** What the sweep reads of the broker. */
export interface TimeoutScope {
  readonly connections: ReadonlySet<{ readonly channels: readonly CoreChannel[] }>;
}

/**
 * The consumer timeout: a consumer that holds a delivery unacknowledged longer than its queue's
 * `x-consumer-timeout` (or policy `consumer-timeout`, or the broker default) is cancelled and its
 * unacknowledged messages go back to their queues, redelivered; the channel and its other consumers
 * carry on. One periodic sweep, not a timer per delivery: a channel's unacknowledged deliveries are
 * kept in delivery order, so the sweep reads each channel only up to the first delivery young enough
 * to be within every timeout that applies there.
 */
export class ConsumerTimeouts {
  private timer: NodeJS.Timeout | undefined;
  /** The timed sweep over the connections, a slice per turn, and the instant it sweeps for. */
  private readonly walk = new SlicedWalk<{ readonly channels: readonly CoreChannel[] }>(SWEEP_SLICE, (c) => this.sweepConnection(c), TraceSpan.CONSUMER_TIMEOUT_SWEEP);
  private walkNow = 0;

  constructor(
    private readonly scope: TimeoutScope,
    /** Broker default in ms; 0 = none. */
    public defaultMs: number,
    private readonly sweepMs = DEFAULT_SWEEP_MS,
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(this.onTimer, this.sweepMs);
    this.timer.unref();
  }

  private readonly onTimer = (): void => {
    this.walkNow = Date.now();
    this.walk.start(this.scope.connections);
  };

  private sweepConnection(c: { readonly channels: readonly CoreChannel[] }): void {
    for (const ch of c.channels) if (ch.unackedCount > 0 && ch.onConsumerTimeout !== undefined) sweepChannel(ch, this.walkNow, this.defaultMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.walk.stop();
  }

  /** Times out every overdue consumer; returns how many were cancelled (basic.get counts as one). */
  sweep(now: number): number {
    let n = 0;
    for (const conn of this.scope.connections) {
      for (const ch of conn.channels) if (ch.unackedCount > 0 && !ch.closing && ch.onConsumerTimeout !== undefined) n += sweepChannel(ch, now, this.defaultMs);
    }
    return n;
  }
}

/** The timeout (ms) for deliveries from a queue; 0 = none. */
function timeoutOf(queueTimeout: number | undefined, defaultMs: number): number {
  return queueTimeout ?? defaultMs;
}

/** Times out the overdue consumers of one channel; returns how many. */
export function sweepChannel(ch: CoreChannel, now: number, defaultMs: number): number {
  // Below the shortest timeout in use on this channel nothing can be overdue: stop reading there.
  let floor = defaultMs > 0 ? defaultMs : Infinity;
  for (const c of ch.consumers.values()) {
    const t = timeoutOf(c.queue.limits.consumerTimeout, defaultMs);
    if (t > 0 && t < floor) floor = t;
  }
  let n = 0;
  for (let guard = ch.consumers.size + 1; guard > 0 && ch.unackedCount > 0 && !ch.isClosed; guard--) {
    let expired: Consumer | null | undefined;
    let limit = 0;
    for (const u of ch.unackedDeliveries()) {
      const age = now - u.at;
      const t = timeoutOf(u.queue.limits.consumerTimeout, defaultMs);
      if (t > 0 && age > t) {
        expired = u.consumer;
        limit = t;
        break;
      }
      if (age <= floor) break;
    }
    if (expired === undefined) break;
    ch.timeOutConsumer(expired, limit);
    n++;
  }
  return n;
}

/**
 * When the oldest delivery from `queue` still unacknowledged by one of its consumers was made (ms
 * since the epoch), or undefined when none is. Reads only the channels of the queue's consumers,
 * each up to its first delivery from this queue.
 */
export function oldestUnackedAt(queue: { readonly consumers: readonly { readonly owner: unknown }[] }): number | undefined {
  let oldest: number | undefined;
  const seen = new Set<CoreChannel>();
  for (const c of queue.consumers) {
    const ch = c.owner;
    if (!(ch instanceof CoreChannel) || seen.has(ch)) continue;
    seen.add(ch);
    for (const u of ch.unackedDeliveries()) {
      if (u.queue !== queue) continue;
      if (oldest === undefined || u.at < oldest) oldest = u.at;
      break;
    }
  }
  return oldest;
}

/** Age in ms of the oldest unacknowledged delivery of a queue's consumers; 0 when none. */
export function oldestUnackedAge(queue: { readonly consumers: readonly { readonly owner: unknown }[] }, now = Date.now()): number {
  const at = oldestUnackedAt(queue);
  return at === undefined ? 0 : Math.max(0, now - at);
}
