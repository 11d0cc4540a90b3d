import type { Duplex } from 'node:stream';
import type { AdapterContext } from '../../src/broker.js';
import type { Peer, ProtocolAdapter } from '../../src/transport/adapter.js';

/** Placeholder until the MQTT adapter lands: refuses every connection. */
export class MqttAdapter implements ProtocolAdapter {
  readonly name = 'mqtt';
  constructor(private readonly ctx: AdapterContext) {}
  get connectionCount(): number {
    return 0;
  }
  handle(stream: Duplex, peer: Peer): void {
    this.ctx.log.warn({ peer }, 'mqtt is not implemented yet');
    stream.destroy();
  }
  async shutdown(): Promise<void> {}
}
