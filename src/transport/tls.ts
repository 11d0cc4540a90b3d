import { readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { createSecureContext, createServer, type SecureContextOptions, type TLSSocket, type TlsOptions } from 'node:tls';
import { ConfigError, type BrokerOptions } from '../config.js';
import type { Logger } from '../logger.js';
import type { ProtocolAdapter, TlsPeer } from './adapter.js';
import { peerOf, serveStream } from './serve.js';

/** The TLS listeners, by the key the ready line and the per-listener overrides use. */
export type TlsListenerName = 'amqps' | 'mqtts' | 'stomps' | 'https';

/** What one TLS listener is configured with (file names; read at start and on every reload). */
export interface TlsSettings {
  cert: string;
  key: string;
  keyPassphrase?: string | undefined;
  ca?: string | undefined;
  verifyPeer: boolean;
  failIfNoPeerCert: boolean;
  minVersion: '1.2' | '1.3';
  ciphers?: string | undefined;
  handshakeTimeout: number;
}

const OVERRIDE_FIELDS = new Set(['cert', 'key', 'keyPassphrase', 'ca', 'verifyPeer', 'failIfNoPeerCert', 'minVersion', 'ciphers']);
const LISTENER_NAMES: ReadonlySet<string> = new Set(['amqps', 'mqtts', 'stomps', 'https']);

/**
 * The settings of one TLS listener: the shared `--tls-*` options with the listener's entry of
 * `--tls-listeners` on top. Undefined when no certificate is configured (TLS is off).
 */
export function tlsSettingsFor(options: BrokerOptions, name: TlsListenerName): TlsSettings | undefined {
  const own = overridesOf(options)[name] ?? {};
  const cert = stringField(own, 'cert') ?? options.tlsCert;
  if (cert === undefined) return undefined;
  const key = stringField(own, 'key') ?? options.tlsKey ?? cert;
  const minVersion = stringField(own, 'minVersion') ?? options.tlsMinVersion;
  if (minVersion !== '1.2' && minVersion !== '1.3') throw new ConfigError('tls-listeners', `${name}.minVersion must be '1.2' or '1.3'`);
  return {
    cert,
    key,
    keyPassphrase: stringField(own, 'keyPassphrase') ?? options.tlsKeyPassphrase,
    ca: stringField(own, 'ca') ?? options.tlsCa,
    verifyPeer: boolField(own, 'verifyPeer') ?? options.tlsVerifyPeer,
    failIfNoPeerCert: boolField(own, 'failIfNoPeerCert') ?? options.tlsFailIfNoPeerCert,
    minVersion,
    ciphers: stringField(own, 'ciphers') ?? options.tlsCiphers,
    handshakeTimeout: options.tlsHandshakeTimeout,
  };
}

type Overrides = Partial<Record<TlsListenerName, Record<string, unknown>>>;

function overridesOf(options: BrokerOptions): Overrides {
  if (options.tlsListeners === undefined) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(options.tlsListeners);
  } catch (e) {
    throw new ConfigError('tls-listeners', `not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ConfigError('tls-listeners', 'expected a JSON object');
  const out: Overrides = {};
  for (const [name, v] of Object.entries(parsed)) {
    if (!LISTENER_NAMES.has(name)) throw new ConfigError('tls-listeners', `unknown listener '${name}' (amqps, mqtts, stomps, https)`);
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ConfigError('tls-listeners', `${name} must be an object`);
    for (const f of Object.keys(v)) if (!OVERRIDE_FIELDS.has(f)) throw new ConfigError('tls-listeners', `unknown field '${name}.${f}'`);
    out[name as TlsListenerName] = v as Record<string, unknown>;
  }
  return out;
}

function stringField(o: Record<string, unknown>, f: string): string | undefined {
  const v = o[f];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v === '') throw new ConfigError('tls-listeners', `${f} must be a non-empty string`);
  return v;
}

function boolField(o: Record<string, unknown>, f: string): boolean | undefined {
  const v = o[f];
  if (v === undefined) return undefined;
  if (typeof v !== 'boolean') throw new ConfigError('tls-listeners', `${f} must be true or false`);
  return v;
}

/**
 * Reads the certificate files and checks that they make a usable context (key matches the
 * certificate, passphrase right, PEM well-formed). Throws with the reason otherwise.
 */
export function secureContextOptions(s: TlsSettings): SecureContextOptions {
  try {
    return readContext(s);
  } catch (e) {
    if (e instanceof ConfigError) throw e;
    throw new ConfigError('tls-cert', `cannot use ${s.cert} / ${s.key}${s.ca === undefined ? '' : ` / ${s.ca}`}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function readContext(s: TlsSettings): SecureContextOptions {
  const opts: SecureContextOptions = {
    cert: readFileSync(s.cert),
    key: readFileSync(s.key),
    minVersion: s.minVersion === '1.3' ? 'TLSv1.3' : 'TLSv1.2',
  };
  if (s.keyPassphrase !== undefined) opts.passphrase = s.keyPassphrase;
  if (s.ca !== undefined) opts.ca = readFileSync(s.ca);
  if (s.ciphers !== undefined) opts.ciphers = s.ciphers;
  createSecureContext(opts); // throws on a bad key, passphrase or certificate
  return opts;
}

/** Server options: the context plus how clients are asked for certificates. */
export function tlsServerOptions(s: TlsSettings): TlsOptions {
  return {
    ...secureContextOptions(s),
    requestCert: s.verifyPeer,
    // Without fail-if-no-peer-cert a client may come without a certificate, so the handshake
    // cannot reject unverified peers; `acceptPeer` refuses a certificate that is sent but bad.
    rejectUnauthorized: s.verifyPeer && s.failIfNoPeerCert,
    handshakeTimeout: s.handshakeTimeout,
  };
}

/**
 * After the handshake: with verify-peer, a client certificate that was sent must verify (one that
 * does not ends the connection, as RabbitMQ's verify_peer). Returns the peer's certificate facts.
 */
export function acceptPeer(socket: TLSSocket, s: TlsSettings, log: Logger, listener: string): TlsPeer | false {
  const info = tlsPeerOf(socket);
  if (s.verifyPeer && info.certificate !== undefined && !socket.authorized) {
    log.warn({ listener, peer: `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`, error: String(socket.authorizationError) }, 'client certificate refused');
    return false;
  }
  return info;
}

/** What a TLS connection tells about its peer: protocol, cipher, and a verified certificate's names. */
export function tlsPeerOf(socket: TLSSocket): TlsPeer {
  const out: TlsPeer = { protocol: socket.getProtocol() ?? '', cipher: socket.getCipher()?.name ?? '', authorized: socket.authorized };
  const cert = socket.getPeerCertificate();
  if (cert === null || cert === undefined || Object.keys(cert).length === 0) return out;
  const subject = (cert.subject ?? {}) as unknown as Record<string, string | string[] | undefined>;
  const cn = subject['CN'];
  const san = (cert.subjectaltname ?? '')
    .split(', ')
    .filter((e) => e !== '')
    .map((e) => {
      const i = e.indexOf(':');
      return { type: e.slice(0, i), value: e.slice(i + 1) };
    });
  out.certificate = {
    commonName: Array.isArray(cn) ? cn[0] : cn,
    // RFC 4514 order (most specific first), the way RabbitMQ prints a distinguished name.
    distinguishedName: Object.entries(subject)
      .flatMap(([k, v]) => (Array.isArray(v) ? v.map((x) => `${k}=${x}`) : v === undefined ? [] : [`${k}=${v}`]))
      .reverse()
      .join(','),
    subjectAltNames: san,
    validTo: cert.valid_to,
  };
  return out;
}

/**
 * The user a verified client certificate names (RabbitMQ's ssl_cert_login_from): the CN, the first
 * DNS (else any) subject alternative name, or the whole distinguished name.
 */
export function certificateUser(peer: TlsPeer | undefined, from: string): string | undefined {
  const c = peer?.certificate;
  if (c === undefined || !peer!.authorized) return undefined;
  if (from === 'distinguished_name') return c.distinguishedName || undefined;
  if (from === 'subject_alternative_name') return (c.subjectAltNames.find((s) => s.type === 'DNS') ?? c.subjectAltNames[0])?.value;
  return c.commonName;
}

/** One TLS listener bound to a port, whose certificates `reload()` can replace. */
export interface TlsEndpoint {
  readonly name: TlsListenerName;
  readonly server: Server & { setSecureContext(o: SecureContextOptions): void };
  readonly settings: TlsSettings;
}

/**
 * New certificates for every TLS listener: files are read again and each listener switches to the
 * new context for new connections (open ones keep theirs). A listener whose new files do not make
 * a usable context keeps its old one; its error is logged and returned.
 */
export function reloadTls(endpoints: readonly TlsEndpoint[], log: Logger): { reloaded: string[]; failed: Record<string, string> } {
  const reloaded: string[] = [];
  const failed: Record<string, string> = {};
  for (const e of endpoints) {
    try {
      e.server.setSecureContext(secureContextOptions(e.settings));
      reloaded.push(e.name);
    } catch (err) {
      failed[e.name] = err instanceof Error ? err.message : String(err);
      log.error({ listener: e.name, cert: e.settings.cert, err: failed[e.name] }, 'TLS certificate reload refused: the listener keeps its current certificate');
    }
  }
  if (reloaded.length > 0) log.info({ listeners: reloaded }, 'TLS certificates reloaded');
  return { reloaded, failed };
}

/**
 * A TLS port for a protocol adapter. A handshake that does not finish within the timeout, and a
 * client that speaks plain text, end that socket only; a finished handshake hands the stream to
 * the adapter through `serveStream`, with the peer's certificate facts.
 */
export function listenTls(
  adapter: ProtocolAdapter,
  name: TlsListenerName,
  settings: TlsSettings,
  port: number,
  host: string,
  log: Logger,
): Promise<{ endpoint: TlsEndpoint; port: number }> {
  const server = createServer(tlsServerOptions(settings), (socket: TLSSocket) => {
    socket.setNoDelay(true);
    const tls = acceptPeer(socket, settings, log, name);
    if (tls === false) {
      socket.destroy();
      return;
    }
    serveStream(adapter, socket, { ...peerOf(socket), tls }, 'tls', log);
  });
  server.on('tlsClientError', (err: NodeJS.ErrnoException, socket: TLSSocket) => {
    log.debug({ listener: name, peer: `${socket.remoteAddress ?? ''}:${socket.remotePort ?? 0}`, err: err.message, code: err.code }, 'TLS handshake failed');
    socket.destroy();
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port, host }, () => {
      server.off('error', reject);
      server.on('error', (err: Error) => log.error({ err, listener: name }, 'listener error'));
      const addr = server.address();
      resolve({ endpoint: { name, server, settings }, port: typeof addr === 'object' && addr ? addr.port : port });
    });
  });
}
