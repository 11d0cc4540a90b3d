import { pickEnd, type FuzzCase, type Target, type TargetContext } from '../case.js';
import type { Rng } from '../prng.js';
import { INVALID_UTF8, Session, mutate, rechunk } from '../session.js';
import { amqpSession } from './amqp.js';
import { mqttSession } from './mqtt.js';
import { stompSession } from './stomp.js';

/**
 * The WebSocket endpoints of the HTTP port (/ws with each subprotocol, /mqtt, /stomp, /amqp): raw
 * upgrades followed by hand-built frames whose header bits, opcodes, masks and lengths are mutated,
 * and `ws` client connections whose MQTT/STOMP/AMQP messages are mutated.
 */

const KNOWN_PATHS = ['/ws', '/ws', '/mqtt', '/stomp', '/mqtt?x=1', '/ws?', '/amqp', '/amqp?x=1'];
const UNKNOWN_PATHS = ['/', '/foo', '/ws/', '/WS', '//ws', '/ws%00', '/api/overview', '/mqtt/x', '*'];
const PROTOCOLS: (string | undefined)[] = ['mqtt', 'mqttv3.1', 'v12.stomp', 'v11.stomp', 'v10.stomp', 'v12.stomp, mqtt', 'bogus', undefined, '', 'amqp', 'mqtt, amqp', 'bogus, amqp'];

/** What a path and offered subprotocols select, as the broker decides it. */
function selected(path: string, proto: string | undefined): Inner | undefined {
  const p = path.split('?')[0];
  const offered = (proto ?? '').split(',').map((x) => x.trim());
  if (p === '/mqtt') return 'mqtt';
  if (p === '/stomp') return 'stomp';
  // /amqp takes no subprotocol or one that includes amqp; others are refused (400).
  if (p === '/amqp') return offered.every((o) => o === '') || offered.includes('amqp') ? 'amqp' : undefined;
  for (const o of offered) {
    if (o === 'mqtt' || o === 'mqttv3.1') return 'mqtt';
    if (o.endsWith('.stomp')) return 'stomp';
  }
  return offered.includes('amqp') ? 'amqp' : undefined;
}

type Inner = 'mqtt' | 'stomp' | 'amqp';

function sessionFor(rng: Rng, proto: Inner, ns: string): Session {
  return proto === 'mqtt' ? mqttSession(rng, ns) : proto === 'stomp' ? stompSession(rng, ns) : amqpSession(rng, ns);
}

const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

interface FrameSpec {
  fin: boolean;
  rsv: number;
  opcode: number;
  masked: boolean;
  payload: Buffer;
  /** Claimed length, when it lies. */
  claimed?: number;
  /** Length encoding: minimal, or forced to 16/64 bits. */
  form?: 16 | 64;
}

function encodeFrame(rng: Rng, f: FrameSpec): Buffer {
  const len = f.claimed ?? f.payload.length;
  const form = f.form ?? (len < 126 ? 7 : len < 65536 ? 16 : 64);
  const head: number[] = [(f.fin ? 0x80 : 0) | ((f.rsv & 7) << 4) | (f.opcode & 0x0f)];
  const m = f.masked ? 0x80 : 0;
  if (form === 7) head.push(m | len);
  else if (form === 16) head.push(m | 126, (len >>> 8) & 0xff, len & 0xff);
  else {
    head.push(m | 127);
    const big = BigInt(len);
    for (let i = 7; i >= 0; i--) head.push(Number((big >> BigInt(i * 8)) & 0xffn));
  }
  let payload = f.payload;
  if (f.masked) {
    const key = rng.bytes(4);
    head.push(...key);
    payload = Buffer.from(payload);
    for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
  }
  return Buffer.concat([Buffer.from(head), payload]);
}

function upgradeRequest(rng: Rng, path: string, proto: string | undefined): Buffer {
  const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade'];
  if (!rng.chance(0.03)) lines.push(`Sec-WebSocket-Key: ${rng.chance(0.97) ? rng.bytes(16).toString('base64') : 'short'}`);
  lines.push(`Sec-WebSocket-Version: ${rng.chance(0.97) ? '13' : '8'}`);
  if (proto !== undefined) lines.push(`Sec-WebSocket-Protocol: ${proto}`);
  if (rng.chance(0.05)) lines.push('Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits');
  return Buffer.from(lines.join('\r\n') + '\r\n\r\n');
}

/** A frame made hostile in one of the ways a WebSocket parser must refuse. */
function hostile(rng: Rng, f: FrameSpec): FrameSpec {
  switch (rng.int(11)) {
    case 0:
      return { ...f, rsv: rng.range(1, 7) };
    case 1:
      return { ...f, opcode: rng.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]) };
    case 2:
      return { ...f, masked: false };
    case 3:
      return { ...f, claimed: rng.pick([2 ** 53, 2 ** 63, 0x7fff_ffff, 1 << 30, f.payload.length + 1, 2 ** 32 + 5]), form: 64 };
    case 4:
      return { ...f, form: 64 }; // a non-minimal length
    case 5:
      return { ...f, opcode: rng.pick([OP_PING, OP_PONG, OP_CLOSE]), payload: Buffer.alloc(rng.range(126, 300), 0x70) };
    case 6:
      return { ...f, opcode: OP_PING, fin: false };
    case 7:
      return { ...f, opcode: 0 }; // a continuation with nothing to continue
    case 8:
      return { ...f, opcode: OP_CLOSE, payload: rng.pick([Buffer.from([3]), Buffer.from([0x03, 0xe8, 0xff, 0xfe]), Buffer.from([0x00, 0x05]), Buffer.from([0x0b, 0xb8]), Buffer.from([0x03, 0xed])]) };
    case 9:
      return { ...f, opcode: OP_TEXT, payload: Buffer.concat([f.payload, rng.pick(INVALID_UTF8)]) };
    default:
      return { ...f, fin: false }; // a message that never ends
  }
}

function framesFor(rng: Rng, inner: Buffer[], text: boolean, badFrames: boolean): Session {
  const s = new Session();
  const opcode = text && rng.chance(0.7) ? OP_TEXT : OP_BINARY;
  for (const msg of inner) {
    const fragments = rng.chance(0.2) ? rng.range(2, 5) : 1;
    const per = Math.max(1, Math.ceil(msg.length / fragments));
    for (let i = 0, off = 0; i < fragments; i++, off += per) {
      let f: FrameSpec = { fin: i === fragments - 1, rsv: 0, opcode: i === 0 ? opcode : 0, masked: true, payload: msg.subarray(off, off + per) };
      if (badFrames && rng.chance(0.15)) f = hostile(rng, f);
      const bytes = encodeFrame(rng, f);
      s.add(bytes, [{ offset: 1, width: 1, kind: 'be' }]);
      if (rng.chance(0.05)) s.add(encodeFrame(rng, { fin: true, rsv: 0, opcode: OP_PING, masked: true, payload: rng.bytes(rng.int(20)) }));
    }
  }
  if (rng.chance(0.3)) s.add(encodeFrame(rng, { fin: true, rsv: 0, opcode: OP_CLOSE, masked: true, payload: Buffer.from([0x03, 0xe8]) }));
  return s;
}

function innerSession(rng: Rng, proto: Inner, ns: string): Buffer[] {
  const s = sessionFor(rng, proto, ns);
  const bytes = mutate(rng, s, { other: () => sessionFor(rng, proto, ns), text: proto === 'stomp', maxBytes: 2 << 20 });
  return rng.chance(0.5) ? bytes : rechunk(rng, bytes);
}

export const wsTarget: Target = {
  name: 'ws',
  generate(rng: Rng, ctx: TargetContext): FuzzCase {
    const unknownPath = rng.chance(0.08);
    const path = unknownPath ? rng.pick(UNKNOWN_PATHS) : rng.pick(KNOWN_PATHS);
    const proto = rng.pick(PROTOCOLS);
    const inner = selected(path, proto);
    if (!unknownPath && inner !== undefined && rng.chance(0.2)) {
      // a real client after a real upgrade, sending mutated protocol bytes as messages
      const protocols = (proto ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
      return { kind: 'ws-client', path, protocols, messages: innerSession(rng, inner, ctx.ns), binary: inner !== 'stomp' || rng.chance(0.5), end: rng.chance(0.5) ? 'close' : 'terminate', note: `ws client on ${path} (${proto ?? 'no subprotocol'})` };
    }
    const upgrade = upgradeRequest(rng, path, proto);
    if (unknownPath) {
      const end = ctx.skip.has('ws-unknown-path-reset') ? 'end' : pickEnd(rng);
      const extra = ctx.skip.has('ws-unknown-path-reset') ? [] : [rng.bytes(rng.int(64))];
      return { kind: 'raw', port: 'http', chunks: [upgrade, ...extra], awaitReply: rng.chance(0.5), end, note: `upgrade to unknown path ${path}` };
    }
    if (inner === undefined && ctx.skip.has('ws-no-subprotocol-bad-frame')) {
      return { kind: 'raw', port: 'http', chunks: [upgrade], awaitReply: true, end: 'end', note: `upgrade on ${path} without a known subprotocol (${proto ?? 'none'})` };
    }
    const messages = inner !== undefined ? innerSession(rng, inner, ctx.ns) : [rng.bytes(rng.size(100))];
    const frames = framesFor(rng, messages, inner === 'stomp', true);
    // low-rate byte mutations of the frames themselves (lengths of the 7-bit form are marked)
    const chunks = rng.chance(0.3) ? mutate(rng, frames, { other: () => framesFor(rng, messages, inner === 'stomp', false), maxBytes: 4 << 20 }) : frames.parts.map((p) => p.bytes);
    return { kind: 'raw', port: 'http', chunks: [upgrade, ...chunks], awaitReply: rng.chance(0.85), end: pickEnd(rng), note: `raw upgrade on ${path} (${proto ?? 'no subprotocol'}), ${frames.parts.length} frames` };
  },
};
