/**
 * One client process of the persistent-message scenarios (forked by persistent.ts):
 * - `publisher`: persistent messages (delivery_mode 2) on a confirm channel, at most `window`
 *   unconfirmed at a time, from `startAt` to `measureTo`; counts confirms and their latency
 *   (publish -> confirm) inside the measured window;
 *   With `rate`, it publishes on a fixed schedule instead (that many per second), each body stamped
 *   with its scheduled send time (free of coordinated omission);
 * - `consumer`: one channel per queue, prefetch 1000, acks each message; counts deliveries, and
 *   records publish -> delivery latency from the stamp every body of 8 bytes or more carries, and
 *   redeliveries and duplicates (by the publish number every body of 16 bytes or more carries);
 * - `filler`: publishes `count` persistent messages as fast as the window allows, then reports.
 */
import { connect } from 'amqplib';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { wallMs } from './clock.js';
import { Histogram, type HistogramSnapshot } from './histogram.js';
import type { Timeline } from './ipc.js';

export type PersistentRole =
  | { role: 'publisher'; url: string; exchange: string; routingKey: string; bodySize: number; window: number; rate?: number }
  | { role: 'consumer'; url: string; queues: string[]; prefetch: number }
  | { role: 'filler'; url: string; routingKey: string; bodySize: number; window: number; count: number };

export type ToPersistentClient = { type: 'init'; spec: PersistentRole } | { type: 'start'; timeline: Timeline } | { type: 'stop' };

export interface PersistentResult {
  published: number;
  confirmed: number;
  confirmedInWindow: number;
  received: number;
  receivedInWindow: number;
  /** Publish -> confirm (publishers) inside the measured window. */
  latency: HistogramSnapshot;
  /** Publish -> delivery (consumers) inside the measured window. */
  delivery: HistogramSnapshot;
  /** Deliveries flagged `redelivered` (consumers), over the whole run. */
  redelivered: number;
  /** Deliveries of a message this consumer had received before, by the number every body of 16 bytes or more carries (consumers). */
  duplicates: number;
}

export type FromPersistentClient =
  | { type: 'ready' }
  | { type: 'filled'; count: number; ms: number }
  | { type: 'result'; result: PersistentResult }
  | { type: 'fatal'; message: string };

function send(m: FromPersistentClient): void {
  if (process.connected) process.send?.(m);
}

function fatal(err: unknown): void {
  send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
  setTimeout(() => process.exit(1), 200).unref();
}

const res: PersistentResult = { published: 0, confirmed: 0, confirmedInWindow: 0, received: 0, receivedInWindow: 0, latency: [], delivery: [], redelivered: 0, duplicates: 0 };
const latency = new Histogram();
const delivery = new Histogram();
/** Bodies this long or longer carry their send time (a float64, ms) in their first bytes. */
const STAMP_BYTES = 8;
/** Bodies this long or longer also carry their publish number (a float64) after the stamp. */
const NUMBERED_BYTES = 16;
/** The publish numbers a consumer has seen, one bit each. */
let seen = new Uint8Array(1 << 16);

/** Marks publish number `n` seen; true when it was already. */
function seenBefore(n: number): boolean {
  const byte = n >>> 3;
  if (byte >= seen.length) {
    const grown = new Uint8Array(Math.max(seen.length * 2, byte + 1));
    grown.set(seen);
    seen = grown;
  }
  const bit = 1 << (n & 7);
  const was = (seen[byte]! & bit) !== 0;
  seen[byte] = seen[byte]! | bit;
  return was;
}
let timeline: Timeline = { startAt: Infinity, measureFrom: Infinity, measureTo: -Infinity };
let conn: ChannelModel | undefined;
let startPublishing: (() => void) | undefined;

async function open(url: string): Promise<ChannelModel> {
  const c = await connect(url, { noDelay: true });
  c.on('error', fatal);
  return c;
}

/**
 * Publishes with at most `window` unconfirmed; `until()` says when to stop. With `rate`, message
 * k is due at `startAt + k / rate` and is stamped with that time (one late or held back by the
 * window counts its wait); without, each goes as soon as the window allows.
 */
function pump(ch: ConfirmChannel, exchange: string, routingKey: string, size: number, window: number, until: () => boolean, done: () => void, rate?: number): void {
  let outstanding = 0;
  let waitingDrain = false;
  let timer: NodeJS.Timeout | undefined;
  const template = Buffer.alloc(size, 0x2e);
  const t0 = wallMs();
  const go = (): void => {
    if (waitingDrain) return;
    while (outstanding < window) {
      if (until()) {
        if (outstanding === 0) done();
        return;
      }
      const sentAt = rate === undefined ? wallMs() : t0 + (res.published * 1000) / rate;
      if (rate !== undefined && sentAt > wallMs()) {
        if (timer === undefined) timer = setTimeout(() => ((timer = undefined), go()), Math.max(1, sentAt - wallMs()));
        return;
      }
      outstanding++;
      res.published++;
      const body = Buffer.from(template);
      if (size >= STAMP_BYTES) body.writeDoubleLE(sentAt, 0);
      if (size >= NUMBERED_BYTES) body.writeDoubleLE(res.published, STAMP_BYTES);
      const ok = ch.publish(exchange, routingKey, body, { persistent: true }, (err: unknown) => {
        outstanding--;
        if (err === null || err === undefined) {
          res.confirmed++;
          const now = wallMs();
          if (now >= timeline.measureFrom && now < timeline.measureTo) {
            res.confirmedInWindow++;
            latency.recordMs(now - sentAt);
          }
        }
        if (outstanding === 0 && until()) done();
        else go();
      });
      if (!ok) {
        waitingDrain = true;
        ch.once('drain', () => {
          waitingDrain = false;
          go();
        });
        return;
      }
    }
  };
  go();
}

async function init(spec: PersistentRole): Promise<void> {
  conn = await open(spec.url);
  switch (spec.role) {
    case 'publisher': {
      const ch = await conn.createConfirmChannel();
      ch.on('error', fatal);
      startPublishing = () =>
        pump(ch, spec.exchange, spec.routingKey, spec.bodySize, spec.window, () => wallMs() >= timeline.measureTo, () => undefined, spec.rate);
      return;
    }
    case 'consumer':
      for (const q of spec.queues) {
        const ch = await conn.createChannel();
        ch.on('error', fatal);
        await ch.prefetch(spec.prefetch);
        await ch.consume(q, (m) => {
          if (m === null) return fatal(new Error(`consumer of ${q} cancelled`));
          res.received++;
          if (m.fields.redelivered) res.redelivered++;
          if (m.content.length >= NUMBERED_BYTES && seenBefore(m.content.readDoubleLE(STAMP_BYTES))) res.duplicates++;
          const now = wallMs();
          if (now >= timeline.measureFrom && now < timeline.measureTo) {
            res.receivedInWindow++;
            if (m.content.length >= STAMP_BYTES) delivery.recordMs(now - m.content.readDoubleLE(0));
          }
          ch.ack(m);
        });
      }
      return;
    case 'filler': {
      const ch = await conn.createConfirmChannel();
      ch.on('error', fatal);
      startPublishing = () => {
        const t0 = wallMs();
        pump(ch, '', spec.routingKey, spec.bodySize, spec.window, () => res.published >= spec.count, () =>
          send({ type: 'filled', count: res.confirmed, ms: wallMs() - t0 }),
        );
      };
      return;
    }
  }
}

process.on('message', (m: ToPersistentClient) => {
  switch (m.type) {
    case 'init':
      init(m.spec).then(() => send({ type: 'ready' }), fatal);
      return;
    case 'start': {
      timeline = m.timeline;
      const go = startPublishing;
      if (go) setTimeout(go, Math.max(0, timeline.startAt - wallMs()));
      return;
    }
    case 'stop':
      res.latency = latency.snapshot();
      res.delivery = delivery.snapshot();
      send({ type: 'result', result: res });
      const c = conn;
      conn = undefined;
      void (c ? c.close().catch(() => undefined) : Promise.resolve()).finally(() => setTimeout(() => process.exit(0), 50));
      return;
  }
});
process.on('disconnect', () => process.exit(0));
