import { Command, CommanderError, Option } from 'commander';
import { createLogger } from './logger.js';
import { registerAdminCommands } from './management/cli.js';
import { VERSION } from './management/package-info.js';
import { StoreError } from './store/errors.js';
import { exportDefinitionsOffline, importDefinitionsOffline } from './store/offline.js';
import { ConfigError, DEFAULTS, flagName, resolveOptions, envName } from './config.js';

const DESCRIPTIONS: Record<string, string> = {
  bind: 'address the listeners bind to',
  amqpPort: "AMQP 0-9-1 port (0 = ephemeral, 'off' = disabled)",
  mqttPort: "MQTT port (0 = ephemeral, 'off' = disabled)",
  stompPort: "STOMP port (0 = ephemeral, 'off' = disabled)",
  httpPort: "HTTP port: management API, UI and WebSockets ('off' = disabled)",
  dataDir: 'data directory',
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
};

/** Runs the `warren` command; resolves with the exit code (or never, for `start`). */
export async function main(argv: string[]): Promise<number | undefined> {
  const program = new Command('warren')
    .description('Warren: an AMQP 0-9-1, MQTT and STOMP message broker')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const start = program.command('start').description('start the broker');
  start.addOption(new Option('--config <file>', 'JSON config file').env('WARREN_CONFIG'));
  for (const key of Object.keys(DEFAULTS)) {
    start.addOption(new Option(`--${flagName(key)} <value>`, `${DESCRIPTIONS[key] ?? key} [${envName(key)}]`));
  }

  start.action(async (flags: Record<string, unknown>) => {
    const opts = resolveOptions(flags);
    // Loaded only for `start`: the admin subcommands stay quick to launch.
    const { startBroker } = await import('./broker.js');
    const broker = await startBroker(opts);
    // A last resort: no known input reaches these (each connection's failures stay in it), but if
    // something does, the process logs it with its stack and exits non-zero for its supervisor
    // rather than run on in an unknown state.
    const fatal = (kind: string) => (err: unknown): void => {
      broker.log.fatal({ err }, `${kind}: exiting`);
      broker.log.flush(() => process.exit(70));
      setTimeout(() => process.exit(70), 1000).unref();
    };
    process.on('uncaughtException', fatal('uncaught exception'));
    process.on('unhandledRejection', fatal('unhandled promise rejection'));
    const onSignal = (sig: string): void => {
      broker.log.info({ signal: sig }, 'signal received');
      broker.stop().then(
        () => broker.log.flush(() => process.exit(0)),
        (e: unknown) => {
          broker.log.error({ err: e }, 'error while stopping');
          process.exit(1);
        },
      );
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
    // Only now: a supervisor may send SIGTERM the moment it reads the ready line (before, that
    // SIGTERM found Node's default handler and the broker died without stopping).
    process.stdout.write(`${broker.readyLine}\n`);
  });

  // `warren definitions export|import FILE`: on a stopped broker's data directory (RabbitMQ JSON).
  let done: number | undefined;
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
      const r = await importDefinitionsOffline(dataDir, file, createLogger('warn'), VERSION);
      for (const w of r.warnings) process.stderr.write(`warren: warning: ${w}\n`);
      process.stdout.write(
        `imported ${r.vhosts} vhosts, ${r.users} users, ${r.permissions} permissions, ${r.policies} policies, ` +
          `${r.exchanges} exchanges, ${r.queues} queues, ${r.bindings} bindings into ${dataDir}\n`,
      );
      done = 0;
    });

  // status, list, declare, delete, purge, publish, get, close, add, change, set, clear, export, import:
  // clients of the management HTTP API.
  registerAdminCommands(program);

  try {
    await program.parseAsync(argv, { from: 'user' });
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
    if (err && (err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL')) {
      process.stderr.write(`warren: cannot listen: ${err.message}\n`);
      return 1;
    }
    throw e;
  }
  return done;
}
