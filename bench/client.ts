/**
 * Entry point of one client process (forked by run.ts). Receives its role spec over IPC, opens the
 * protocol driver, and runs the generic part of the role:
 * - publisher: sends from `startAt` to `measureTo`, stamping each body with the wall-clock send time
 *   (float64 LE in bytes 0..7), respects transport back-pressure (publish() false -> wait for drain)
 *   and the in-flight window granted by the parent (`limit`);
 * - consumer: counts deliveries, reports progress every 10 ms, and records end-to-end latency for
 *   messages received inside [measureFrom, measureTo).
 * Exits when the parent says stop, when the IPC channel closes (the parent died), or on a fatal error.
 */
import { writeFileSync } from 'node:fs';

import { wallMs } from './clock.js';
import { openConsumer, openPublisher } from './clients/index.js';
import type { ConsumerDriver, ConsumerSpec, PublisherDriver, PublisherSpec, RoleSpec } from './clients/types.js';
import { Histogram } from './histogram.js';
import type { FromClient, RoleResult, Timeline, ToClient } from './ipc.js';

/** Messages published per event-loop turn before yielding to I/O (socket reads, IPC). */
const PUBLISH_BATCH = 256;
const PROGRESS_INTERVAL_MS = 10;
const STAMP_BYTES = 8;
/** Fixed-rate publishers: a wait longer than this (ms) sleeps on a timer, a shorter one in Atomics.wait. */
const COARSE_WAIT_MS = 2;
/** Messages a consumer keeps (due, sent, received) times for when it traces (bounded memory). */
const TRACE_CAPACITY = 1 << 21;
/** A send stamp below this (2001-09) is filler, not a time: the publisher was not fixed-rate. */
const PLAUSIBLE_WALL_MS = 1e12;
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function send(msg: FromClient): void {
  if (process.connected) process.send?.(msg);
}

/** Send and resolve once the message has been handed to the IPC channel. */
function sendFlushed(msg: FromClient): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined || !process.connected) {
      resolve();
      return;
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

let exiting = false;

function fatal(err: unknown): void {
  if (exiting) return;
  exiting = true;
  const message = err instanceof Error ? err.message : String(err);
  const exit = (): never => process.exit(1);
  setTimeout(exit, 500).unref();
  sendFlushed({ type: 'fatal', message }).then(exit, exit);
}

interface Role {
  start(timeline: Timeline, limit: number): void;
  setLimit(limit: number): void;
  result(): RoleResult;
  close(): Promise<void>;
}

class PublisherRole implements Role {
  private readonly template: Buffer;
  private published = 0;
  private publishedInWindow = 0;
  private limit = 0;
  private running = false;
  private waitingDrain = false;
  private timeline: Timeline = { startAt: 0, measureFrom: 0, measureTo: 0 };
  private windowWaitSince: number | null = null;
  private drainWaitSince: number | null = null;
  private windowWaitMs = 0;
  private drainWaitMs = 0;
  private readonly lag = new Histogram();

  constructor(
    private readonly spec: PublisherSpec,
    private readonly driver: PublisherDriver,
  ) {
    if (spec.bodySize < STAMP_BYTES) throw new Error(`bodySize must be >= ${STAMP_BYTES}`);
    this.template = Buffer.alloc(spec.bodySize, 0x2e);
  }

  start(timeline: Timeline, limit: number): void {
    this.timeline = timeline;
    this.limit = limit;
    setTimeout(() => {
      this.running = true;
      if (this.spec.rate !== undefined) this.paced();
      else this.pump();
    }, Math.max(0, timeline.startAt - wallMs()));
    setTimeout(() => this.finish(), Math.max(0, timeline.measureTo - wallMs()));
  }

  setLimit(limit: number): void {
    if (this.spec.rate !== undefined) return; // a fixed schedule ignores the in-flight window
    if (limit <= this.limit) return;
    this.limit = limit;
    if (this.windowWaitSince !== null) {
      this.windowWaitMs += this.overlap(this.windowWaitSince, wallMs());
      this.windowWaitSince = null;
      this.pump();
    }
  }

  private readonly onDrain = (): void => {
    this.waitingDrain = false;
    if (this.drainWaitSince !== null) this.drainWaitMs += this.overlap(this.drainWaitSince, wallMs());
    this.drainWaitSince = null;
    if (this.spec.rate !== undefined) this.paced();
    else this.pump();
  };

  /**
   * Fixed-rate sending, free of coordinated omission: message n is due at startAt + n / rate, a
   * message sent late (the loop was busy, the transport pushed back) still carries its due time, so
   * the consumer's latency includes the wait. Sub-millisecond gaps are slept in Atomics.wait (timers
   * have a 1 ms grain), at the start of a turn: after a send the loop turns first, so the client
   * library's deferred write goes out and replies (PUBACKs) are read.
   */
  private readonly paced = (): void => {
    if (!this.running || this.waitingDrain) return;
    const { startAt, measureFrom, measureTo } = this.timeline;
    const interval = 1000 / this.spec.rate!;
    const withSendStamp = this.template.length >= 2 * STAMP_BYTES;
    let sent = false;
    for (;;) {
      const now = wallMs();
      if (now >= measureTo) {
        this.finish();
        return;
      }
      if (this.published >= this.spec.maxMessages) return;
      const due = startAt + this.published * interval;
      if (due > now) {
        // Client libraries write in a microtask, a nextTick or an immediate: let this turn end
        // before sleeping, or the message just sent would wait for the next one's due time.
        if (sent) {
          setImmediate(this.paced);
          return;
        }
        const wait = due - now;
        if (wait > COARSE_WAIT_MS) {
          setTimeout(this.paced, wait - COARSE_WAIT_MS / 2);
          return;
        }
        Atomics.wait(sleeper, 0, 0, wait);
        continue;
      }
      const body = Buffer.allocUnsafe(this.template.length);
      this.template.copy(body);
      body.writeDoubleLE(due, 0);
      if (withSendStamp) body.writeDoubleLE(now, STAMP_BYTES);
      this.published++;
      if (due >= measureFrom) {
        this.publishedInWindow++;
        this.lag.recordMs(now - due);
      }
      sent = true;
      if (!this.driver.publish(body)) {
        this.waitingDrain = true;
        this.drainWaitSince = now;
        this.driver.whenWritable(this.onDrain);
        return;
      }
    }
  };

  private readonly pump = (): void => {
    if (!this.running || this.waitingDrain) return;
    const { measureFrom, measureTo } = this.timeline;
    for (let n = 0; n < PUBLISH_BATCH; n++) {
      const now = wallMs();
      if (now >= measureTo) {
        this.finish();
        return;
      }
      if (this.published >= this.limit || this.published >= this.spec.maxMessages) {
        this.windowWaitSince ??= now;
        return;
      }
      // A fresh buffer per message: the client library may hold on to it until it is written.
      const body = Buffer.allocUnsafe(this.template.length);
      this.template.copy(body);
      body.writeDoubleLE(now, 0);
      this.published++;
      if (now >= measureFrom) this.publishedInWindow++;
      if (!this.driver.publish(body)) {
        this.waitingDrain = true;
        this.drainWaitSince = now;
        this.driver.whenWritable(this.onDrain);
        return;
      }
    }
    setImmediate(this.pump);
  };

  private finish(): void {
    if (!this.running) return;
    this.running = false;
    const now = wallMs();
    if (this.windowWaitSince !== null) this.windowWaitMs += this.overlap(this.windowWaitSince, now);
    if (this.drainWaitSince !== null) this.drainWaitMs += this.overlap(this.drainWaitSince, now);
    this.windowWaitSince = null;
    this.drainWaitSince = null;
  }

  /** The part of [from, to) that lies inside the measured window. */
  private overlap(from: number, to: number): number {
    const a = Math.max(from, this.timeline.measureFrom);
    const b = Math.min(to, this.timeline.measureTo);
    return Math.max(0, b - a);
  }

  result(): RoleResult {
    this.finish();
    return {
      role: 'publisher',
      id: this.spec.id,
      published: this.published,
      publishedInWindow: this.publishedInWindow,
      windowWaitMs: Math.round(this.windowWaitMs),
      drainWaitMs: Math.round(this.drainWaitMs),
      ...(this.spec.rate !== undefined ? { lag: this.lag.snapshot() } : {}),
    };
  }

  close(): Promise<void> {
    this.running = false;
    return this.driver.close();
  }
}

class ConsumerRole implements Role {
  private received = 0;
  private receivedInWindow = 0;
  private reported = 0;
  private readonly latency = new Histogram();
  private readonly sendLatency = new Histogram();
  private readonly trace: Float64Array | null;
  private traced = 0;
  // Until 'start' arrives nothing is inside the window.
  private measureFrom = Number.POSITIVE_INFINITY;
  private measureTo = Number.NEGATIVE_INFINITY;
  private driver: ConsumerDriver | null = null;
  private readonly progressTimer: NodeJS.Timeout;

  constructor(private readonly spec: ConsumerSpec) {
    this.trace = spec.traceOut === undefined ? null : new Float64Array(TRACE_CAPACITY * 3);
    this.progressTimer = setInterval(() => {
      if (this.received !== this.reported) {
        this.reported = this.received;
        send({ type: 'progress', received: this.received });
      }
    }, PROGRESS_INTERVAL_MS);
  }

  attach(driver: ConsumerDriver): void {
    this.driver = driver;
  }

  readonly onMessage = (body: Buffer): void => {
    const now = wallMs();
    this.received++;
    const t = this.trace;
    if (t !== null && this.traced < TRACE_CAPACITY && body.length >= STAMP_BYTES) {
      const i = 3 * this.traced++;
      t[i] = body.readDoubleLE(0);
      t[i + 1] = body.length >= 2 * STAMP_BYTES ? body.readDoubleLE(STAMP_BYTES) : Number.NaN;
      t[i + 2] = now;
    }
    if (now >= this.measureFrom && now < this.measureTo) {
      this.receivedInWindow++;
      if (body.length >= STAMP_BYTES) this.latency.recordMs(now - body.readDoubleLE(0));
      if (body.length >= 2 * STAMP_BYTES) {
        const sent = body.readDoubleLE(STAMP_BYTES);
        if (sent > PLAUSIBLE_WALL_MS) this.sendLatency.recordMs(now - sent);
      }
    }
  };

  start(timeline: Timeline): void {
    this.measureFrom = timeline.measureFrom;
    this.measureTo = timeline.measureTo;
  }

  setLimit(): void {
    // Consumers are not paced.
  }

  result(): RoleResult {
    return {
      role: 'consumer',
      id: this.spec.id,
      received: this.received,
      receivedInWindow: this.receivedInWindow,
      latency: this.latency.snapshot(),
      ...(this.sendLatency.count > 0 ? { sendLatency: this.sendLatency.snapshot() } : {}),
    };
  }

  async close(): Promise<void> {
    clearInterval(this.progressTimer);
    if (this.trace !== null && this.spec.traceOut !== undefined) {
      const t = this.trace;
      writeFileSync(this.spec.traceOut, new Uint8Array(t.buffer, 0, this.traced * 3 * 8));
    }
    await this.driver?.close();
  }
}

async function openRole(spec: RoleSpec): Promise<Role> {
  if (spec.role === 'publisher') {
    const driver = await openPublisher(spec, fatal);
    return new PublisherRole(spec, driver);
  }
  const role = new ConsumerRole(spec);
  role.attach(await openConsumer(spec, role.onMessage, fatal));
  return role;
}

let role: Role | null = null;

async function onParentMessage(msg: ToClient): Promise<void> {
  switch (msg.type) {
    case 'init':
      role = await openRole(msg.spec);
      send({ type: 'ready' });
      return;
    case 'start':
      role?.start(msg.timeline, msg.limit);
      return;
    case 'limit':
      role?.setLimit(msg.limit);
      return;
    case 'stop': {
      if (role !== null) {
        await sendFlushed({ type: 'result', result: role.result() });
        exiting = true; // errors from closing connections are expected now
        await role.close();
      }
      process.exit(0);
    }
  }
}

if (process.send === undefined) {
  process.stderr.write('bench/client.js is started by bench/run.js, not directly\n');
  process.exit(2);
}
process.on('message', (msg: ToClient) => {
  onParentMessage(msg).catch(fatal);
});
// The parent died or closed the channel: never outlive it.
process.on('disconnect', () => process.exit(0));
