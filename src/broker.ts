import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { AmqpAdapter } from '../adapters/amqp/index.js';
import type { ClusterMembership } from './cluster/index.js';
import type { MqttCluster } from './cluster/mqtt.js';
import { MqttAdapter } from '../adapters/mqtt/index.js';
import { StompAdapter } from '../adapters/stomp/index.js';
import { ConfigError, envName, flagName, withDefaults, type BrokerOptions } from './config.js';
import { prepareDataDir } from './data-dir.js';
import { Core, TokenVerifier } from './core/index.js';
import { createLogger, type Logger } from './logger.js';
import { VERSION } from './management/package-info.js';
import { openStore, type MessageStore, type StoreTuning } from './store/index.js';
import { Management, type ManagementOptions } from './management/index.js';
import type { AdapterContext, ProtocolAdapter } from './transport/adapter.js';
import { HttpServer } from './transport/http.js';
import { closeServer, listenTcp } from './transport/tcp.js';
import { listenTls, reloadTls, tlsSettingsFor, type TlsEndpoint, type TlsListenerName } from './transport/tls.js';

export interface Ports {
  amqp?: number;
  mqtt?: number;
  stomp?: number;
  http?: number;
  amqps?: number;
  mqtts?: number;
  stomps?: number;
  https?: number;
}

/** Listeners that could not bind, all of them at once, each with the option that sets its port. */
export class ListenError extends Error {
  override readonly name = 'ListenError';
  /** As a listen error of Node's, so callers that look at the code see the first failure's. */
  readonly code: string;
  constructor(readonly failures: ReadonlyArray<{ listener: string; port: number; option: string; env: string; code: string; reason: string }>) {
    super(
      failures
        .map((f) => `${f.listener} listener: port ${f.port} ${f.code === 'EADDRINUSE' ? 'is already in use' : `cannot be bound (${f.reason})`}; set --${f.option} or ${f.env}`)
        .join('\n'),
    );
    this.code = failures[0]?.code ?? 'EADDRINUSE';
  }
}

export interface Broker {
  readonly core: Core;
  readonly ports: Ports;
  readonly options: BrokerOptions;
  readonly log: Logger;
  readonly adapters: ReadonlyMap<string, ProtocolAdapter>;
  /** The embedded message store in the data directory. */
  readonly store: MessageStore;
  /** The management API, UI and metrics on the HTTP port (absent when the port is off). */
  readonly management: Management | undefined;
  /** This node's membership of a cluster (started with `clusterUrl`), else undefined. */
  readonly cluster: ClusterMembership | undefined;
  /** The `warren ready ...` line. */
  readonly readyLine: string;
  /**
   * Reads the TLS certificate files again: new connections get the new certificates, open ones
   * keep theirs; a listener whose new files are unusable keeps its old ones (logged, returned).
   */
  reloadTls(): { reloaded: string[]; failed: Record<string, string> };
  /** Closes listeners and connections (with each protocol's shutdown message) and flushes. */
  stop(): Promise<void>;
}

/** The host name as a node name (letters, digits, '-' and '_'). */
function defaultNodeName(): string {
  return hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64) || 'warren';
}

type AdapterFactory = (ctx: AdapterContext) => ProtocolAdapter;

/** Listener name, its option, the TLS listener's name and option, and the adapter that serves both. */
const LISTENERS: ReadonlyArray<[keyof Ports, keyof BrokerOptions, TlsListenerName, keyof BrokerOptions, AdapterFactory]> = [
  ['amqp', 'amqpPort', 'amqps', 'amqpsPort', (ctx) => new AmqpAdapter(ctx)],
  ['mqtt', 'mqttPort', 'mqtts', 'mqttsPort', (ctx) => new MqttAdapter(ctx)],
  ['stomp', 'stompPort', 'stomps', 'stompsPort', (ctx) => new StompAdapter(ctx)],
];

/** The order of the ready line. */
const READY_ORDER = ['amqp', 'amqps', 'mqtt', 'mqtts', 'stomp', 'stomps', 'http', 'https'] as const;

/**
 * Starts a broker: core, listeners, HTTP port. Resolves once every enabled listener is bound.
 * Embedded, what the caller leaves out follows one rule: a listener it does not name is off, and
 * without `dataDir` the broker uses a fresh temporary directory that `stop()` removes.
 */
export async function startBroker(
  partial: Partial<BrokerOptions> & { logger?: Logger; management?: ManagementOptions; store?: StoreTuning } = {},
): Promise<Broker> {
  const { logger, management: managementOptions, store: storeTuning, ...rest } = partial;
  // No data directory named: a fresh temporary one, removed again by stop().
  const tempDir = rest.dataDir === undefined ? await mkdtemp(join(tmpdir(), 'warren-')) : undefined;
  const options = withDefaults(tempDir === undefined ? rest : { ...rest, dataDir: tempDir });
  prepareDataDir(options.dataDir);
  const log = logger ?? createLogger(options.logLevel, { format: options.logFormat, file: options.logFile });
  const core = new Core({
    memoryHighWatermark: options.memoryHighWatermark,
    defaultVhost: options.defaultVhost,
    guestRemote: options.guestRemote,
    frameMax: options.frameMax,
    consumerTimeout: options.consumerTimeout,
    log,
  });
  if (options.oauthKey !== undefined || options.oauthJwks !== undefined) {
    try {
      core.tokens = new TokenVerifier({
        resourceServerId: options.oauthResourceServerId,
        keyFile: options.oauthKey,
        jwksFile: options.oauthJwks,
        usernameClaim: options.oauthUsernameClaim,
        verifyAud: options.oauthVerifyAud,
      });
    } catch (e) {
      if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
      throw new ConfigError(options.oauthKey !== undefined ? 'oauth-key' : 'oauth-jwks', e instanceof Error ? e.message : String(e));
    }
  }
  // Definitions and messages come back before any listener accepts a connection.
  const { store } = openStore(
    core,
    { dataDir: options.dataDir, definitions: options.definitions, version: VERSION, queueMemoryBudget: options.queueMemoryBudget, ...storeTuning },
    log,
  );
  const base = core.alarms.memoryBase;
  log.info(
    { memoryLimit: core.alarms.memoryLimit, base: base?.source ?? 'bytes', baseBytes: base?.bytes },
    base === undefined
      ? 'memory high watermark set in bytes'
      : base.source === 'cgroup'
        ? 'memory high watermark: a fraction of the container (cgroup) memory limit'
        : 'memory high watermark: a fraction of the host RAM',
  );
  // A cluster node: the engine is loaded only here, so the single-node broker never loads it.
  let cluster: ClusterMembership | undefined;
  let mqttCluster: MqttCluster | undefined;
  if (options.clusterUrl !== undefined) {
    const { joinCluster } = await import('./cluster/index.js');
    try {
      cluster = await joinCluster({
        cluster: options.cluster,
        nodeName: options.nodeName ?? defaultNodeName(),
        urls: options.clusterUrl.split(','),
        version: VERSION,
        core,
        log,
        ackWaitMs: options.clusterAckWait,
      });
      // MQTT client ids, retained messages and wills across nodes, loaded before MQTT listens.
      const { startMqttCluster } = await import('./cluster/mqtt.js');
      mqttCluster = await startMqttCluster(cluster, log);
    } catch (e) {
      await cluster?.stop().catch(() => undefined);
      await store.close();
      if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
      throw e;
    }
  }
  core.alarms.watchDisk(options.dataDir, options.diskFreeLimit);
  core.alarms.on((blocked, reason) => log.warn({ blocked, reason }, blocked ? 'resource alarm raised: publishers blocked' : 'resource alarm cleared'));
  core.alarms.start();
  core.consumerTimeouts.start();
  const ctx: AdapterContext = { core, log, options, store };
  const ports: Ports = {};
  const servers: Server[] = [];
  const adapters = new Map<string, ProtocolAdapter>();
  const tlsEndpoints: TlsEndpoint[] = [];
  const httpServers: HttpServer[] = [];
  let management: Management | undefined;
  const failures: Array<ConstructorParameters<typeof ListenError>[0][number]> = [];
  // Every listener is tried, so one start reports every port that is taken, not only the first.
  const bindOne = async (listener: string, key: keyof BrokerOptions, port: number, bind: () => Promise<number>): Promise<void> => {
    try {
      ports[listener as keyof Ports] = await bind();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (err.code !== 'EADDRINUSE' && err.code !== 'EACCES' && err.code !== 'EADDRNOTAVAIL') throw e;
      failures.push({ listener, port, option: flagName(key), env: envName(key), code: err.code, reason: err.message });
    }
  };
  try {
    for (const [name, key, tlsName, tlsKey, factory] of LISTENERS) {
      const adapter = name === 'mqtt' && mqttCluster !== undefined ? new MqttAdapter(ctx, undefined, mqttCluster) : factory(ctx);
      adapters.set(name, adapter);
      const port = options[key];
      if (typeof port === 'number') {
        await bindOne(name, key, port, async () => {
          const bound = await listenTcp(adapter, port, options.bind, log);
          servers.push(bound.server);
          return bound.port;
        });
      }
      const tlsPort = options[tlsKey];
      const settings = tlsSettingsFor(options, tlsName);
      if (typeof tlsPort === 'number' && settings !== undefined) {
        await bindOne(tlsName, tlsKey, tlsPort, async () => {
          const bound = await listenTls(adapter, tlsName, settings, tlsPort, options.bind, log);
          servers.push(bound.endpoint.server);
          tlsEndpoints.push(bound.endpoint);
          return bound.port;
        });
      }
    }
    const httpsSettings = tlsSettingsFor(options, 'https');
    const webPorts: Array<['http' | 'https', keyof BrokerOptions, typeof httpsSettings]> = [
      ['http', 'httpPort', undefined],
      ['https', 'httpsPort', httpsSettings],
    ];
    for (const [name, key, tls] of webPorts) {
      const port = options[key];
      if (typeof port !== 'number' || (name === 'https' && tls === undefined)) continue;
      const http = new HttpServer(log, Math.max(options.maxMessageSize, options.frameMax) + 65536, tls);
      for (const a of adapters.values()) if (a.name !== 'amqp' || options.amqpWebsocket) http.attach(a);
      management ??= new Management(
        { core, log, options, ports, reloadTls: () => reloadTls(tlsEndpoints, log), cluster },
        { metricsAuth: options.metricsAuth, ...managementOptions },
      );
      http.setHandler(management.handler);
      httpServers.push(http);
      await bindOne(name, key, port, () => http.listen(port, options.bind));
      if (http.tlsEndpoint) tlsEndpoints.push(http.tlsEndpoint);
    }
    if (failures.length > 0) throw new ListenError(failures);
    management?.start();
  } catch (e) {
    for (const s of servers) await closeServer(s);
    for (const h of httpServers) await h.close();
    management?.stop();
    core.alarms.stop();
    core.consumerTimeouts.stop();
    mqttCluster?.stop();
    await cluster?.stop();
    await store.close();
    if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
    throw e;
  }
  if (cluster !== undefined) {
    const bound = READY_ORDER.filter((n) => ports[n] !== undefined).map((n) => ({ protocol: n, port: ports[n]! }));
    await cluster.setListeners(bound).catch((err: unknown) => log.warn({ err }, 'cluster: listeners not recorded in the registry'));
  }
  const readyLine = `warren ready ${READY_ORDER.filter((n) => ports[n] !== undefined)
    .map((n) => `${n}=${ports[n]}`)
    .join(' ')}`;
  log.info({ ports, dataDir: options.dataDir }, 'broker started');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('broker stopping');
      const closing = servers.map(closeServer);
      await Promise.all([...adapters.values()].map((a) => a.shutdown('shutdown')));
      for (const h of httpServers) await h.close();
      management?.stop();
      await Promise.all(closing);
      core.alarms.stop();
      core.consumerTimeouts.stop();
      core.teardown.flush();
      mqttCluster?.stop();
      await cluster?.stop().catch((err: unknown) => log.warn({ err }, 'cluster: error while leaving'));
      await store.close();
      if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
      log.info('broker stopped');
    })());

  return { core, ports, options, log, adapters, store, management, cluster, readyLine, reloadTls: () => reloadTls(tlsEndpoints, log), stop };
}
