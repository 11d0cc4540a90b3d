import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClusterView } from './cluster-view.js';
import type { PeerOp } from './cluster-wide.js';
import { hostname } from 'node:os';
import {
  BrokerError,
  CoreConnection,
  TokenVerifier,
  type CoreChannel,
  type Core,
  type User,
  type VHost,
} from '../core/index.js';
import type { BrokerOptions } from '../config.js';
import type { Logger } from '../logger.js';
import type { FormatContext, VhostMeta } from './format.js';
import { HttpError, basicCredentials, readJson, sendEmpty, sendJson } from './http-util.js';
import { Router, type ApiRequest, type Method } from './router.js';
import type { Sampler } from './sampler.js';

/** The listener ports the broker bound (filled in as listeners start). */
export interface ListenerPorts {
  amqp?: number;
  mqtt?: number;
  stomp?: number;
  http?: number;
  amqps?: number;
  mqtts?: number;
  stomps?: number;
  https?: number;
}

export interface ApiContext {
  readonly core: Core;
  readonly log: Logger;
  readonly options: BrokerOptions;
  readonly ports: ListenerPorts;
  readonly sampler: Sampler;
  readonly startedAt: number;
  readonly reloadTls?: () => { reloaded: string[]; failed: Record<string, string> };
  /** The cluster this node belongs to, if any. */
  readonly cluster?: ClusterView | undefined;
}

const MGMT_TAGS = new Set(['management', 'policymaker', 'monitoring', 'administrator']);

/** The protocol label management uses for its own (in-process) sessions, as RabbitMQ's direct connections. */
export const DIRECT_PROTOCOL = 'Direct 0-9-1';

/**
 * The management HTTP API: authentication (HTTP basic, users with a management tag), RabbitMQ's
 * authorisation by user tags, and the shared helpers route modules use.
 */
export class ManagementApi implements FormatContext {
  readonly router = new Router();
  /** What other cluster nodes may ask this one (cluster-wide listings), by operation. */
  readonly peerOps = new Map<string, PeerOp>();
  /** This node's name: its cluster node name, else `warren@<host>`. */
  readonly node: string;
  readonly core: Core;
  readonly sampler: Sampler;
  private readonly meta = new Map<string, VhostMeta>();

  constructor(readonly ctx: ApiContext) {
    this.core = ctx.core;
    this.sampler = ctx.sampler;
    this.node = ctx.cluster?.nodeName ?? `warren@${hostname()}`;
  }

  // ---- FormatContext --------------------------------------------------------------------------

  queueNode(vhost: string, queue: string): string {
    return this.ctx.cluster?.homeOf(vhost, queue) ?? this.node;
  }

  vhostMeta(name: string): VhostMeta {
    return this.meta.get(name) ?? { description: name === this.core.defaultVhost ? 'Default virtual host' : '', tags: [], defaultQueueType: 'classic' };
  }

  setVhostMeta(name: string, m: VhostMeta): void {
    this.meta.set(name, m);
  }

  forgetVhostMeta(name: string): void {
    this.meta.delete(name);
  }

  connectionName(c: CoreConnection): string {
    return `${c.info.peer.address}:${c.info.peer.port}`;
  }

  // ---- request handling ---------------------------------------------------------------------

  async handle(req: IncomingMessage, res: ServerResponse, path: string, query: URLSearchParams): Promise<void> {
    try {
      const { handler, params } = this.router.match(req.method ?? 'GET', path);
      const user = await this.authenticateRequest(req);
      let bodyP: Promise<Record<string, unknown>> | undefined;
      const r: ApiRequest = {
        method: (req.method ?? 'GET') as Method,
        params,
        query,
        user,
        req,
        body: () => (bodyP ??= readJson(req)),
      };
      const reply = await handler(r);
      if (r.method !== 'GET' && reply.status < 300) {
        // Every change through the API (users, permissions, policies, deletes, ...) is on record.
        this.ctx.log.info({ user: user.name, method: r.method, path, status: reply.status, peer: req.socket.remoteAddress }, 'management change');
      }
      if (reply.body === undefined) sendEmpty(res, reply.status, reply.headers);
      else sendJson(res, reply.status, reply.body, reply.headers);
    } catch (e) {
      this.fail(req, res, e);
    }
  }

  fail(req: IncomingMessage, res: ServerResponse, e: unknown): void {
    let err: HttpError;
    if (e instanceof HttpError) err = e;
    else if (e instanceof BrokerError) err = HttpError.fromBroker(e);
    else {
      this.ctx.log.error({ err: e, method: req.method, url: req.url }, 'management request failed');
      err = new HttpError(500, 'internal_server_error', e instanceof Error ? e.message : String(e));
    }
    if (err.status >= 500) this.ctx.log.warn({ method: req.method, url: req.url, status: err.status }, err.reason);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const headers: Record<string, string> = {};
    // Browsers would pop up their own login dialog on a 401 with a challenge; the UI asks itself.
    if (err.status === 401 && req.headers['x-requested-with'] === undefined) headers['www-authenticate'] = 'Basic realm="Warren Management"';
    sendJson(res, err.status, { error: err.error, reason: err.reason }, headers);
  }

  /**
   * HTTP basic auth against the broker's users, or `Authorization: Bearer <access token>` when
   * token verification is configured (also a token given as a basic-auth password).
   */
  async authenticateRequest(req: IncomingMessage): Promise<User> {
    const header = req.headers.authorization ?? '';
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    const creds = bearer === undefined ? basicCredentials(req) : undefined;
    const secret = bearer ?? creds?.[1];
    if (this.core.tokens === undefined || secret === undefined || !TokenVerifier.looksLikeToken(secret)) return this.authenticate(req);
    let user: User;
    try {
      user = await this.core.login(creds?.[0] ?? '', secret, req.socket.remoteAddress ?? '');
    } catch (e) {
      this.loginFailed(req, creds?.[0] ?? '', e);
      throw HttpError.notAuthorised('Login failed');
    }
    if (!user.tags.some((t) => MGMT_TAGS.has(t))) throw HttpError.notAuthorised('Not management user');
    return user;
  }

  /** HTTP basic auth against the broker's users; only users with a management tag may use the API. */
  authenticate(req: IncomingMessage): User {
    const creds = basicCredentials(req);
    if (!creds) throw HttpError.notAuthorised('Login failed');
    let user: User;
    try {
      user = this.core.auth.authenticate(creds[0], creds[1], req.socket.remoteAddress ?? '');
    } catch (e) {
      this.loginFailed(req, creds[0], e);
      if (e instanceof BrokerError && /localhost/.test(e.text)) throw HttpError.notAuthorised('User can only log in via localhost');
      throw HttpError.notAuthorised('Login failed');
    }
    if (!user.tags.some((t) => MGMT_TAGS.has(t))) {
      this.ctx.log.warn({ user: user.name, method: req.method, url: req.url, peer: req.socket.remoteAddress }, 'HTTP login refused: not a management user');
      throw HttpError.notAuthorised('Not management user');
    }
    return user;
  }

  private loginFailed(req: IncomingMessage, user: string, e: unknown): void {
    this.ctx.log.warn(
      { user, method: req.method, url: req.url, peer: req.socket.remoteAddress, reason: e instanceof BrokerError ? e.text : String(e) },
      'HTTP login failed',
    );
  }

  // ---- authorisation (RabbitMQ's tag semantics) ------------------------------------------------

  isAdmin(u: User): boolean {
    return u.tags.includes('administrator');
  }

  /** monitoring and administrator see every vhost, connection and channel. */
  isMonitor(u: User): boolean {
    return u.tags.includes('monitoring') || this.isAdmin(u);
  }

  isPolicymaker(u: User): boolean {
    return u.tags.includes('policymaker') || this.isAdmin(u);
  }

  requireAdmin(u: User): void {
    if (!this.isAdmin(u)) throw HttpError.notAuthorised('Not administrator user');
  }

  requireMonitor(u: User): void {
    if (!this.isMonitor(u)) throw HttpError.notAuthorised('Not monitor user');
  }

  /** Vhosts the user may see: all for monitoring users, else those where it has permissions. */
  visibleVhosts(u: User): VHost[] {
    const all = [...this.core.vhosts.values()];
    if (this.isMonitor(u)) return all;
    return all.filter((v) => this.core.auth.canAccessVhost(u.name, v.name));
  }

  canSeeVhost(u: User, name: string): boolean {
    return this.isMonitor(u) || this.core.auth.canAccessVhost(u.name, name);
  }

  /** A vhost the user may see: 404 when missing, 401 when not allowed. */
  vhost(u: User, name: string): VHost {
    const v = this.core.vhosts.get(name);
    if (!v) throw HttpError.notFound();
    if (!this.canSeeVhost(u, name)) throw HttpError.notAuthorised('User not authorised to access virtual host');
    return v;
  }

  /** The vhosts of an optional `:vhost` parameter, or all visible ones. */
  vhostsFor(u: User, name: string | undefined): VHost[] {
    return name === undefined ? this.visibleVhosts(u) : [this.vhost(u, name)];
  }

  /** Connections the user may see: its own, or all for monitoring users. */
  visibleConnections(u: User, vhost?: string): CoreConnection[] {
    const out: CoreConnection[] = [];
    const all = this.isMonitor(u);
    for (const c of this.core.connections) {
      if (vhost !== undefined && c.vhost.name !== vhost) continue;
      if (all || c.user === u.name) out.push(c);
    }
    return out;
  }

  findConnection(u: User, name: string): CoreConnection {
    for (const c of this.visibleConnections(u)) if (this.connectionName(c) === name) return c;
    throw HttpError.notFound();
  }

  visibleChannels(u: User, vhost?: string): CoreChannel[] {
    const out: CoreChannel[] = [];
    for (const c of this.visibleConnections(u, vhost)) for (const ch of c.channels) out.push(ch);
    return out;
  }

  /**
   * Runs `fn` on a short-lived core session of the user in the vhost, so every operation gets the
   * same permission checks as a client's (RabbitMQ's management plugin uses a direct connection).
   */
  async withChannel<T>(u: User, vhostName: string, fn: (ch: CoreChannel) => T | Promise<T>): Promise<T> {
    const v = this.core.vhosts.get(vhostName);
    if (!v) throw HttpError.notFound();
    if (!this.core.auth.canAccessVhost(u.name, vhostName)) throw HttpError.notAuthorised('User not authorised to access virtual host');
    const conn = new CoreConnection(
      this.core,
      0,
      { protocol: DIRECT_PROTOCOL, peer: { address: '', port: 0 }, user: u.name, vhost: vhostName },
      v,
      { forceClose: () => undefined },
    );
    const ch = conn.openChannel(1);
    try {
      const out = await fn(ch);
      // A declare, delete, bind or unbind is answered once it is on disk.
      await this.durable(ch.definitionsSettled());
      return out;
    } finally {
      conn.close();
    }
  }

  /**
   * Waits for a definition change to be on disk before the response confirms it; a failed write
   * is a 500 (the change is kept in memory and written again with the next batch).
   */
  async durable(settled: Promise<void>): Promise<void> {
    try {
      await settled;
    } catch (e) {
      this.ctx.log.error({ err: e }, 'definitions could not be written');
      throw new HttpError(500, 'internal_server_error', 'the change could not be written to disk');
    }
  }
}

/** The exchange named in a URL: RabbitMQ writes the default exchange as `amq.default`. */
export function exchangeParam(name: string): string {
  return name === 'amq.default' ? '' : name;
}
