/**
 * The least MQTT 3.1.1 a session needs, written against the wire directly: CONNECT (clean
 * session, optionally with a QoS 0 will), an optional SUBSCRIBE, and the wait for CONNACK and
 * SUBACK; and a watcher that counts the PUBLISH packets it receives. Used by the
 * disconnect-storm scenario for its sessions, for the new clients it times meanwhile, and to see
 * when the broker has handled every dropped session (each one's will reaches the watcher).
 */
import { connect, type Socket } from 'node:net';

const KEEP_ALIVE_S = 600;
const OPEN_TIMEOUT_MS = 20_000;
const PUBLISH = 3;

function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

/** CONNECT (MQTT 3.1.1, clean session, a QoS 0 will on `will` if given), then SUBSCRIBE (QoS 1) to `topic` if given. */
export function connectAndSubscribe(clientId: string, topic: string | null, will: string | null = null): Buffer {
  const flags = 0x02 | (will === null ? 0 : 0x04);
  const payload = [str(clientId)];
  if (will !== null) payload.push(str(will), str('gone'));
  const vh = Buffer.concat([str('MQTT'), Buffer.from([4, flags, KEEP_ALIVE_S >> 8, KEEP_ALIVE_S & 0xff]), ...payload]);
  const parts = [Buffer.from([0x10, ...remainingLength(vh.length)]), vh];
  if (topic !== null) {
    const sub = Buffer.concat([Buffer.from([0, 1]), str(topic), Buffer.from([topic.endsWith('#') ? 0 : 1])]);
    parts.push(Buffer.from([0x82, ...remainingLength(sub.length)]), sub);
  }
  return Buffer.concat(parts);
}

export interface SessionOptions {
  host: string;
  port: number;
  localAddress?: string;
  clientId: string;
  /** Subscribed after CONNECT (QoS 1; QoS 0 for a filter ending in `#`). */
  topic: string | null;
  /** Topic of a QoS 0 will. */
  will?: string | null;
}

/**
 * Opens one session: resolves once CONNACK (accepted) and, with a topic, SUBACK (granted) are in.
 * Later data goes to `onData` if given (bytes after the SUBACK included), else is ignored.
 */
export function openSession(o: SessionOptions, onData?: (d: Buffer) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const want = o.topic === null ? 4 : 9;
    let got = Buffer.alloc(0);
    const sock = connect({ host: o.host, port: o.port, ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}) });
    sock.setNoDelay(true);
    const timer = setTimeout(() => fail(new Error(`${o.clientId}: no CONNACK/SUBACK in ${OPEN_TIMEOUT_MS} ms`)), OPEN_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      sock.destroy();
      reject(err);
    };
    sock.on('error', fail);
    sock.on('connect', () => sock.write(connectAndSubscribe(o.clientId, o.topic, o.will ?? null)));
    const handshake = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length < want) return;
      sock.off('data', handshake);
      sock.off('error', fail);
      sock.on('error', () => undefined);
      clearTimeout(timer);
      if (got[0] !== 0x20 || got[3] !== 0) return fail(new Error(`${o.clientId}: CONNACK refused (${got[3]})`));
      if (o.topic !== null && (got[4] !== 0x90 || got[8] === 0x80)) return fail(new Error(`${o.clientId}: SUBSCRIBE refused`));
      if (onData !== undefined) {
        sock.on('data', onData);
        if (got.length > want) onData(got.subarray(want));
      } else sock.on('data', () => undefined);
      resolve(sock);
    };
    sock.on('data', handshake);
  });
}

/** Counts the PUBLISH packets in a byte stream (QoS 0 deliveries, as a watcher of wills gets). */
export class PublishCounter {
  count = 0;
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onPublish: (count: number) => void) {}

  readonly push = (d: Buffer): void => {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    let at = 0;
    for (;;) {
      if (this.buf.length - at < 2) break;
      let len = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      for (; i < this.buf.length && i < at + 5; i++) {
        const b = this.buf[i]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete || this.buf.length < i + len) break;
      if (this.buf[at]! >> 4 === PUBLISH) {
        this.count++;
        this.onPublish(this.count);
      }
      at = i + len;
    }
    this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
  };
}
