import { CoreChannel } from './channel.js';
import type { Core } from './core.js';
import { ConnectionTraffic } from './stats.js';
import type { ConnectionInfo } from './types.js';
import type { VHost } from './vhost.js';

/** Something the broker can ask to close (shutdown, management "close connection", takeover). */
export interface Closable {
  /** Close with the protocol's own shutdown message; `code` is an AMQP reply code. */
  forceClose(code: number, reason: string): void;
  /**
   * The access token the client logged in with has expired: close with the protocol's message for
   * it. Without this, `forceClose(320, 'credential expired')` (RabbitMQ's connection_forced).
   */
  credentialExpired?(): void;
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
  private expiry: NodeJS.Timeout | undefined;

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
  /**
   * The connection ends when its access token does (epoch ms); a later call (a renewed token)
   * moves the end, undefined removes it.
   */
  expireAt(at: number | undefined): void {
    if (this.expiry !== undefined) clearTimeout(this.expiry);
    this.expiry = undefined;
    if (at === undefined || this.closed) return;
    // setTimeout's limit is about 24.8 days; a longer token is checked again then.
    const delay = Math.min(Math.max(0, at - Date.now()), 0x7fffffff);
    this.expiry = setTimeout(() => {
      if (Date.now() < at) return this.expireAt(at);
      this.expiry = undefined;
      if (this.handle.credentialExpired) this.handle.credentialExpired();
      else this.handle.forceClose(320, 'credential expired');
    }, delay);
    this.expiry.unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.expiry !== undefined) clearTimeout(this.expiry);
    for (const ch of [...this.channels]) ch.close();
    this.vhost.dropExclusive(this.id);
    this.core.connectionClosed(this);
  }
}
