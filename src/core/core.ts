import { Alarms } from './alarms.js';
import { Auth, type User } from './auth.js';
import { CoreConnection, type Closable } from './connection.js';
import { BrokerError } from './errors.js';
import { NO_PERSISTENCE, type Persistence } from './persistence.js';
import { Policies } from './policies.js';
import { CoreTotals } from './stats.js';
import type { ConnectionInfo } from './types.js';
import { VHost, type VHostContext } from './vhost.js';

export interface CoreOptions {
  persistence?: Persistence;
  /** Fraction (<= 1) of RAM or of the cgroup memory limit, or bytes; default 0.4. */
  memoryHighWatermark?: number;
  defaultVhost?: string;
  /** Let guest connect from non-loopback addresses. */
  guestRemote?: boolean;
  /** Where the core reports what it handles on its own (e.g. a message no consumer can receive). */
  log?: CoreLog;
}

/** The part of a logger the core uses. */
export interface CoreLog {
  warn(fields: Record<string, unknown>, message: string): void;
}

const NO_LOG: CoreLog = { warn: () => undefined };

/**
 * The broker's protocol-neutral model: vhosts, users, connections, alarms. Adapters talk to it
 * through `authenticate`, `connect` and the CoreChannel of each session.
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
  persistence: Persistence;
  readonly log: CoreLog;
  private messageId = 0;
  private connectionId = 0;

  constructor(opts: CoreOptions = {}) {
    this.persistence = opts.persistence ?? NO_PERSISTENCE;
    this.log = opts.log ?? NO_LOG;
    this.alarms = new Alarms(opts.memoryHighWatermark ?? 0.4);
    this.defaultVhost = opts.defaultVhost ?? '/';
    this.auth.guestLoopbackOnly = !(opts.guestRemote ?? false);
    this.policies.onChange = () => {
      for (const v of this.vhosts.values()) v.applyPolicies();
    };
    this.addVhost(this.defaultVhost);
    this.auth.addUser('guest', 'guest', ['administrator']);
    this.auth.setPermission(this.defaultVhost, 'guest', { configure: '.*', write: '.*', read: '.*' });
  }

  nextMessageId(): number {
    return ++this.messageId;
  }

  addVhost(name: string): VHost {
    let v = this.vhosts.get(name);
    if (!v) {
      v = new VHost(name, this);
      this.vhosts.set(name, v);
    }
    return v;
  }

  authenticate(username: string, password: string, address: string): User {
    return this.auth.authenticate(username, password, address);
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

  /** @internal */
  connectionClosed(conn: CoreConnection): void {
    if (this.connections.delete(conn)) this.totals.retireConnection(conn.info.protocol, conn.traffic);
  }
}
