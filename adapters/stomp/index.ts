import type { Duplex } from 'node:stream';
import type { AdapterContext } from '../../src/broker.js';
import type { Peer, ProtocolAdapter } from '../../src/transport/adapter.js';

/** Placeholder until the STOMP adapter lands: refuses every connection. */
export class StompAdapter implements ProtocolAdapter {
  readonly name = 'stomp';
  constructor(private readonly ctx: AdapterContext) {}
  get connectionCount(): number {
    return 0;
  }
  handle(stream: Duplex, peer: Peer): void {
    this.ctx.log.warn({ peer }, 'stomp is not implemented yet');
    stream.destroy();
  }
  async shutdown(): Promise<void> {}
}
