import { BrokerError, ReplyCode, type MessageProperties } from '../../../src/core/index.js';
import { BasicFlag, ClassId } from './constants.js';
import { WireReader, WireWriter, trailing } from './field-table.js';

/** A decoded content header frame payload, AMQP 0-9-1 §4.2.6. */
export interface ContentHeader {
  classId: number;
  bodySize: number;
  properties: MessageProperties;
  /** The property flags and values exactly as received, owned (copied out of the frame). */
  rawProperties: Buffer;
}

const reader = new WireReader();
const writer = new WireWriter(512);

/** class-id (2) + weight (2) + body-size (8). */
const HEADER_FIXED = 12;

/**
 * Decodes a content header payload. The body size is checked here, before any body is buffered;
 * the caller still compares it with its own maximum message size (STYLE P2).
 *
 * `previous` is the header decoded before on the same channel: a publisher nearly always sends the
 * same properties with every message, and when the property bytes are the same the result shares
 * its (never mutated) properties object and raw bytes instead of making new ones. Every message
 * held in a queue would otherwise keep a copy of both.
 */
export function decodeContentHeader(payload: Buffer, previous?: ContentHeader): ContentHeader {
  if (payload.length < HEADER_FIXED + 2) {
    throw new BrokerError(ReplyCode.FRAME_ERROR, `cannot decode: content header of ${payload.length} octets`);
  }
  const classId = payload.readUInt16BE(0);
  if (classId !== ClassId.BASIC) {
    // RabbitMQ's wording (rabbit_command_assembler): only basic has content
    throw new BrokerError(
      ReplyCode.UNEXPECTED_FRAME,
      `expected content header for class ${ClassId.BASIC}, got one for class ${classId} instead`,
    );
  }
  const weight = payload.readUInt16BE(2);
  if (weight !== 0) throw new BrokerError(ReplyCode.FRAME_ERROR, `content header weight ${weight}, must be 0`);
  const hi = payload.readUInt32BE(4);
  const bodySize = hi * 4294967296 + payload.readUInt32BE(8);
  if (!Number.isSafeInteger(bodySize)) {
    throw new BrokerError(
      ReplyCode.FRAME_ERROR,
      `content body size ${payload.readBigUInt64BE(4)} exceeds maximum allowed size ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  if (previous !== undefined) {
    const raw = previous.rawProperties;
    if (raw.length === payload.length - HEADER_FIXED && payload.compare(raw, 0, raw.length, HEADER_FIXED) === 0) {
      return { classId, bodySize, properties: previous.properties, rawProperties: raw };
    }
  }
  const properties = readProperties(reader.reset(payload, HEADER_FIXED));
  return { classId, bodySize, properties, rawProperties: Buffer.from(payload.subarray(HEADER_FIXED)) };
}

/** Decodes the flags + values part of a basic content header (e.g. stored `rawProperties`). */
export function decodeProperties(raw: Buffer): MessageProperties {
  return readProperties(reader.reset(raw));
}

/** The property flags and values for `p`, in wire form; absent (undefined/null) ones are skipped. */
export function encodeProperties(p: MessageProperties): Buffer {
  writeProperties(writer.reset(), p);
  return writer.toBuffer();
}

function readProperties(r: WireReader): MessageProperties {
  // The two low bits (continuation and one unused) are ignored, as RabbitMQ does: the basic
  // class has 14 properties, which fit one flag word.
  const flags = r.u16();
  const p: MessageProperties = {};
  if (flags & BasicFlag.CONTENT_TYPE) p.contentType = r.shortstr();
  if (flags & BasicFlag.CONTENT_ENCODING) p.contentEncoding = r.shortstr();
  if (flags & BasicFlag.HEADERS) p.headers = r.table();
  if (flags & BasicFlag.DELIVERY_MODE) p.deliveryMode = r.u8();
  if (flags & BasicFlag.PRIORITY) p.priority = r.u8();
  if (flags & BasicFlag.CORRELATION_ID) p.correlationId = r.shortstr();
  if (flags & BasicFlag.REPLY_TO) p.replyTo = r.shortstr();
  if (flags & BasicFlag.EXPIRATION) p.expiration = r.shortstr();
  if (flags & BasicFlag.MESSAGE_ID) p.messageId = r.shortstr();
  if (flags & BasicFlag.TIMESTAMP) p.timestamp = r.u64();
  if (flags & BasicFlag.TYPE) p.type = r.shortstr();
  if (flags & BasicFlag.USER_ID) p.userId = r.shortstr();
  if (flags & BasicFlag.APP_ID) p.appId = r.shortstr();
  if (flags & BasicFlag.CLUSTER_ID) p.clusterId = r.shortstr();
  if (r.remaining !== 0) throw trailing(r.remaining);
  return p;
}

/** Writes flags + values for `p` at the writer's position (used to build frames in place). */
export function writeProperties(w: WireWriter, p: MessageProperties): void {
  w.ensure(2);
  const flagsAt = w.pos;
  w.pos += 2;
  let flags = 0;
  if (p.contentType != null) {
    flags |= BasicFlag.CONTENT_TYPE;
    w.shortstr(p.contentType, 'content_type');
  }
  if (p.contentEncoding != null) {
    flags |= BasicFlag.CONTENT_ENCODING;
    w.shortstr(p.contentEncoding, 'content_encoding');
  }
  if (p.headers != null) {
    flags |= BasicFlag.HEADERS;
    w.table(p.headers);
  }
  if (p.deliveryMode != null) {
    flags |= BasicFlag.DELIVERY_MODE;
    w.u8(p.deliveryMode);
  }
  if (p.priority != null) {
    flags |= BasicFlag.PRIORITY;
    w.u8(p.priority);
  }
  if (p.correlationId != null) {
    flags |= BasicFlag.CORRELATION_ID;
    w.shortstr(p.correlationId, 'correlation_id');
  }
  if (p.replyTo != null) {
    flags |= BasicFlag.REPLY_TO;
    w.shortstr(p.replyTo, 'reply_to');
  }
  if (p.expiration != null) {
    flags |= BasicFlag.EXPIRATION;
    w.shortstr(p.expiration, 'expiration');
  }
  if (p.messageId != null) {
    flags |= BasicFlag.MESSAGE_ID;
    w.shortstr(p.messageId, 'message_id');
  }
  if (p.timestamp != null) {
    flags |= BasicFlag.TIMESTAMP;
    w.u64(p.timestamp);
  }
  if (p.type != null) {
    flags |= BasicFlag.TYPE;
    w.shortstr(p.type, 'type');
  }
  if (p.userId != null) {
    flags |= BasicFlag.USER_ID;
    w.shortstr(p.userId, 'user_id');
  }
  if (p.appId != null) {
    flags |= BasicFlag.APP_ID;
    w.shortstr(p.appId, 'app_id');
  }
  if (p.clusterId != null) {
    flags |= BasicFlag.CLUSTER_ID;
    w.shortstr(p.clusterId, 'cluster_id');
  }
  w.buf.writeUInt16BE(flags, flagsAt);
}
