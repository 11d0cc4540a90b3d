import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../logger.js';
import type { ProtocolAdapter } from './adapter.js';
import { peerOf, serveStream } from './serve.js';

/** Listens on a TCP port and hands every socket to the adapter. Resolves with the bound port. */
export function listenTcp(adapter: ProtocolAdapter, port: number, host: string, log: Logger): Promise<{ server: Server; port: number }> {
  // Half-open: the Link ends our side when the client ends its own, through the core's teardown
  // queue, so that thousands of clients leaving at once are taken a slice per event-loop turn.
  const server = createServer({ noDelay: true, allowHalfOpen: true }, (socket: Socket) => {
    socket.setNoDelay(true);
    serveStream(adapter, socket, peerOf(socket), 'tcp', log);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      // After listen an error (e.g. EMFILE on accept) is logged; the listener keeps running.
      server.on('error', (err: Error) => log.error({ err, protocol: adapter.name }, 'listener error'));
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr ? addr.port : port });
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
