import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import type { Logger } from '../logger.js';
import type { Peer, ProtocolAdapter, TransportControl } from './adapter.js';
import { peerOf, serveStream } from './serve.js';
import { acceptPeer, tlsServerOptions, type TlsEndpoint, type TlsSettings } from './tls.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** WebSocket subprotocols and the adapter each selects, best first. */
const SUBPROTOCOLS: ReadonlyArray<[string, string]> = [
  ['mqtt', 'mqtt'],
  ['mqttv3.1', 'mqtt'],
  ['v12.stomp', 'stomp'],
  ['v11.stomp', 'stomp'],
  ['v10.stomp', 'stomp'],
  ['amqp', 'amqp'],
];

/**
 * Which adapter a path serves: `/ws` chooses by subprotocol, `/mqtt`, `/stomp` and `/amqp` are
 * fixed. `/amqp` also takes a WebSocket that offers no subprotocol (amqp-client's
 * AMQPWebSocketClient offers none), but refuses one that offers only others.
 */
const PATHS: Record<string, string | undefined> = { '/ws': undefined, '/mqtt': 'mqtt', '/stomp': 'stomp', '/amqp': 'amqp' };

/**
 * The message limit a WebSocket starts with, before the adapter that serves it is known: the
 * smallest pre-authentication limit of any adapter served over WebSocket.
 */
const PRE_AUTH_START = 64 * 1024;

/** Room in one WebSocket message, beyond the adapter's frame limit, for small frames sent with it. */
const AFTER_FRAME_ROOM = 64 * 1024;

/** After a close frame is sent, how long the peer has to answer before the socket is dropped. */
const CLOSE_TIMEOUT_MS = 1000;

/**
 * The HTTP port, or with `tls` the HTTPS port: management API and UI (a request handler set
 * later), and WebSocket upgrades (ws:// or wss://) for the protocol adapters. Every socket,
 * upgrade and WebSocket has its errors handled here; the stream each WebSocket becomes is handed
 * to its adapter through `serveStream`.
 */
export class HttpServer {
  readonly server: Server;
  private readonly adapters = new Map<string, ProtocolAdapter>();
  private handler: RequestHandler | undefined;
  private readonly wss: WebSocketServer;
  readonly sockets = new Set<WebSocket>();

  /**
   * @param maxPayload the largest WebSocket message ever accepted; before the client has
   * authenticated, the serving adapter's `preAuthLimit` applies, after it the adapter's frame
   * limit (plus 64 KiB), when that is smaller.
   */
  constructor(
    private readonly log: Logger,
    private readonly maxPayload: number,
    private readonly tls?: TlsSettings,
  ) {
    this.server = tls === undefined ? createServer((req, res) => this.request(req, res)) : this.httpsServer(tls);
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: PRE_AUTH_START,
      perMessageDeflate: false,
      handleProtocols: (offered: Set<string>, req: IncomingMessage) => {
        const path = pathOf(req);
        const fixed = PATHS[path];
        for (const [sub, name] of SUBPROTOCOLS) {
          if (offered.has(sub) && (fixed === undefined || fixed === name) && this.adapters.has(name)) return sub;
        }
        return false;
      },
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.clientError(err, socket));
  }

  /** The HTTPS server: a client certificate that is sent must verify, as on the other TLS ports. */
  private secure: TlsEndpoint['server'] | undefined;

  private httpsServer(tls: TlsSettings): Server {
    const server = createHttpsServer(tlsServerOptions(tls), (req, res) => this.request(req, res));
    server.on('secureConnection', (socket: TLSSocket) => {
      if (acceptPeer(socket, tls, this.log, 'https') === false) socket.destroy();
    });
    server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
      this.log.debug({ listener: 'https', err: err.message, code: err.code }, 'TLS handshake failed');
      socket.destroy();
    });
    this.secure = server;
    return server;
  }

  /** The HTTPS listener, for certificate reloads; undefined on the plain HTTP port. */
  get tlsEndpoint(): TlsEndpoint | undefined {
    if (this.tls === undefined || this.secure === undefined) return undefined;
    return { name: 'https', server: this.secure, settings: this.tls };
  }

  setHandler(handler: RequestHandler): void {
    this.handler = handler;
  }

  attach(adapter: ProtocolAdapter): void {
    this.adapters.set(adapter.name, adapter);
  }

  /** One HTTP request: a throw from the handler is a 500 for this request, never the process's end. */
  private request(req: IncomingMessage, res: ServerResponse): void {
    try {
      if (this.handler) this.handler(req, res);
      else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'not_found', reason: 'Not Found' }));
      }
    } catch (err) {
      this.log.error({ err, method: req.method, url: req.url }, 'http request failed');
      if (res.headersSent) res.destroy();
      else {
        res.writeHead(500, { 'content-type': 'application/json', connection: 'close' });
        res.end(JSON.stringify({ error: 'internal_server_error', reason: 'Internal Server Error' }));
      }
    }
  }

  /** A malformed request or a socket error before a request was parsed (Node's defaults, logged). */
  private clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    this.log.debug({ err: err.message, code: err.code }, 'http client error');
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // Node removes its own error listener from an upgraded socket: ours goes on first, whatever
    // happens next (a reset while the 404 is written, a failed handshake).
    socket.on('error', destroyOnError);
    const path = pathOf(req);
    const fixed = PATHS[path];
    if (!(path in PATHS) || (fixed !== undefined && !this.adapters.has(fixed))) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    if (fixed === 'amqp' && offersOnlyOthers(req, 'amqp')) {
      this.log.warn({ path, protocols: req.headers['sec-websocket-protocol'] }, 'websocket upgrade without a known subprotocol');
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req, path));
  }

  private accept(ws: WebSocket, req: IncomingMessage, path: string): void {
    // Before anything else: an invalid frame (RSV1 set, bad opcode, oversized) is an 'error' on
    // the WebSocket; ws answers it with a close frame itself.
    ws.on('error', onWebSocketError);
    const name = PATHS[path] ?? SUBPROTOCOLS.find(([sub]) => sub === ws.protocol)?.[1];
    const adapter = name === undefined ? undefined : this.adapters.get(name);
    if (!adapter) {
      this.log.warn({ path, protocol: ws.protocol }, 'websocket upgrade without a known subprotocol');
      ws.close(1002, 'unsupported subprotocol');
      setTimeout(terminate, CLOSE_TIMEOUT_MS, ws).unref();
      return;
    }
    // Until the adapter reports the client authenticated, a message may not be larger than the
    // adapter's own pre-authentication limit on TCP (ws checks it on the frame header, before
    // buffering the payload).
    setMaxPayload(ws, adapter.preAuthLimit);
    this.sockets.add(ws);
    const stream = createWebSocketStream(ws);
    ws.on('close', () => {
      this.sockets.delete(ws);
      // ws ends the stream's readable side on close, but after a reset the writable side never
      // finishes, so the stream would never close and the adapter would keep the connection.
      // The stream goes after this turn: received data in flight is handled first; what a paused
      // stream still holds is dropped, as nobody is left to answer it.
      setImmediate(destroyStream, stream);
    });
    // Everything an adapter writes in one turn (the Link corks per tick) leaves as one
    // WebSocket message and one syscall instead of one per frame; MQTT and STOMP both allow
    // several packets/frames in a message.
    stream._writev = (chunks, callback) => {
      ws.send(chunks.length === 1 ? (chunks[0]!.chunk as Buffer) : Buffer.concat(chunks.map((c) => c.chunk as Buffer)), callback);
    };
    const maxPayload = this.maxPayload;
    const control: TransportControl = {
      // One message holds one frame (or a few small ones after it): the adapter's frame limit plus
      // some room, never more than the port's own limit.
      authenticated: (maxFrame: number) => setMaxPayload(ws, Math.min(maxPayload, maxFrame + AFTER_FRAME_ROOM)),
    };
    const peer: Peer = peerOf(req.socket);
    if (this.tls !== undefined) {
      const tls = acceptPeer(req.socket as TLSSocket, this.tls, this.log, 'https');
      if (tls !== false) peer.tls = tls;
    }
    serveStream(adapter, stream, peer, this.tls === undefined ? 'websocket' : 'websocket-tls', this.log, control);
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port, host }, () => {
        this.server.off('error', reject);
        this.server.on('error', (err: Error) => this.log.error({ err }, 'http listener error'));
        const addr = this.server.address();
        resolve(typeof addr === 'object' && addr ? addr.port : port);
      });
    });
  }

  close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate();
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function pathOf(req: IncomingMessage): string {
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}

/** The request offers WebSocket subprotocols, and `sub` is not one of them. */
function offersOnlyOthers(req: IncomingMessage, sub: string): boolean {
  const header = req.headers['sec-websocket-protocol'];
  if (header === undefined || header.trim() === '') return false;
  return !header.split(',').some((p) => p.trim() === sub);
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

function onWebSocketError(this: WebSocket): void {
  // ws closes the connection itself (with 1002/1007/1009); the stream records the reason.
}

function terminate(ws: WebSocket): void {
  ws.terminate();
}

function destroyStream(s: Duplex): void {
  if (!s.destroyed) s.destroy();
}

/**
 * Sets the largest message an open WebSocket accepts. ws has no public setter: its receiver keeps
 * the limit in `_maxPayload` and checks it against each frame header's length (and the running
 * total of a fragmented message) before buffering. Returns false if that field is not there (a
 * different ws), in which case the limit stays as it was: the smaller, safe one.
 */
export function setMaxPayload(ws: WebSocket, bytes: number): boolean {
  const receiver = (ws as unknown as { _receiver?: { _maxPayload?: unknown } | null })._receiver;
  if (receiver === undefined || receiver === null || typeof receiver._maxPayload !== 'number') return false;
  receiver._maxPayload = bytes;
  return true;
}
