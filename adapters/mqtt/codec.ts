/**
 * The MQTT wire: framing (fixed header and remaining length, checked against the packet size limit
 * before anything is buffered) and mqtt-packet for the packets themselves. mqtt-packet's parser is
 * only ever given one whole packet, so its own buffering never grows beyond our limit and a wrong
 * remaining length cannot make it read into the next packet.
 */
import { isUtf8 } from 'node:buffer';
import { generate, parser as createParser, writeToStream, type Packet, type Parser } from 'mqtt-packet';
import { ByteQueue } from '../../src/transport/byte-queue.js';
import { PacketType, Reason, type ProtocolLevel } from './constants.js';

/** A violation of the protocol: the connection is closed (v5: with `reason` in DISCONNECT or CONNACK). */
export class MqttError extends Error {
  override readonly name = 'MqttError';
  constructor(
    readonly reason: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Splits a byte stream into whole MQTT control packets. Packets that lie whole in a received chunk
 * are returned as views of it; only a packet split across chunks goes through a ByteQueue (created
 * on demand, so an idle connection holds none).
 */
export class PacketReader {
  /** The unread rest of the last chunk, when nothing else is buffered. */
  private chunk: Buffer | undefined;
  private offset = 0;
  private queue: ByteQueue | undefined;
  /** Where the packet the last {@link nextSpan} returned starts. */
  spanStart = 0;

  constructor(
    /** Largest packet (fixed header included) accepted; may change once CONNECT is accepted. */
    public maxSize: number,
  ) {}

  get buffered(): number {
    return this.queue !== undefined ? this.queue.length : this.chunk !== undefined ? this.chunk.length - this.offset : 0;
  }

  /** The last chunk received while nothing else is buffered, if any of it is unread. */
  get unreadChunk(): Buffer | undefined {
    return this.chunk;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    if (this.queue !== undefined) this.queue.push(chunk);
    else if (this.chunk === undefined) {
      this.chunk = chunk;
      this.offset = 0;
    } else {
      const q = (this.queue = new ByteQueue());
      q.push(this.chunk.subarray(this.offset));
      q.push(chunk);
      this.chunk = undefined;
    }
  }

  /**
   * The next whole packet, or null until more bytes arrive. Throws MqttError for a remaining
   * length that is malformed or larger than the limit, as soon as its header is readable.
   */
  next(): Buffer | null {
    const c = this.chunk;
    if (c !== undefined) {
      const end = this.nextSpan();
      return end < 0 ? null : c.subarray(this.spanStart, end);
    }
    const q = this.queue;
    if (q === undefined) return null;
    const n = q.length;
    const total = this.totalOf(undefined, q, 0, n);
    if (total < 0 || n < total) return null;
    const packet = q.consume(total);
    if (q.length === 0) this.queue = undefined;
    return packet;
  }

  /**
   * The next whole packet, when it lies whole in {@link unreadChunk} (read that first): consumed,
   * and returned as its end in that chunk (it starts at {@link spanStart}), without a view. -1
   * otherwise, with nothing consumed: {@link next} reads it (or there is no whole packet yet).
   * Throws as `next` does.
   */
  nextSpan(): number {
    const c = this.chunk;
    if (c === undefined) return -1;
    const start = this.offset;
    const n = c.length - start;
    const total = this.totalOf(c, undefined, start, n);
    if (total < 0 || n < total) return -1;
    this.offset += total;
    if (this.offset === c.length) this.chunk = undefined;
    this.spanStart = start;
    return start + total;
  }

  /**
   * When the next packet is a PUBACK, PUBREC, PUBREL or PUBCOMP in its 4-byte form with the flags
   * its type must have, lying whole in the last chunk: consumes it and returns `type << 16 |
   * packet id`, without a view of the bytes. Otherwise -1, and nothing is consumed ({@link next}
   * reads the packet, and the parser judges it).
   */
  nextAck(): number {
    const c = this.chunk;
    if (c === undefined || this.maxSize < 4) return -1;
    const at = this.offset;
    if (c.length - at < 4) return -1;
    const type = shortAckType(c[at]!, c[at + 1]!);
    if (type < 0) return -1;
    this.offset = at + 4;
    if (this.offset === c.length) this.chunk = undefined;
    return (type << 16) | (c[at + 2]! << 8) | c[at + 3]!;
  }

  /**
   * The size of the packet starting at `start` of chunk `c` (or at the front of `q`), of which `n`
   * bytes are there: -1 while its remaining length is incomplete. Throws as {@link next} does.
   */
  private totalOf(c: Buffer | undefined, q: ByteQueue | undefined, start: number, n: number): number {
    if (n < 2) return -1;
    let remaining = 0;
    let multiplier = 1;
    let i = 1;
    for (;;) {
      if (i >= n) return -1;
      const b = c !== undefined ? c[start + i]! : q!.at(i);
      remaining += (b & 0x7f) * multiplier;
      if ((b & 0x80) === 0) break;
      if (i === 4) throw malformedLength();
      multiplier *= 128;
      i++;
    }
    return this.checkSize(1 + i + remaining);
  }

  private checkSize(total: number): number {
    if (total > this.maxSize) {
      throw new MqttError(Reason.PACKET_TOO_LARGE, `packet of ${total} bytes exceeds the maximum packet size ${this.maxSize}`);
    }
    return total;
  }

  clear(): void {
    this.chunk = undefined;
    this.queue?.clear();
    this.queue = undefined;
  }
}

function malformedLength(): MqttError {
  return new MqttError(Reason.MALFORMED_PACKET, 'malformed remaining length');
}

/** Offset of the variable header: 1 byte of type and flags plus the remaining-length bytes. */
export function headerLength(packet: Buffer, start = 0): number {
  let i = start + 1;
  while (i < start + 5 && (packet[i]! & 0x80) !== 0) i++;
  return i + 1;
}

// mqtt-packet would otherwise pre-build 65 536 two-byte buffers (about 6 MB of heap) for packet ids.
writeToStream.cacheNumbers = false;

// One parser per protocol level, shared by every connection: each call parses exactly one whole
// packet synchronously, so no state survives between calls. After an error a parser is replaced:
// mqtt-packet does not reset all of its position state when it recovers.
const last: { packet: Packet | undefined; error: Error | undefined } = { packet: undefined, error: undefined };

function makeParser(level: ProtocolLevel | undefined): Parser {
  const p = createParser(level === undefined ? undefined : { protocolVersion: level });
  p.on('packet', (packet: Packet) => {
    last.packet = packet;
  });
  p.on('error', (e: unknown) => {
    last.error = e instanceof Error ? e : new Error(String(e));
  });
  return p;
}

/** Returns and clears what the last parse produced. */
function takePacket(): Packet | undefined {
  const p = last.packet;
  last.packet = undefined;
  return p;
}
function takeError(): Error | undefined {
  const e = last.error;
  last.error = undefined;
  return e;
}

let connectParser = makeParser(undefined);
const parsers: Record<ProtocolLevel, Parser> = { 3: makeParser(3), 4: makeParser(4), 5: makeParser(5) };

/** Reads the CONNECT header fields mqtt-packet would reject without a CONNACK: name and level. */
export function peekConnect(packet: Buffer): { name: string; level: number } | undefined {
  const off = headerLength(packet);
  if (packet.length < off + 2) return undefined;
  const len = packet.readUInt16BE(off);
  if (packet.length < off + 2 + len + 1) return undefined;
  return { name: packet.toString('latin1', off + 2, off + 2 + len), level: packet[off + 2 + len]! };
}

/**
 * Parses one whole packet. `level` undefined = the first packet of a connection (must be CONNECT).
 * Throws MqttError (malformed) when mqtt-packet rejects it.
 */
export function parsePacket(packet: Buffer, level: ProtocolLevel | undefined): Packet {
  if (level !== undefined) {
    const fast = decodeFast(packet, level);
    if (fast !== undefined) return fast;
  }
  const p = level === undefined ? connectParser : parsers[level];
  last.packet = undefined;
  last.error = undefined;
  p.parse(packet);
  const out = takePacket();
  const err = takeError();
  if (err !== undefined || out === undefined) {
    if (level === undefined) connectParser = makeParser(undefined);
    else parsers[level] = makeParser(level);
    throw new MqttError(Reason.MALFORMED_PACKET, err === undefined ? 'malformed packet' : `malformed packet: ${err.message}`);
  }
  return out;
}

/** The remaining length a packet type must have in MQTT 3.1/3.1.1 (and PINGREQ in every version). */
export function checkFixedLength(packet: Buffer, level: ProtocolLevel): void {
  const type = packet[0]! >> 4;
  const remaining = packet.length - headerLength(packet);
  switch (type) {
    case PacketType.PINGREQ:
      if (remaining !== 0) throw new MqttError(Reason.MALFORMED_PACKET, `PINGREQ with remaining length ${remaining}`);
      return;
    case PacketType.PUBACK:
    case PacketType.PUBREC:
    case PacketType.PUBREL:
    case PacketType.PUBCOMP:
      if (level < 5 ? remaining !== 2 : remaining < 2) {
        throw new MqttError(Reason.MALFORMED_PACKET, `acknowledgement with remaining length ${remaining}`);
      }
      return;
    case PacketType.DISCONNECT:
      if (level < 5 && remaining !== 0) throw new MqttError(Reason.MALFORMED_PACKET, `DISCONNECT with remaining length ${remaining}`);
      return;
    default:
      return;
  }
}

/**
 * Validates the topic name of a raw PUBLISH packet, `packet[start, packetEnd)`, as UTF-8 ([MQTT-1.5.3-1]); mqtt-packet would
 * silently replace invalid sequences.
 */
export function checkPublishTopicBytes(packet: Buffer, start = 0, packetEnd = packet.length): void {
  const off = headerLength(packet, start);
  if (packetEnd < off + 2) return; // the parser reports it
  const len = packet.readUInt16BE(off);
  const end = off + 2 + len;
  if (end > packetEnd) return;
  // ASCII is valid UTF-8: most topics are, and need no view of the bytes for the full check.
  let i = off + 2;
  while (i < end && packet[i]! < 0x80) i++;
  if (i === end) return;
  if (!isUtf8(packet.subarray(off + 2, end))) throw new MqttError(Reason.MALFORMED_PACKET, 'topic name is not valid UTF-8');
}

const REPLACEMENT = Buffer.from('\ufffd', 'utf8');

/**
 * For strings mqtt-packet decoded from `packet`: a U+FFFD that is not in the raw bytes was made up
 * by the decoder, i.e. the bytes were not valid UTF-8 [MQTT-1.5.3-1].
 */
export function checkDecodedString(s: string | undefined, packet: Buffer, what: string): void {
  if (s === undefined) return;
  if (s.includes('\ufffd') && !packet.includes(REPLACEMENT)) throw new MqttError(Reason.MALFORMED_PACKET, `${what} is not valid UTF-8`);
  if (s.includes('\u0000')) throw new MqttError(Reason.MALFORMED_PACKET, `${what} contains U+0000`);
}

export interface EncodeOptions {
  protocolVersion: ProtocolLevel;
}

/** Encodes a packet; throws MqttError (implementation specific) when mqtt-packet refuses it. */
export function encode(packet: Packet, opts: EncodeOptions): Buffer {
  try {
    return generate(packet, opts);
  } catch (e) {
    throw new MqttError(Reason.IMPLEMENTATION_SPECIFIC_ERROR, `cannot encode ${packet.cmd}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

// ---- fast path ---------------------------------------------------------------------------------
// PUBLISH and the four acknowledgements are most of the traffic. mqtt-packet spends more on its own
// bookkeeping per packet (a BufferList per parse, an EventEmitter per generate, debug calls) than
// on the bytes, so their common forms are read and written here; anything else (v5 properties,
// reason codes other than success) goes through mqtt-packet. Unit tests hold both to the same
// bytes and packets.

const ACK_CMDS = ['puback', 'pubrec', 'pubrel', 'pubcomp'] as const;

/** What {@link readPublishHead} read; overwritten by the next call. */
export const publishHead = { topic: '', payloadAt: 0, qos: 0 as 0 | 1 | 2, dup: false, retain: false, messageId: 0 };

/**
 * Reads a whole PUBLISH without v5 properties, `packet[start, end)`, into {@link publishHead} (the
 * payload runs from `payloadAt` to `end`); false means "use mqtt-packet", which also reports
 * malformed input.
 */
export function readPublishHead(packet: Buffer, level: ProtocolLevel, start = 0, end = packet.length): boolean {
  const first = packet[start]!;
  const qos = (first >> 1) & 3;
  if (qos === 3) return false;
  let off = headerLength(packet, start);
  if (off + 2 > end) return false;
  const topicLength = packet.readUInt16BE(off);
  off += 2;
  const topicEnd = off + topicLength;
  let messageId = 0;
  let pos = topicEnd;
  if (qos > 0) {
    if (pos + 2 > end) return false;
    messageId = packet.readUInt16BE(pos);
    pos += 2;
  }
  if (level === 5) {
    if (pos >= end || packet[pos] !== 0) return false; // properties: mqtt-packet
    pos++;
  }
  if (pos > end) return false;
  const h = publishHead;
  h.topic = packet.toString('utf8', off, topicEnd);
  h.payloadAt = pos;
  h.qos = qos as 0 | 1 | 2;
  h.dup = (first & 0x08) !== 0;
  h.retain = (first & 0x01) !== 0;
  h.messageId = messageId;
  return true;
}

/**
 * Decodes a whole PUBLISH without v5 properties, or a PUBACK/PUBREC/PUBREL/PUBCOMP in its short
 * form; undefined means "use mqtt-packet". Malformed input is always left to mqtt-packet, which
 * reports it.
 */
export function decodeFast(packet: Buffer, level: ProtocolLevel): Packet | undefined {
  const first = packet[0]!;
  const type = first >> 4;
  if (type === PacketType.PUBLISH) {
    if (!readPublishHead(packet, level)) return undefined;
    const h = publishHead;
    return {
      cmd: 'publish',
      topic: h.topic,
      payload: packet.subarray(h.payloadAt),
      qos: h.qos,
      dup: h.dup,
      retain: h.retain,
      messageId: h.qos > 0 ? h.messageId : undefined,
    };
  }
  if (packet.length === 4 && shortAckType(first, packet[1]!) === type) {
    return { cmd: ACK_CMDS[type - PacketType.PUBACK]!, messageId: packet.readUInt16BE(2), reasonCode: 0 };
  }
  return undefined;
}

/**
 * The type of a PUBACK, PUBREC, PUBREL or PUBCOMP in its short form (remaining length 2, the flags
 * its type must have: PUBREL 0010, the others 0000 [MQTT-3.6.1-1]) from its first two bytes; -1 for
 * anything else.
 */
function shortAckType(first: number, remaining: number): number {
  const type = first >> 4;
  if (type < PacketType.PUBACK || type > PacketType.PUBCOMP || remaining !== 2) return -1;
  return (first & 0x0f) === (type === PacketType.PUBREL ? 2 : 0) ? type : -1;
}

function varintLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

/**
 * Encodes a PUBLISH. Without v5 properties it is written directly into one buffer; with them,
 * mqtt-packet does it.
 */
export function encodePublish(
  level: ProtocolLevel,
  topic: string,
  payload: Buffer,
  qos: 0 | 1 | 2,
  packetId: number,
  dup: boolean,
  retain: boolean,
  properties: NonNullable<Extract<Packet, { cmd: 'publish' }>['properties']> | undefined,
): Buffer {
  if (properties !== undefined) {
    const p: Packet = { cmd: 'publish', topic, payload, qos, dup, retain, properties };
    if (qos > 0) p.messageId = packetId;
    return encode(p, level === 5 ? V5 : level === 4 ? V4 : V3);
  }
  const topicLength = Buffer.byteLength(topic);
  const remaining = 2 + topicLength + (qos > 0 ? 2 : 0) + (level === 5 ? 1 : 0) + payload.length;
  const buf = Buffer.allocUnsafe(1 + varintLength(remaining) + remaining);
  buf[0] = (PacketType.PUBLISH << 4) | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 1 : 0);
  let off = 1;
  for (let x = remaining; ; ) {
    const digit = x & 0x7f;
    x = Math.floor(x / 128);
    buf[off++] = x > 0 ? digit | 0x80 : digit;
    if (x === 0) break;
  }
  buf.writeUInt16BE(topicLength, off);
  off += 2;
  off += buf.write(topic, off, 'utf8');
  if (qos > 0) {
    buf.writeUInt16BE(packetId, off);
    off += 2;
  }
  if (level === 5) buf[off++] = 0;
  payload.copy(buf, off);
  return buf;
}

const V3: EncodeOptions = { protocolVersion: 3 };
const V4: EncodeOptions = { protocolVersion: 4 };
const V5: EncodeOptions = { protocolVersion: 5 };

/**
 * Encodes PUBACK/PUBREC/PUBREL/PUBCOMP: the 4-byte form for 3.1/3.1.1 and for a v5 success
 * [MQTT-3.4.2.1]; a v5 reason code goes through mqtt-packet.
 */
export function encodeAck(type: 4 | 5 | 6 | 7, level: ProtocolLevel, packetId: number, reason: number): Buffer {
  if (level === 5 && reason !== 0) {
    return encode({ cmd: ACK_CMDS[type - PacketType.PUBACK]!, messageId: packetId, reasonCode: reason }, V5);
  }
  const buf = Buffer.allocUnsafe(4);
  buf[0] = (type << 4) | (type === PacketType.PUBREL ? 2 : 0);
  buf[1] = 2;
  buf.writeUInt16BE(packetId, 2);
  return buf;
}

/** PINGRESP never changes. */
export const PINGRESP = Buffer.from([PacketType.PINGRESP << 4, 0]);
