import { BrokerError } from '../errors.js';
import type { FieldTable, FieldValue, StoredMessage } from '../types.js';
import type { QueueEntry } from './entry.js';
import { STREAM } from './stream.js';

/** What a queue type sees of a declaration. */
export interface QueueDeclaration {
  readonly vhost: string;
  /** '' when the server is to choose the name. */
  readonly name: string;
  readonly durable: boolean;
  readonly exclusive: boolean;
  readonly autoDelete: boolean;
  readonly args: FieldTable;
}

/**
 * The behaviour that differs between queue types (`x-queue-type`). A {@link Queue} holds one and
 * asks it at the few points where types differ: declaration, returns (nack/reject with requeue)
 * and the message handed to a consumer. A replicated type later plugs in here.
 */
export interface QueueType {
  /** As `x-queue-type` and the management API's `type` name it. */
  readonly name: 'classic' | 'quorum' | 'stream';
  /** Throws PRECONDITION_FAILED for a declaration this type refuses. */
  validate(d: QueueDeclaration): void;
  /**
   * How many failed deliveries (returns) a message may have before it is dead-lettered with
   * reason `delivery_limit`; undefined = no limit.
   */
  deliveryLimit(effectiveArgs: FieldTable): number | undefined;
  /** The message a consumer receives for `entry` (a redelivery may carry extra headers). */
  messageFor(entry: QueueEntry): StoredMessage;
}

/** RabbitMQ's `queue 'q' in vhost 'v'`. */
export function describeQueue(vhost: string, name: string): string {
  return `queue '${name}' in vhost '${vhost}'`;
}

export const CLASSIC: QueueType = {
  name: 'classic',
  validate: () => undefined,
  deliveryLimit: (args) => {
    const v: FieldValue | undefined = args['x-delivery-limit'];
    const n = typeof v === 'bigint' ? Number(v) : v;
    return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined;
  },
  messageFor: (e) => e.msg,
};

/** The type named by a queue's declared arguments; an unknown name is RabbitMQ's error. */
export function queueTypeOf(vhost: string, name: string, args: FieldTable, quorum: QueueType): QueueType {
  const t = args['x-queue-type'];
  if (t === undefined || t === null || t === 'classic') return CLASSIC;
  if (t === 'quorum') return quorum;
  if (t === 'stream') return STREAM;
  throw BrokerError.precondition(
    `invalid arg 'x-queue-type' for ${describeQueue(vhost, name)}: "unsupported queue type '${typeof t === 'string' ? t : String(t)}'"`,
  );
}
