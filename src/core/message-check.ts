/**
 * One policy for every message that enters the core, whatever protocol it came from: what is
 * stored can be encoded for a consumer of every protocol.
 *
 * - A value that is too long for its AMQP short-string property (255 bytes) but has a faithful
 *   home elsewhere moves to the headers table under the name in {@link OVERFLOW_HEADERS}; the
 *   STOMP and MQTT adapters map it back when they deliver.
 * - Anything else that AMQP cannot carry is refused at publish: a routing key or header name over
 *   255 bytes, tables or arrays nested deeper than {@link MAX_TABLE_DEPTH}, an octet property out of
 *   range, values of no field-table type, and a property block larger than what fits one content
 *   header frame at the broker's frame_max ({@link propertiesLimit}). A consumer that negotiated a
 *   smaller frame_max cannot take such a message: the dispatcher rejects it for that consumer.
 *
 * The check is a scan of lengths: a message that needs no change is returned as it is, with no
 * allocation.
 */
import { isUtf8 } from 'node:buffer';
import { setOwn } from './own-keys.js';
import { BrokerError, ReplyCode } from './errors.js';
import { Decimal, type FieldTable, type FieldValue, type Message, type MessageProperties } from './types.js';

/** AMQP short strings: names, routing keys and most basic properties. */
export const MAX_SHORTSTR = 255;
/** How deep tables and arrays may nest in headers (the AMQP codec's limit, as RabbitMQ's). */
export const MAX_TABLE_DEPTH = 64;
/** Bytes of a content header frame that are not the property block: frame overhead (8), class, weight and body size (12). */
export const CONTENT_HEADER_OVERHEAD = 8 + 12;
/**
 * The default largest encoded property block (flags and values) of a stored message: what fits in
 * a content header frame at the broker's default frame_max (131072). The core takes the limit that
 * fits its configured frame_max ({@link propertiesLimit}).
 */
export const MAX_PROPERTIES_BYTES = 131072 - CONTENT_HEADER_OVERHEAD;

/** The largest property block an AMQP consumer can receive from a broker whose frame_max is `frameMax`. */
export function propertiesLimit(frameMax: number): number {
  return Math.max(4096, frameMax) - CONTENT_HEADER_OVERHEAD;
}

/** The limit of the check under way (module state, as `exact`: the scan allocates nothing). */
let limit = MAX_PROPERTIES_BYTES;

/** Where a string property too long for an AMQP short string is kept, in the headers table. */
export const OVERFLOW_HEADERS = {
  contentType: 'x-content-type',
  contentEncoding: 'x-content-encoding',
  correlationId: 'x-correlation-id',
  replyTo: 'x-reply-to',
  messageId: 'x-message-id',
  type: 'x-type',
  appId: 'x-app-id',
  clusterId: 'x-cluster-id',
} as const;

export type OverflowProperty = keyof typeof OVERFLOW_HEADERS;

const OVERFLOW_KEYS = Object.keys(OVERFLOW_HEADERS) as OverflowProperty[];

/** A publish refused because the message could not be delivered on every protocol. */
export class MessageRefusedError extends BrokerError {
  constructor(text: string) {
    super(ReplyCode.PRECONDITION_FAILED, text);
  }
}

/**
 * The first scan counts a short string (at most 85 UTF-16 units, so at most 255 UTF-8 bytes) as
 * three bytes a unit without counting; only when that bound exceeds the limit is the message scanned
 * again with exact byte counts. Module state, so the scan allocates nothing.
 */
let exact = false;
/** Set by {@link scan}: a bitmask of the short-string properties (by index in OVERFLOW_KEYS) that are too long. */
let scannedOverflow = 0;

/** A string's UTF-8 length, or an upper bound of it for a short string in the first scan. */
function utf8Length(s: string): number {
  const n = s.length;
  if (n === 0) return 0;
  return n <= 85 && !exact ? n * 3 : Buffer.byteLength(s, 'utf8');
}

function refuse(text: string): never {
  throw new MessageRefusedError(text);
}

function octet(name: string, v: number | undefined): number {
  if (v === undefined || v === null) return 0;
  if (!Number.isInteger(v) || v < 0 || v > 255) refuse(`${name} ${String(v)} is not an integer 0..255`);
  return 1;
}

/**
 * The encoded size of a tagged field value, as the AMQP field-table writer writes it; refuses what
 * it cannot write.
 */
function valueSize(v: FieldValue | undefined, depth: number): number {
  switch (typeof v) {
    case 'string':
      return 5 + utf8Length(v);
    case 'boolean':
      return 2;
    case 'number':
      return Number.isInteger(v) && v >= -0x80000000 && v <= 0x7fffffff ? 5 : 9;
    case 'bigint':
      if (v < -(1n << 63n) || v >= 1n << 63n) refuse(`header value ${v} does not fit a signed 64-bit integer`);
      return 9;
    case 'undefined':
      return 1;
    case 'object':
      break;
    default:
      return refuse(`a ${typeof v} cannot be a header value`);
  }
  if (v === null) return 1;
  if (Buffer.isBuffer(v)) return 5 + v.length;
  if (Array.isArray(v)) {
    if (depth + 1 > MAX_TABLE_DEPTH) refuse(`headers nested more than ${MAX_TABLE_DEPTH} deep`);
    let n = 5;
    for (let i = 0; i < v.length; i++) {
      n += valueSize(v[i], depth + 1);
      if (n > limit && exact) return n;
    }
    return n;
  }
  if (v instanceof Date) {
    if (!(v.getTime() >= 0)) refuse(`header timestamp ${String(v)} cannot be encoded`);
    return 9;
  }
  if (v instanceof Decimal) {
    const { scale, value } = v;
    if (!Number.isInteger(scale) || scale < 0 || scale > 255 || !Number.isInteger(value) || value < -0x80000000 || value > 0xffffffff) {
      refuse(`header decimal ${value}e-${scale} cannot be encoded`);
    }
    return 6;
  }
  if (depth + 1 > MAX_TABLE_DEPTH) refuse(`headers nested more than ${MAX_TABLE_DEPTH} deep`);
  return 1 + tableSize(v as FieldTable, depth + 1);
}

const hasOwn = Object.prototype.hasOwnProperty;

/** The encoded size of a field table (its 32-bit length included). */
function tableSize(t: FieldTable, depth: number): number {
  let n = 4;
  for (const k in t) {
    if (!hasOwn.call(t, k)) continue;
    const kl = utf8Length(k);
    if (kl > MAX_SHORTSTR) refuse(`header name of ${kl} bytes (at most ${MAX_SHORTSTR})`);
    n += 1 + kl + valueSize(t[k], depth);
    // Once the exact total is over the limit the message is refused: no need to scan the rest.
    if (n > limit && exact) return n;
  }
  return n;
}

/** 1 + length of a short-string property, or 0 with its bit set in scannedOverflow when too long. */
function shortstr(v: string | undefined, bit: number): number {
  if (v === undefined || v === null) return 0;
  const n = utf8Length(v);
  if (n <= MAX_SHORTSTR) return 1 + n;
  scannedOverflow |= bit;
  return 0;
}

/**
 * The encoded size of the properties, less the short-string properties too long to be one (see
 * `scannedOverflow`, bits in OVERFLOW_KEYS order); refuses what cannot be carried at all.
 */
function scan(p: MessageProperties): number {
  scannedOverflow = 0;
  let size = 2; // property flags
  size += shortstr(p.contentType, 1);
  size += shortstr(p.contentEncoding, 2);
  size += shortstr(p.correlationId, 4);
  size += shortstr(p.replyTo, 8);
  size += shortstr(p.messageId, 16);
  size += shortstr(p.type, 32);
  size += shortstr(p.appId, 64);
  size += shortstr(p.clusterId, 128);
  if (p.userId != null) {
    const n = utf8Length(p.userId);
    if (n > MAX_SHORTSTR) refuse(`user_id of ${n} bytes (at most ${MAX_SHORTSTR})`);
    size += 1 + n;
  }
  if (p.expiration != null) size += 1 + utf8Length(p.expiration);
  size += octet('delivery_mode', p.deliveryMode);
  size += octet('priority', p.priority);
  if (p.timestamp != null) {
    if (!Number.isSafeInteger(p.timestamp) || p.timestamp < 0) refuse(`timestamp ${String(p.timestamp)} is not an unsigned 64-bit integer`);
    size += 8;
  }
  if (p.headers != null) size += tableSize(p.headers, 0);
  return size;
}

/** {@link scan} with exact byte counts when the quick bound is over the limit. */
function scanExact(p: MessageProperties): number {
  const bound = scan(p);
  if (bound <= limit) return bound;
  exact = true;
  try {
    return scan(p);
  } finally {
    exact = false;
  }
}

/** Sets a table key so that `__proto__` becomes a header, never a prototype. */
export function setHeader(t: FieldTable, key: string, value: FieldValue): void {
  setOwn(t, key, value);
}

/** A copy of a headers table's own entries (`__proto__` kept as a header). */
function copyTable(t: FieldTable | undefined): FieldTable {
  const out: FieldTable = {};
  if (t != null) for (const k of Object.keys(t)) setHeader(out, k, t[k]!);
  return out;
}

/**
 * Checks a message on its way into the core and returns it, or a copy with over-long short-string
 * properties moved to the headers table. Throws {@link MessageRefusedError} (406) when the message
 * could not be delivered to a consumer of every protocol.
 */
export function checkMessage(msg: Message, maxPropertiesBytes: number = MAX_PROPERTIES_BYTES): Message {
  limit = maxPropertiesBytes;
  const rk = msg.routingKey;
  if (rk.length * 3 > MAX_SHORTSTR) {
    const n = utf8Length(rk);
    if (n > MAX_SHORTSTR) refuse(`routing key of ${n} bytes (at most ${MAX_SHORTSTR})`);
  }
  const raw = msg.rawProperties;
  if (raw !== undefined) {
    // Decoded from an AMQP content header: every value already fits its type; only the size is left.
    if (raw.length > limit) refuse(`message properties of ${raw.length} bytes (at most ${limit})`);
    return msg;
  }
  const p = msg.properties;
  const size = scanExact(p);
  const overflow = scannedOverflow;
  if (overflow === 0) {
    if (size > limit) refuse(`message properties of ${size} bytes (at most ${limit})`);
    return msg;
  }
  exact = true;
  try {
    return moveOverflow(msg, scan(p), overflow);
  } finally {
    exact = false;
  }
}

/** The message with the short-string properties in `overflow` moved to their headers. */
function moveOverflow(msg: Message, size: number, overflow: number): Message {
  const p = msg.properties;
  const props: MessageProperties = { ...p };
  const headers = copyTable(p.headers);
  let total = size + (p.headers == null ? 4 : 0);
  for (let i = 0; i < OVERFLOW_KEYS.length; i++) {
    if ((overflow & (1 << i)) === 0) continue;
    const key = OVERFLOW_KEYS[i]!;
    const name = OVERFLOW_HEADERS[key];
    const v = p[key]!;
    if (p.headers != null && hasOwn.call(p.headers, name)) total -= 1 + name.length + valueSize(p.headers[name], 0);
    headers[name] = v;
    total += 1 + name.length + 5 + utf8Length(v);
    delete props[key];
  }
  if (total > limit) refuse(`message properties of ${total} bytes (at most ${limit})`);
  props.headers = headers;
  return { exchange: msg.exchange, routingKey: msg.routingKey, properties: props, body: msg.body };
}

/**
 * The string a delivery should show for a short-string property: the property itself, or its
 * overflow header when the publisher's value was too long to be one.
 */
export function propertyText(p: MessageProperties, key: OverflowProperty): string | undefined {
  const v = p[key];
  if (v !== undefined) return v;
  const h = p.headers?.[OVERFLOW_HEADERS[key]];
  if (typeof h === 'string') return h;
  // MQTT keeps correlation data that is no short string as bytes; as text only when it is UTF-8.
  return Buffer.isBuffer(h) && isUtf8(h) ? h.toString('utf8') : undefined;
}
