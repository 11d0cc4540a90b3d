import { CoreChannel } from './channel.js';
import type { Core } from './core.js';
import { ConnectionTraffic } from './stats.js';
import type { ConnectionInfo } from './types.js';
import type { VHost } from './vhost.js';

/** Something the broker can ask to close (shutdown, management "close connection", takeover). */
export interface Closable {
  /** Close with the protocol's own shutdown message; `code` is an AMQP reply code. */
  forceClose(code: number, reason: string): void;
}

const NO_CHANNELS: ReadonlySet<CoreChannel> = new Set();

/**
 * One client connection on the core, whatever its protocol. Owns its channels and the exclusive
 * queues it declared. Kept small: an idle MQTT connection is one of these and little else.
 */
export class CoreConnection {
  /** Open channels; made with the first one (an idle MQTT or STOMP connection has none). */
  private open: Set<CoreChannel> | undefined;
  readonly connectedAt = Date.now();
  /** Bytes in/out, maintained by the adapter for management and metrics. */
  readonly traffic = new ConnectionTraffic();
  private closed = false;

  constructor(
    readonly core: Core,
    readonly id: number,
    readonly info: ConnectionInfo,
    readonly vhost: VHost,
    readonly handle: Closable,
  ) {}

  get user(): string {
    return this.info.user;
  }

  get channels(): ReadonlySet<CoreChannel> {
    return this.open ?? NO_CHANNELS;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  openChannel(number = 1): CoreChannel {
    const ch = new CoreChannel(this, number);
    (this.open ??= new Set()).add(ch);
    return ch;
  }

  /** @internal called by CoreChannel.close */
  channelClosed(ch: CoreChannel): void {
    this.open?.delete(ch);
  }

  /** Closes every channel (requeueing unacked messages) and deletes this connection's exclusive queues. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const ch of [...this.channels]) ch.close();
    this.vhost.dropExclusive(this.id);
    this.core.connectionClosed(this);
  }
}
