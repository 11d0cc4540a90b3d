import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, createWebSocketStream, type WebSocket } from 'ws';
import type { Logger } from '../logger.js';
import type { ProtocolAdapter } from './adapter.js';

export type RequestHandler = (req: IncomingMessage, res: ServerResponse) => void;

/** WebSocket subprotocols and the adapter each selects, best first. */
const SUBPROTOCOLS: ReadonlyArray<[string, string]> = [
  ['mqtt', 'mqtt'],
  ['mqttv3.1', 'mqtt'],
  ['v12.stomp', 'stomp'],
  ['v11.stomp', 'stomp'],
  ['v10.stomp', 'stomp'],
];

/** Which adapter a path serves: `/ws` chooses by subprotocol, `/mqtt` and `/stomp` are fixed. */
const PATHS: Record<string, string | undefined> = { '/ws': undefined, '/mqtt': 'mqtt', '/stomp': 'stomp' };

/**
 * The HTTP port: management API and UI (a request handler set later), and WebSocket upgrades for
 * the protocol adapters.
 */
export class HttpServer {
  readonly server: Server;
  private readonly adapters = new Map<string, ProtocolAdapter>();
  private handler: RequestHandler | undefined;
  private readonly wss: WebSocketServer;
  readonly sockets = new Set<WebSocket>();

  constructor(
    private readonly log: Logger,
    maxPayload: number,
  ) {
    this.server = createServer((req, res) => {
      if (this.handler) this.handler(req, res);
      else {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'not_found', reason: 'Not Found' }));
      }
    });
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload,
      perMessageDeflate: false,
      handleProtocols: (offered: Set<string>, req: IncomingMessage) => {
        const path = pathOf(req);
        const fixed = PATHS[path];
        for (const [sub, name] of SUBPROTOCOLS) {
          if (offered.has(sub) && (fixed === undefined || fixed === name)) return sub;
        }
        return false;
      },
    });
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.upgrade(req, socket, head));
  }

  setHandler(handler: RequestHandler): void {
    this.handler = handler;
  }

  attach(adapter: ProtocolAdapter): void {
    this.adapters.set(adapter.name, adapter);
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = pathOf(req);
    if (!(path in PATHS)) {
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.on('error', () => socket.destroy());
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const name = PATHS[path] ?? SUBPROTOCOLS.find(([sub]) => sub === ws.protocol)?.[1];
      const adapter = name === undefined ? undefined : this.adapters.get(name);
      if (!adapter) {
        this.log.warn({ path, protocol: ws.protocol }, 'websocket upgrade without a known subprotocol');
        ws.close(1002, 'unsupported subprotocol');
        return;
      }
      this.sockets.add(ws);
      ws.on('close', () => this.sockets.delete(ws));
      const stream = createWebSocketStream(ws);
      // Everything an adapter writes in one turn (the Outbound corks per tick) leaves as one
      // WebSocket message and one syscall instead of one per frame; MQTT and STOMP both allow
      // several packets/frames in a message.
      stream._writev = (chunks, callback) => {
        ws.send(chunks.length === 1 ? (chunks[0]!.chunk as Buffer) : Buffer.concat(chunks.map((c) => c.chunk as Buffer)), callback);
      };
      stream.on('error', () => stream.destroy());
      adapter.handle(stream, { address: req.socket.remoteAddress ?? '', port: req.socket.remotePort ?? 0 }, 'websocket');
    });
  }

  listen(port: number, host: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen({ port, host }, () => {
        this.server.off('error', reject);
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
