/**
 * What a client role is told to do (a plain JSON spec, sent to the child process over IPC) and the
 * small driver interface each protocol implements. The generic parts — pacing, the in-flight window,
 * time stamps, latency histograms, counting — live in ../client.ts, so a protocol module only opens
 * connections, publishes bytes and hands received bodies back.
 *
 * To add a protocol (MQTT, STOMP): add its specs to the unions below, write clients/<protocol>.ts with
 * open*Publisher / open*Consumer (and topology helpers if it needs any), and dispatch to it in
 * clients/index.ts.
 */

/**
 * The endpoints a broker can offer, one per protocol and transport: `stomp-ws` is STOMP over a
 * WebSocket (a `ws://` URL); its clients are the STOMP driver's. `amqps` and `mqtts` are the same
 * protocols over TLS (`amqps://`, `mqtts://` URLs), served by the AMQP and MQTT drivers.
 */
export type Protocol = 'amqp' | 'mqtt' | 'stomp' | 'stomp-ws' | 'amqps' | 'mqtts';

interface PublisherBase {
  role: 'publisher';
  /** Unique within one run, e.g. `pub-0`; used in logs and results. */
  id: string;
  /** Message body size in bytes (>= 8: the first 8 bytes carry the send time stamp). */
  bodySize: number;
  /** Hard cap on messages this publisher sends in one run, whatever the clock says. */
  maxMessages: number;
  /**
   * Fixed rate (msgs/s over all of this publisher's connections): message n is due at
   * startAt + n / rate whatever happened before, the body carries its due time (bytes 0..7) and its
   * actual send time (bytes 8..15, when bodySize >= 16), and the in-flight window is not applied.
   * Unset: as fast as the window and back-pressure allow.
   */
  rate?: number;
}

interface ConsumerBase {
  role: 'consumer';
  id: string;
  /**
   * Write every received message's (due, sent, received) wall-clock times (float64 LE triples) to
   * this file at the end, for lining them up with the broker's latency trace (bench/trace-report.ts).
   */
  traceOut?: string;
}

/** Which Node AMQP 0-9-1 client library a role runs on (default amqplib). */
export type AmqpLibrary = 'amqplib' | 'amqp-client';

export interface AmqpPublisherSpec extends PublisherBase {
  protocol: 'amqp';
  url: string;
  library?: AmqpLibrary;
  exchange: string;
  routingKey: string;
  /** delivery_mode 2 when true. */
  persistent: boolean;
}

export interface AmqpConsumerSpec extends ConsumerBase {
  protocol: 'amqp';
  url: string;
  library?: AmqpLibrary;
  /** One channel (and one basic.consume) per queue, all on one connection. */
  queues: string[];
  /** basic.qos prefetch count, per channel. */
  prefetch: number;
  /** Ack with multiple=true every N deliveries (1 = ack each message individually). */
  ackEvery: number;
  /**
   * The consumer declares each of its queues itself, exclusive (it lives on the consumer's node
   * of a cluster), bound to this exchange with the queue's name as key.
   */
  declareExclusiveOn?: string;
}

export interface MqttPublisherSpec extends PublisherBase {
  protocol: 'mqtt';
  /** mqtt://[user:pass@]127.0.0.1:port */
  url: string;
  /** One MQTT connection per topic, all in this process; messages go round-robin over them. */
  topics: string[];
  qos: 0 | 1;
  /** QoS 1: PUBLISHes awaiting PUBACK per connection before publish() returns false. */
  inflight: number;
  /** Client identifier prefix (the connection's index is appended). */
  clientIdPrefix: string;
}

export interface MqttConsumerSpec extends ConsumerBase {
  protocol: 'mqtt';
  url: string;
  /** One connection subscribing to this filter (wildcards allowed). */
  filter: string;
  qos: 0 | 1;
  clientId: string;
}

export interface StompPublisherSpec extends PublisherBase {
  protocol: 'stomp';
  /** stomp://user:pass@127.0.0.1:port, or ws://user:pass@127.0.0.1:port/path for STOMP over WebSocket. */
  url: string;
  /** SEND destination, e.g. /queue/name. */
  destination: string;
}

export interface StompConsumerSpec extends ConsumerBase {
  protocol: 'stomp';
  url: string;
  destination: string;
  ack: 'auto' | 'client-individual';
  /** `prefetch-count` header on SUBSCRIBE (0: not sent). */
  prefetch: number;
}

export type PublisherSpec = AmqpPublisherSpec | MqttPublisherSpec | StompPublisherSpec;
export type ConsumerSpec = AmqpConsumerSpec | MqttConsumerSpec | StompConsumerSpec;
export type RoleSpec = PublisherSpec | ConsumerSpec;

export interface PublisherDriver {
  /** Send one message. False means the transport's buffer is full: wait for `whenWritable`. */
  publish(body: Buffer): boolean;
  /** Call `cb` once, when the transport can take more (e.g. amqplib's channel 'drain'). */
  whenWritable(cb: () => void): void;
  close(): Promise<void>;
}

export interface ConsumerDriver {
  close(): Promise<void>;
}

/** Called for every delivered message body, before it is acknowledged. */
export type OnMessage = (body: Buffer) => void;

/** Called when a driver's connection fails after it was opened. */
export type OnFatal = (err: Error) => void;
