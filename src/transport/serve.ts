import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';
import type { Peer, ProtocolAdapter, TransportControl } from './adapter.js';

/**
 * The one place where a listener hands a byte stream to a protocol adapter (TCP, TLS and
 * WebSocket alike). The stream gets an 'error' listener before the adapter sees it, so a reset
 * or a transport error can never be an unhandled 'error' event, and a throw from the adapter's
 * setup ends this stream only.
 */
export function serveStream(
  adapter: ProtocolAdapter,
  stream: Duplex,
  peer: Peer,
  transport: string,
  log: Logger,
  control?: TransportControl,
): void {
  stream.on('error', onStreamError);
  try {
    adapter.handle(stream, peer, transport, control);
  } catch (err) {
    log.error({ err, protocol: adapter.name, peer: `${peer.address}:${peer.port}`, transport }, 'cannot serve connection');
    stream.destroy();
  }
}

/**
 * Adapters keep their own 'error' listeners for the close reason; this one only makes sure that
 * an error always has a listener and that the stream goes away.
 */
function onStreamError(this: Duplex): void {
  if (!this.destroyed) this.destroy();
}

/** Peer of a socket; an unknown remote address stays '' (which is never loopback). */
export function peerOf(socket: { remoteAddress?: string | undefined; remotePort?: number | undefined }): Peer {
  return { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
}
