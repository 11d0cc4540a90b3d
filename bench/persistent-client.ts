/**
 * One client process of the persistent-message scenarios (forked by persistent.ts):
 * - `publisher`: persistent messages (delivery_mode 2) on a confirm channel, at most `window`
 *   unconfirmed at a time, from `startAt` to `measureTo`; counts confirms and their latency
 *   (publish -> confirm) inside the measured window;
 * - `consumer`: one channel per queue, prefetch 1000, acks each message; counts deliveries;
 * - `filler`: publishes `count` persistent messages as fast as the window allows, then reports.
 */
import { connect } from 'amqplib';
import type { ChannelModel, ConfirmChannel } from 'amqplib';
import { wallMs } from './clock.js';
import { Histogram, type HistogramSnapshot } from './histogram.js';
import type { Timeline } from './ipc.js';

export type PersistentRole =
  | { role: 'publisher'; url: string; exchange: string; routingKey: string; bodySize: number; window: number }
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

const res: PersistentResult = { published: 0, confirmed: 0, confirmedInWindow: 0, received: 0, receivedInWindow: 0, latency: [] };
const latency = new Histogram();
let timeline: Timeline = { startAt: Infinity, measureFrom: Infinity, measureTo: -Infinity };
let conn: ChannelModel | undefined;
let startPublishing: (() => void) | undefined;

async function open(url: string): Promise<ChannelModel> {
  const c = await connect(url, { noDelay: true });
  c.on('error', fatal);
  return c;
}

/** Publishes with at most `window` unconfirmed; `until()` says when to stop. */
function pump(ch: ConfirmChannel, exchange: string, routingKey: string, size: number, window: number, until: () => boolean, done: () => void): void {
  let outstanding = 0;
  let waitingDrain = false;
  const template = Buffer.alloc(size, 0x2e);
  const go = (): void => {
    if (waitingDrain) return;
    while (outstanding < window) {
      if (until()) {
        if (outstanding === 0) done();
        return;
      }
      const sentAt = wallMs();
      outstanding++;
      res.published++;
      const ok = ch.publish(exchange, routingKey, Buffer.from(template), { persistent: true }, (err: unknown) => {
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
        pump(ch, spec.exchange, spec.routingKey, spec.bodySize, spec.window, () => wallMs() >= timeline.measureTo, () => undefined);
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
          const now = wallMs();
          if (now >= timeline.measureFrom && now < timeline.measureTo) res.receivedInWindow++;
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
      send({ type: 'result', result: res });
      const c = conn;
      conn = undefined;
      void (c ? c.close().catch(() => undefined) : Promise.resolve()).finally(() => setTimeout(() => process.exit(0), 50));
      return;
  }
});
process.on('disconnect', () => process.exit(0));
