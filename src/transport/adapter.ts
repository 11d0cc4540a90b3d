import type { Duplex } from 'node:stream';

export interface Peer {
  address: string;
  port: number;
}

/** A protocol adapter: takes any byte stream (TCP, TLS, WebSocket, in-memory pair). */
export interface ProtocolAdapter {
  /** 'amqp' | 'mqtt' | 'stomp'. */
  readonly name: string;
  handle(stream: Duplex, peer: Peer, transport?: string): void;
  /** Closes every connection with the protocol's shutdown message; resolves when all are gone. */
  shutdown(reason: string): Promise<void>;
  /** Open connections. */
  readonly connectionCount: number;
}
