import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Client, Versions, type IFrame, type IMessage, type IStompSocket, type StompHeaders } from '@stomp/stompjs';
import { pino } from 'pino';
import WebSocket from 'ws';
import { Escaping, type StompVersion } from '../../adapters/stomp/codec/constants.js';
import { FrameDecoder } from '../../adapters/stomp/codec/frame-decoder.js';
import { encodeFrame, type HeaderList } from '../../adapters/stomp/codec/frame-encoder.js';
import { startBroker, type Broker } from '../../src/broker.js';
import type { BrokerOptions } from '../../src/config.js';

/** A frame the server sent, with its body copied out of the socket chunk. */
export interface ReceivedFrame {
  command: string;
  headers: Record<string, string>;
  body: Buffer;
}

const ESCAPING: Record<string, Escaping> = { '1.0': Escaping.NONE, '1.1': Escaping.V11, '1.2': Escaping.V12 };

/**
 * A bare STOMP peer over a raw TCP socket or a WebSocket, for wire-level tests: it writes
 * arbitrary bytes and decodes what the server answers.
 */
export class RawStomp {
  readonly frames: ReceivedFrame[] = [];
  /** Everything the server sent, as received. */
  readonly raw: Buffer[] = [];
  closed = false;
  version: StompVersion = '1.0';
  private readonly decoder = new FrameDecoder({ maxFrame: 1 << 30, maxHeaders: 100_000, maxLine: 1 << 24 });
  private read = 0;
  private waiters: (() => void)[] = [];
  decodeError: Error | undefined;

  private constructor(private readonly transport: { write(b: Buffer): void; end(): void; destroy(): void }) {}

  private onBytes(chunk: Buffer): void {
    this.raw.push(chunk);
    this.decoder.push(chunk);
    try {
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) {
        this.frames.push({ command: f.command, headers: Object.fromEntries(f.headers), body: Buffer.from(f.body) });
        if (f.command === 'CONNECTED') {
          this.version = (f.headers.get('version') ?? '1.0') as StompVersion;
          this.decoder.escaping = ESCAPING[this.version] ?? Escaping.NONE;
        }
      }
    } catch (e) {
      this.decodeError = e as Error;
    }
    this.wake();
  }

  private onClose(): void {
    this.closed = true;
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }

  /** A raw TCP connection to the STOMP port. */
  static open(port: number, host = '127.0.0.1'): Promise<RawStomp> {
    return new Promise((resolve, reject) => {
      const s: Socket = connect({ port, host }, () => {
        const c = new RawStomp({ write: (b) => s.write(b), end: () => s.end(), destroy: () => s.destroy() });
        s.on('data', (b: Buffer) => c.onBytes(b));
        s.on('close', () => c.onClose());
        s.on('error', () => undefined);
        resolve(c);
      });
      s.once('error', reject);
    });
  }

  /** A raw WebSocket connection; every `write` is one WebSocket message (binary unless `text`). */
  static openWs(url: string, protocols: string[] = ['v12.stomp'], opts: { text?: boolean } = {}): Promise<RawStomp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, protocols);
      ws.once('open', () => {
        const c = new RawStomp({
          write: (b) => ws.send(opts.text === true ? b.toString('utf8') : b, { binary: opts.text !== true }),
          end: () => ws.close(),
          destroy: () => ws.terminate(),
        });
        ws.on('message', (data: Buffer) => c.onBytes(Buffer.from(data)));
        ws.on('close', () => c.onClose());
        ws.on('error', () => undefined);
        resolve(c);
      });
      ws.once('error', reject);
    });
  }

  /** Opens a TCP connection and completes CONNECT. */
  static async connected(port: number, headers: Record<string, string> = {}): Promise<RawStomp> {
    const c = await RawStomp.open(port);
    c.send('CONNECT', Object.entries({ 'accept-version': '1.2', host: '/', login: 'guest', passcode: 'guest', ...headers }));
    const f = await c.next();
    if (f.command !== 'CONNECTED') throw new Error(`expected CONNECTED, got ${f.command}: ${f.headers['message'] ?? ''} ${f.body.toString()}`);
    return c;
  }

  write(data: string | Buffer): void {
    this.transport.write(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
  }

  /** Encodes and writes a frame, escaped for the negotiated version. */
  send(command: string, headers: HeaderList | Record<string, string>, body?: string | Buffer): void {
    const list = Array.isArray(headers) ? (headers as HeaderList) : Object.entries(headers);
    const b = body === undefined ? undefined : typeof body === 'string' ? Buffer.from(body) : body;
    this.write(encodeFrame(command, list, b, ESCAPING[this.version] ?? Escaping.NONE));
  }

  /** The next unread frame (optionally: the next one with this command, skipping others). */
  async next(command?: string, timeoutMs = 5000): Promise<ReceivedFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.read < this.frames.length) {
        const f = this.frames[this.read++]!;
        if (command === undefined || f.command === command) return f;
      }
      if (this.closed) throw new Error(`connection closed while waiting for ${command ?? 'a frame'}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${command ?? 'a frame'}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Expects an ERROR frame followed by the server closing the connection. */
  async expectError(message?: string | RegExp): Promise<ReceivedFrame> {
    const f = await this.next();
    if (f.command !== 'ERROR') throw new Error(`expected ERROR, got ${f.command}`);
    if (message !== undefined) {
      const m = f.headers['message'] ?? '';
      if (typeof message === 'string' ? m !== message : !message.test(m)) {
        throw new Error(`expected ERROR message ${String(message)}, got '${m}' (${f.body.toString()})`);
      }
    }
    await this.waitClosed();
    return f;
  }

  async waitClosed(timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error('timed out waiting for the server to close the connection');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  end(): void {
    this.transport.end();
  }

  destroy(): void {
    this.transport.destroy();
  }
}

export interface StompClientOptions {
  connectHeaders?: StompHeaders;
  /** Versions offered in CONNECT and as WebSocket subprotocols; default all three. */
  versions?: string[];
  heartbeatIncoming?: number;
  heartbeatOutgoing?: number;
}

/** An @stomp/stompjs client over `ws` (Node has no browser WebSocket), connected. */
export async function stompClient(url: string, opts: StompClientOptions = {}): Promise<Client> {
  const versions = opts.versions ?? ['1.2', '1.1', '1.0'];
  const protocols = versions.map((v) => `v${v.replace('.', '')}.stomp`);
  const client = new Client({
    webSocketFactory: () => new WebSocket(url, protocols) as unknown as IStompSocket,
    connectHeaders: opts.connectHeaders ?? {},
    reconnectDelay: 0,
    heartbeatIncoming: opts.heartbeatIncoming ?? 0,
    heartbeatOutgoing: opts.heartbeatOutgoing ?? 0,
    debug: () => undefined,
  });
  client.stompVersions = new Versions(versions);
  await new Promise<void>((resolve, reject) => {
    client.onConnect = () => resolve();
    client.onStompError = (f: IFrame) => reject(new Error(`${f.headers['message'] ?? 'ERROR'}: ${f.body}`));
    client.onWebSocketClose = () => reject(new Error('websocket closed before CONNECTED'));
    client.activate();
  });
  return client;
}

/** Subscribes and collects every message into the returned array. */
export function collect(client: Client, destination: string, headers: StompHeaders = {}): { messages: IMessage[]; unsubscribe(): void } {
  const messages: IMessage[] = [];
  const sub = client.subscribe(destination, (m) => messages.push(m), headers);
  return { messages, unsubscribe: () => sub.unsubscribe() };
}

/** Resolves once the server sent RECEIPT for `receipt`. Register before sending the frame. */
export function receiptFor(client: Client, receipt: string): Promise<void> {
  return new Promise((resolve) => client.watchForReceipt(receipt, () => resolve()));
}

/** The STOMP-over-WebSocket URL of a test broker. */
export function wsUrl(httpPort: number, path = '/ws'): string {
  return `ws://127.0.0.1:${httpPort}${path}`;
}

/** One structured log line. */
export interface LogLine {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A test broker whose log lines are kept in memory, to check that errors are logged. */
export interface LoggedBroker {
  broker: Broker;
  logs: LogLine[];
  stop(): Promise<void>;
}

export async function startLoggedBroker(opts: Partial<BrokerOptions> = {}): Promise<LoggedBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-stomp-'));
  const logs: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as LogLine);
      cb();
    },
  });
  const broker = await startBroker({
    amqpPort: 0,
    mqttPort: 0,
    stompPort: 0,
    httpPort: 0,
    bind: '127.0.0.1',
    dataDir,
    logger: pino({ level: 'info' }, sink),
    ...opts,
  });
  return {
    broker,
    logs,
    async stop() {
      await broker.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}
