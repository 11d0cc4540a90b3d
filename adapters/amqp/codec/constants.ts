/** AMQP 0-9-1 wire constants (spec §4.2 and the RabbitMQ extensions). */

/** Frame types, AMQP 0-9-1 §4.2.3. */
export const FrameType = {
  METHOD: 1,
  HEADER: 2,
  BODY: 3,
  HEARTBEAT: 8,
} as const;

/** Every frame ends with this octet; anything else means we lost sync with the peer. */
export const FRAME_END = 0xce;

/** type (1) + channel (2) + size (4). */
export const FRAME_HEADER_SIZE = 7;

/** Header plus frame-end: a frame's size beyond its payload. */
export const FRAME_OVERHEAD = 8;

/** The smallest frame_max a peer may negotiate (spec: frame-min-size). */
export const FRAME_MIN_SIZE = 4096;

/** What a 0-9-1 client sends first, and what the server answers a bad header with. */
export const PROTOCOL_HEADER: Buffer = Buffer.from([0x41, 0x4d, 0x51, 0x50, 0, 0, 9, 1]); // "AMQP" 0 0 9 1

export const ClassId = {
  CONNECTION: 10,
  CHANNEL: 20,
  ACCESS: 30,
  EXCHANGE: 40,
  QUEUE: 50,
  BASIC: 60,
  CONFIRM: 85,
  TX: 90,
} as const;

export const ConnectionMethod = {
  START: 10,
  START_OK: 11,
  SECURE: 20,
  SECURE_OK: 21,
  TUNE: 30,
  TUNE_OK: 31,
  OPEN: 40,
  OPEN_OK: 41,
  CLOSE: 50,
  CLOSE_OK: 51,
  BLOCKED: 60,
  UNBLOCKED: 61,
  UPDATE_SECRET: 70,
  UPDATE_SECRET_OK: 71,
} as const;

export const ChannelMethod = {
  OPEN: 10,
  OPEN_OK: 11,
  FLOW: 20,
  FLOW_OK: 21,
  CLOSE: 40,
  CLOSE_OK: 41,
} as const;

/** Deprecated in 0-9-1 but still answered by RabbitMQ (old clients send it). */
export const AccessMethod = {
  REQUEST: 10,
  REQUEST_OK: 11,
} as const;

export const ExchangeMethod = {
  DECLARE: 10,
  DECLARE_OK: 11,
  DELETE: 20,
  DELETE_OK: 21,
  BIND: 30,
  BIND_OK: 31,
  UNBIND: 40,
  UNBIND_OK: 51, // sic: RabbitMQ's extension numbers unbind-ok 51, not 41
} as const;

export const QueueMethod = {
  DECLARE: 10,
  DECLARE_OK: 11,
  BIND: 20,
  BIND_OK: 21,
  PURGE: 30,
  PURGE_OK: 31,
  DELETE: 40,
  DELETE_OK: 41,
  UNBIND: 50,
  UNBIND_OK: 51,
} as const;

export const BasicMethod = {
  QOS: 10,
  QOS_OK: 11,
  CONSUME: 20,
  CONSUME_OK: 21,
  CANCEL: 30,
  CANCEL_OK: 31,
  PUBLISH: 40,
  RETURN: 50,
  DELIVER: 60,
  GET: 70,
  GET_OK: 71,
  GET_EMPTY: 72,
  ACK: 80,
  REJECT: 90,
  RECOVER_ASYNC: 100,
  RECOVER: 110,
  RECOVER_OK: 111,
  NACK: 120,
} as const;

export const ConfirmMethod = {
  SELECT: 10,
  SELECT_OK: 11,
} as const;

export const TxMethod = {
  SELECT: 10,
  SELECT_OK: 11,
  COMMIT: 20,
  COMMIT_OK: 21,
  ROLLBACK: 30,
  ROLLBACK_OK: 31,
} as const;

/**
 * Basic property flags, AMQP 0-9-1 §4.2.6.1: the first property is the most significant bit of
 * the 16-bit flag word; bit 0 would announce another flag word (never needed for basic).
 */
export const BasicFlag = {
  CONTENT_TYPE: 1 << 15,
  CONTENT_ENCODING: 1 << 14,
  HEADERS: 1 << 13,
  DELIVERY_MODE: 1 << 12,
  PRIORITY: 1 << 11,
  CORRELATION_ID: 1 << 10,
  REPLY_TO: 1 << 9,
  EXPIRATION: 1 << 8,
  MESSAGE_ID: 1 << 7,
  TIMESTAMP: 1 << 6,
  TYPE: 1 << 5,
  USER_ID: 1 << 4,
  APP_ID: 1 << 3,
  CLUSTER_ID: 1 << 2,
} as const;

/**
 * Field value type tags, as RabbitMQ and every mainstream client write them (the AMQP 0-9-1
 * errata table, not the spec's own list, which nobody implements).
 */
export const FieldTag = {
  BOOLEAN: 0x74, // t
  INT8: 0x62, // b
  UINT8: 0x42, // B
  INT16: 0x73, // s
  UINT16: 0x75, // u
  INT32: 0x49, // I
  UINT32: 0x69, // i
  INT64: 0x6c, // l
  /** Read as signed 64-bit too, as RabbitMQ does; never written. */
  INT64_L: 0x4c, // L
  FLOAT: 0x66, // f
  DOUBLE: 0x64, // d
  DECIMAL: 0x44, // D
  LONG_STRING: 0x53, // S
  BYTE_ARRAY: 0x78, // x
  ARRAY: 0x41, // A
  TIMESTAMP: 0x54, // T
  TABLE: 0x46, // F
  VOID: 0x56, // V
} as const;
