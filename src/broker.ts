import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AmqpAdapter } from '../adapters/amqp/index.js';
import { MemoryRetainedStore, MqttAdapter, type RetainedMessage } from '../adapters/mqtt/index.js';
import { StompAdapter } from '../adapters/stomp/index.js';
import { withDefaults, type BrokerOptions } from './config.js';
import { prepareDataDir } from './data-dir.js';
import { Core } from './core/index.js';
import { createLogger, type Logger } from './logger.js';
import { VERSION } from './management/package-info.js';
import { openStore, type MessageStore, type StoreTuning } from './store/index.js';
import { Management, type ManagementOptions } from './management/index.js';
import type { ProtocolAdapter } from './transport/adapter.js';
import { HttpServer } from './transport/http.js';
import { closeServer, listenTcp } from './transport/tcp.js';

/** What every adapter gets from the broker. */
export interface AdapterContext {
  readonly core: Core;
  readonly log: Logger;
  readonly options: BrokerOptions;
  /** The embedded store: durable record stores (`records(name)`) and retained messages for adapters. */
  readonly store?: MessageStore;
}

export interface Ports {
  amqp?: number;
  mqtt?: number;
  stomp?: number;
  http?: number;
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
  /** The `warren ready ...` line. */
  readonly readyLine: string;
  /** Closes listeners and connections (with each protocol's shutdown message) and flushes. */
  stop(): Promise<void>;
}

type AdapterFactory = (ctx: AdapterContext) => ProtocolAdapter;

/** Listener name, its option, and the adapter that serves it. */
const LISTENERS: ReadonlyArray<[keyof Ports, keyof BrokerOptions, AdapterFactory]> = [
  ['amqp', 'amqpPort', (ctx) => new AmqpAdapter(ctx)],
  ['mqtt', 'mqttPort', (ctx) => new MqttAdapter(ctx, ctx.store?.retained(new MemoryRetainedStore(), (r) => r as RetainedMessage))],
  ['stomp', 'stompPort', (ctx) => new StompAdapter(ctx)],
];

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
  const log = logger ?? createLogger(options.logLevel);
  const core = new Core({
    memoryHighWatermark: options.memoryHighWatermark,
    defaultVhost: options.defaultVhost,
    guestRemote: options.guestRemote,
    log,
  });
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
  core.alarms.watchDisk(options.dataDir, options.diskFreeLimit);
  core.alarms.on((blocked, reason) => log.warn({ blocked, reason }, blocked ? 'resource alarm raised: publishers blocked' : 'resource alarm cleared'));
  core.alarms.start();
  const ctx: AdapterContext = { core, log, options, store };
  const ports: Ports = {};
  const servers: Server[] = [];
  const adapters = new Map<string, ProtocolAdapter>();
  let http: HttpServer | undefined;
  let management: Management | undefined;
  try {
    for (const [name, key, factory] of LISTENERS) {
      const port = options[key];
      const adapter = factory(ctx);
      adapters.set(name, adapter);
      if (typeof port !== 'number') continue;
      const bound = await listenTcp(adapter, port, options.bind, log);
      servers.push(bound.server);
      ports[name] = bound.port;
    }
    if (typeof options.httpPort === 'number') {
      http = new HttpServer(log, Math.max(options.maxMessageSize, options.frameMax) + 65536);
      for (const a of adapters.values()) http.attach(a);
      management = new Management({ core, log, options, ports }, { metricsAuth: options.metricsAuth, ...managementOptions });
      http.setHandler(management.handler);
      ports.http = await http.listen(options.httpPort, options.bind);
      management.start();
    }
  } catch (e) {
    for (const s of servers) await closeServer(s);
    await http?.close();
    management?.stop();
    core.alarms.stop();
    await store.close();
    if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
    throw e;
  }
  const readyLine = `warren ready ${(['amqp', 'mqtt', 'stomp', 'http'] as const)
    .filter((n) => ports[n] !== undefined)
    .map((n) => `${n}=${ports[n]}`)
    .join(' ')}`;
  log.info({ ports, dataDir: options.dataDir }, 'broker started');

  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      log.info('broker stopping');
      const closing = servers.map(closeServer);
      await Promise.all([...adapters.values()].map((a) => a.shutdown('shutdown')));
      await http?.close();
      management?.stop();
      await Promise.all(closing);
      core.alarms.stop();
      await store.close();
      if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
      log.info('broker stopped');
    })());

  return { core, ports, options, log, adapters, store, management, readyLine, stop };
}
