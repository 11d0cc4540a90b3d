import { createServer, type Server, type Socket } from 'node:net';
import type { ProtocolAdapter } from './adapter.js';

/** Listens on a TCP port and hands every socket to the adapter. Resolves with the bound port. */
export function listenTcp(adapter: ProtocolAdapter, port: number, host: string): Promise<{ server: Server; port: number }> {
  const server = createServer({ noDelay: true }, (socket: Socket) => {
    socket.setNoDelay(true);
    adapter.handle(socket, { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 }, 'tcp');
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve({ server, port: typeof addr === 'object' && addr ? addr.port : port });
    });
  });
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
