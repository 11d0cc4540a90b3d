/** An AMQP decimal value: `value / 10^scale`. */
export class Decimal {
  constructor(readonly scale: number, readonly value: number) {}
}

/**
 * A value in a field table (message headers, queue/exchange/binding arguments). The core keeps the
 * AMQP value model; each adapter maps its own header types onto it.
 */
export type FieldValue =
  | string
  | number
  | bigint
  | boolean
  | null
  | Buffer
  | Date
  | Decimal
  | FieldValue[]
  | FieldTable;

export interface FieldTable {
  [key: string]: FieldValue;
}

/** The AMQP basic properties; every protocol maps onto these. */
export interface MessageProperties {
  contentType?: string;
  contentEncoding?: string;
  headers?: FieldTable;
  deliveryMode?: number;
  priority?: number;
  correlationId?: string;
  replyTo?: string;
  expiration?: string;
  messageId?: string;
  timestamp?: number;
  type?: string;
  userId?: string;
  appId?: string;
  clusterId?: string;
}

/** A message as a publisher hands it to the core. */
export interface Message {
  exchange: string;
  routingKey: string;
  properties: MessageProperties;
  body: Buffer;
  /**
   * The AMQP content-header property bytes the properties were decoded from, when the publisher
   * spoke AMQP; lets an AMQP consumer receive them without re-encoding. Must describe `properties`.
   */
  rawProperties?: Buffer;
}

/**
 * A routed message, shared by every queue it was routed to (never copied per queue).
 */
export interface StoredMessage extends Message {
  /** Broker-wide unique id, increasing in publish order. */
  readonly id: number;
  /** Bytes counted against queue length limits and memory: body plus a small overhead. */
  readonly size: number;
  readonly persistent: boolean;
  /**
   * In-memory per-queue references (ready or unacked; a paged copy on disk is not one). The first
   * puts the message in the memory account (core/memory.ts), the last takes it out.
   */
  refs: number;
  /** The publishing connection, for MQTT no-local; 0 when unknown. */
  readonly publisherId: number;
}

/** A message handed to a consumer or returned by basic.get. */
export interface Delivery {
  readonly message: StoredMessage;
  /** Channel-scoped delivery tag; 0 for no-ack deliveries that need no acknowledgement... never 0 in AMQP. */
  readonly deliveryTag: number;
  readonly redelivered: boolean;
  /** The consumer tag, or '' for basic.get. */
  readonly consumerTag: string;
  readonly queue: string;
  /** The number of times this message was delivered before (0 on first delivery). */
  readonly deliveryCount: number;
  /** When the message expires in this queue (ms since the epoch; 0 = never): MQTT 5 sends the remaining expiry. */
  readonly expiresAt?: number;
}

/** Where a queue delivers a consumer's messages. One sink may serve several consumers. */
export interface DeliverySink {
  deliver(d: Delivery): void;
  /** True while the sink's outbound buffer is above its high watermark: dispatch pauses. */
  readonly congested: boolean;
  /** The server cancelled a consumer (queue deleted); AMQP sends basic.cancel if the client can. */
  cancelled?(consumerTag: string): void;
}

export interface QueueOptions {
  durable?: boolean;
  exclusive?: boolean;
  autoDelete?: boolean;
  arguments?: FieldTable;
}

export interface ExchangeOptions {
  durable?: boolean;
  autoDelete?: boolean;
  internal?: boolean;
  arguments?: FieldTable;
}

export interface ConsumeOptions {
  /** Empty: the core generates `amq.ctag-...`. */
  consumerTag?: string;
  noAck?: boolean;
  exclusive?: boolean;
  /** x-priority: higher-priority consumers get messages first while they have credit. */
  priority?: number;
  /** Per-consumer unacknowledged limit; 0 = unlimited. Defaults to the channel's basic.qos. */
  prefetch?: number;
  arguments?: FieldTable;
}

export interface PublishOptions {
  mandatory?: boolean;
  /**
   * Hold the message this many ms before routing it (MQTT `$delayed/<s>/`, STOMP `x-delay`);
   * 0 or undefined = route now. AMQP uses an `x-delayed-message` exchange instead.
   */
  delay?: number;
}

export interface PublishResult {
  /** Number of queues the message was routed to. */
  readonly routed: number;
  /**
   * Resolves once it is safe to acknowledge the publish to the client (for persistent messages on
   * durable queues: after the write is fsynced). Is {@link SETTLED} when nothing is pending, so
   * adapters may answer synchronously without allocating.
   */
  readonly settled: Promise<void>;
  /** The message is held for later routing (`routed` is 0 until then). */
  readonly delayed?: boolean;
}

/** The already-settled promise returned when a publish has nothing pending. */
export const SETTLED: Promise<void> = Promise.resolve();

/** Who is using the core: carried by connections for logs, exclusivity, management. */
export interface ConnectionInfo {
  protocol: string;
  peer: { address: string; port: number };
  user: string;
  vhost: string;
  clientProperties?: FieldTable;
  /** The client's own id (MQTT client id): `{client_id}` in topic permissions, shown by management. */
  clientId?: string;
}

export interface QueueDeclareOk {
  queue: string;
  messageCount: number;
  consumerCount: number;
}

export interface GetResult {
  delivery: Delivery;
  /** Messages remaining ready in the queue. */
  messageCount: number;
}
