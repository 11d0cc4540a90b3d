import { readFileSync } from 'node:fs';

/** A listener port: a number (0 = ephemeral) or null for `off`. */
export type Port = number | null;

export interface BrokerOptions {
  /** Address the listeners bind to; default all interfaces. */
  bind: string;
  amqpPort: Port;
  mqttPort: Port;
  stompPort: Port;
  /** Management API, UI and WebSocket endpoints. */
  httpPort: Port;
  /** Serve AMQP 0-9-1 over WebSocket (`/amqp`, and subprotocol `amqp` on `/ws`) on the HTTP(S) port. */
  amqpWebsocket: boolean;
  /** TLS listeners: open only when `tlsCert` is set (AMQP, MQTT, STOMP, and HTTPS with wss://). */
  amqpsPort: Port;
  mqttsPort: Port;
  stompsPort: Port;
  httpsPort: Port;
  /** PEM certificate chain (server certificate first) of the TLS listeners. */
  tlsCert: string | undefined;
  /** PEM private key of `tlsCert`. */
  tlsKey: string | undefined;
  tlsKeyPassphrase: string | undefined;
  /** PEM CA certificates that client certificates are verified against. */
  tlsCa: string | undefined;
  /** Ask clients for a certificate and verify any they send. */
  tlsVerifyPeer: boolean;
  /** With `tlsVerifyPeer`: refuse clients that send no certificate. */
  tlsFailIfNoPeerCert: boolean;
  /** Lowest TLS version accepted: '1.2' or '1.3'. */
  tlsMinVersion: string;
  /** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are OpenSSL's defaults). */
  tlsCiphers: string | undefined;
  /** Milliseconds a TLS handshake may take before the socket is closed. */
  tlsHandshakeTimeout: number;
  /**
   * Per-listener overrides of the TLS options, JSON: `{"mqtts":{"verifyPeer":true,"ca":"..."}}`
   * (keys `amqps`, `mqtts`, `stomps`, `https`; fields cert, key, keyPassphrase, ca, verifyPeer,
   * failIfNoPeerCert, minVersion, ciphers).
   */
  tlsListeners: string | undefined;
  /** MQTT and STOMP take the user name from a verified client certificate (AMQP: mechanism EXTERNAL). */
  tlsCertLogin: boolean;
  /** Which certificate field names the user: common_name, subject_alternative_name or distinguished_name. */
  tlsCertLoginFrom: string;
  /** OAuth 2.0 resource server id: the audience tokens must carry and the prefix of their scopes. */
  oauthResourceServerId: string;
  /** PEM public key (or several, concatenated) that access tokens are verified against. */
  oauthKey: string | undefined;
  /** A JWKS file (JSON Web Key Set) that access tokens are verified against. */
  oauthJwks: string | undefined;
  /** Token claim that names the user. */
  oauthUsernameClaim: string;
  /** Require the token's `aud` to contain the resource server id. */
  oauthVerifyAud: boolean;
  /** Log output: 'pretty' (for people) or 'json'; default pretty on a terminal, else JSON. */
  logFormat: string | undefined;
  /** Write the log to this file (appended; reopened on SIGHUP) instead of stderr. */
  logFile: string | undefined;
  dataDir: string;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /**
   * Memory above which publishers are blocked: bytes (> 1), or a fraction (<= 1) of the
   * container's memory limit when there is one below the RAM, else of the RAM. Compared with the
   * memory Warren accounts for (queued messages, buffers, V8 heap), not the resident set size.
   */
  memoryHighWatermark: number;
  /**
   * Let V8 pretenure allocation sites (its default). Off by default: after one large backlog, V8
   * would allocate every later message in the old generation (see docs/production.md).
   */
  gcPretenuring: boolean;
  /** Disk free space (bytes) below which publishers are blocked. */
  diskFreeLimit: number;
  /** Bytes of ready messages a durable queue keeps in memory; beyond, persistent ones are paged out. */
  queueMemoryBudget: number;
  /** Largest AMQP frame the server accepts (connection.tune frame_max). */
  frameMax: number;
  /** AMQP heartbeat the server proposes, in seconds (0 = off). */
  heartbeat: number;
  /** Largest message body accepted, in bytes, on any protocol. */
  maxMessageSize: number;
  /** Largest STOMP frame body (a SEND's message), in bytes; `maxMessageSize` still applies. */
  stompMaxMessageSize: number;
  /**
   * A STOMP CONNECT whose `host` names no vhost but a host name or address of this broker
   * (localhost, its hostname or interface addresses, the bind address) gets the default vhost.
   */
  stompHostFallback: boolean;
  channelMax: number;
  defaultVhost: string;
  /** Allow guest to connect from non-loopback addresses. */
  guestRemote: boolean;
  /** Require a management user's credentials for /metrics. */
  metricsAuth: boolean;
  /** A definitions file (RabbitMQ JSON) imported at start. */
  definitions: string | undefined;
  /** A consumer holding a delivery longer than this (ms) is cancelled; 0 = never. Queues may set their own. */
  consumerTimeout: number;
  /** The cluster's name (with `clusterUrl`); nodes of one cluster share it. */
  cluster: string;
  /** Comma-separated `nats://host:port` URLs of the NATS JetStream servers: set, the node joins a cluster. */
  clusterUrl: string | undefined;
  /** This node's name in the cluster; default the host name. */
  nodeName: string | undefined;
  /** A replicated queue's delivery held by a node that died is redelivered elsewhere after this (ms). */
  clusterAckWait: number;
  /**
   * MQTT 5 Receive Maximum announced in CONNACK: QoS 1/2 PUBLISHes a client may have
   * unacknowledged (1-65535); one more ends the connection with DISCONNECT 0x93.
   */
  mqttReceiveMaximum: number;
  /**
   * Longest MQTT keep-alive accepted, seconds (0 = no cap): a v5 client asking for more (or 0) is
   * told this one (Server Keep Alive); a 3.1/3.1.1 client asking for more (or 0) is refused.
   */
  mqttMaxKeepalive: number;
}

export const DEFAULTS: BrokerOptions = {
  bind: '0.0.0.0',
  amqpPort: 5672,
  mqttPort: 1883,
  stompPort: 61613,
  httpPort: 15672,
  amqpWebsocket: true,
  amqpsPort: 5671,
  mqttsPort: 8883,
  stompsPort: 61614,
  httpsPort: 15671,
  tlsCert: undefined,
  tlsKey: undefined,
  tlsKeyPassphrase: undefined,
  tlsCa: undefined,
  tlsVerifyPeer: false,
  tlsFailIfNoPeerCert: false,
  tlsMinVersion: '1.2',
  tlsCiphers: undefined,
  tlsHandshakeTimeout: 10000,
  tlsListeners: undefined,
  tlsCertLogin: false,
  tlsCertLoginFrom: 'common_name',
  oauthResourceServerId: 'rabbitmq',
  oauthKey: undefined,
  oauthJwks: undefined,
  oauthUsernameClaim: 'sub',
  oauthVerifyAud: true,
  logFormat: undefined,
  logFile: undefined,
  dataDir: './data',
  logLevel: 'info',
  memoryHighWatermark: 0.4,
  gcPretenuring: false,
  diskFreeLimit: 50 * 1024 * 1024,
  queueMemoryBudget: 16 * 1024 * 1024,
  frameMax: 131072,
  heartbeat: 60,
  maxMessageSize: 128 * 1024 * 1024,
  stompMaxMessageSize: 16 * 1024 * 1024,
  stompHostFallback: true,
  channelMax: 2047,
  defaultVhost: '/',
  guestRemote: false,
  metricsAuth: false,
  definitions: undefined,
  consumerTimeout: 30 * 60 * 1000,
  cluster: 'warren',
  clusterUrl: undefined,
  nodeName: undefined,
  clusterAckWait: 30_000,
  mqttReceiveMaximum: 1024,
  mqttMaxKeepalive: 0,
};

/** An invalid option: the CLI prints one line and exits 2. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(
    readonly option: string,
    message: string,
  ) {
    super(`invalid option --${option}: ${message}`);
  }
}

type Kind = 'port' | 'int' | 'number' | 'string' | 'bool' | 'level' | 'name' | 'urls' | readonly string[];

const SCHEMA: Record<keyof BrokerOptions, Kind> = {
  bind: 'string',
  amqpPort: 'port',
  mqttPort: 'port',
  stompPort: 'port',
  httpPort: 'port',
  amqpWebsocket: 'bool',
  amqpsPort: 'port',
  mqttsPort: 'port',
  stompsPort: 'port',
  httpsPort: 'port',
  tlsCert: 'string',
  tlsKey: 'string',
  tlsKeyPassphrase: 'string',
  tlsCa: 'string',
  tlsVerifyPeer: 'bool',
  tlsFailIfNoPeerCert: 'bool',
  tlsMinVersion: ['1.2', '1.3'],
  tlsCiphers: 'string',
  tlsHandshakeTimeout: 'int',
  tlsListeners: 'string',
  tlsCertLogin: 'bool',
  tlsCertLoginFrom: ['common_name', 'subject_alternative_name', 'distinguished_name'],
  oauthResourceServerId: 'string',
  oauthKey: 'string',
  oauthJwks: 'string',
  oauthUsernameClaim: 'string',
  oauthVerifyAud: 'bool',
  logFormat: ['pretty', 'json'],
  logFile: 'string',
  dataDir: 'string',
  logLevel: 'level',
  memoryHighWatermark: 'number',
  gcPretenuring: 'bool',
  diskFreeLimit: 'int',
  queueMemoryBudget: 'int',
  frameMax: 'int',
  heartbeat: 'int',
  maxMessageSize: 'int',
  stompMaxMessageSize: 'int',
  stompHostFallback: 'bool',
  channelMax: 'int',
  defaultVhost: 'string',
  guestRemote: 'bool',
  metricsAuth: 'bool',
  definitions: 'string',
  consumerTimeout: 'int',
  cluster: 'name',
  clusterUrl: 'urls',
  nodeName: 'name',
  clusterAckWait: 'int',
  mqttReceiveMaximum: 'int',
  mqttMaxKeepalive: 'int',
};

const LEVELS = new Set(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

/** `amqpPort` -> `amqp-port` (flag) / `WARREN_AMQP_PORT` (env). */
export function flagName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
export function envName(key: string): string {
  return `WARREN_${flagName(key).replace(/-/g, '_').toUpperCase()}`;
}

function parseValue(key: keyof BrokerOptions, raw: unknown): unknown {
  const kind = SCHEMA[key];
  const opt = flagName(key);
  const text = typeof raw === 'string' ? raw.trim() : raw;
  if (Array.isArray(kind)) {
    if (typeof text !== 'string' || !kind.includes(text)) throw new ConfigError(opt, `expected one of ${kind.join(', ')}, got '${String(raw)}'`);
    return text;
  }
  switch (kind) {
    case 'port': {
      if (text === 'off' || text === false) return null;
      const n = typeof text === 'number' ? text : Number(text);
      if (!Number.isInteger(n) || n < 0 || n > 65535 || text === '') {
        throw new ConfigError(opt, `expected a port number 0-65535 or 'off', got '${String(raw)}'`);
      }
      return n;
    }
    case 'int': {
      const n = typeof text === 'number' ? text : Number(text);
      if (!Number.isInteger(n) || n < 0 || text === '') throw new ConfigError(opt, `expected a non-negative integer, got '${String(raw)}'`);
      return n;
    }
    case 'number': {
      const n = typeof text === 'number' ? text : Number(text);
      if (!Number.isFinite(n) || n <= 0 || text === '') throw new ConfigError(opt, `expected a positive number, got '${String(raw)}'`);
      return n;
    }
    case 'bool': {
      if (text === true || text === 'true' || text === '1' || text === 'yes') return true;
      if (text === false || text === 'false' || text === '0' || text === 'no') return false;
      throw new ConfigError(opt, `expected true or false, got '${String(raw)}'`);
    }
    case 'level': {
      if (typeof text !== 'string' || !LEVELS.has(text)) {
        throw new ConfigError(opt, `expected one of ${[...LEVELS].join(', ')}, got '${String(raw)}'`);
      }
      return text;
    }
    case 'string': {
      if (typeof text !== 'string' || text === '') throw new ConfigError(opt, `expected a non-empty string`);
      return text;
    }
    case 'name': {
      // Cluster and node names become keys and bucket names in the cluster engine.
      if (typeof text !== 'string' || !/^[A-Za-z0-9_-]{1,64}$/.test(text)) {
        throw new ConfigError(opt, `expected 1-64 letters, digits, '-' or '_', got '${String(raw)}'`);
      }
      return text;
    }
    case 'urls': {
      const urls = typeof text === 'string' ? text.split(',').map((u) => u.trim()).filter((u) => u !== '') : [];
      if (urls.length === 0 || urls.some((u) => !/^(nats|tls):\/\/[^\s/]+$/.test(u))) {
        throw new ConfigError(opt, `expected comma-separated nats://host:port URLs, got '${String(raw)}'`);
      }
      return urls.join(',');
    }
  }
}

function isKey(k: string): k is keyof BrokerOptions {
  return Object.prototype.hasOwnProperty.call(SCHEMA, k);
}

/**
 * Resolves options: defaults <- config file <- environment (WARREN_*) <- flags. Every value is
 * validated; the first invalid one throws a ConfigError naming it.
 */
export function resolveOptions(
  flags: Record<string, unknown>,
  env: NodeJS.ProcessEnv = process.env,
  configFile?: string,
): BrokerOptions {
  const out: Record<string, unknown> = { ...DEFAULTS };
  const file = configFile ?? (typeof flags['config'] === 'string' ? flags['config'] : env['WARREN_CONFIG']);
  if (file !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new ConfigError('config', `cannot read '${file}': ${e instanceof Error ? e.message : String(e)}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new ConfigError('config', `'${file}' must hold a JSON object`);
    }
    for (const [k, v] of Object.entries(parsed)) {
      const key = k.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
      if (!isKey(key)) throw new ConfigError('config', `unknown option '${k}' in '${file}'`);
      // In a config file the per-listener TLS overrides may be written as an object.
      out[key] = parseValue(key, key === 'tlsListeners' && typeof v === 'object' && v !== null ? JSON.stringify(v) : v);
    }
  }
  for (const key of Object.keys(SCHEMA) as (keyof BrokerOptions)[]) {
    const v = env[envName(key)];
    if (v !== undefined && v !== '') out[key] = parseValue(key, v);
  }
  for (const [k, v] of Object.entries(flags)) {
    if (k === 'config' || v === undefined) continue;
    if (!isKey(k)) throw new ConfigError(flagName(k), 'unknown option');
    out[k] = parseValue(k, v);
  }
  inRange(out, 'mqttReceiveMaximum', 1, 65535);
  inRange(out, 'mqttMaxKeepalive', 0, 65535);
  return out as unknown as BrokerOptions;
}

/** Integer options with a range narrower than 'int' (MQTT's two-byte fields). */
function inRange(out: Record<string, unknown>, key: keyof BrokerOptions, min: number, max: number): void {
  const v = out[key];
  if (typeof v === 'number' && (v < min || v > max)) throw new ConfigError(flagName(key), `expected ${min}-${max}, got ${v}`);
}

/** The listener ports: the options the embedding rule below is about. */
export const LISTENER_OPTIONS = ['amqpPort', 'mqttPort', 'stompPort', 'httpPort', 'amqpsPort', 'mqttsPort', 'stompsPort', 'httpsPort'] as const;

/**
 * Options for the embeddable API: any subset, validated the same way. One rule for what the caller
 * leaves out: a listener it does not name is off (`startBroker({ amqpPort: 0 })` opens one
 * ephemeral AMQP port and nothing else), and the environment and config files are not read. The
 * other options take their usual defaults.
 */
export function withDefaults(partial: Partial<BrokerOptions>): BrokerOptions {
  const flags: Record<string, unknown> = {};
  for (const key of LISTENER_OPTIONS) flags[key] = 'off';
  for (const [k, v] of Object.entries(partial)) if (v !== undefined) flags[k] = v === null ? 'off' : v;
  return resolveOptions(flags, {}, undefined);
}
