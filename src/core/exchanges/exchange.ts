import type { FieldTable } from '../types.js';
import type { Queue } from '../queues/queue.js';
import { BindingTable } from './binding-table.js';
import { DELAYED_EXCHANGE_TYPE, delayedTypeOf, type DelayedMessages } from './delayed.js';
import { createRouter, type Router } from './router.js';

/** Where a binding leads: a queue, or another exchange (exchange-to-exchange binding). */
export type Destination = Queue | Exchange;

export interface Binding {
  readonly source: Exchange;
  readonly destination: Destination;
  readonly routingKey: string;
  readonly args: FieldTable;
  /** Identity of (destination, routing key, arguments) within the source (see bindingKey). */
  readonly key: string;
}

export function isExchange(d: Destination): d is Exchange {
  return d instanceof Exchange;
}

export class Exchange {
  /** Routing's mark (see RouteSet): which publish last reached this exchange. */
  routeMark = 0;
  readonly router: Router<Destination>;
  /** Bindings where this exchange is the source. */
  readonly bindings = new BindingTable();
  /** Bindings where this exchange is the destination. */
  readonly inbound = new Set<Binding>();
  /** The alternate exchange: declared, or from a policy. */
  alternate: string | undefined;
  deleted = false;
  /** Messages held for later routing: an `x-delayed-message` exchange, or delayed publishes. */
  delayed: DelayedMessages | undefined;
  readonly stats = { publishIn: 0, publishOut: 0 };

  constructor(
    readonly vhost: string,
    readonly name: string,
    readonly type: string,
    readonly durable: boolean,
    readonly autoDelete: boolean,
    readonly internal: boolean,
    readonly args: FieldTable,
  ) {
    this.router = createRouter<Destination>(type === DELAYED_EXCHANGE_TYPE ? delayedTypeOf(args) : type);
    const ae = args['alternate-exchange'];
    this.alternate = typeof ae === 'string' ? ae : undefined;
  }
}
