import { Deque, type Delivery, type DeliverySink } from '../../src/core/index.js';
import { Escaping } from './codec/constants.js';
import { escapeHeader } from './codec/escape.js';
import { formatDestination } from './destination.js';

export type AckMode = 'auto' | 'client' | 'client-individual';

/** What a subscription needs from its connection. */
export interface SubscriptionHost {
  readonly escaping: Escaping;
  readonly version: string;
  readonly sessionId: string;
  readonly congested: boolean;
  writeMessage(sub: Subscription, d: Delivery): void;
  subscriptionCancelled(sub: Subscription): void;
}

/**
 * One SUBSCRIBE: the DeliverySink of its core consumer. The constant parts of its MESSAGE
 * headers are built once, here.
 */
export class Subscription implements DeliverySink {
  /** client mode: delivery tags not yet acknowledged, in delivery order (ACK is cumulative). */
  readonly outstanding: Deque<number> | undefined;
  /** `MESSAGE` line plus `subscription:<id>` (absent for a SUBSCRIBE without `id`, as in RabbitMQ). */
  readonly head: string;
  /** Escaped `message-id` prefix; the delivery tag completes it. */
  readonly idPrefix: string;
  /** STOMP 1.2 puts the ack id in an `ack` header when the client must acknowledge. */
  readonly ackHeader: boolean;
  private lastExchange: string | undefined;
  private lastKey: string | undefined;
  private lastDestination = '';

  constructor(
    private readonly host: SubscriptionHost,
    /** The core consumer tag: `T_<id>`, or `Q_<destination>` without an id (RabbitMQ's scheme). */
    readonly tag: string,
    readonly id: string | undefined,
    /** The SUBSCRIBE `destination` header. */
    readonly destination: string,
    readonly ackMode: AckMode,
    readonly queue: string,
  ) {
    const esc = host.escaping;
    this.outstanding = ackMode === 'client' ? new Deque<number>() : undefined;
    this.head = id === undefined ? 'MESSAGE\n' : `MESSAGE\nsubscription:${escapeHeader(id, esc)}\n`;
    this.idPrefix = escapeHeader(`${tag}@@${host.sessionId}@@`, esc);
    this.ackHeader = host.version === '1.2' && ackMode !== 'auto';
  }

  get congested(): boolean {
    return this.host.congested;
  }

  deliver(d: Delivery): void {
    // Written first: a message that cannot be encoded throws before it is counted as outstanding.
    this.host.writeMessage(this, d);
    if (this.outstanding !== undefined) this.outstanding.push(d.deliveryTag);
  }

  cancelled(): void {
    this.host.subscriptionCancelled(this);
  }

  /** `destination:<...>\n` for a message, cached for runs of the same exchange and routing key. */
  destinationLine(exchange: string, routingKey: string): string {
    if (exchange !== this.lastExchange || routingKey !== this.lastKey) {
      this.lastExchange = exchange;
      this.lastKey = routingKey;
      this.lastDestination = `destination:${escapeHeader(formatDestination(exchange, routingKey), this.host.escaping)}\n`;
    }
    return this.lastDestination;
  }
}
