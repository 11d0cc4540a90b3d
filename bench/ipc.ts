/** Messages between the orchestrator (run.ts) and its client processes (client.ts). */
import type { RoleSpec } from './clients/types.js';
import type { HistogramSnapshot } from './histogram.js';

/** Wall-clock instants (ms, see clock.ts) shared by every process of one scenario run. */
export interface Timeline {
  /** Publishers start sending. */
  startAt: number;
  /** End of warm-up: consumers start counting and recording latency. */
  measureFrom: number;
  /** End of the measured window: publishers stop. */
  measureTo: number;
}

export type ToClient =
  | { type: 'init'; spec: RoleSpec }
  | { type: 'start'; timeline: Timeline; limit: number }
  /** Publishers only: publish while your own count is below `limit` (the in-flight window). */
  | { type: 'limit'; limit: number }
  /** Report a result, close connections, exit. */
  | { type: 'stop' };

export interface PublisherResult {
  role: 'publisher';
  id: string;
  published: number;
  publishedInWindow: number;
  /** Time inside the measured window spent waiting for the in-flight window (consumers behind). */
  windowWaitMs: number;
  /** Time inside the measured window spent waiting for the transport's 'drain' (broker not reading). */
  drainWaitMs: number;
  /** Fixed-rate publishers: how late each message left against its due time (generator lag). */
  lag?: HistogramSnapshot;
}

export interface ConsumerResult {
  role: 'consumer';
  id: string;
  received: number;
  receivedInWindow: number;
  /** End-to-end latency of the messages received inside the measured window. */
  latency: HistogramSnapshot;
  /** Latency from the actual send time (bytes 8..15 of the body), when the publisher wrote one. */
  sendLatency?: HistogramSnapshot;
}

export type RoleResult = PublisherResult | ConsumerResult;

export type FromClient =
  | { type: 'ready' }
  /** Consumers: cumulative messages received so far (drives the publishers' in-flight window). */
  | { type: 'progress'; received: number }
  | { type: 'result'; result: RoleResult }
  | { type: 'fatal'; message: string };
