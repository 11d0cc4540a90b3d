import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';
import { BrokerError } from './errors.js';
import { escapePattern, PatternCache, PatternError, patternProblem, type Pattern } from './pattern.js';
import { grantCoversVhost, grantPermits, type TokenGrant } from './token-auth.js';

export interface Permission {
  configure: string;
  write: string;
  read: string;
}

/** Topic permissions of a user on one topic exchange of a vhost: regexes over routing keys. */
export interface TopicPermission {
  exchange: string;
  write: string;
  read: string;
}

/** RabbitMQ's password hashing modules; definitions name them in `hashing_algorithm`. */
export type HashingAlgorithm =
  | 'rabbit_password_hashing_sha256'
  | 'rabbit_password_hashing_sha512'
  | 'rabbit_password_hashing_md5';

export const HASHING_ALGORITHMS: readonly HashingAlgorithm[] = [
  'rabbit_password_hashing_sha256',
  'rabbit_password_hashing_sha512',
  'rabbit_password_hashing_md5',
];

/** The user tags RabbitMQ's management plugin knows (others are kept but grant nothing). */
export const USER_TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'] as const;

export interface User {
  name: string;
  /** base64(salt(4) + hash(salt + password)); '' = no password (cannot log in with one). */
  passwordHash: string;
  hashingAlgorithm: HashingAlgorithm;
  tags: string[];
  /** May connect only from loopback addresses; guest is, unless configured otherwise. */
  loopbackOnly: boolean;
  /** A user logged in by access token: when the token ends (epoch ms; undefined = never). */
  tokenExpiresAt?: number | undefined;
}

export type Access = 'configure' | 'write' | 'read';

/**
 * Longest user name accepted, in UTF-8 bytes: a user name must fit the AMQP `user_id` property
 * (a shortstr). Longer names are refused at login before any lookup, and when users are created.
 */
export const MAX_USER_NAME_BYTES = 255;

/**
 * Values substituted for `{username}`, `{vhost}` and `{client_id}` in topic permission regexes.
 * They are substituted as literal text (regex-escaped), unlike RabbitMQ, which inserts them as
 * they are: a client id `a|.*` must not widen a permission to every routing key.
 */
export interface TopicVariables {
  username: string;
  vhost: string;
  client_id?: string;
}

const DIGESTS: Record<HashingAlgorithm, string> = {
  rabbit_password_hashing_sha256: 'sha256',
  rabbit_password_hashing_sha512: 'sha512',
  rabbit_password_hashing_md5: 'md5',
};

/** Hashes a password the way RabbitMQ does (salted SHA-256 by default), so definitions move both ways. */
export function hashPassword(
  password: string,
  salt: Buffer = randomBytes(4),
  algorithm: HashingAlgorithm = 'rabbit_password_hashing_sha256',
): string {
  const digest = createHash(DIGESTS[algorithm]).update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

export function checkPassword(
  password: string,
  hash: string,
  algorithm: HashingAlgorithm = 'rabbit_password_hashing_sha256',
): boolean {
  if (hash === '') return false;
  const raw = Buffer.from(hash, 'base64');
  const expectLen = 4 + createHash(DIGESTS[algorithm]).digest().length;
  if (raw.length !== expectLen) return false;
  const expect = Buffer.from(hashPassword(password, raw.subarray(0, 4), algorithm), 'base64');
  return timingSafeEqual(raw, expect);
}

export function isHashingAlgorithm(s: string): s is HashingAlgorithm {
  return (HASHING_ALGORITHMS as readonly string[]).includes(s);
}

/**
 * Whether a peer address is a loopback address: 127.0.0.0/8, ::1, or 127.x mapped into IPv6.
 * Anything else, an unknown address ('', as a socket reports once its peer is gone) or a name
 * included, is not: a loopback-only user is never let in on an address nobody checked.
 */
export function isLoopback(address: string): boolean {
  if (address === '::1' || address === '0:0:0:0:0:0:0:1') return true;
  const v4 = address.startsWith('::ffff:') ? address.slice(7) : address;
  return isIPv4(v4) && v4.startsWith('127.');
}

/**
 * Throws PRECONDITION_FAILED unless `source` compiles with the engine that evaluates permissions
 * (RE2 syntax: no lookarounds or backreferences, bounded repetition).
 */
export function validateRegex(source: string, what: string): void {
  const problem = patternProblem(source);
  if (problem !== undefined) throw BrokerError.precondition(`invalid regular expression for ${what} '${source}': ${problem}`);
}

/** Substitutes the variables of a topic permission, each escaped so that it matches only itself. */
export function substituteTopicVariables(source: string, vars: TopicVariables): string {
  if (!source.includes('{')) return source;
  let out = source.replaceAll('{username}', escapePattern(vars.username)).replaceAll('{vhost}', escapePattern(vars.vhost));
  if (vars.client_id !== undefined) out = out.replaceAll('{client_id}', escapePattern(vars.client_id));
  return out;
}

/** A substituted topic pattern that no longer compiles refuses everything. */
const REFUSE_ALL: Pattern = { source: '', test: () => false };

/**
 * Users, their per-vhost permissions (configure / write / read regular expressions) and topic
 * permissions (write / read regular expressions over routing keys of topic exchanges).
 */
export class Auth {
  readonly users = new Map<string, User>();
  /** vhost -> user -> permission */
  readonly permissions = new Map<string, Map<string, Permission>>();
  /** vhost -> user -> exchange -> topic permission */
  readonly topicPermissions = new Map<string, Map<string, Map<string, TopicPermission>>>();
  /** Bumped on every change to users or permissions: channels drop their cached checks. */
  generation = 0;
  /**
   * Compiled permission patterns and substituted topic patterns (one per client id with
   * `{client_id}`). Channels keep the one they use, so eviction only costs a recompile.
   */
  private readonly patterns = new PatternCache(1024);
  /** Set to let guest connect from anywhere (RabbitMQ's `loopback_users = none`). */
  guestLoopbackOnly = true;
  /**
   * Users logged in by access token -> what their latest token allows. Their permissions come
   * from the token's scopes, not from the permission table.
   */
  readonly tokenGrants = new Map<string, TokenGrant>();

  /** Called after every change to users or permissions (the core makes it durable). */
  onChange: (() => void) | undefined;

  private changed(): void {
    this.generation++;
    this.onChange?.();
  }

  addUser(name: string, password: string, tags: string[] = []): User {
    return this.putUser(name, { passwordHash: hashPassword(password), tags });
  }

  /**
   * Creates or replaces a user from an existing hash (definitions import, management API). The
   * algorithm defaults to RabbitMQ's default, salted SHA-256.
   */
  putUser(
    name: string,
    opts: { passwordHash: string; hashingAlgorithm?: HashingAlgorithm; tags?: string[]; loopbackOnly?: boolean },
  ): User {
    if (name === '') throw BrokerError.precondition('user name must not be empty');
    if (Buffer.byteLength(name) > MAX_USER_NAME_BYTES) {
      throw BrokerError.precondition(`user name longer than ${MAX_USER_NAME_BYTES} bytes`);
    }
    const prev = this.users.get(name);
    const user: User = {
      name,
      passwordHash: opts.passwordHash,
      hashingAlgorithm: opts.hashingAlgorithm ?? 'rabbit_password_hashing_sha256',
      tags: opts.tags ?? prev?.tags ?? [],
      loopbackOnly: opts.loopbackOnly ?? prev?.loopbackOnly ?? false,
    };
    this.users.set(name, user);
    this.changed();
    return user;
  }

  changePassword(name: string, password: string): void {
    const u = this.users.get(name);
    if (!u) throw BrokerError.notFound(`no user '${name}'`);
    u.passwordHash = password === '' ? '' : hashPassword(password, undefined, u.hashingAlgorithm);
    this.changed();
  }

  setTags(name: string, tags: string[]): void {
    const u = this.users.get(name);
    if (!u) throw BrokerError.notFound(`no user '${name}'`);
    u.tags = tags;
    this.changed();
  }

  /** Deletes a user with all its permissions; false when there was none. */
  deleteUser(name: string): boolean {
    if (!this.users.delete(name)) return false;
    for (const m of this.permissions.values()) m.delete(name);
    for (const m of this.topicPermissions.values()) m.delete(name);
    this.changed();
    return true;
  }

  /** Forgets every permission granted in a deleted vhost. */
  deleteVhost(vhost: string): void {
    this.permissions.delete(vhost);
    this.topicPermissions.delete(vhost);
    this.changed();
  }

  setPermission(vhost: string, user: string, p: Permission): void {
    validateRegex(p.configure, 'configure');
    validateRegex(p.write, 'write');
    validateRegex(p.read, 'read');
    let m = this.permissions.get(vhost);
    if (!m) this.permissions.set(vhost, (m = new Map()));
    m.set(user, { configure: p.configure, write: p.write, read: p.read });
    this.changed();
  }

  getPermission(vhost: string, user: string): Permission | undefined {
    return this.permissions.get(vhost)?.get(user);
  }

  clearPermission(vhost: string, user: string): boolean {
    const m = this.permissions.get(vhost);
    const had = m?.delete(user) ?? false;
    if (m && m.size === 0) this.permissions.delete(vhost);
    this.changed();
    return had;
  }

  setTopicPermission(vhost: string, user: string, p: TopicPermission): void {
    validateRegex(p.write, 'write');
    validateRegex(p.read, 'read');
    let byUser = this.topicPermissions.get(vhost);
    if (!byUser) this.topicPermissions.set(vhost, (byUser = new Map()));
    let byExchange = byUser.get(user);
    if (!byExchange) byUser.set(user, (byExchange = new Map()));
    byExchange.set(p.exchange, { exchange: p.exchange, write: p.write, read: p.read });
    this.changed();
  }

  /** Clears one exchange's topic permission, or all of the user's in the vhost when `exchange` is undefined. */
  clearTopicPermission(vhost: string, user: string, exchange?: string): boolean {
    const byUser = this.topicPermissions.get(vhost);
    const byExchange = byUser?.get(user);
    if (!byUser || !byExchange) return false;
    const had = exchange === undefined ? byExchange.size > 0 : byExchange.delete(exchange);
    if (exchange === undefined || byExchange.size === 0) byUser.delete(user);
    if (byUser.size === 0) this.topicPermissions.delete(vhost);
    this.changed();
    return had;
  }

  topicPermissionsOf(vhost: string, user: string): TopicPermission[] {
    return [...(this.topicPermissions.get(vhost)?.get(user)?.values() ?? [])];
  }

  /** Checks credentials and the loopback rule; ACCESS_REFUSED (403) on failure. */
  authenticate(username: string, password: string, address: string, mechanism = 'PLAIN'): User {
    // cheap test first (UTF-8 is at most 3 bytes per UTF-16 unit), exact one only when needed
    if (username.length * 3 > MAX_USER_NAME_BYTES && Buffer.byteLength(username) > MAX_USER_NAME_BYTES) {
      throw BrokerError.accessRefused(`Login was refused using authentication mechanism ${mechanism}: user name longer than ${MAX_USER_NAME_BYTES} bytes.`);
    }
    const user = this.users.get(username);
    if (!user || !checkPassword(password, user.passwordHash, user.hashingAlgorithm)) {
      throw BrokerError.accessRefused(`Login was refused using authentication mechanism ${mechanism}. For details see the broker logfile.`);
    }
    const loopbackOnly = user.loopbackOnly || (username === 'guest' && this.guestLoopbackOnly);
    if (loopbackOnly && !isLoopback(address)) {
      throw BrokerError.accessRefused(`user '${username}' can only connect via localhost`);
    }
    return user;
  }

  /**
   * Login with a verified client certificate (AMQP EXTERNAL, MQTT/STOMP certificate login): the
   * user must exist, its password is not checked; the loopback rule still applies.
   */
  authenticateCertificate(username: string, address: string): User {
    const user = this.users.get(username);
    if (!user) throw BrokerError.accessRefused(`Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.`);
    const loopbackOnly = user.loopbackOnly || (username === 'guest' && this.guestLoopbackOnly);
    if (loopbackOnly && !isLoopback(address)) throw BrokerError.accessRefused(`user '${username}' can only connect via localhost`);
    return user;
  }

  /** Records what a verified token allows its user; returns the user as the rest of the broker sees it. */
  grantToken(grant: TokenGrant): User {
    // Expired grants are dropped from time to time, so many short-lived token users do not pile up.
    if (this.tokenGrants.size >= 1024) {
      const now = Date.now();
      for (const [name, g] of this.tokenGrants) if (g.expiresAt !== undefined && g.expiresAt < now) this.tokenGrants.delete(name);
    }
    this.tokenGrants.set(grant.user, grant);
    this.changed();
    return { name: grant.user, passwordHash: '', hashingAlgorithm: 'rabbit_password_hashing_sha256', tags: grant.tags, loopbackOnly: false, tokenExpiresAt: grant.expiresAt };
  }

  /** Whether the user has any permissions in the vhost (required to open it). */
  canAccessVhost(user: string, vhost: string): boolean {
    const grant = this.tokenGrants.get(user);
    if (grant !== undefined) return grantCoversVhost(grant, vhost);
    return this.permissions.get(vhost)?.has(user) ?? false;
  }

  /** A compiled pattern (validated when it was set; a failure here refuses). */
  private pattern(source: string): Pattern {
    try {
      return this.patterns.get(source); // unanchored, as RabbitMQ matches it
    } catch (e) {
      if (e instanceof PatternError) return REFUSE_ALL;
      throw e;
    }
  }

  /** True when the user's `access` regex for the vhost matches the resource name. */
  permitted(user: string, vhost: string, access: Access, resource: string): boolean {
    const grant = this.tokenGrants.get(user);
    if (grant !== undefined) return grantPermits(grant, vhost, access, resource === '' ? 'amq.default' : resource);
    const p = this.permissions.get(vhost)?.get(user);
    if (!p) return false;
    const source = p[access];
    if (source === '') return false;
    // RabbitMQ: the default exchange is written to as 'amq.default'.
    return this.pattern(source).test(resource === '' ? 'amq.default' : resource);
  }

  /** Whether any topic permission constrains the user on this exchange (else everything is allowed). */
  hasTopicPermission(user: string, vhost: string, exchange: string): boolean {
    return this.topicPermissions.get(vhost)?.get(user)?.has(exchange) ?? false;
  }

  /**
   * The pattern routing keys must match for (user, vhost, exchange, access), with `{username}`,
   * `{vhost}` and `{client_id}` substituted as literal text; undefined when no topic permission
   * constrains the user there. Valid until `generation` changes: a channel keeps it for its
   * publishes instead of looking it up per message.
   */
  topicPattern(user: string, vhost: string, exchange: string, access: 'write' | 'read', vars: TopicVariables): Pattern | undefined {
    const p = this.topicPermissions.get(vhost)?.get(user)?.get(exchange);
    if (!p) return undefined;
    // An empty regex matches only the empty routing key.
    return this.pattern(substituteTopicVariables(p[access] === '' ? '^$' : p[access], vars));
  }

  /**
   * RabbitMQ's topic authorisation: with no topic permission for (user, vhost, exchange) access is
   * granted; otherwise the routing key must match {@link topicPattern}.
   */
  topicPermitted(user: string, vhost: string, exchange: string, access: 'write' | 'read', routingKey: string, vars: TopicVariables): boolean {
    const pattern = this.topicPattern(user, vhost, exchange, access, vars);
    return pattern === undefined || pattern.test(routingKey);
  }
}
