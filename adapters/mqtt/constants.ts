/** MQTT wire constants and the adapter's limits (MQTT 3.1, 3.1.1 and 5.0). */

export type QoS = 0 | 1 | 2;

/** The CONNECT protocol level: 3 = MQTT 3.1 ("MQIsdp"), 4 = 3.1.1, 5 = 5.0. */
export type ProtocolLevel = 3 | 4 | 5;

/** `ConnectionInfo.protocol` per protocol level (management shows it). */
export const PROTOCOL_NAMES: Readonly<Record<ProtocolLevel, string>> = {
  3: 'MQTT 3.1',
  4: 'MQTT 3.1.1',
  5: 'MQTT 5.0',
};

/** Control packet types: the high nibble of the fixed header's first byte. */
export const PacketType = {
  CONNECT: 1,
  CONNACK: 2,
  PUBLISH: 3,
  PUBACK: 4,
  PUBREC: 5,
  PUBREL: 6,
  PUBCOMP: 7,
  SUBSCRIBE: 8,
  SUBACK: 9,
  UNSUBSCRIBE: 10,
  UNSUBACK: 11,
  PINGREQ: 12,
  PINGRESP: 13,
  DISCONNECT: 14,
  AUTH: 15,
} as const;

/** MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 §3.2.2.3). */
export const ConnackCode = {
  ACCEPTED: 0,
  UNACCEPTABLE_PROTOCOL_VERSION: 1,
  IDENTIFIER_REJECTED: 2,
  SERVER_UNAVAILABLE: 3,
  BAD_USERNAME_OR_PASSWORD: 4,
  NOT_AUTHORIZED: 5,
} as const;

/** MQTT 5 reason codes (5.0 §2.4) used by this server. */
export const Reason = {
  SUCCESS: 0x00,
  GRANTED_QOS_1: 0x01,
  GRANTED_QOS_2: 0x02,
  DISCONNECT_WITH_WILL: 0x04,
  NO_MATCHING_SUBSCRIBERS: 0x10,
  NO_SUBSCRIPTION_EXISTED: 0x11,
  UNSPECIFIED_ERROR: 0x80,
  MALFORMED_PACKET: 0x81,
  PROTOCOL_ERROR: 0x82,
  IMPLEMENTATION_SPECIFIC_ERROR: 0x83,
  UNSUPPORTED_PROTOCOL_VERSION: 0x84,
  CLIENT_IDENTIFIER_NOT_VALID: 0x85,
  BAD_USERNAME_OR_PASSWORD: 0x86,
  NOT_AUTHORIZED: 0x87,
  SERVER_UNAVAILABLE: 0x88,
  SERVER_BUSY: 0x89,
  BAD_AUTHENTICATION_METHOD: 0x8c,
  KEEP_ALIVE_TIMEOUT: 0x8d,
  SESSION_TAKEN_OVER: 0x8e,
  TOPIC_FILTER_INVALID: 0x8f,
  TOPIC_NAME_INVALID: 0x90,
  PACKET_IDENTIFIER_IN_USE: 0x91,
  PACKET_IDENTIFIER_NOT_FOUND: 0x92,
  RECEIVE_MAXIMUM_EXCEEDED: 0x93,
  TOPIC_ALIAS_INVALID: 0x94,
  PACKET_TOO_LARGE: 0x95,
  QUOTA_EXCEEDED: 0x97,
  ADMINISTRATIVE_ACTION: 0x98,
  PAYLOAD_FORMAT_INVALID: 0x99,
  SERVER_SHUTTING_DOWN: 0x8b,
  SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: 0x9e,
  MAXIMUM_CONNECT_TIME: 0xa0,
} as const;

/** The 3.1.1 SUBACK failure return code. */
export const SUBACK_FAILURE = 0x80;

/** Largest packet accepted once a client is connected (announced in the v5 CONNACK). */
export const MAX_PACKET_SIZE = 16 * 1024 * 1024;
/** Largest packet accepted before CONNECT was accepted (RabbitMQ: max_packet_size_unauthenticated). */
export const MAX_PACKET_SIZE_UNAUTHENTICATED = 64 * 1024;
/**
 * Topic names and filters, in bytes: they become AMQP routing and binding keys, which are
 * short strings (at most 255 bytes) on the AMQP side.
 */
export const MAX_TOPIC_LENGTH = 255;
/** Client identifiers, in bytes: the session queue `mqtt-subscription-<id>` must stay a short string. */
export const MAX_CLIENT_ID_LENGTH = 255 - 'mqtt-subscription-'.length;
/** Topic filters one session may hold. */
export const MAX_SUBSCRIPTIONS = 1024;
/** Outbound QoS 1/2 deliveries in flight per session (capped further by a v5 client's receive maximum). */
export const MAX_INFLIGHT = 1024;
/** Topic aliases a v5 client may set (announced in CONNACK). */
export const TOPIC_ALIAS_MAXIMUM = 64;
/** How long a new connection may take to send CONNECT. */
export const CONNECT_TIMEOUT_MS = 10_000;
/** After the server closes a connection, how long the peer has to go away before the socket is destroyed. */
export const CLOSE_TIMEOUT_MS = 1_000;
/** v5 session expiry "never" (0xFFFFFFFF seconds). */
export const SESSION_EXPIRY_NEVER = 0xffffffff;
/** Exchange every MQTT publish goes to and every subscription binds to. */
export const TOPIC_EXCHANGE = 'amq.topic';
/** Prefix of the queue each client session owns. */
export const SESSION_QUEUE_PREFIX = 'mqtt-subscription-';
/** Prefix of the queue a shared subscription group consumes. */
export const SHARED_QUEUE_PREFIX = 'mqtt-shared-';
/** Binding argument holding a subscription's QoS and v5 options (RabbitMQ's name and layout). */
export const SUBSCRIPTION_OPTS_ARG = 'x-mqtt-subscription-opts';
/** AMQP headers the adapter owns. */
export const Header = {
  PUBLISH_QOS: 'x-mqtt-publish-qos',
  RETAIN: 'x-mqtt-retain',
  REPLY_TO_TOPIC: 'x-reply-to-topic',
  CORRELATION_ID: 'x-correlation-id',
  PAYLOAD_FORMAT: 'x-mqtt-payload-format-indicator',
} as const;
