/**
 * STOMP 1.2 client roles over TCP (`stomp://user:pass@host:port`) or over a WebSocket
 * (`ws://user:pass@host:port/path`, subprotocol v12.stomp, one STOMP frame per binary WebSocket
 * message as @stomp/stompjs sends them), written against the wire format directly:
 * - publisher: SEND with `content-length` to one destination, no receipts (fire and forget, like
 *   transient AMQP publishes without confirms); waits on the socket's 'drain' when it is full;
 * - consumer: SUBSCRIBE (ack `auto` or `client-individual` with a `prefetch-count`), an ACK frame per
 *   MESSAGE in client-individual mode;
 * - a probe (CONNECT -> CONNECTED, which names the server).
 * Outgoing frames are batched per event-loop turn, incoming ones parsed with only the headers the
 * client needs looked at.
 */
import type { Socket } from 'node:net';

import type { ConsumerDriver, OnFatal, OnMessage, PublisherDriver, StompConsumerSpec, StompPublisherSpec } from './types.js';
import { WsConnection } from './websocket.js';
import { BatchWriter, ReadBuffer, closeSocket, hostPort, openSocket } from './wire.js';

const DEFAULT_PORT = 61613;
const TIMEOUT_MS = 10_000;
const NUL = 0;
const LF = 0x0a;
const CR = 0x0d;

export interface StompFrame {
  command: string;
  /** The raw header block (lines separated by \n), latin1; look headers up with `header()`. */
  head: string;
  /** A view into the read buffer, valid during the callback. */
  body: Buffer;
}

/** The value of header `name` in a frame's header block (first occurrence wins, as in STOMP 1.2). */
export function header(head: string, name: string): string | null {
  const key = `\n${name}:`;
  const i = head.indexOf(key);
  if (i < 0) return null;
  const from = i + key.length;
  const to = head.indexOf('\n', from);
  const v = head.slice(from, to < 0 ? head.length : to);
  return v.endsWith('\r') ? v.slice(0, -1) : v;
}

/** Where frames go out: a TCP socket, or WebSocket frames on one. */
interface FrameSink {
  readonly socket: Socket;
  readonly out: BatchWriter;
  /** Reserve room for a frame of `length` bytes; write it at the returned offset of out.buf, then end(). */
  begin(length: number): number;
  end(offset: number, length: number): void;
  close(): Promise<void>;
}

export class StompConnection {
  private readonly input = new ReadBuffer();
  private onFrame: (f: StompFrame) => void = () => undefined;
  private closing = false;
  server = '';

  private constructor(
    readonly sink: FrameSink,
    readonly label: string,
  ) {}

  get out(): BatchWriter {
    return this.sink.out;
  }

  static async open(url: string, label: string, onFatal: OnFatal | null): Promise<StompConnection> {
    const u = new URL(url);
    let c: StompConnection;
    const fatal = (err: Error): void => {
      if (!c.closing) onFatal?.(err);
    };
    if (u.protocol === 'ws:') {
      const ws = await WsConnection.open(url, ['v12.stomp']);
      const sink: FrameSink = {
        socket: ws.socket,
        out: ws.out,
        begin: (length) => ws.beginFrame(length),
        end: (offset, length) => ws.mask(offset, length),
        close: async () => {
          ws.close();
          await closeSocket(ws.socket);
        },
      };
      c = new StompConnection(sink, label);
      ws.onPayload = (bytes) => c.onData(bytes);
      ws.onClose = (reason) => fatal(new Error(`${label}: ${reason}`));
    } else if (u.protocol === 'stomp:') {
      const { host, port } = hostPort(u, DEFAULT_PORT);
      const socket = await openSocket(host, port);
      const out = new BatchWriter(socket);
      const sink: FrameSink = {
        socket,
        out,
        begin: (length) => out.reserve(length),
        end: () => undefined,
        close: () => closeSocket(socket),
      };
      c = new StompConnection(sink, label);
      socket.on('data', (chunk: Buffer) => c.onData(chunk));
      socket.on('close', () => fatal(new Error(`${label}: connection closed by the broker`)));
    } else {
      throw new Error(`stomp: unsupported URL scheme ${u.protocol} (stomp: or ws:)`);
    }
    c.sink.socket.on('error', (err) => fatal(err));
    const login = u.username === '' ? 'guest' : decodeURIComponent(u.username);
    const passcode = u.password === '' ? 'guest' : decodeURIComponent(u.password);
    try {
      const connected = await c.request(
        `CONNECT\naccept-version:1.2\nhost:/\nlogin:${login}\npasscode:${passcode}\nheart-beat:0,0\n\n`,
        (f) => f.command === 'CONNECTED',
      );
      const version = header(connected.head, 'version');
      if (version !== '1.2') throw new Error(`${label}: the server chose STOMP ${version ?? '?'}, expected 1.2`);
      c.server = header(connected.head, 'server') ?? '';
    } catch (err) {
      c.closing = true;
      c.sink.socket.destroy();
      throw err;
    }
    return c;
  }

  handle(onFrame: (f: StompFrame) => void): void {
    this.onFrame = onFrame;
  }

  /** Send a frame without a body (`text` ends with the blank line) and wait for the frame `isReply` accepts. */
  request(text: string, isReply: (f: StompFrame) => boolean): Promise<StompFrame> {
    return new Promise<StompFrame>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.label}: no reply to ${text.split('\n')[0]} within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
      const previous = this.onFrame;
      this.onFrame = (f) => {
        if (f.command === 'ERROR') {
          clearTimeout(timer);
          this.onFrame = previous;
          reject(new Error(`${this.label}: ERROR ${header(f.head, 'message') ?? ''} ${f.body.toString('utf8').trim()}`));
        } else if (isReply(f)) {
          clearTimeout(timer);
          this.onFrame = previous;
          resolve({ command: f.command, head: f.head, body: Buffer.from(f.body) });
        }
      };
      this.sendText(text);
    });
  }

  /** A frame without a body: `text` is the command line and headers, ending with the blank line. */
  sendText(text: string): void {
    const n = Buffer.byteLength(text, 'latin1') + 1;
    const at = this.sink.begin(n);
    const buf = this.sink.out.buf;
    buf.write(text, at, 'latin1');
    buf[at + n - 1] = NUL;
    this.sink.end(at, n);
  }

  /** `prefix` (command, headers, `content-length:N\n\n`), then `body`, then NUL. */
  sendWithBody(prefix: Buffer, body: Buffer): void {
    const n = prefix.length + body.length + 1;
    const at = this.sink.begin(n);
    const buf = this.sink.out.buf;
    prefix.copy(buf, at);
    body.copy(buf, at + prefix.length);
    buf[at + n - 1] = NUL;
    this.sink.end(at, n);
  }

  onData(chunk: Buffer): void {
    const input = this.input;
    input.feed(chunk);
    const data = input.data;
    let at = input.offset;
    const end = data.length;
    while (at < end) {
      // Heart-beats and optional EOLs between frames.
      const b = data[at]!;
      if (b === LF || b === CR) {
        at++;
        continue;
      }
      const headEnd = data.indexOf('\n\n', at, 'latin1');
      // A CRLF frame (1.2): the blank line is \r\n\r\n; \n\r\n also ends it.
      const crlfEnd = headEnd < 0 ? data.indexOf('\n\r\n', at, 'latin1') : -1;
      if (headEnd < 0 && crlfEnd < 0) break;
      const headStop = headEnd >= 0 ? headEnd : crlfEnd;
      const bodyStart = headEnd >= 0 ? headEnd + 2 : crlfEnd + 3;
      const head = data.toString('latin1', at, headStop);
      const nl = head.indexOf('\n');
      let command = nl < 0 ? head : head.slice(0, nl);
      if (command.endsWith('\r')) command = command.slice(0, -1);
      const cl = header(head, 'content-length');
      let bodyEnd: number;
      if (cl !== null) {
        bodyEnd = bodyStart + Number(cl);
        if (bodyEnd >= end) break;
      } else {
        bodyEnd = data.indexOf(NUL, bodyStart);
        if (bodyEnd < 0) break;
      }
      this.onFrame({ command, head, body: data.subarray(bodyStart, bodyEnd) });
      at = bodyEnd + 1;
    }
    input.offset = at;
    this.out.flush();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.sink.socket.destroyed) return;
    // DISCONNECT with a receipt, then close once it arrives (or soon anyway).
    const receipt = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 2_000);
      this.onFrame = (f) => {
        if (f.command === 'RECEIPT' && header(f.head, 'receipt-id') === 'bye') {
          clearTimeout(timer);
          resolve();
        }
      };
    });
    this.sendText('DISCONNECT\nreceipt:bye\n\n');
    await receipt;
    await this.sink.close();
  }
}

function failOnUnexpected(c: StompConnection, onFatal: OnFatal, expected: string): (f: StompFrame) => void {
  return (f) => {
    if (f.command === 'ERROR') {
      onFatal(new Error(`${c.label}: ERROR ${header(f.head, 'message') ?? ''} ${f.body.toString('utf8').trim()}`));
    } else if (f.command !== expected) {
      onFatal(new Error(`${c.label}: unexpected ${f.command} frame`));
    }
  };
}

export async function openStompPublisher(spec: StompPublisherSpec, onFatal: OnFatal): Promise<PublisherDriver> {
  const c = await StompConnection.open(spec.url, spec.id, onFatal);
  c.handle(failOnUnexpected(c, onFatal, 'RECEIPT'));
  const prefixes = new Map<number, Buffer>();
  const prefixFor = (n: number): Buffer => {
    let p = prefixes.get(n);
    if (p === undefined) {
      p = Buffer.from(`SEND\ndestination:${spec.destination}\ncontent-length:${n}\n\n`, 'latin1');
      prefixes.set(n, p);
    }
    return p;
  };
  return {
    publish: (body) => {
      c.sendWithBody(prefixFor(body.length), body);
      return c.out.writable;
    },
    whenWritable: (cb) => c.out.whenWritable(cb),
    close: () => c.close(),
  };
}

export async function openStompConsumer(
  spec: StompConsumerSpec,
  onMessage: OnMessage,
  onFatal: OnFatal,
): Promise<ConsumerDriver> {
  const c = await StompConnection.open(spec.url, spec.id, onFatal);
  try {
    await c.request(
      `SUBSCRIBE\nid:0\ndestination:${spec.destination}\nack:${spec.ack}\n` +
        (spec.prefetch > 0 ? `prefetch-count:${spec.prefetch}\n` : '') +
        'receipt:sub-0\n\n',
      (f) => f.command === 'RECEIPT' && header(f.head, 'receipt-id') === 'sub-0',
    );
  } catch (err) {
    await c.close();
    throw err;
  }
  const individual = spec.ack === 'client-individual';
  const unexpected = failOnUnexpected(c, onFatal, 'MESSAGE');
  c.handle((f) => {
    if (f.command !== 'MESSAGE') {
      unexpected(f);
      return;
    }
    onMessage(f.body);
    if (individual) {
      const id = header(f.head, 'ack');
      if (id === null) {
        onFatal(new Error(`${spec.id}: MESSAGE without an ack header in client-individual mode`));
        return;
      }
      c.sendText(`ACK\nid:${id}\n\n`);
    }
  });
  return { close: () => c.close() };
}

/** Connect once (CONNECT -> CONNECTED); returns the `server` header (e.g. `RabbitMQ/3.10.8`). */
export async function probeStomp(url: string): Promise<string> {
  const c = await StompConnection.open(url, 'probe', null);
  const server = c.server;
  await c.close();
  return server;
}
