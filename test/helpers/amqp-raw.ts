import { connect, type Socket } from 'node:net';
import { FrameType, PROTOCOL_HEADER } from '../../adapters/amqp/codec/constants.js';
import { FrameDecoder, type Frame } from '../../adapters/amqp/codec/frames.js';
import { decodeMethod, encodeMethod, type AmqpMethod } from '../../adapters/amqp/codec/methods.js';

/**
 * A bare AMQP peer over a raw socket, for the cases a real client would never send. It speaks the
 * handshake itself and then lets a test write arbitrary bytes.
 */
export class RawAmqp {
  readonly frames: Frame[] = [];
  readonly raw: Buffer[] = [];
  closed = false;
  private readonly decoder = new FrameDecoder(1 << 30);
  private headerSkipped = false;
  private waiters: (() => void)[] = [];

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.raw.push(chunk);
      this.decoder.push(chunk);
      if (!this.headerSkipped) return; // protocol-header replies are read from `raw`
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) this.frames.push({ ...f, payload: Buffer.from(f.payload) });
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  static open(port: number): Promise<RawAmqp> {
    return new Promise((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1' }, () => resolve(new RawAmqp(s)));
      s.once('error', reject);
    });
  }

  /** Opens a socket, runs the handshake and returns the answer to connection.open. */
  static async handshake(port: number, opts: { heartbeat?: number; vhost?: string } = {}): Promise<{ c: RawAmqp; reply: AmqpMethod }> {
    const c = await RawAmqp.open(port);
    c.expectFrames();
    c.write(PROTOCOL_HEADER);
    await c.nextMethod('connection.start');
    const response = Buffer.from('\u0000guest\u0000guest');
    c.send(0, { kind: 'connection.start-ok', clientProperties: {}, mechanism: 'PLAIN', response, locale: 'en_US' });
    const tune = await c.nextMethod('connection.tune');
    c.send(0, { kind: 'connection.tune-ok', channelMax: tune.channelMax, frameMax: tune.frameMax, heartbeat: opts.heartbeat ?? 0 });
    c.send(0, { kind: 'connection.open', virtualHost: opts.vhost ?? '/' });
    return { c, reply: await c.nextMethod() };
  }

  /** Opens a socket and completes the handshake up to connection.open-ok. */
  static async ready(port: number, opts: { heartbeat?: number } = {}): Promise<RawAmqp> {
    const { c, reply } = await RawAmqp.handshake(port, opts);
    if (reply.kind !== 'connection.open-ok') throw new Error(`expected connection.open-ok, got ${reply.kind}`);
    return c;
  }

  /** After this, incoming bytes are decoded as frames. */
  expectFrames(): void {
    this.headerSkipped = true;
  }

  write(buf: Buffer): void {
    this.socket.write(buf);
  }

  send(channel: number, m: AmqpMethod): void {
    this.write(encodeMethod(channel, m));
  }

  /** A frame with arbitrary type, channel and payload, and optionally a wrong frame-end. */
  static frame(type: number, channel: number, payload: Buffer, end = 0xce): Buffer {
    const b = Buffer.alloc(8 + payload.length);
    b.writeUInt8(type, 0);
    b.writeUInt16BE(channel, 1);
    b.writeUInt32BE(payload.length, 3);
    payload.copy(b, 7);
    b.writeUInt8(end, 7 + payload.length);
    return b;
  }

  async until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('timed out');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** The next method frame (skipping heartbeats), optionally of a given kind. */
  async nextMethod<K extends AmqpMethod['kind']>(kind?: K, timeoutMs = 5000): Promise<Extract<AmqpMethod, { kind: K }>> {
    for (;;) {
      await this.until(() => this.frames.length > 0 || this.closed, timeoutMs);
      const f = this.frames.shift();
      if (!f) throw new Error(`socket closed while waiting for ${kind ?? 'a method'}`);
      if (f.type !== FrameType.METHOD) continue;
      const m = decodeMethod(f.payload);
      if (kind !== undefined && m.kind !== kind) throw new Error(`expected ${kind}, got ${m.kind}`);
      return m as Extract<AmqpMethod, { kind: K }>;
    }
  }

  waitClosed(timeoutMs = 5000): Promise<void> {
    return this.until(() => this.closed, timeoutMs);
  }

  end(): void {
    this.socket.destroy();
  }
}
