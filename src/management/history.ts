import type { Exchange, Queue } from '../core/index.js';
import type { Row } from './listing.js';
import { G, Q, X, type ObjectSample, type Sampler } from './sampler.js';

/** One window asked for: RabbitMQ's `*_age` and `*_incr` query parameters, in milliseconds. */
export interface Window {
  ageMs: number;
  incrMs: number;
}

/** The windows of a request: `lengths_age`/`lengths_incr` (depths) and `msg_rates_age`/`msg_rates_incr` (counters). */
export interface HistoryQuery {
  lengths: Window | undefined;
  rates: Window | undefined;
}

function windowOf(q: URLSearchParams, age: string, incr: string, intervalMs: number): Window | undefined {
  const a = Number(q.get(age));
  if (!Number.isFinite(a) || a <= 0) return undefined;
  const i = Number(q.get(incr) ?? 5);
  return { ageMs: a * 1000, incrMs: Math.max(intervalMs, Number.isFinite(i) && i > 0 ? i * 1000 : 5000) };
}

export function historyQuery(q: URLSearchParams, intervalMs: number): HistoryQuery {
  return {
    lengths: windowOf(q, 'lengths_age', 'lengths_incr', intervalMs),
    rates: windowOf(q, 'msg_rates_age', 'msg_rates_incr', intervalMs),
  };
}

export interface Point {
  sample: number;
  timestamp: number;
}

/**
 * A `*_details` object as RabbitMQ serves it when samples are asked for: the current rate, the
 * samples (newest first), their average and the average rate between the oldest and the newest.
 */
export function sampledDetails(rate: number, samples: Point[]): Row {
  let sum = 0;
  for (const s of samples) sum += s.sample;
  const newest = samples[0];
  const oldest = samples[samples.length - 1];
  const span = newest && oldest ? (newest.timestamp - oldest.timestamp) / 1000 : 0;
  return {
    rate,
    samples,
    avg: samples.length > 0 ? round(sum / samples.length) : 0,
    avg_rate: span > 0 ? round((newest!.sample - oldest!.sample) / span) : 0,
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

type Pick = (v: ArrayLike<number>) => number;
/** Where a series goes in a row: the parent key (or none), the details key, and how to read it. */
type Spec = ReadonlyArray<[string | null, string, 'lengths' | 'rates', Pick]>;

const at =
  (i: number): Pick =>
  (v) =>
    v[i] ?? 0;
const sum =
  (i: number, j: number): Pick =>
  (v) =>
    (v[i] ?? 0) + (v[j] ?? 0);

const QUEUE: Spec = [
  [null, 'messages_details', 'lengths', at(Q.messages)],
  [null, 'messages_ready_details', 'lengths', at(Q.ready)],
  [null, 'messages_unacknowledged_details', 'lengths', at(Q.unacked)],
  ['message_stats', 'publish_details', 'rates', at(Q.publish)],
  ['message_stats', 'deliver_details', 'rates', at(Q.deliver)],
  ['message_stats', 'get_details', 'rates', at(Q.get)],
  ['message_stats', 'deliver_get_details', 'rates', sum(Q.deliver, Q.get)],
  ['message_stats', 'ack_details', 'rates', at(Q.ack)],
  ['message_stats', 'redeliver_details', 'rates', at(Q.redeliver)],
];

const EXCHANGE: Spec = [
  ['message_stats', 'publish_in_details', 'rates', at(X.publishIn)],
  ['message_stats', 'publish_out_details', 'rates', at(X.publishOut)],
];

const VHOST: Spec = [
  [null, 'messages_details', 'lengths', at(G.messages)],
  [null, 'messages_ready_details', 'lengths', at(G.ready)],
  [null, 'messages_unacknowledged_details', 'lengths', at(G.unacked)],
  ['message_stats', 'publish_details', 'rates', at(G.publish)],
  ['message_stats', 'deliver_get_details', 'rates', sum(G.deliver, G.get)],
  ['message_stats', 'ack_details', 'rates', at(G.ack)],
  ['message_stats', 'redeliver_details', 'rates', at(G.redeliver)],
];

function apply(row: Row, spec: Spec, hq: HistoryQuery, samplesOf: (w: Window) => ObjectSample[]): Row {
  if (!hq.lengths && !hq.rates) return row;
  const lengths = hq.lengths ? samplesOf(hq.lengths) : undefined;
  const rates = hq.rates ? samplesOf(hq.rates) : undefined;
  for (const [parent, key, kind, pick] of spec) {
    const samples = kind === 'lengths' ? lengths : rates;
    if (!samples) continue;
    const holder = (parent === null ? row : row[parent]) as Row | undefined;
    if (!holder || typeof holder !== 'object') continue;
    const current = holder[key] as { rate?: number } | undefined;
    holder[key] = sampledDetails(current?.rate ?? 0, samples.map((s) => ({ sample: pick(s.values), timestamp: s.timestamp })));
  }
  return row;
}

/** Adds the samples a request asks for to a formatted queue row. */
export function withQueueHistory(row: Row, sampler: Sampler, q: Queue, hq: HistoryQuery): Row {
  return apply(row, QUEUE, hq, (w) => sampler.objectSamples(q, w.ageMs, w.incrMs));
}

export function withExchangeHistory(row: Row, sampler: Sampler, x: Exchange, hq: HistoryQuery): Row {
  return apply(row, EXCHANGE, hq, (w) => sampler.objectSamples(x, w.ageMs, w.incrMs));
}

export function withVhostHistory(row: Row, sampler: Sampler, vhost: string, hq: HistoryQuery): Row {
  return apply(row, VHOST, hq, (w) => sampler.objectSamples(vhost, w.ageMs, w.incrMs));
}
