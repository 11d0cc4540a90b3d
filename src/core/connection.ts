import { CoreChannel } from './channel.js';
import type { Core } from './core.js';
import { ConnectionTraffic, epochMs, msSinceStart } from './stats.js';
import type { Queue } from './queues/queue.js';
import type { TeardownWork } from './teardown.js';
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

const NO_CHANNELS: readonly CoreChannel[] = Object.freeze([]);

/**
 * One client connection on the core, whatever its protocol. Owns its channels and the exclusive
 * queues it declared. Kept small: an idle MQTT connection is one of these and little else.
 */
export class CoreConnection implements TeardownWork {
  /**
   * Open channels, in the order they were opened; made with the first one (an idle MQTT or STOMP
   * connection has none). An array: a session's one channel costs a slot, not a hash table.
   */
  private open: CoreChannel[] | undefined;
  /** When it connected, as ms since the process started (see connectedAt). */
  private readonly connectedSince = msSinceStart();
  /** Bytes in/out, maintained by the adapter for management and metrics. */
  readonly traffic = new ConnectionTraffic();
  private closed = false;
  private tornDown = false;
  /** Exclusive queues unlinked by `close`, dropped by the teardown. */
  private unlinked: readonly Queue[] | undefined;
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

  /** When it connected (ms since the epoch). */
  get connectedAt(): number {
    return epochMs(this.connectedSince);
  }

  get channels(): readonly CoreChannel[] {
    return this.open ?? NO_CHANNELS;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  openChannel(number = 1): CoreChannel {
    const ch = new CoreChannel(this, number);
    if (this.open === undefined) this.open = [ch];
    else this.open.push(ch);
    return ch;
  }

  /** @internal called by CoreChannel.close */
  channelClosed(ch: CoreChannel): void {
    const open = this.open;
    if (open === undefined) return;
    const i = open.indexOf(ch);
    if (i < 0) return;
    if (open.length === 1) this.open = undefined;
    else open.splice(i, 1);
  }

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

  /**
   * Closes every channel (requeueing unacked messages) and deletes this connection's exclusive
   * queues. What a new client could run into goes at once: the exclusive queues' names are free
   * and nothing is delivered to this connection any more. The rest is the core's teardown (see
   * Teardown): done before this returns unless a storm of closes has used up this turn's budget.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.expiry !== undefined) clearTimeout(this.expiry);
    const own = this.vhost.unlinkExclusive(this.id);
    if (own.length > 0) this.unlinked = own;
    this.core.teardown.add(this);
  }

  /** The rest of `close`: channels closed, exclusive queues dropped (only this connection's). */
  finishTeardown(): void {
    if (this.tornDown || !this.closed) return;
    this.tornDown = true;
    for (const ch of [...this.channels]) ch.close();
    const own = this.unlinked;
    this.unlinked = undefined;
    if (own !== undefined) for (const q of own) this.vhost.dropUnlinkedQueue(q);
    this.core.connectionClosed(this);
  }
}
