import type { Duplex } from 'node:stream';
import type { BrokerOptions } from '../config.js';
import type { Core } from '../core/index.js';
import type { Logger } from '../logger.js';
import type { RecordStore } from '../store/index.js';

/** The part of the embedded store an adapter may use: named durable key/value record stores. */
export interface AdapterStore {
  /** The record store `<dataDir>/records/<name>.log`, opened on first use and closed with the store. */
  records(name: string): RecordStore;
}

/** What every adapter gets from the broker. */
export interface AdapterContext {
  readonly core: Core;
  readonly log: Logger;
  readonly options: BrokerOptions;
  /** The embedded store; absent when the adapter runs without a data directory (tests). */
  readonly store?: AdapterStore;
}

export interface Peer {
  /** The remote address; '' when the transport does not know it (never counted as loopback). */
  address: string;
  port: number;
  /** Set on TLS connections (TLS ports and wss://). */
  tls?: TlsPeer;
}

/** What a TLS connection tells about its peer. */
export interface TlsPeer {
  /** Negotiated protocol ('TLSv1.3') and cipher. */
  protocol: string;
  cipher: string;
  /** The client's certificate verified against the configured CA. */
  authorized: boolean;
  /** The client's certificate, when it sent one. */
  certificate?: {
    commonName: string | undefined;
    /** RFC 4514 form, e.g. `CN=device-1,O=Example`. */
    distinguishedName: string;
    subjectAltNames: Array<{ type: string; value: string }>;
    validTo: string;
  };
}

/**
 * What a transport lets an adapter tell it about one connection. A WebSocket buffers whole
 * messages before the adapter sees a byte, so it keeps the adapter's pre-authentication limit
 * until the adapter reports that the client has authenticated.
 */
export interface TransportControl {
  /**
   * The client has authenticated: the transport lifts its pre-authentication limits. `maxFrame`
   * is the largest frame or packet the adapter now accepts; a transport that buffers messages
   * need not take in much more than that in one.
   */
  authenticated(maxFrame: number): void;
}

/** A protocol adapter: takes any byte stream (TCP, TLS, WebSocket, in-memory pair). */
export interface ProtocolAdapter {
  /** 'amqp' | 'mqtt' | 'stomp'. */
  readonly name: string;
  /**
   * Largest frame or packet, in bytes, accepted before the client has authenticated (the limit the
   * adapter's decoder applies on TCP). Transports that buffer messages apply it too.
   */
  readonly preAuthLimit: number;
  /**
   * Serves one connection. Transports call it only through `serveStream` (src/transport/serve.ts),
   * which guarantees an 'error' listener on the stream and contains a throw.
   */
  handle(stream: Duplex, peer: Peer, transport?: string, control?: TransportControl): void;
  /** Closes every connection with the protocol's shutdown message; resolves when all are gone. */
  shutdown(reason: string): Promise<void>;
  /** Open connections. */
  readonly connectionCount: number;
}
