import { BrokerError, ReplyCode, type Message } from '../../../src/core/index.js';
import { ByteQueue } from '../../../src/transport/byte-queue.js';
import { BasicMethod, ClassId, FRAME_END, FRAME_HEADER_SIZE, FRAME_OVERHEAD, FrameType } from './constants.js';
import { WireWriter } from './field-table.js';
import { writeProperties } from './properties.js';

/**
 * One AMQP frame. `payload` may be a view into a socket chunk (no copy when the frame arrived in
 * one chunk): it is valid until the chunk is reused, so copy whatever outlives the frame (STYLE P3).
 */
export interface Frame {
  type: number;
  channel: number;
  payload: Buffer;
}

/**
 * Splits a byte stream into frames, pull style: `push` socket chunks, then call `next()` until it
 * returns null. The declared size is checked against `frameMax` as soon as the 7-byte frame header
 * is in, before any of the payload is buffered (STYLE P2).
 */
export class FrameDecoder {
  /**
   * The largest frame accepted, header and frame-end included. Change it once connection.tune-ok
   * is in. 0 is not "unlimited" here: the connection resolves the negotiated value first.
   */
  frameMax: number;
  private readonly queue = new ByteQueue();

  constructor(frameMax: number) {
    this.frameMax = frameMax;
  }

  /** Bytes received and not yet returned as frames. */
  get buffered(): number {
    return this.queue.length;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** The 8-byte protocol header (an owned copy) once it has arrived; call once, before `next`. */
  takeProtocolHeader(): Buffer | null {
    if (this.queue.length < 8) return null;
    return Buffer.from(this.queue.consume(8));
  }

  /** The next complete frame, or null until more bytes arrive. Throws 501 FRAME_ERROR. */
  next(): Frame | null {
    const q = this.queue;
    if (q.length < FRAME_HEADER_SIZE) return null;
    const type = q.at(0);
    const channel = (q.at(1) << 8) | q.at(2);
    const size = q.at(3) * 0x1000000 + ((q.at(4) << 16) | (q.at(5) << 8) | q.at(6));
    if (size + FRAME_OVERHEAD > this.frameMax) {
      // RabbitMQ's text for the same case (rabbit_reader fatal_frame_error)
      throw new BrokerError(
        ReplyCode.FRAME_ERROR,
        `type ${type}, all octets = <<>>: {frame_too_large,${size},${this.frameMax - FRAME_OVERHEAD}}`,
      );
    }
    if (q.length < size + FRAME_OVERHEAD) return null;
    const end = q.at(FRAME_HEADER_SIZE + size);
    if (end !== FRAME_END) {
      throw new BrokerError(ReplyCode.FRAME_ERROR, `type ${type}, ${size} octets: {invalid_frame_end_marker,${end}}`);
    }
    q.skip(FRAME_HEADER_SIZE);
    const payload = q.consume(size);
    q.skip(1);
    return { type, channel, payload };
  }

  /** Drops everything buffered (after a fatal error). */
  clear(): void {
    this.queue.clear();
  }
}

const HEARTBEAT = Buffer.from([FrameType.HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);

/** A heartbeat frame: type 8 on channel 0, empty payload. */
export function encodeHeartbeat(): Buffer {
  return Buffer.from(HEARTBEAT);
}

/** What a content-carrying method needs of a message; a core `Message` fits as is. */
export type Content = Pick<Message, 'exchange' | 'routingKey' | 'properties' | 'rawProperties' | 'body'>;

/**
 * The content header frame and body frames for one message, in one buffer. Body frames carry at
 * most frameMax - 8 bytes each (0 = no limit); an empty body has no body frame.
 */
export function encodeContentFrames(
  channel: number,
  classId: number,
  bodySize: number,
  rawProperties: Buffer,
  body: Buffer,
  frameMax: number,
): Buffer {
  if (bodySize !== body.length) {
    throw new BrokerError(ReplyCode.INTERNAL_ERROR, `body size ${bodySize} != body length ${body.length}`);
  }
  const out = Buffer.allocUnsafe(contentSize(rawProperties.length, body.length, frameMax));
  return writeContent(out, 0, channel, classId, rawProperties, null, body, frameMax);
}

const propsWriter = new WireWriter(1024);

/**
 * basic.deliver + content header + body frames, written into one buffer of the exact size: the
 * hot path of every consumer. `msg.rawProperties` is copied verbatim when present.
 */
export function encodeDelivery(
  channel: number,
  frameMax: number,
  consumerTag: string,
  deliveryTag: number,
  redelivered: boolean,
  msg: Content,
): Buffer {
  const ctLen = shortstrLength(consumerTag, 'consumer tag');
  const exLen = shortstrLength(msg.exchange, 'exchange');
  const rkLen = shortstrLength(msg.routingKey, 'routing key');
  // class + method, consumer-tag, delivery-tag, redelivered, exchange, routing-key
  const methodSize = 4 + 1 + ctLen + 8 + 1 + 1 + exLen + 1 + rkLen;
  const raw = propertiesOf(msg);
  const propsLen = raw === null ? propsWriter.pos : raw.length;
  const out = Buffer.allocUnsafe(FRAME_OVERHEAD + methodSize + contentSize(propsLen, msg.body.length, frameMax));
  let pos = methodHeader(out, channel, methodSize, BasicMethod.DELIVER);
  pos = putShortstr(out, pos, consumerTag, ctLen);
  pos = putU64(out, pos, deliveryTag);
  out[pos++] = redelivered ? 1 : 0;
  pos = putShortstr(out, pos, msg.exchange, exLen);
  pos = putShortstr(out, pos, msg.routingKey, rkLen);
  out[pos++] = FRAME_END;
  return writeContent(out, pos, channel, ClassId.BASIC, raw, propsWriter, msg.body, frameMax);
}

/** basic.get-ok + content, in one buffer (see {@link encodeDelivery}). */
export function encodeGetOk(
  channel: number,
  frameMax: number,
  deliveryTag: number,
  redelivered: boolean,
  messageCount: number,
  msg: Content,
): Buffer {
  const exLen = shortstrLength(msg.exchange, 'exchange');
  const rkLen = shortstrLength(msg.routingKey, 'routing key');
  // class + method, delivery-tag, redelivered, exchange, routing-key, message-count
  const methodSize = 4 + 8 + 1 + 1 + exLen + 1 + rkLen + 4;
  const raw = propertiesOf(msg);
  const propsLen = raw === null ? propsWriter.pos : raw.length;
  const out = Buffer.allocUnsafe(FRAME_OVERHEAD + methodSize + contentSize(propsLen, msg.body.length, frameMax));
  let pos = methodHeader(out, channel, methodSize, BasicMethod.GET_OK);
  pos = putU64(out, pos, deliveryTag);
  out[pos++] = redelivered ? 1 : 0;
  pos = putShortstr(out, pos, msg.exchange, exLen);
  pos = putShortstr(out, pos, msg.routingKey, rkLen);
  pos = out.writeUInt32BE(messageCount, pos);
  out[pos++] = FRAME_END;
  return writeContent(out, pos, channel, ClassId.BASIC, raw, propsWriter, msg.body, frameMax);
}

/** basic.return + content, in one buffer (see {@link encodeDelivery}). */
export function encodeReturn(
  channel: number,
  frameMax: number,
  replyCode: number,
  replyText: string,
  msg: Content,
): Buffer {
  const rtLen = shortstrLength(replyText, 'reply text');
  const exLen = shortstrLength(msg.exchange, 'exchange');
  const rkLen = shortstrLength(msg.routingKey, 'routing key');
  // class + method, reply-code, reply-text, exchange, routing-key
  const methodSize = 4 + 2 + 1 + rtLen + 1 + exLen + 1 + rkLen;
  const raw = propertiesOf(msg);
  const propsLen = raw === null ? propsWriter.pos : raw.length;
  const out = Buffer.allocUnsafe(FRAME_OVERHEAD + methodSize + contentSize(propsLen, msg.body.length, frameMax));
  let pos = methodHeader(out, channel, methodSize, BasicMethod.RETURN);
  pos = out.writeUInt16BE(replyCode, pos);
  pos = putShortstr(out, pos, replyText, rtLen);
  pos = putShortstr(out, pos, msg.exchange, exLen);
  pos = putShortstr(out, pos, msg.routingKey, rkLen);
  out[pos++] = FRAME_END;
  return writeContent(out, pos, channel, ClassId.BASIC, raw, propsWriter, msg.body, frameMax);
}

// ---------------------------------------------------------------------------------------------

/** The raw property bytes, or null after encoding `msg.properties` into `propsWriter`. */
function propertiesOf(msg: Content): Buffer | null {
  if (msg.rawProperties !== undefined) return msg.rawProperties;
  writeProperties(propsWriter.reset(), msg.properties);
  return null;
}

function bodyChunk(frameMax: number): number {
  if (frameMax === 0) return Infinity;
  if (frameMax <= FRAME_OVERHEAD) throw new BrokerError(ReplyCode.INTERNAL_ERROR, `frame_max ${frameMax} too small`);
  return frameMax - FRAME_OVERHEAD;
}

/**
 * Bytes of a content header frame plus the body frames. The header frame cannot be split, so
 * properties too large for the peer's frame_max cannot be sent at all (AMQP 0-9-1 §4.2.6).
 */
function contentSize(propsLen: number, bodyLen: number, frameMax: number): number {
  if (frameMax !== 0 && FRAME_OVERHEAD + 12 + propsLen > frameMax) {
    throw new BrokerError(ReplyCode.FRAME_ERROR, `content header of ${FRAME_OVERHEAD + 12 + propsLen} bytes exceeds frame_max ${frameMax}`);
  }
  const chunk = bodyChunk(frameMax);
  const bodyFrames = bodyLen === 0 ? 0 : chunk === Infinity ? 1 : Math.ceil(bodyLen / chunk);
  return FRAME_OVERHEAD + 12 + propsLen + bodyLen + bodyFrames * FRAME_OVERHEAD;
}

/**
 * Writes the content header frame and body frames from `pos` to the end of `out` and returns
 * `out`. The properties come from `raw`, or from what `w` holds when `raw` is null.
 */
function writeContent(
  out: Buffer,
  pos: number,
  channel: number,
  classId: number,
  raw: Buffer | null,
  w: WireWriter | null,
  body: Buffer,
  frameMax: number,
): Buffer {
  const propsLen = raw !== null ? raw.length : w!.pos;
  // AMQP 0-9-1 §4.2.6: class-id, weight (0), body-size, property flags and values
  out[pos] = FrameType.HEADER;
  out.writeUInt16BE(channel, pos + 1);
  out.writeUInt32BE(12 + propsLen, pos + 3);
  out.writeUInt16BE(classId, pos + 7);
  out.writeUInt16BE(0, pos + 9);
  putU64(out, pos + 11, body.length);
  pos += 19;
  pos += raw !== null ? raw.copy(out, pos) : w!.buf.copy(out, pos, 0, propsLen);
  out[pos++] = FRAME_END;
  const chunk = bodyChunk(frameMax);
  for (let off = 0; off < body.length; ) {
    const n = Math.min(chunk, body.length - off);
    out[pos] = FrameType.BODY;
    out.writeUInt16BE(channel, pos + 1);
    out.writeUInt32BE(n, pos + 3);
    pos += 7;
    pos += body.copy(out, pos, off, off + n);
    out[pos++] = FRAME_END;
    off += n;
  }
  // Buffer writes past the end are dropped silently: make a sizing bug loud instead
  if (pos !== out.length) throw new BrokerError(ReplyCode.INTERNAL_ERROR, `content frames: ${pos} != ${out.length}`);
  return out;
}

/** Writes a basic-class method frame's header, class and method ids; returns the args position. */
function methodHeader(out: Buffer, channel: number, payloadSize: number, methodId: number): number {
  out[0] = FrameType.METHOD;
  out.writeUInt16BE(channel, 1);
  out.writeUInt32BE(payloadSize, 3);
  out.writeUInt16BE(ClassId.BASIC, 7);
  out.writeUInt16BE(methodId, 9);
  return 11;
}

function shortstrLength(s: string, what: string): number {
  const n = s.length === 0 ? 0 : Buffer.byteLength(s, 'utf8');
  if (n > 255) {
    throw new BrokerError(ReplyCode.SYNTAX_ERROR, `${what} is ${n} bytes long, a shortstr holds at most 255`);
  }
  return n;
}

function putShortstr(out: Buffer, pos: number, s: string, len: number): number {
  out[pos] = len;
  if (len > 0) out.write(s, pos + 1, len, 'utf8');
  return pos + 1 + len;
}

function putU64(out: Buffer, pos: number, v: number): number {
  const hi = Math.floor(v / 4294967296);
  out.writeUInt32BE(hi, pos);
  out.writeUInt32BE(v - hi * 4294967296, pos + 4);
  return pos + 8;
}
