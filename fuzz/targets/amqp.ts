import { pickEnd, type FuzzCase, type Target, type TargetContext } from '../case.js';
import type { Rng } from '../prng.js';
import { INVALID_UTF8, Session, mutate } from '../session.js';
import { Wire } from '../wire.js';

/** AMQP 0-9-1 over raw TCP: generated client sessions, then mutated. */

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_HEARTBEAT = 8;
const FRAME_END = 0xce;

const PROTOCOL_HEADERS = [
  Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'),
  Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'),
  Buffer.from('AMQP\x00\x00\x09\x01', 'latin1'),
  Buffer.from('AMQP\x01\x01\x00\x09', 'latin1'),
  Buffer.from('AMQP\x00\x01\x00\x00', 'latin1'),
  Buffer.from('AMQP\x00\x00\x08\x00', 'latin1'),
  Buffer.from('AMQ', 'latin1'),
];

/** Builds one frame around a payload writer; the frame size field is marked. */
function frame(type: number, channel: number, payload: Wire): { bytes: Buffer; lengths: Wire['lengths'] } {
  const w = new Wire().u8(type).u16(channel).sized(payload).u8(FRAME_END);
  return { bytes: w.bytes(), lengths: w.lengths };
}

/** A short string: mostly valid names, sometimes too long, non-UTF-8 or empty. */
function shortstr(rng: Rng, w: Wire, base: string): void {
  const r = rng.int(20);
  if (r === 0) w.str(Buffer.alloc(rng.range(200, 255), 0x61), 1);
  else if (r === 1) w.str(Buffer.concat([Buffer.from(base), rng.pick(INVALID_UTF8)]), 1);
  else if (r === 2) w.str('', 1);
  else if (r === 3) {
    // a lying length: claims more than it holds
    w.len(255, 1).raw(Buffer.from(base));
  } else w.str(base, 1);
}

function fieldValue(rng: Rng, w: Wire, depth: number, ns: string): void {
  const tags = 'tbBsuIilfdDSATFVx';
  const tag = rng.chance(0.03) ? String.fromCharCode(rng.int(256)) : tags[rng.int(tags.length)]!;
  w.raw(Buffer.from(tag, 'latin1'));
  switch (tag) {
    case 't':
    case 'b':
    case 'B':
      return void w.u8(rng.int(256));
    case 's':
    case 'u':
      return void w.u16(rng.int(65536));
    case 'I':
    case 'i':
      return void w.u32(rng.u32());
    case 'l':
    case 'T':
      return void w.u64((BigInt(rng.u32()) << 32n) | BigInt(rng.u32()));
    case 'f':
      return void w.u32(rng.u32());
    case 'd':
      return void w.u32(rng.u32()).u32(rng.u32());
    case 'D':
      return void w.u8(rng.int(256)).u32(rng.u32());
    case 'S':
    case 'x':
      return void w.str(rng.chance(0.1) ? rng.bytes(rng.size()) : `${ns}-${rng.word(rng.size(300))}`, 4);
    case 'A': {
      const inner = new Wire();
      const n = depth > 0 ? rng.int(4) : 0;
      for (let i = 0; i < n; i++) fieldValue(rng, inner, depth - 1, ns);
      return void w.sized(inner);
    }
    case 'F':
      return void w.sized(table(rng, depth - 1, ns));
    case 'V':
      return;
    default:
      w.raw(rng.bytes(rng.int(9)));
  }
}

const HEADER_KEYS = ['x-match', 'x-dead-letter-exchange', 'x-message-ttl', 'x-max-length', 'x-expires', 'x-max-priority', 'x-queue-type', 'x-overflow', 'x-single-active-consumer', 'x-delivery-count', 'x-death', 'x-first-death-reason', 'content_type', 'k'];

/** A random field table; depth bounds the nesting. */
function table(rng: Rng, depth: number, ns: string): Wire {
  const w = new Wire();
  const n = depth <= 0 ? 0 : rng.int(5);
  for (let i = 0; i < n; i++) {
    shortstr(rng, w, rng.chance(0.5) ? rng.pick(HEADER_KEYS) : rng.word(rng.range(1, 12)));
    fieldValue(rng, w, depth, ns);
  }
  return w;
}

/** A table nested `depth` levels deep along one key: the stack depth of a recursive decoder. */
function deepTable(depth: number, tag: 'F' | 'A'): Wire {
  // written in one go: each level is a prefix (key, tag, length of everything after it)
  const prefix = tag === 'F' ? 7 : 5;
  const out = Buffer.allocUnsafe(depth * prefix);
  for (let i = 0, off = 0; i < depth; i++) {
    if (tag === 'F') {
      out[off++] = 1; // key "d"
      out[off++] = 0x64;
    }
    out[off++] = tag.charCodeAt(0);
    out.writeUInt32BE((depth - i - 1) * prefix, off);
    off += 4;
  }
  return new Wire().raw(out);
}

function argsTable(rng: Rng, ns: string): Wire {
  const r = rng.int(12);
  if (r === 0) return deepTable(rng.chance(0.5) ? rng.range(60, 200) : rng.range(1000, 15000), rng.chance(0.7) ? 'F' : 'A');
  if (r < 4) return new Wire();
  // well-typed queue arguments, with hostile values now and then
  const w = new Wire();
  const args: [string, () => void][] = [
    ['x-message-ttl', () => w.raw(Buffer.from('I')).u32(rng.chance(0.8) ? rng.int(10000) : rng.u32())],
    ['x-max-length', () => w.raw(Buffer.from('l')).u64(BigInt(rng.int(100)))],
    ['x-expires', () => w.raw(Buffer.from('I')).u32(rng.range(0, 60000))],
    ['x-max-priority', () => w.raw(Buffer.from('B')).u8(rng.int(300))],
    ['x-dead-letter-exchange', () => w.raw(Buffer.from('S')).str(rng.pick(['', 'amq.direct', `${ns}-x`]), 4)],
    ['x-dead-letter-routing-key', () => w.raw(Buffer.from('S')).str(`${ns}-q${rng.int(4)}`, 4)],
    ['x-queue-type', () => w.raw(Buffer.from('S')).str(rng.pick(['classic', 'quorum', 'stream', 'bogus']), 4)],
    ['x-overflow', () => w.raw(Buffer.from('S')).str(rng.pick(['drop-head', 'reject-publish', 'reject-publish-dlx', 'x']), 4)],
    ['x-match', () => w.raw(Buffer.from('S')).str(rng.pick(['all', 'any', 'all-with-x', 'nope']), 4)],
    ['x-single-active-consumer', () => w.raw(Buffer.from('t')).u8(rng.int(2))],
  ];
  const n = rng.range(1, 4);
  for (let i = 0; i < n; i++) {
    const [k, v] = rng.pick(args);
    w.str(k, 1);
    v();
  }
  if (rng.chance(0.3)) w.append(table(rng, 3, ns));
  return w;
}

function method(channel: number, classId: number, methodId: number, body: (w: Wire) => void): { bytes: Buffer; lengths: Wire['lengths'] } {
  const w = new Wire().u16(classId).u16(methodId);
  body(w);
  return frame(FRAME_METHOD, channel, w);
}

/** Consecutive bit arguments, packed into one octet (AMQP 0-9-1 §4.2.5.2). */
function bits(w: Wire, b: boolean[]): void {
  let v = 0;
  for (let i = 0; i < b.length; i++) if (b[i]) v |= 1 << i;
  w.u8(v);
}

function properties(rng: Rng, w: Wire, ns: string): void {
  let flags = 0;
  const body = new Wire();
  const str = (bit: number, make: () => string): void => {
    if (!rng.chance(0.3)) return;
    flags |= 1 << bit;
    shortstr(rng, body, make());
  };
  str(15, () => rng.pick(['text/plain', 'application/json', 'application/octet-stream']));
  str(14, () => rng.pick(['gzip', 'utf-8']));
  if (rng.chance(0.3)) {
    flags |= 1 << 13;
    body.sized(rng.chance(0.15) ? deepTable(rng.chance(0.5) ? rng.range(60, 100) : rng.range(1000, 12000), 'F') : table(rng, 4, ns));
  }
  if (rng.chance(0.4)) {
    flags |= 1 << 12;
    body.u8(rng.chance(0.9) ? rng.range(1, 2) : rng.int(256));
  }
  if (rng.chance(0.2)) {
    flags |= 1 << 11;
    body.u8(rng.int(256));
  }
  str(10, () => rng.word(rng.range(1, 40)));
  str(9, () => `${ns}-q${rng.int(4)}`);
  str(8, () => rng.pick(['0', '1', '100', '-1', '1.5', 'abc', '99999999999999999999']));
  str(7, () => rng.word(10));
  if (rng.chance(0.2)) {
    flags |= 1 << 6;
    body.u64((BigInt(rng.u32()) << 32n) | BigInt(rng.u32()));
  }
  str(5, () => 'type');
  str(4, () => rng.pick(['guest', 'other']));
  str(3, () => 'app');
  str(2, () => 'cluster');
  if (rng.chance(0.03)) flags |= 1; // a continuation flag: another flags word follows (it does not)
  w.u16(flags).append(body);
}

/** basic.publish, content header and body frames. */
function publish(rng: Rng, s: Session, ch: number, ns: string): void {
  const add = (f: { bytes: Buffer; lengths: Wire['lengths'] }): void => void s.add(f.bytes, f.lengths);
  add(
    method(ch, 60, 40, (w) => {
      w.u16(0);
      shortstr(rng, w, rng.pick(['', 'amq.topic', 'amq.direct', 'amq.fanout', 'amq.headers', `${ns}-x`, 'missing']));
      shortstr(rng, w, rng.pick([`${ns}-q${rng.int(4)}`, `${ns}.k.${rng.int(4)}`, '', '#']));
      bits(w, [rng.chance(0.2), rng.chance(0.05)]);
    }),
  );
  const bodySize = rng.chance(0.85) ? rng.size(70_000) : rng.pick([0xffff_ffff, 2 ** 53, 1 << 30, 0]);
  const sent = Math.min(bodySize, rng.chance(0.9) ? bodySize : rng.int(bodySize + 1), 1 << 20);
  const header = new Wire().u16(rng.chance(0.95) ? 60 : rng.int(100)).u16(0);
  header.lengths.push({ offset: header.length, width: 8, kind: 'be' });
  header.u64(BigInt(bodySize));
  properties(rng, header, ns);
  add(frame(FRAME_HEADER, ch, header));
  const per = rng.chance(0.5) ? 131_064 : rng.range(1, 4096);
  for (let off = 0; off < sent; off += per) add(frame(FRAME_BODY, ch, new Wire().raw(Buffer.alloc(Math.min(per, sent - off), 0x62))));
}

/** One valid-ish AMQP session: handshake, then a random walk over the methods. */
export function amqpSession(rng: Rng, ns: string): Session {
  const s = new Session();
  const add = (f: { bytes: Buffer; lengths: Wire['lengths'] }): void => void s.add(f.bytes, f.lengths);
  s.add(rng.pick(PROTOCOL_HEADERS));
  add(
    method(0, 10, 11, (w) => {
      const props = rng.chance(0.8) ? table(rng, 3, ns) : deepTable(rng.range(50, 3000), 'F');
      if (rng.chance(0.5)) {
        const caps = new Wire().str('publisher_confirms', 1).raw(Buffer.from('t')).u8(1).str('connection.blocked', 1).raw(Buffer.from('t')).u8(1);
        props.str('capabilities', 1).raw(Buffer.from('F')).sized(caps);
      }
      w.sized(props);
      const mech = rng.pick(['PLAIN', 'PLAIN', 'PLAIN', 'AMQPLAIN', 'EXTERNAL', 'bogus']);
      shortstr(rng, w, mech);
      if (mech === 'AMQPLAIN') {
        const t = new Wire().str('LOGIN', 1).raw(Buffer.from('S')).str('guest', 4).str('PASSWORD', 1).raw(Buffer.from('S')).str('guest', 4);
        w.sized(t);
      } else w.str(rng.pick(['\0guest\0guest', '\0guest\0guest', '\0guest\0wrong', 'guest', '\0\0', '\0guest']), 4);
      shortstr(rng, w, 'en_US');
    }),
  );
  add(
    method(0, 10, 31, (w) => {
      w.u16(rng.pick([0, 2047, 1, 65535]));
      w.u32(rng.pick([0, 131072, 4096, 4095, 1 << 20, 0xffff_ffff]));
      w.u16(rng.pick([0, 0, 60, 1]));
    }),
  );
  add(
    method(0, 10, 40, (w) => {
      shortstr(rng, w, rng.pick(['/', '/', '/', 'nope', '']));
      w.str('', 1).u8(0);
    }),
  );
  const channels = [1, 1, 2, 3, 0, 65535];
  add(method(1, 20, 10, (w) => void w.str('', 1)));
  const steps = rng.range(1, 16);
  for (let i = 0; i < steps; i++) {
    const ch = rng.chance(0.85) ? 1 : rng.pick(channels);
    const q = `${ns}-q${rng.int(4)}`;
    switch (rng.int(22)) {
      case 0:
        add(method(ch, 20, 10, (w) => void w.str('', 1)));
        break;
      case 1:
        add(
          method(ch, 40, 10, (w) => {
            w.u16(0);
            shortstr(rng, w, `${ns}-x${rng.int(2)}`);
            shortstr(rng, w, rng.pick(['direct', 'fanout', 'topic', 'headers', 'x-bogus', '']));
            bits(w, [rng.chance(0.1), rng.chance(0.2), rng.chance(0.3), rng.chance(0.1), rng.chance(0.1)]);
            w.sized(argsTable(rng, ns));
          }),
        );
        break;
      case 2:
      case 3:
        add(
          method(ch, 50, 10, (w) => {
            w.u16(0);
            shortstr(rng, w, rng.chance(0.2) ? '' : q);
            bits(w, [rng.chance(0.1), rng.chance(0.3), rng.chance(0.3), rng.chance(0.5), rng.chance(0.1)]);
            w.sized(argsTable(rng, ns));
          }),
        );
        break;
      case 4:
        add(
          method(ch, 50, 20, (w) => {
            w.u16(0);
            shortstr(rng, w, q);
            shortstr(rng, w, rng.pick(['amq.topic', 'amq.direct', 'amq.headers', `${ns}-x0`, `${ns}-x1`, '']));
            shortstr(rng, w, rng.pick([`${ns}.#`, `${ns}.*.k`, `${ns}.k.${rng.int(4)}`, q]));
            bits(w, [rng.chance(0.1)]);
            w.sized(argsTable(rng, ns));
          }),
        );
        break;
      case 5:
        add(
          method(ch, 60, 10, (w) => {
            w.u32(rng.chance(0.9) ? 0 : rng.u32());
            w.u16(rng.pick([0, 1, 10, 65535]));
            bits(w, [rng.chance(0.3)]);
          }),
        );
        break;
      case 6:
      case 7:
        add(
          method(ch, 60, 20, (w) => {
            w.u16(0);
            shortstr(rng, w, q);
            shortstr(rng, w, rng.chance(0.5) ? '' : `ctag${rng.int(3)}`);
            bits(w, [rng.chance(0.1), rng.chance(0.4), rng.chance(0.2), rng.chance(0.1)]);
            w.sized(argsTable(rng, ns));
          }),
        );
        break;
      case 8:
      case 9:
      case 10:
        publish(rng, s, ch, ns);
        break;
      case 11:
        add(
          method(ch, 60, 70, (w) => {
            w.u16(0);
            shortstr(rng, w, q);
            bits(w, [rng.chance(0.5)]);
          }),
        );
        break;
      case 12: {
        const m = rng.pick([80, 90, 120]);
        add(method(ch, 60, m, (w) => void bits(w.u64(BigInt(rng.chance(0.7) ? rng.int(5) : rng.u32())), [rng.chance(0.5), rng.chance(0.5)])));
        break;
      }
      case 13:
        add(method(ch, 60, 30, (w) => void bits(w.str(`ctag${rng.int(3)}`, 1), [rng.chance(0.2)])));
        break;
      case 14:
        add(method(ch, 60, rng.pick([100, 110]), (w) => void bits(w, [rng.chance(0.5)])));
        break;
      case 15:
        add(method(ch, 85, 10, (w) => void bits(w, [rng.chance(0.2)])));
        break;
      case 16:
        add(method(ch, 90, rng.pick([10, 20, 30]), () => undefined));
        break;
      case 17:
        add(
          method(ch, 50, rng.pick([30, 40]), (w) => {
            w.u16(0);
            shortstr(rng, w, q);
            bits(w, [rng.chance(0.3), rng.chance(0.3), rng.chance(0.1)]);
          }),
        );
        break;
      case 18:
        add(
          method(ch, 40, rng.pick([30, 40]), (w) => {
            w.u16(0);
            shortstr(rng, w, `${ns}-x${rng.int(2)}`);
            shortstr(rng, w, rng.pick(['amq.topic', `${ns}-x0`, `${ns}-x1`]));
            shortstr(rng, w, `${ns}.#`);
            bits(w, [rng.chance(0.1)]);
            w.sized(argsTable(rng, ns));
          }),
        );
        break;
      case 19:
        add(method(ch, 20, rng.pick([20, 40, 41]), (w) => void w.u16(200).str('bye', 1).u16(0).u16(0)));
        break;
      case 20:
        s.add(Buffer.from([FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]));
        break;
      default:
        // an unknown class/method, or an unknown frame type
        if (rng.chance(0.5)) add(method(ch, rng.int(200), rng.int(200), (w) => void w.raw(rng.bytes(rng.int(16)))));
        else add(frame(rng.pick([0, 4, 5, 9, 255]), ch, new Wire().raw(rng.bytes(rng.int(16)))));
    }
  }
  if (rng.chance(0.5)) add(method(0, 10, 50, (w) => void w.u16(200).str('bye', 1).u16(0).u16(0)));
  if (rng.chance(0.2)) add(method(0, 10, 51, () => undefined));
  return s;
}

export const amqpTarget: Target = {
  name: 'amqp',
  generate(rng: Rng, ctx: TargetContext): FuzzCase {
    const session = amqpSession(rng, ctx.ns);
    const chunks = mutate(rng, session, { other: () => amqpSession(rng, ctx.ns) });
    return { kind: 'raw', port: 'amqp', chunks, awaitReply: false, end: pickEnd(rng), note: `amqp session of ${session.parts.length} frames` };
  },
};
