/**
 * A minimal WebSocket client (RFC 6455) for the STOMP driver: the HTTP upgrade, masked binary frames
 * out (written straight into a BatchWriter, one socket write per turn), and frames in (data payloads
 * handed on as a byte stream, pings answered). Enough for a load generator that must cost the client
 * little; no extensions, no fragmentation on send.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';

import { BatchWriter, ReadBuffer, hostPort, openSocket } from './wire.js';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const OP_CONTINUATION = 0;
const OP_TEXT = 1;
const OP_BINARY = 2;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

export class WsConnection {
  readonly out: BatchWriter;
  private readonly input = new ReadBuffer();
  /** Payload bytes of data frames, in order (message boundaries are not kept). */
  onPayload: (bytes: Buffer) => void = () => undefined;
  onClose: (reason: string) => void = () => undefined;
  // xorshift32 state for the masking keys: the key only has to be unpredictable to intermediaries.
  private seed = randomBytes(4).readUInt32LE(0) | 1;

  private constructor(readonly socket: Socket) {
    this.out = new BatchWriter(socket);
  }

  /** Connect to `ws://host:port/path` offering `subprotocols`; resolves after the 101 response. */
  static async open(url: string, subprotocols: string[], timeoutMs = 10_000): Promise<WsConnection> {
    const u = new URL(url);
    if (u.protocol !== 'ws:') throw new Error(`websocket: only ws:// URLs (got ${u.protocol})`);
    const { host, port } = hostPort(u, 80);
    const socket = await openSocket(host, port, timeoutMs);
    const key = randomBytes(16).toString('base64');
    const request =
      `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
      (subprotocols.length > 0 ? `Sec-WebSocket-Protocol: ${subprotocols.join(', ')}\r\n` : '') +
      '\r\n';
    const leftover = await new Promise<Buffer>((resolve, reject) => {
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => fail(new Error(`websocket ${url}: no upgrade response within ${timeoutMs} ms`)), timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.removeListener('data', onData);
        socket.destroy();
        reject(err);
      };
      const onData = (chunk: Buffer): void => {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 16_384) fail(new Error(`websocket ${url}: response headers too long`));
          return;
        }
        const lines = head.toString('latin1', 0, end).split('\r\n');
        const status = lines[0] ?? '';
        if (!/^HTTP\/1\.1 101\b/.test(status)) {
          fail(new Error(`websocket ${url}: upgrade refused: ${status}`));
          return;
        }
        const accept = lines.find((l) => /^sec-websocket-accept:/i.test(l))?.split(':')[1]?.trim();
        const expected = createHash('sha1').update(key + WS_GUID).digest('base64');
        if (accept !== expected) {
          fail(new Error(`websocket ${url}: bad Sec-WebSocket-Accept`));
          return;
        }
        clearTimeout(timer);
        socket.removeListener('data', onData);
        socket.removeListener('close', onClose);
        resolve(head.subarray(end + 4));
      };
      const onClose = (): void => fail(new Error(`websocket ${url}: closed during the upgrade`));
      socket.on('data', onData);
      socket.once('close', onClose);
      socket.write(request);
    });
    const ws = new WsConnection(socket);
    socket.on('data', (chunk: Buffer) => ws.onData(chunk));
    socket.on('close', () => ws.onClose('connection closed'));
    if (leftover.length > 0) queueMicrotask(() => ws.onData(leftover));
    return ws;
  }

  /**
   * Reserve one masked binary frame of `length` payload bytes in the batch; the caller writes the
   * payload at the returned offset of `out.buf` and then calls `mask(offset, length)`.
   */
  beginFrame(length: number, opcode = OP_BINARY): number {
    const lenBytes = length < 126 ? 0 : length < 65_536 ? 2 : 8;
    let at = this.out.reserve(2 + lenBytes + 4 + length);
    const buf = this.out.buf;
    buf[at++] = 0x80 | opcode;
    if (lenBytes === 0) {
      buf[at++] = 0x80 | length;
    } else if (lenBytes === 2) {
      buf[at++] = 0x80 | 126;
      at = buf.writeUInt16BE(length, at);
    } else {
      buf[at++] = 0x80 | 127;
      at = buf.writeBigUInt64BE(BigInt(length), at);
    }
    let s = this.seed;
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    this.seed = s;
    buf.writeInt32BE(s | 0, at);
    return at + 4;
  }

  /** Mask the payload just written at `offset` (the key is the 4 bytes before it). */
  mask(offset: number, length: number): void {
    const buf = this.out.buf;
    const k0 = buf[offset - 4]!;
    const k1 = buf[offset - 3]!;
    const k2 = buf[offset - 2]!;
    const k3 = buf[offset - 1]!;
    const end = offset + length;
    let i = offset;
    for (; i + 4 <= end; i += 4) {
      buf[i] = buf[i]! ^ k0;
      buf[i + 1] = buf[i + 1]! ^ k1;
      buf[i + 2] = buf[i + 2]! ^ k2;
      buf[i + 3] = buf[i + 3]! ^ k3;
    }
    const keys = [k0, k1, k2, k3];
    for (let j = 0; i < end; i++, j++) buf[i] = buf[i]! ^ keys[j]!;
  }

  private onData(chunk: Buffer): void {
    const input = this.input;
    input.feed(chunk);
    const data = input.data;
    let at = input.offset;
    const end = data.length;
    while (end - at >= 2) {
      const b0 = data[at]!;
      const b1 = data[at + 1]!;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let hdr = 2;
      if (len === 126) {
        if (end - at < 4) break;
        len = data.readUInt16BE(at + 2);
        hdr = 4;
      } else if (len === 127) {
        if (end - at < 10) break;
        len = Number(data.readBigUInt64BE(at + 2));
        hdr = 10;
      }
      if (masked) hdr += 4;
      if (end - at < hdr + len) break;
      const payload = data.subarray(at + hdr, at + hdr + len);
      if (masked) {
        // Servers do not mask; unmask anyway for robustness.
        const k = data.subarray(at + hdr - 4, at + hdr);
        for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ k[i & 3]!;
      }
      at += hdr + len;
      const opcode = b0 & 0x0f;
      if (opcode === OP_TEXT || opcode === OP_BINARY || opcode === OP_CONTINUATION) {
        if (payload.length > 0) this.onPayload(payload);
      } else if (opcode === OP_PING) {
        const o = this.beginFrame(payload.length, OP_PONG);
        payload.copy(this.out.buf, o);
        this.mask(o, payload.length);
      } else if (opcode === OP_CLOSE) {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        this.onClose(`websocket closed by the server (${code} ${payload.toString('utf8', 2)})`);
      }
      // OP_PONG: nothing to do.
    }
    input.offset = at;
  }

  /** Send a close frame and end the socket. */
  close(): void {
    if (this.socket.destroyed) return;
    const o = this.beginFrame(2, OP_CLOSE);
    this.out.buf.writeUInt16BE(1000, o);
    this.mask(o, 2);
    this.out.flush();
    this.socket.end();
  }
}
