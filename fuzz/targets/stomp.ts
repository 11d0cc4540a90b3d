import { pickEnd, type FuzzCase, type Target, type TargetContext } from '../case.js';
import type { Rng } from '../prng.js';
import { INVALID_UTF8, Session, mutate, type LengthField } from '../session.js';

/** STOMP 1.0, 1.1 and 1.2 over raw TCP: generated sessions of text frames, then mutated. */

type Header = [string, string | Buffer];

/** One frame; `content-length` (when present) is marked as a length field. */
function frame(rng: Rng, command: string, headers: Header[], body: Buffer = Buffer.alloc(0), withLength = rng.chance(0.5)): { bytes: Buffer; lengths: LengthField[] } {
  const eol = rng.chance(0.2) ? '\r\n' : '\n';
  const parts: Buffer[] = [Buffer.from(command + eol)];
  const lengths: LengthField[] = [];
  let off = parts[0]!.length;
  const all: Header[] = withLength ? [...headers, ['content-length', String(body.length)]] : headers;
  for (const [k, v] of all) {
    const line = Buffer.concat([Buffer.from(`${k}:`), typeof v === 'string' ? Buffer.from(v) : v, Buffer.from(eol)]);
    if (k === 'content-length') lengths.push({ offset: off + k.length + 1, width: String(body.length).length, kind: 'ascii' });
    parts.push(line);
    off += line.length;
  }
  parts.push(Buffer.from(eol), body, Buffer.from([0]));
  if (rng.chance(0.2)) parts.push(Buffer.from(rng.pick(['\n', '\r\n', '\n\n\n'])));
  return { bytes: Buffer.concat(parts), lengths };
}

function value(rng: Rng, base: string): string | Buffer {
  const r = rng.int(30);
  if (r === 0) return 'v'.repeat(rng.range(256, 3000));
  if (r === 1) return Buffer.concat([Buffer.from(base), rng.pick(INVALID_UTF8)]);
  if (r === 2) return `${base}\\n\\c\\\\`;
  if (r === 3) return `${base}\\x`; // an undefined escape: an error in 1.1 and 1.2
  if (r === 4) return `${base}\\`;
  if (r === 5) return `${base}:extra`;
  if (r === 6) return '';
  return base;
}

function destination(rng: Rng, ns: string): string {
  return rng.pick([
    `/queue/${ns}-q${rng.int(4)}`,
    `/topic/${ns}.k.${rng.int(4)}`,
    `/topic/${ns}.#`,
    `/exchange/amq.topic/${ns}.k.${rng.int(4)}`,
    `/exchange/amq.direct/${ns}-q${rng.int(4)}`,
    `/amq/queue/${ns}-q${rng.int(4)}`,
    `/temp-queue/${ns}-t`,
    `/reply-queue/${ns}-t`,
    `/exchange/missing`,
    `/exchange/`,
    '/queue/',
    '/bogus/x',
    'no-slash',
    `/topic/${'a.'.repeat(rng.range(10, 2000))}z`,
  ]);
}

const PROPERTY_HEADERS = ['content-type', 'content-encoding', 'correlation-id', 'reply-to', 'expiration', 'priority', 'persistent', 'amqp-message-id', 'timestamp', 'type', 'user-id', 'app-id', 'x-message-ttl', 'x-max-length', 'x-queue-name', 'x-dead-letter-exchange', 'message-id', 'subscription', '__proto__'];

function extraHeaders(rng: Rng): Header[] {
  const out: Header[] = [];
  const n = rng.chance(0.05) ? rng.range(200, 3000) : rng.int(5);
  for (let i = 0; i < n; i++) {
    const k = rng.chance(0.05) ? 'h'.repeat(rng.range(256, 1000)) : rng.chance(0.6) ? rng.pick(PROPERTY_HEADERS) : `h${i}`;
    const v = k === 'persistent' ? rng.pick(['true', 'false', 'yes']) : k === 'priority' ? rng.pick(['0', '9', '255', '-1', 'x']) : k === 'expiration' ? rng.pick(['0', '100', '-5', 'x', '1e10']) : value(rng, rng.word(rng.size(30)));
    out.push([k, v]);
  }
  return out;
}

export function stompSession(rng: Rng, ns: string): Session {
  const s = new Session();
  const add = (f: { bytes: Buffer; lengths: LengthField[] }): void => void s.add(f.bytes, f.lengths);
  const version = rng.pick(['1.0', '1.1', '1.2', '1.0,1.1,1.2', '2.0', '']);
  const connect: Header[] = [];
  if (version !== '1.0' || rng.chance(0.5)) connect.push(['accept-version', version]);
  connect.push(['host', rng.pick(['/', '/', 'nope'])]);
  if (rng.chance(0.8)) connect.push(['login', rng.pick(['guest', 'guest', 'x'])], ['passcode', rng.pick(['guest', 'guest', 'y'])]);
  if (rng.chance(0.3)) connect.push(['heart-beat', rng.pick(['0,0', '1,1', '10000,10000', 'x,y', '-1,5', '99999999999,0'])]);
  add(frame(rng, rng.pick(['CONNECT', 'CONNECT', 'STOMP']), connect, Buffer.alloc(0), false));
  const steps = rng.range(1, 14);
  for (let i = 0; i < steps; i++) {
    const id = `s${rng.int(3)}`;
    switch (rng.int(14)) {
      case 0:
      case 1:
      case 2: {
        const body = rng.chance(0.1) ? Buffer.concat([Buffer.from('ab'), Buffer.from([0]), Buffer.from('cd')]) : rng.chance(0.05) ? Buffer.alloc(rng.range(70_000, 1 << 20), 0x61) : Buffer.from(rng.word(rng.size(2000)));
        const headers: Header[] = [['destination', destination(rng, ns)], ...extraHeaders(rng)];
        if (rng.chance(0.3)) headers.push(['receipt', `r${i}`]);
        if (rng.chance(0.1)) headers.push(['transaction', `tx${rng.int(2)}`]);
        // a body with NUL needs content-length; without it the frame ends early
        add(frame(rng, 'SEND', headers, body, body.includes(0) ? rng.chance(0.8) : rng.chance(0.5)));
        break;
      }
      case 3:
      case 4: {
        const headers: Header[] = [
          ['destination', destination(rng, ns)],
          ['id', id],
          ['ack', rng.pick(['auto', 'client', 'client-individual', 'bogus'])],
        ];
        if (rng.chance(0.3)) headers.push(['prefetch-count', rng.pick(['1', '10', '0', '-1', 'x'])]);
        if (rng.chance(0.2)) headers.push(['durable', 'true'], ['auto-delete', 'false']);
        if (rng.chance(0.2)) headers.push(['x-queue-name', value(rng, `${ns}-named`)]);
        if (rng.chance(0.2)) headers.push(...extraHeaders(rng));
        add(frame(rng, 'SUBSCRIBE', headers, Buffer.alloc(0), false));
        break;
      }
      case 5:
        add(frame(rng, 'UNSUBSCRIBE', [['id', id]], Buffer.alloc(0), false));
        break;
      case 6:
        add(frame(rng, rng.pick(['ACK', 'NACK']), [[version === '1.2' ? 'id' : 'message-id', value(rng, `T_${id}@@session-x@@${rng.int(5)}`)], ['subscription', id], ...(rng.chance(0.3) ? ([['requeue', rng.pick(['true', 'false'])]] as Header[]) : [])], Buffer.alloc(0), false));
        break;
      case 7:
        add(frame(rng, rng.pick(['BEGIN', 'COMMIT', 'ABORT']), [['transaction', `tx${rng.int(2)}`]], Buffer.alloc(0), false));
        break;
      case 8:
        // heart-beats: bare EOLs
        s.add(Buffer.from(rng.pick(['\n', '\r\n', '\n\n\n\n'])));
        break;
      case 9:
        add(frame(rng, rng.pick(['MESSAGE', 'CONNECTED', 'ERROR', 'RECEIPT', 'FOO', 'send', '']), [['x', 'y']], Buffer.from('?'), false));
        break;
      case 10:
        // repeated headers: the first wins in 1.2
        add(frame(rng, 'SEND', [['destination', destination(rng, ns)], ['destination', destination(rng, ns)], ['content-type', 'a'], ['content-type', 'b']], Buffer.from('dup')));
        break;
      case 11:
        add(frame(rng, 'SEND', [['destination', destination(rng, ns)], ['content-length', rng.pick(['-1', 'x', '99999999999', '1e3', ''])]], Buffer.from('bad length'), false));
        break;
      case 12:
        add(frame(rng, 'CONNECT', connect, Buffer.alloc(0), false));
        break;
      default:
        add(frame(rng, 'DISCONNECT', rng.chance(0.7) ? [['receipt', 'bye']] : [], Buffer.alloc(0), false));
    }
  }
  return s;
}

export const stompTarget: Target = {
  name: 'stomp',
  generate(rng: Rng, ctx: TargetContext): FuzzCase {
    const session = stompSession(rng, ctx.ns);
    const chunks = mutate(rng, session, { other: () => stompSession(rng, ctx.ns), text: true });
    return { kind: 'raw', port: 'stomp', chunks, awaitReply: false, end: pickEnd(rng), note: `stomp session of ${session.parts.length} frames` };
  },
};
