import { BrokerError } from './errors.js';
import type { Core } from './core.js';
import type { FieldTable, Message, PublishResult } from './types.js';
import type { VHost } from './vhost.js';

/** A binding as a system session reports it: from which exchange, with which key and arguments. */
export interface BindingInfo {
  readonly exchange: string;
  readonly routingKey: string;
  readonly args: FieldTable;
}

/** What a system session can tell about a queue. */
export interface QueueInfo {
  readonly durable: boolean;
  readonly exclusive: boolean;
  /** Bindings to the queue, excluding the default exchange's implicit one. */
  readonly bindings: readonly BindingInfo[];
  /** Consumers attached here (on a queue's home node, consumers on other nodes too). */
  readonly consumers: number;
}

/** On whose behalf a system publish is made: its permissions apply, and its no-local identity. */
export interface PublishAs {
  readonly user: string;
  /** `{client_id}` in topic permission patterns. */
  readonly clientId: string;
  /** The connection id subscribers with no-local compare against; 0 = none. */
  readonly publisherId: number;
}

/**
 * A session on the core that no client connection holds: the work an adapter does on its own
 * when no client is there to do it (an MQTT will after its connection is gone, a session that
 * expires offline, sessions restored at startup). Queue operations act as the broker and skip
 * permission checks; publishes act for a named user and check that user's permissions.
 *
 * A session names its vhost; once the vhost is deleted it sees no queues and refuses publishes.
 */
export class SystemSession {
  constructor(
    private readonly core: Core,
    readonly vhost: string,
  ) {}

  /** The vhost while it exists (a deleted and re-created vhost is the new one). */
  private live(): VHost | undefined {
    return this.core.vhosts.get(this.vhost);
  }

  /** False once the vhost is gone. */
  get isOpen(): boolean {
    return this.live() !== undefined;
  }

  queueExists(name: string): boolean {
    return this.live()?.queues.has(name) ?? false;
  }

  /** The queue's flags and bindings; undefined when there is no such queue. */
  queueInfo(name: string): QueueInfo | undefined {
    const vh = this.live();
    const q = vh?.queues.get(name);
    if (vh === undefined || q === undefined) return undefined;
    const bindings = vh.bindingsTo(q).map((b) => ({ exchange: b.source.name, routingKey: b.routingKey, args: b.args }));
    return { durable: q.durable, exclusive: q.exclusive, bindings, consumers: q.consumers.length };
  }

  /** Deletes a queue whoever owns it (bindings go, consumers are cancelled); returns the messages dropped. */
  deleteQueue(name: string): number {
    const vh = this.live();
    const q = vh?.queues.get(name);
    return q === undefined ? 0 : vh!.removeQueue(q);
  }

  /**
   * Routes `msg` for `as.user`: write permission on the exchange and, on a topic exchange, the
   * user's topic write permission on the routing key are checked first (ACCESS_REFUSED), and the
   * message check of every publish applies. NOT_FOUND once the vhost is gone.
   */
  publish(msg: Message, as: PublishAs): PublishResult {
    const vh = this.live();
    if (vh === undefined) throw BrokerError.notFound(`no vhost '${this.vhost}'`);
    const auth = this.core.auth;
    const ex = vh.getExchange(msg.exchange);
    const name = ex.name === '' ? 'amq.default' : ex.name;
    if (!auth.permitted(as.user, this.vhost, 'write', ex.name)) {
      throw BrokerError.accessRefused(`access to exchange '${name}' in vhost '${this.vhost}' refused for user '${as.user}'`);
    }
    if (ex.internal) throw BrokerError.accessRefused(`cannot publish to internal exchange '${name}' in vhost '${this.vhost}'`);
    if (ex.type === 'topic') {
      const vars = { username: as.user, vhost: this.vhost, client_id: as.clientId };
      if (!auth.topicPermitted(as.user, this.vhost, ex.name, 'write', msg.routingKey, vars)) {
        throw BrokerError.accessRefused(
          `write access to topic '${msg.routingKey}' in exchange '${name}' in vhost '${this.vhost}' refused for user '${as.user}'`,
        );
      }
    }
    return vh.publish(msg, as.publisherId);
  }
}
