/**
 * Byte-level helpers shared by the hand-written MQTT and STOMP drivers: a batching socket writer (one
 * `socket.write` per event-loop turn, whatever the number of messages) and a small reassembly buffer
 * for incoming bytes. The drivers are deliberately minimal so that the load generator costs far less
 * CPU per message than the broker under test.
 */
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

const CHUNK = 64 * 1024;

/**
 * Collects outgoing bytes in a chunk and hands them to the socket in one write at the end of the
 * current turn (a microtask). Callers `reserve(n)` bytes, write them at the returned offset of `buf`,
 * and that is all. Written ranges are never reused (the socket may still hold them), so after a flush
 * writing continues in the rest of the same chunk, and a new chunk is allocated only when it is full.
 */
export class BatchWriter {
  buf: Buffer = Buffer.allocUnsafe(CHUNK);
  private start = 0;
  private pos = 0;
  private scheduled = false;
  /** The last socket.write returned false: wait for 'drain'. */
  private blocked = false;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly socket: Socket) {
    socket.on('drain', () => {
      this.blocked = false;
      for (const cb of this.waiters.splice(0)) cb();
    });
  }

  /** False while the socket's buffer is over its high-water mark. */
  get writable(): boolean {
    return !this.blocked;
  }

  /** Call `cb` once the socket can take more (at once, on the next turn, if it can now). */
  whenWritable(cb: () => void): void {
    if (this.blocked) this.waiters.push(cb);
    else setImmediate(cb);
  }

  /** Room for `n` bytes; returns the offset in `this.buf` to write them at. */
  reserve(n: number): number {
    if (this.pos + n > this.buf.length) {
      this.flush();
      this.buf = Buffer.allocUnsafe(Math.max(CHUNK, n));
      this.start = 0;
      this.pos = 0;
    }
    const at = this.pos;
    this.pos += n;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(this.flush);
    }
    return at;
  }

  /** Copy `bytes` into the batch. */
  push(bytes: Buffer): void {
    bytes.copy(this.buf, this.reserve(bytes.length));
  }

  readonly flush = (): void => {
    this.scheduled = false;
    if (this.pos === this.start || this.socket.destroyed) return;
    const ok = this.socket.write(this.buf.subarray(this.start, this.pos));
    this.start = this.pos;
    if (!ok) this.blocked = true;
  };
}

/**
 * Incoming bytes that a parser consumes from the front. `feed` appends a chunk (keeping the unparsed
 * tail of the previous one); the parser reads `data` from `offset` and advances `offset`.
 */
export class ReadBuffer {
  data: Buffer = Buffer.alloc(0);
  offset = 0;

  feed(chunk: Buffer): void {
    if (this.offset >= this.data.length) {
      this.data = chunk;
    } else {
      this.data = Buffer.concat([this.data.subarray(this.offset), chunk]);
    }
    this.offset = 0;
  }

  get available(): number {
    return this.data.length - this.offset;
  }
}

/** Open a TCP connection with Nagle off; rejects on error or after `timeoutMs`. */
export function openSocket(host: string, port: number, timeoutMs = 10_000, secure = false): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Over TLS the socket is ready once the handshake is done ('secureConnect'); the CA comes from
    // NODE_EXTRA_CA_CERTS, as for any Node.js client.
    const socket: Socket = secure ? tlsConnect({ host, port }).setNoDelay(true) : connect({ host, port, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect ${host}:${port}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(err);
    };
    socket.once('error', onError);
  });
}

/** Resolve when `socket` has closed, or after `ms` (then destroy it). */
export function closeSocket(socket: Socket, ms = 2_000): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.destroy();
      resolve();
    }, ms);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.end();
  });
}

/** host and port of a URL, with a default port. */
export function hostPort(u: URL, defaultPort: number): { host: string; port: number } {
  const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
  return { host, port: u.port === '' ? defaultPort : Number(u.port) };
}
