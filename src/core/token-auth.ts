import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createLocalJWKSet, errors, jwtVerify, type JSONWebKeySet, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import type { Access } from './auth.js';
import { BrokerError } from './errors.js';
import { compilePattern, escapePattern, type Pattern } from './pattern.js';

/** Where access tokens are verified and how their claims are read. */
export interface TokenOptions {
  /** RabbitMQ's resource_server_id: the audience tokens must name and the prefix of their scopes. */
  resourceServerId: string;
  /** PEM file with one or more public keys. */
  keyFile?: string | undefined;
  /** JWKS file. */
  jwksFile?: string | undefined;
  /** Claim naming the user (default `sub`). */
  usernameClaim: string;
  /** Require `aud` to contain the resource server id (RabbitMQ's verify_aud, default true). */
  verifyAud: boolean;
}

/** One `<id>.<access>:<vhost>/<name>[/<routing key>]` scope, as patterns. */
interface Scope {
  access: Access;
  vhost: Pattern;
  name: Pattern;
}

/** What a verified token allows: its user, tags, resource scopes and end. */
export interface TokenGrant {
  user: string;
  tags: string[];
  scopes: Scope[];
  /** Epoch milliseconds of `exp`; undefined when the token never expires. */
  expiresAt: number | undefined;
}

/** A JWS compact serialization: three base64url parts. */
const JWT_SHAPE = /^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$/;

/**
 * OAuth 2.0 resource server: verifies JWT access tokens against configured public keys or a JWKS
 * file, and reads RabbitMQ's scope format (`rabbitmq.read:*\/*`, `rabbitmq.write:vh/q*`,
 * `rabbitmq.configure:...`, `rabbitmq.tag:administrator`).
 */
export class TokenVerifier {
  private readonly keys: KeyObject[] = [];
  private readonly jwks: JWTVerifyGetKey | undefined;

  constructor(private readonly opts: TokenOptions) {
    if (opts.keyFile !== undefined) {
      const pem = readFileSync(opts.keyFile, 'utf8');
      for (const block of pem.match(/-----BEGIN [^-]+-----[\s\S]+?-----END [^-]+-----/g) ?? []) this.keys.push(createPublicKey(block));
      if (this.keys.length === 0) throw new Error(`no PEM public key in ${opts.keyFile}`);
    }
    if (opts.jwksFile !== undefined) {
      this.jwks = createLocalJWKSet(JSON.parse(readFileSync(opts.jwksFile, 'utf8')) as JSONWebKeySet);
    }
  }

  /** Whether a password is shaped like a token (anything else is checked as a password). */
  static looksLikeToken(secret: string): boolean {
    return secret.length > 16 && JWT_SHAPE.test(secret);
  }

  /** Verifies signature, `exp`/`nbf` and audience; ACCESS_REFUSED (403) with the reason otherwise. */
  async verify(token: string): Promise<TokenGrant> {
    const options = this.opts.verifyAud ? { audience: this.opts.resourceServerId } : {};
    let payload: JWTPayload | undefined;
    let lastError: unknown;
    try {
      if (this.jwks) payload = (await jwtVerify(token, this.jwks, options)).payload;
    } catch (e) {
      lastError = e;
    }
    for (const key of this.keys) {
      if (payload !== undefined) break;
      try {
        payload = (await jwtVerify(token, key, options)).payload;
      } catch (e) {
        lastError = e;
        // A wrong key: try the next; anything else (expired, audience) is the token's fault.
        if (!(e instanceof errors.JWSSignatureVerificationFailed) && !(e instanceof errors.JOSENotSupported)) break;
      }
    }
    if (payload === undefined) throw BrokerError.accessRefused(`access token refused: ${reasonOf(lastError)}`);
    return this.grantOf(payload);
  }

  private grantOf(p: JWTPayload): TokenGrant {
    const user = p[this.opts.usernameClaim];
    if (typeof user !== 'string' || user === '') throw BrokerError.accessRefused(`access token refused: no '${this.opts.usernameClaim}' claim`);
    const raw = p['scope'] ?? p['scp'];
    const list = typeof raw === 'string' ? raw.split(' ') : Array.isArray(raw) ? raw.filter((s): s is string => typeof s === 'string') : [];
    const prefix = `${this.opts.resourceServerId}.`;
    const tags: string[] = [];
    const scopes: Scope[] = [];
    for (const s of list) {
      if (!s.startsWith(prefix)) continue;
      const rest = s.slice(prefix.length);
      const colon = rest.indexOf(':');
      if (colon < 0) continue;
      const kind = rest.slice(0, colon);
      const value = rest.slice(colon + 1);
      if (kind === 'tag') {
        tags.push(value);
        continue;
      }
      if (kind !== 'read' && kind !== 'write' && kind !== 'configure') continue;
      const [vhost, name] = value.split('/');
      if (vhost === undefined || name === undefined) continue;
      scopes.push({ access: kind, vhost: wildcard(vhost), name: wildcard(name) });
    }
    return { user, tags, scopes, expiresAt: typeof p.exp === 'number' ? p.exp * 1000 : undefined };
  }
}

/** Whether a grant allows `access` to a resource of a vhost (names are matched whole). */
export function grantPermits(g: TokenGrant, vhost: string, access: Access, resource: string): boolean {
  for (const s of g.scopes) if (s.access === access && s.vhost.test(vhost) && s.name.test(resource)) return true;
  return false;
}

/** Whether a grant has any scope in the vhost (what opening it needs). */
export function grantCoversVhost(g: TokenGrant, vhost: string): boolean {
  for (const s of g.scopes) if (s.vhost.test(vhost)) return true;
  return false;
}

/**
 * A scope pattern: `*` is any run of characters, the rest literal (percent-encoded allowed, `%2F`
 * for `/`). Matched in linear time like every pattern that meets client-chosen names.
 */
function wildcard(pattern: string): Pattern {
  let text = pattern;
  try {
    text = decodeURIComponent(pattern);
  } catch {
    // not percent-encoded: literal
  }
  return compilePattern(`^${text.split('*').map(escapePattern).join('.*')}$`);
}

function reasonOf(e: unknown): string {
  if (e instanceof errors.JWTExpired) return 'token expired';
  if (e instanceof errors.JWTClaimValidationFailed) return `claim '${e.claim}' ${e.reason}`;
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'signature verification failed';
  if (e instanceof errors.JWKSNoMatchingKey) return 'no matching key';
  return e instanceof Error ? e.message : 'no key configured';
}
