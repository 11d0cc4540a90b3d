import type { Duplex } from 'node:stream';
import { ReplyCode } from '../../src/core/index.js';
import type { AdapterContext, Peer, ProtocolAdapter, TransportControl } from '../../src/transport/adapter.js';
import { FRAME_MIN_SIZE } from './codec/constants.js';
import { AmqpConnection } from './connection.js';

/** The AMQP 0-9-1 server: one AmqpConnection per stream. */
export class AmqpAdapter implements ProtocolAdapter {
  readonly name = 'amqp';
  /** Until tune-ok, frames are limited to the spec minimum. */
  readonly preAuthLimit = FRAME_MIN_SIZE;
  private readonly connections = new Set<AmqpConnection>();

  constructor(private readonly ctx: AdapterContext) {}

  get connectionCount(): number {
    return this.connections.size;
  }

  handle(stream: Duplex, peer: Peer, transport = 'tcp', control?: TransportControl): void {
    const c = new AmqpConnection(this.ctx, stream, peer, transport, (gone) => this.connections.delete(gone), control);
    this.connections.add(c);
  }

  async shutdown(reason: string): Promise<void> {
    const all = [...this.connections];
    for (const c of all) c.forceClose(ReplyCode.CONNECTION_FORCED, `broker forced connection closure with reason '${reason}'`);
    await Promise.all(all.map((c) => c.closed));
  }
}
