import { BrokerError } from '../errors.js';
import type { FieldTable, FieldValue, StoredMessage } from '../types.js';
import type { QueueEntry } from './entry.js';
import { describeQueue, type QueueDeclaration, type QueueType } from './queue-type.js';

/** RabbitMQ 4's default `x-delivery-limit` for quorum queues. */
export const QUORUM_DEFAULT_DELIVERY_LIMIT = 20;

/**
 * Queue arguments RabbitMQ refuses on a quorum queue: they belong to classic queues or streams
 * (`invalid arg '<name>' for queue '<q>' in vhost '<v>' of queue type rabbit_quorum_queue`).
 */
const REFUSED_ARGS: readonly string[] = [
  'x-max-priority',
  'x-queue-mode',
  'x-queue-version',
  'x-queue-master-locator',
  'x-max-age',
  'x-stream-max-segment-size-bytes',
  'x-stream-filter-size-bytes',
  'x-initial-cluster-size',
];

function toInt(v: FieldValue | undefined): number | undefined {
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) ? n : undefined;
}

/**
 * Quorum queues on one node: durable only, a delivery limit (default 20, `-1` = none) with the
 * `x-delivery-count` header on redeliveries, and poison messages dead-lettered with reason
 * `delivery_limit`. Storage is the durable queue log every durable queue uses.
 */
export const QUORUM: QueueType = {
  name: 'quorum',

  validate(d: QueueDeclaration): void {
    const what = describeQueue(d.vhost, d.name);
    if (d.name === '') throw BrokerError.precondition(`Cannot declare a server-named queue of type 'quorum' in vhost '${d.vhost}'`);
    // RabbitMQ's order: auto-delete, exclusive, non-durable.
    if (d.autoDelete) throw BrokerError.precondition(`invalid property 'auto-delete' for ${what}`);
    if (d.exclusive) throw BrokerError.precondition(`invalid property 'exclusive-owner' for ${what}`);
    if (!d.durable) throw BrokerError.precondition(`invalid property 'non-durable' for ${what}`);
    for (const a of REFUSED_ARGS) {
      if (d.args[a] !== undefined) throw BrokerError.precondition(`invalid arg '${a}' for ${what} of queue type rabbit_quorum_queue`);
    }
    if (d.args['x-overflow'] === 'reject-publish-dlx') {
      throw BrokerError.precondition(`invalid arg 'x-overflow' for ${what} of queue type rabbit_quorum_queue`);
    }
    const limit = d.args['x-delivery-limit'];
    if (limit !== undefined && (toInt(limit) === undefined || toInt(limit)! < -1)) {
      throw BrokerError.precondition(`invalid arg 'x-delivery-limit' for ${what}: ${String(limit)} is not an integer >= -1`);
    }
  },

  deliveryLimit(args: FieldTable): number | undefined {
    const n = toInt(args['x-delivery-limit']);
    if (n === undefined) return QUORUM_DEFAULT_DELIVERY_LIMIT;
    return n < 0 ? undefined : n;
  },

  messageFor(e: QueueEntry): StoredMessage {
    if (e.returns === 0) return e.msg;
    // Only redeliveries after a return pay for a copy; the stored message stays shared.
    const m = e.msg;
    const headers = { ...(m.properties.headers ?? {}), 'x-delivery-count': e.returns };
    return { ...m, properties: { ...m.properties, headers }, rawProperties: undefined };
  },
};
