import { Alarms } from './alarms.js';
import { Auth, type User } from './auth.js';
import { CoreConnection, type Closable } from './connection.js';
import { propertiesLimit } from './message-check.js';
import { ConsumerTimeouts } from './consumer-timeout.js';
import { BrokerError } from './errors.js';
import { NO_PERSISTENCE, type Persistence } from './persistence.js';
import type { DelayedStore } from './exchanges/delayed.js';
import type { HeldCodec } from './exchanges/held.js';
import { Policies } from './policies.js';
import { SystemSession } from './session.js';
import { CoreTotals } from './stats.js';
import { Teardown, TEARDOWN_BUDGET_ITEMS, TEARDOWN_BUDGET_MS } from './teardown.js';
import { TokenVerifier } from './token-auth.js';
import type { ConnectionInfo } from './types.js';
import { VHost, type ReplyRelay, type RoutingRelay, type VHostContext } from './vhost.js';

export interface CoreOptions {
  persistence?: Persistence;
  /** Fraction (<= 1) of RAM or of the cgroup memory limit, or bytes; default 0.4. */
  memoryHighWatermark?: number;
  defaultVhost?: string;
  /** Let guest connect from non-loopback addresses. */
  guestRemote?: boolean;
  /** Where the core reports what it handles on its own (e.g. a message no consumer can receive). */
  log?: CoreLog;
  /** The AMQP frame_max the broker offers (default 131072): stored messages' properties must fit one frame of it. */
  frameMax?: number;
  /** Default consumer timeout in ms (0 = none); queues override with x-consumer-timeout. */
  consumerTimeout?: number;
  /** How often the consumer timeout sweep runs, in ms. */
  consumerTimeoutSweepMs?: number;
}

/** The part of a logger the core uses. */
export interface CoreLog {
  warn(fields: Record<string, unknown>, message: string): void;
  info?(fields: Record<string, unknown>, message: string): void;
}

const NO_LOG: CoreLog = { warn: () => undefined };

/**
 * The broker's protocol-neutral model: vhosts, users, connections, alarms. Adapters talk to it
 * through `authenticate`, `connect` and the CoreChannel of each session, and through a
 * SystemSession (`openSession`) for work no client connection does.
 */
export class Core implements VHostContext {
  readonly vhosts = new Map<string, VHost>();
  readonly auth = new Auth();
  readonly connections = new Set<CoreConnection>();
  readonly alarms: Alarms;
  readonly counters = { published: 0, unroutable: 0, deadLettered: 0 };
  /** Counters of closed connections and channels, per protocol (management and metrics). */
  readonly totals = new CoreTotals();
  /** Policies per vhost (management API, definitions). */
  readonly policies = new Policies();
  readonly defaultVhost: string;
  /** Cancels consumers that hold deliveries past their timeout (one periodic sweep). */
  readonly consumerTimeouts: ConsumerTimeouts;
  /** Connection closes, finished in slices when many come at once. */
  readonly teardown: Teardown;
  persistence: Persistence;
  readonly log: CoreLog;
  readonly maxPropertiesBytes: number;
  /** Durable storage for held (delayed) messages; set by the store before recovery. */
  delayedStore: DelayedStore | undefined;
  /** Packs held (delayed) messages into bytes; set by the store. */
  heldCodec: HeldCodec | undefined;
  /** Relays routing to the other nodes of a cluster; set when the node joins one. */
  relay: RoutingRelay | undefined;
  /** Sends direct replies to requesters on the other nodes of a cluster; set when the node joins one. */
  replies: ReplyRelay | undefined;
  private messageId = 0;
  private connectionId = 0;

  constructor(opts: CoreOptions = {}) {
    this.persistence = opts.persistence ?? NO_PERSISTENCE;
    this.log = opts.log ?? NO_LOG;
    const log = this.log;
    this.teardown = new Teardown(
      (err) => log.warn({ err: err instanceof Error ? (err.stack ?? err.message) : String(err) }, 'connection teardown failed'),
      TEARDOWN_BUDGET_MS,
      TEARDOWN_BUDGET_ITEMS,
      (closed, ms) => log.info?.({ closed, ms: Math.round(ms) }, 'connections closed in a storm of closes (one line for all of them)'),
    );
    this.maxPropertiesBytes = propertiesLimit(opts.frameMax ?? 131072);
    this.alarms = new Alarms(opts.memoryHighWatermark ?? 0.4);
    this.defaultVhost = opts.defaultVhost ?? '/';
    this.consumerTimeouts = new ConsumerTimeouts(this, opts.consumerTimeout ?? 0, opts.consumerTimeoutSweepMs);
    this.auth.guestLoopbackOnly = !(opts.guestRemote ?? false);
    this.policies.onChange = () => {
      for (const v of this.vhosts.values()) v.applyPolicies();
      void this.persistence.definitionsChanged();
    };
    this.addVhost(this.defaultVhost);
    this.auth.addUser('guest', 'guest', ['administrator']);
    this.auth.setPermission(this.defaultVhost, 'guest', { configure: '.*', write: '.*', read: '.*' });
    // Users, permissions and vhosts are written by the store with the next batch.
    this.auth.onChange = () => void this.persistence.definitionsChanged();
  }

  nextMessageId(): number {
    return ++this.messageId;
  }

  addVhost(name: string): VHost {
    let v = this.vhosts.get(name);
    if (!v) {
      v = new VHost(name, this);
      this.vhosts.set(name, v);
      void this.persistence.definitionsChanged();
    }
    return v;
  }

  authenticate(username: string, password: string, address: string): User {
    return this.auth.authenticate(username, password, address);
  }

  /** Verifies JWT access tokens; undefined when no key or JWKS is configured. */
  tokens: TokenVerifier | undefined;

  /**
   * Password or token login. A secret shaped like a JWT, with token verification configured, is
   * verified as an access token (its user and permissions come from the token; the user name the
   * client sent is ignored, as RabbitMQ's oauth2 backend does): the answer is then a promise.
   * Anything else is a password, checked at once.
   */
  login(username: string, secret: string, address: string): User | Promise<User> {
    if (this.tokens !== undefined && TokenVerifier.looksLikeToken(secret)) {
      return this.tokens.verify(secret).then((grant) => this.auth.grantToken(grant));
    }
    return this.auth.authenticate(username, secret, address);
  }

  /**
   * A new token for a connection's user (AMQP connection.update-secret): it must name the same
   * user; its scopes replace the old ones and the connection now ends when it does.
   */
  async renewToken(conn: CoreConnection, token: string): Promise<void> {
    if (this.tokens === undefined) throw BrokerError.notAllowed('no access token verification configured');
    const grant = await this.tokens.verify(token);
    if (grant.user !== conn.user) throw BrokerError.notAllowed(`new token is for user '${grant.user}', not '${conn.user}'`);
    this.auth.grantToken(grant);
    conn.expireAt(grant.expiresAt);
  }

  /**
   * Opens a connection to a vhost for an authenticated user. NOT_ALLOWED (530) when the vhost does
   * not exist or the user has no permissions there, as RabbitMQ answers connection.open.
   */
  connect(info: ConnectionInfo, handle: Closable): CoreConnection {
    const vhost = this.vhosts.get(info.vhost);
    if (!vhost) throw BrokerError.notAllowed(`vhost '${info.vhost}' not found`);
    if (!this.auth.canAccessVhost(info.user, info.vhost)) {
      throw BrokerError.notAllowed(`access to vhost '${info.vhost}' refused for user '${info.user}'`);
    }
    const conn = new CoreConnection(this, ++this.connectionId, info, vhost, handle);
    this.connections.add(conn);
    this.totals.of(info.protocol).connectionsOpened++;
    return conn;
  }

  /**
   * A session on `vhost` that no client connection holds, for what an adapter does on its own
   * (wills, offline session expiry, startup recovery); undefined when the vhost does not exist.
   */
  openSession(vhost: string): SystemSession | undefined {
    return this.vhosts.has(vhost) ? new SystemSession(this, vhost) : undefined;
  }

  /** @internal */
  connectionClosed(conn: CoreConnection): void {
    if (this.connections.delete(conn)) this.totals.retireConnection(conn.info.protocol, conn.traffic);
  }
}
