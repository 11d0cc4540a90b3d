import { BrokerError } from '../errors.js';
import type { FieldTable, FieldValue, StoredMessage } from '../types.js';
import type { QueueEntry } from './entry.js';
import { describeQueue, type QueueDeclaration, type QueueType } from './queue-type.js';
import type { StreamLimits } from './stream-store.js';

/** RabbitMQ's default `x-stream-max-segment-size-bytes` (500 MB). */
export const DEFAULT_STREAM_SEGMENT_BYTES = 500_000_000;
/** RabbitMQ's default and bounds of `x-stream-filter-size-bytes`. */
export const DEFAULT_STREAM_FILTER_BYTES = 16;
const MAX_STREAM_FILTER_BYTES = 255;

/** Arguments RabbitMQ refuses on a stream (`... of queue type rabbit_stream_queue`). */
const REFUSED_ARGS: readonly string[] = [
  'x-message-ttl',
  'x-expires',
  'x-max-length',
  'x-overflow',
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-max-priority',
  'x-queue-mode',
  'x-queue-version',
  'x-delivery-limit',
  'x-single-active-consumer',
  'x-requeue-delay',
  'x-requeue-delay-max',
];

const UNIT_MS: Record<string, number> = {
  Y: 365 * 86_400_000,
  M: 30 * 86_400_000,
  D: 86_400_000,
  h: 3_600_000,
  m: 60_000,
  s: 1000,
};

/**
 * A duration in RabbitMQ's form: a number and a unit, `Y` `M` `D` `h` `m` `s` (`7D`, `1h`), or
 * several of them separated by spaces (`1h 30m`). Undefined when `v` is not one.
 */
export function parseDuration(v: string): number | undefined {
  const parts = v.trim().split(/\s+/);
  let ms = 0;
  for (const p of parts) {
    const m = /^(\d+)([YMDhms])$/.exec(p);
    if (m === null) return undefined;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return parts.length > 0 ? ms : undefined;
}

function toInt(v: FieldValue | undefined): number | undefined {
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) ? n : undefined;
}

function positive(args: FieldTable, name: string, what: string, min: number): number | undefined {
  const v = args[name];
  if (v === undefined || v === null) return undefined;
  const n = toInt(v);
  if (n === undefined || n < min) throw BrokerError.precondition(`invalid arg '${name}' for ${what}: ${String(v)} is not an integer >= ${min}`);
  return n;
}

/** The limits of a stream from its (effective) arguments; throws 406 for bad values. */
export function streamLimits(vhost: string, name: string, args: FieldTable): StreamLimits {
  const what = describeQueue(vhost, name);
  const age = args['x-max-age'];
  let maxAgeMs: number | undefined;
  if (age !== undefined && age !== null) {
    maxAgeMs = typeof age === 'string' ? parseDuration(age) : undefined;
    if (maxAgeMs === undefined) throw BrokerError.precondition(`invalid arg 'x-max-age' for ${what}: '${String(age)}' is not a duration such as 7D, 12h or 30m`);
  }
  const filterBytes = positive(args, 'x-stream-filter-size-bytes', what, DEFAULT_STREAM_FILTER_BYTES) ?? DEFAULT_STREAM_FILTER_BYTES;
  if (filterBytes > MAX_STREAM_FILTER_BYTES) {
    throw BrokerError.precondition(`invalid arg 'x-stream-filter-size-bytes' for ${what}: ${filterBytes} is more than ${MAX_STREAM_FILTER_BYTES}`);
  }
  return {
    maxBytes: positive(args, 'x-max-length-bytes', what, 0),
    maxAgeMs,
    segmentBytes: positive(args, 'x-stream-max-segment-size-bytes', what, 1) ?? DEFAULT_STREAM_SEGMENT_BYTES,
    filterBytes,
  };
}

/**
 * Streams: durable only, an append-only log read from an offset by every consumer; acks only
 * give credit back. The log and the readers are in {@link StreamQueue} (stream-queue.ts).
 */
export const STREAM: QueueType = {
  name: 'stream',

  validate(d: QueueDeclaration): void {
    const what = describeQueue(d.vhost, d.name);
    if (d.name === '') throw BrokerError.precondition(`Cannot declare a server-named queue of type 'stream' in vhost '${d.vhost}'`);
    if (d.autoDelete) throw BrokerError.precondition(`invalid property 'auto-delete' for ${what}`);
    if (d.exclusive) throw BrokerError.precondition(`invalid property 'exclusive-owner' for ${what}`);
    if (!d.durable) throw BrokerError.precondition(`invalid property 'non-durable' for ${what}`);
    for (const a of REFUSED_ARGS) {
      if (d.args[a] !== undefined) throw BrokerError.precondition(`invalid arg '${a}' for ${what} of queue type rabbit_stream_queue`);
    }
    streamLimits(d.vhost, d.name, d.args);
  },

  deliveryLimit: () => undefined,

  messageFor: (e: QueueEntry): StoredMessage => e.msg,
};
