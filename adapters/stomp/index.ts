import type { Duplex } from 'node:stream';
import { ReplyCode } from '../../src/core/index.js';
import type { AdapterContext, Peer, ProtocolAdapter, TransportControl } from '../../src/transport/adapter.js';
import { PRE_CONNECT_LIMITS } from './codec/constants.js';
import { StompConnection } from './connection.js';

/**
 * The STOMP 1.0/1.1/1.2 server, over TCP (`stompPort`) and WebSocket (`/ws` with a `v1x.stomp`
 * subprotocol, and `/stomp`): one StompConnection per stream.
 */
export class StompAdapter implements ProtocolAdapter {
  readonly name = 'stomp';
  readonly preAuthLimit = PRE_CONNECT_LIMITS.maxFrame;
  private readonly connections = new Set<StompConnection>();

  constructor(private readonly ctx: AdapterContext) {}

  get connectionCount(): number {
    return this.connections.size;
  }

  handle(stream: Duplex, peer: Peer, transport = 'tcp', control?: TransportControl): void {
    const c = new StompConnection(this.ctx, stream, peer, transport, (gone) => this.connections.delete(gone), control);
    this.connections.add(c);
  }

  async shutdown(reason: string): Promise<void> {
    const all = [...this.connections];
    for (const c of all) c.forceClose(ReplyCode.CONNECTION_FORCED, `broker forced connection closure with reason '${reason}'`);
    await Promise.all(all.map((c) => c.closed));
  }
}
