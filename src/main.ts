import { Command, CommanderError, Option } from 'commander';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { prepareDataDir, requireDataDir } from './data-dir.js';
import type { Broker } from './broker.js';
import { createLogger, reopenLog } from './logger.js';
import { hoistConnectionOptions, registerAdminCommands } from './management/cli.js';
import { VERSION } from './management/package-info.js';
import { StoreError } from './store/errors.js';
import { tuneEngineForBroker } from './engine-tuning.js';
import { exportDefinitionsOffline, importDefinitionsOffline } from './store/offline.js';
import { ConfigError, DEFAULTS, flagName, resolveOptions, envName } from './config.js';

const DESCRIPTIONS: Record<string, string> = {
  bind: 'address the listeners bind to',
  amqpPort: "AMQP 0-9-1 port (0 = ephemeral, 'off' = disabled)",
  mqttPort: "MQTT port (0 = ephemeral, 'off' = disabled)",
  stompPort: "STOMP port (0 = ephemeral, 'off' = disabled)",
  httpPort: "HTTP port: management API, UI and WebSockets ('off' = disabled)",
  amqpWebsocket: 'serve AMQP 0-9-1 over WebSocket on the HTTP(S) port at /amqp (true/false)',
  gcPretenuring: "let V8 pretenure allocation sites, its default (true/false): a little faster while deep queues fill, but after a backlog every message goes to the old generation",
  amqpsPort: 'AMQP over TLS port (open when --tls-cert is set)',
  mqttsPort: 'MQTT over TLS port (open when --tls-cert is set)',
  stompsPort: 'STOMP over TLS port (open when --tls-cert is set)',
  httpsPort: 'HTTPS port: management, UI, /metrics and wss:// (open when --tls-cert is set)',
  tlsCert: 'PEM certificate chain of the TLS listeners (server certificate first)',
  tlsKey: 'PEM private key of --tls-cert (default: the --tls-cert file)',
  tlsKeyPassphrase: 'passphrase of an encrypted --tls-key',
  tlsCa: 'PEM CA certificates that client certificates must chain to',
  tlsVerifyPeer: 'ask clients for a certificate and verify it (true/false)',
  tlsFailIfNoPeerCert: 'with --tls-verify-peer, refuse clients without a certificate (true/false)',
  tlsMinVersion: "lowest TLS version accepted: '1.2' or '1.3'",
  tlsCiphers: 'OpenSSL cipher list for TLS 1.2',
  tlsHandshakeTimeout: 'milliseconds a TLS handshake may take',
  tlsListeners: 'per-listener TLS overrides, JSON: {"mqtts":{"verifyPeer":true}}',
  tlsCertLogin: 'MQTT and STOMP clients log in as their verified certificate names (true/false)',
  tlsCertLoginFrom: 'certificate field naming the user: common_name, subject_alternative_name or distinguished_name',
  oauthResourceServerId: 'OAuth 2.0 resource server id: required audience and scope prefix of access tokens',
  oauthKey: 'PEM public key(s) that access tokens (JWT) are verified against',
  oauthJwks: 'JWKS file that access tokens (JWT) are verified against',
  oauthUsernameClaim: 'access token claim that names the user',
  oauthVerifyAud: "require the resource server id in a token's aud (true/false)",
  logFormat: "log format: 'pretty' or 'json' (default: pretty on a terminal)",
  logFile: 'append the log to this file (reopened on SIGHUP) instead of stderr',
  dataDir: 'data directory (created if missing; its parent must exist)',
  logLevel: 'fatal, error, warn, info, debug, trace or silent',
  memoryHighWatermark: 'block publishers above this fraction of RAM (<= 1) or bytes',
  diskFreeLimit: 'block publishers when free disk falls below this many bytes',
  queueMemoryBudget: 'bytes of ready messages a durable queue keeps in memory before paging out',
  frameMax: 'largest AMQP frame accepted, in bytes',
  heartbeat: 'AMQP heartbeat proposed to clients, in seconds (0 = off)',
  maxMessageSize: 'largest message body accepted, in bytes',
  channelMax: 'most AMQP channels per connection',
  defaultVhost: 'vhost used when a client names none',
  guestRemote: 'let guest connect from non-loopback addresses (true/false)',
  metricsAuth: 'require management credentials for /metrics (true/false)',
  definitions: 'import this definitions file (RabbitMQ JSON) at start',
  cluster: 'name of the cluster to join (with --cluster-url)',
  clusterUrl: 'comma-separated nats://host:port URLs of NATS servers with JetStream: join a cluster through them',
  nodeName: "this node's name in the cluster (default: the host name)",
  clusterAckWait: "ms after which a replicated queue's delivery held by a node that stopped answering is redelivered elsewhere",
  consumerTimeout: 'cancel a consumer that holds a delivery longer than this many ms (0 = never; queues may set x-consumer-timeout)',
  mqttReceiveMaximum: 'MQTT 5 Receive Maximum announced to clients: unacknowledged QoS 1/2 publishes allowed (1-65535)',
  mqttMaxKeepalive: 'longest MQTT keep-alive accepted, seconds (0 = no cap; v5 clients are told it, 3.1.1 clients asking more are refused)',
};

/** Runs the `warren` command; resolves with the exit code (or never, for `start`). */
export async function main(argv: string[]): Promise<number | undefined> {
  const program = new Command('warren')
    .description('Warren: an AMQP 0-9-1, MQTT and STOMP message broker')
    .version(VERSION, '-V, --version', 'print the version')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  let done: number | undefined;
  const start = program.command('start').description('start the broker');
  start.addOption(new Option('--config <file>', 'JSON config file').env('WARREN_CONFIG'));
  for (const key of Object.keys(DEFAULTS)) {
    // The default goes into the text only: a commander default would hide the environment and config file.
    const d = DEFAULTS[key as keyof typeof DEFAULTS];
    start.addOption(new Option(`--${flagName(key)} <value>`, `${DESCRIPTIONS[key] ?? key} (default: ${d === undefined ? 'none' : d === null ? 'off' : String(d)}) [${envName(key)}]`));
  }

  start.addOption(
    new Option('--workers <n>', 'run N node processes on this host sharing the listening ports, each a cluster node (needs --cluster-url)').env('WARREN_WORKERS'),
  );

  start.action(async (allFlags: Record<string, unknown>) => {
    const { workers: workersFlag, ...flags } = allFlags;
    let opts = resolveOptions(flags);
    if (!opts.gcPretenuring) tuneEngineForBroker();
    if (workersFlag !== undefined) {
      const workers = Number(workersFlag);
      if (!Number.isInteger(workers) || workers < 1 || workers > 256) throw new ConfigError('workers', `expected 1-256, got '${String(workersFlag)}'`);
      const w = await import('./cluster/workers.js');
      const index = w.workerIndex();
      if (index === undefined) {
        // The primary: supervises the workers and serves nothing itself.
        if (opts.clusterUrl === undefined) {
          throw new ConfigError('workers', 'needs --cluster-url: each worker is a cluster node and they share queues and definitions through the engine');
        }
        prepareDataDir(opts.dataDir);
        const log = createLogger(opts.logLevel, { format: opts.logFormat, file: opts.logFile });
        done = await w.runPrimary({ workers, log, out: (line) => process.stdout.write(`${line}\n`) });
        await new Promise<void>((resolve) => log.flush(() => resolve()));
        return;
      }
      const base = opts.nodeName ?? (hostname().replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64) || 'warren');
      opts = { ...opts, nodeName: w.workerNodeName(base, index), dataDir: join(opts.dataDir, `worker-${index}`) };
    }
    // Handlers go in before anything else: a signal that comes while starting (or right after the
    // ready line, before a later handler would be in place) still ends in a clean stop. A runner
    // such as `npm start` forwards the terminal's signal to the group again: the first one stops
    // the broker, a repeat while stopping is ignored (it must not kill the process mid-stop).
    let broker: Broker | undefined;
    let signalled: string | undefined;
    let stopping = false;
    const stopNow = (b: Broker, sig: string): void => {
      stopping = true;
      b.log.info({ signal: sig }, 'signal received');
      b.stop().then(
        () => b.log.flush(() => process.exit(0)),
        (e: unknown) => {
          b.log.error({ err: e }, 'error while stopping');
          process.exit(1);
        },
      );
    };
    const onSignal = (sig: string): void => {
      if (stopping || signalled !== undefined) return;
      if (broker) stopNow(broker, sig);
      else signalled = sig;
    };
    process.on('SIGTERM', () => onSignal('SIGTERM'));
    process.on('SIGINT', () => onSignal('SIGINT'));
    // SIGHUP: new TLS certificates for new connections, and the log file opened again (rotation).
    process.on('SIGHUP', () => {
      if (!broker || stopping) return;
      broker.log.info({ signal: 'SIGHUP' }, 'signal received: reloading certificates and reopening the log');
      try {
        if (reopenLog(broker.log)) broker.log.info({ file: broker.options.logFile }, 'log file reopened');
      } catch (err) {
        broker.log.error({ err }, 'cannot reopen the log file');
      }
      broker.reloadTls();
    });
    // Loaded only for `start`: the admin subcommands stay quick to launch.
    const { startBroker } = await import('./broker.js');
    const started = await startBroker(opts);
    broker = started;
    // Bench-only latency trace (WARREN_LATENCY_TRACE): SIGUSR2 starts a recording, the next writes it.
    // Otherwise, under `node --expose-gc`, SIGUSR2 runs a full garbage collection and logs the
    // memory figures after it (the "settled" reading of the memory benchmarks).
    const gc = (globalThis as { gc?: () => void }).gc;
    const { latencyTrace } = await import('./core/index.js');
    if (latencyTrace !== null) {
      started.log.warn({ dir: process.env.WARREN_LATENCY_TRACE }, 'latency trace on (SIGUSR2 starts and stops a recording)');
      process.on('SIGUSR2', () => {
        try {
          const wasRecording = latencyTrace.recording;
          latencyTrace.toggle();
          started.log.warn(wasRecording ? 'latency trace: recording written' : 'latency trace: recording');
        } catch (err) {
          started.log.error({ err }, 'latency trace: cannot write the recording');
        }
      });
    } else if (typeof gc === 'function') {
      process.on('SIGUSR2', () => {
        gc();
        gc();
        const m = process.memoryUsage();
        started.log.info(
          { memory: { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers } },
          'memory after a full garbage collection',
        );
      });
    }
    // A last resort: no known input reaches these (each connection's failures stay in it), but if
    // something does, the process logs it with its stack and exits non-zero for its supervisor
    // rather than run on in an unknown state.
    const fatal = (kind: string) => (err: unknown): void => {
      started.log.fatal({ err }, `${kind}: exiting`);
      started.log.flush(() => process.exit(70));
      setTimeout(() => process.exit(70), 1000).unref();
    };
    process.on('uncaughtException', fatal('uncaught exception'));
    process.on('unhandledRejection', fatal('unhandled promise rejection'));
    if (signalled !== undefined) {
      stopNow(started, signalled);
      return;
    }
    if (process.env['WARREN_WORKER_INDEX'] !== undefined) {
      const { reportReady } = await import('./cluster/workers.js');
      reportReady(broker.readyLine);
    } else process.stdout.write(`${broker.readyLine}\n`);
  });

  // `warren definitions export|import FILE`: on a stopped broker's data directory (RabbitMQ JSON).
  const definitions = program.command('definitions').description("export or import definitions (RabbitMQ JSON) of a data directory");
  const dataDirOption = (): Option => new Option('--data-dir <dir>', `data directory [${envName('dataDir')}]`);
  const configOption = (): Option => new Option('--config <file>', 'JSON config file').env('WARREN_CONFIG');
  const dataDirOf = (flags: Record<string, unknown>): string =>
    resolveOptions({ dataDir: flags['dataDir'], config: flags['config'] }).dataDir;
  definitions
    .command('export')
    .description("write the data directory's vhosts, users, permissions, policies, exchanges, queues and bindings to FILE ('-' = stdout)")
    .argument('<file>')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action((file: string, flags: Record<string, unknown>) => {
      const dataDir = dataDirOf(flags);
      const d = exportDefinitionsOffline(dataDir, file, createLogger('warn'), VERSION);
      if (file !== '-') {
        process.stdout.write(
          `exported ${d.vhosts.length} vhosts, ${d.users.length} users, ${d.exchanges.length} exchanges, ` +
            `${d.queues.length} queues, ${d.bindings.length} bindings, ${d.policies.length} policies to ${file}\n`,
        );
      }
      done = 0;
    });
  definitions
    .command('import')
    .description('add the definitions in FILE (RabbitMQ JSON) to the data directory of a stopped broker')
    .argument('<file>')
    .addOption(dataDirOption())
    .addOption(configOption())
    .action(async (file: string, flags: Record<string, unknown>) => {
      const dataDir = dataDirOf(flags);
      requireDataDir(dataDir);
      const r = await importDefinitionsOffline(dataDir, file, createLogger('warn'), VERSION);
      for (const w of r.warnings) process.stderr.write(`warren: warning: ${w}\n`);
      process.stdout.write(
        `imported ${r.vhosts} vhosts, ${r.users} users, ${r.permissions} permissions, ${r.policies} policies, ` +
          `${r.exchanges} exchanges, ${r.queues} queues, ${r.bindings} bindings into ${dataDir}\n`,
      );
      done = 0;
    });

  // `warren dev-cluster --nodes N`: a cluster on this machine to try.
  program
    .command('dev-cluster')
    .description('start N nats-servers with JetStream and N Warren nodes on free local ports (needs nats-server on the PATH); Ctrl-C stops them')
    .addOption(new Option('--nodes <n>', 'how many nodes (and NATS servers)').default('3'))
    .addOption(new Option('--log-level <level>', "the nodes' log level").default('warn'))
    .action(async (flags: Record<string, unknown>) => {
      const n = Number(flags['nodes']);
      if (!Number.isInteger(n) || n < 1 || n > 9) throw new ConfigError('nodes', `expected 1-9, got '${String(flags['nodes'])}'`);
      const { runDevCluster } = await import('./cluster/dev-cluster.js');
      done = await runDevCluster({ nodes: n, out: (line) => process.stdout.write(`${line}\n`), logLevel: String(flags['logLevel']) });
    });

  // status, list, declare, delete, purge, publish, get, close, add, change, set, clear, export, import:
  // clients of the management HTTP API.
  registerAdminCommands(program);
  program.addHelpText('after', '\nThe connection options --url, --user, --password and --vhost may come before or after the subcommand.');

  try {
    await program.parseAsync(hoistConnectionOptions(program, argv), { from: 'user' });
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.exitCode === 0) return 0;
      return 2;
    }
    if (e instanceof ConfigError) {
      process.stderr.write(`warren: ${e.message}\n`);
      return 2;
    }
    if (e instanceof StoreError) {
      process.stderr.write(`warren: ${e.message}\n`);
      return 1;
    }
    const err = e as NodeJS.ErrnoException;
    if (err instanceof Error && (err.name === 'EngineError' || err.name === 'NodeNameTaken')) {
      process.stderr.write(`warren: cannot join the cluster: ${err.message}\n`);
      return 1;
    }
    if (err instanceof Error && err.name === 'ListenError') {
      for (const line of err.message.split('\n')) process.stderr.write(`warren: cannot listen: ${line}\n`);
      return 1;
    }
    if (err && (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL')) {
      process.stderr.write(`warren: cannot listen: ${err.message}\n`);
      return 1;
    }
    throw e;
  }
  return done;
}
