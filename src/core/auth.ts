import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { BrokerError } from './errors.js';

export interface Permission {
  configure: string;
  write: string;
  read: string;
}

export interface User {
  name: string;
  /** RabbitMQ's `rabbit_password_hashing_sha256` form: base64(salt(4) + sha256(salt + password)). */
  passwordHash: string;
  tags: string[];
  /** May connect from any address; guest is loopback-only unless configured otherwise. */
  loopbackOnly: boolean;
}

export type Access = 'configure' | 'write' | 'read';

/** Hashes a password the way RabbitMQ does by default, so definitions move both ways. */
export function hashPassword(password: string, salt: Buffer = randomBytes(4)): string {
  const digest = createHash('sha256').update(salt).update(password, 'utf8').digest();
  return Buffer.concat([salt, digest]).toString('base64');
}

export function checkPassword(password: string, hash: string): boolean {
  const raw = Buffer.from(hash, 'base64');
  if (raw.length !== 36) return false;
  const expect = Buffer.from(hashPassword(password, raw.subarray(0, 4)), 'base64');
  return timingSafeEqual(raw, expect);
}

export function isLoopback(address: string): boolean {
  return (
    address.startsWith('127.') ||
    address === '::1' ||
    address.startsWith('::ffff:127.') ||
    address === 'localhost' ||
    address === ''
  );
}

/** Users and their per-vhost permissions (configure / write / read regular expressions). */
export class Auth {
  readonly users = new Map<string, User>();
  /** vhost -> user -> permission */
  readonly permissions = new Map<string, Map<string, Permission>>();
  private readonly compiled = new Map<string, RegExp>();
  /** Set to let guest connect from anywhere (RabbitMQ's `loopback_users = none`). */
  guestLoopbackOnly = true;

  addUser(name: string, password: string, tags: string[] = []): User {
    const user: User = { name, passwordHash: hashPassword(password), tags, loopbackOnly: false };
    this.users.set(name, user);
    return user;
  }

  setPermission(vhost: string, user: string, p: Permission): void {
    let m = this.permissions.get(vhost);
    if (!m) this.permissions.set(vhost, (m = new Map()));
    m.set(user, p);
  }

  /** Checks credentials and the loopback rule; ACCESS_REFUSED (403) on failure. */
  authenticate(username: string, password: string, address: string): User {
    const user = this.users.get(username);
    if (!user || !checkPassword(password, user.passwordHash)) {
      throw BrokerError.accessRefused(`Login was refused using authentication mechanism PLAIN. For details see the broker logfile.`);
    }
    const loopbackOnly = user.loopbackOnly || (username === 'guest' && this.guestLoopbackOnly);
    if (loopbackOnly && !isLoopback(address)) {
      throw BrokerError.accessRefused(`user '${username}' can only connect via localhost`);
    }
    return user;
  }

  /** Whether the user has any permissions in the vhost (required to open it). */
  canAccessVhost(user: string, vhost: string): boolean {
    return this.permissions.get(vhost)?.has(user) ?? false;
  }

  /** True when the user's `access` regex for the vhost matches the resource name. */
  permitted(user: string, vhost: string, access: Access, resource: string): boolean {
    const p = this.permissions.get(vhost)?.get(user);
    if (!p) return false;
    const source = p[access];
    if (source === '') return false;
    let re = this.compiled.get(source);
    if (!re) {
      re = new RegExp(source); // unanchored, as RabbitMQ matches it
      this.compiled.set(source, re);
    }
    // RabbitMQ: the default exchange is written to as 'amq.default'.
    return re.test(resource === '' ? 'amq.default' : resource);
  }
}
