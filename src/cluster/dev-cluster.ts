import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * A cluster on one machine, for trying it out and for tests: NATS servers with JetStream joined
 * in one NATS cluster (client and route ports on 127.0.0.1, a store directory each), and Warren
 * nodes joined through them.
 */

/**
 * Where {@link freePort} takes its ports: `WARREN_PORT_RANGE=low-high` (inclusive) keeps every port
 * the tests and benches hand out inside that range (on a machine shared with other runs), else the
 * system's ephemeral ports.
 */
function portRange(): { low: number; high: number } | undefined {
  const m = /^(\d+)-(\d+)$/.exec(process.env['WARREN_PORT_RANGE'] ?? '');
  if (m === null) return undefined;
  const low = Number(m[1]);
  const high = Number(m[2]);
  return low > 0 && high >= low && high < 65536 ? { low, high } : undefined;
}

/** The next port of the range to try; each process starts at its own place, so that parallel ones rarely race. */
let nextInRange = -1;

function listenOn(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(undefined));
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      const got = typeof a === 'object' && a !== null ? a.port : 0;
      s.close(() => resolve(got));
    });
  });
}

/** A free TCP port on 127.0.0.1 (free when asked; bind it soon), inside `WARREN_PORT_RANGE` when set. */
export async function freePort(): Promise<number> {
  const range = portRange();
  if (range === undefined) {
    const port = await listenOn(0);
    if (port === undefined) throw new Error('no free port');
    return port;
  }
  const span = range.high - range.low + 1;
  if (nextInRange < 0) nextInRange = (process.pid * 61) % span;
  for (let tried = 0; tried < span; tried++) {
    const port = range.low + (nextInRange++ % span);
    if ((await listenOn(port)) !== undefined) return port;
  }
  throw new Error(`no free port in WARREN_PORT_RANGE ${range.low}-${range.high}`);
}

export interface NatsServer {
  readonly name: string;
  readonly port: number;
  readonly routePort: number;
  readonly configFile: string;
  child: ChildProcess;
  log: string;
}

export interface NatsServers {
  readonly dir: string;
  readonly servers: NatsServer[];
  /** The client URLs, comma-separated: a `--cluster-url`. */
  readonly url: string;
  /** SIGKILLs one server. */
  kill(i: number): Promise<void>;
  /** Starts a killed server again (same ports and store). */
  restart(i: number): Promise<void>;
  stop(): Promise<void>;
}

export interface NatsServersOptions {
  count: number;
  /** Where configs and stores go; a new temporary directory (removed by stop) when absent. */
  dir?: string;
  bin?: string;
  /** Default true; false starts plain NATS servers (to see a node refuse them). */
  jetstream?: boolean;
  readyTimeoutMs?: number;
  /** The address each server listens on (clients and routes); default 127.0.0.1 for all. */
  hosts?: string[];
  /** A command the `i`-th server is started under (e.g. `ip netns exec NAME`); default none. */
  launcher?: (i: number) => string[];
  /** More configuration lines for every server (e.g. ping intervals). */
  settings?: string[];
}

/** How many times a start whose port was taken under it is tried. */
const START_ATTEMPTS = 5;

/** A server that exited before it was ready; `portTaken` when it could not bind a port. */
class ExitedEarly extends Error {
  constructor(
    message: string,
    readonly portTaken: boolean,
  ) {
    super(message);
  }
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** Starts `count` nats-servers; resolves once each says it is ready. */
export async function startNatsServers(opts: NatsServersOptions): Promise<NatsServers> {
  const ownDir = opts.dir === undefined;
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'warren-nats-')));
  const bin = opts.bin ?? 'nats-server';
  const jetstream = opts.jetstream ?? true;
  const host = (i: number): string => opts.hosts?.[i] ?? '127.0.0.1';
  const servers: NatsServer[] = [];
  /** Writes the configurations for a fresh set of free ports (each attempt takes new ones). */
  const configure = async (): Promise<void> => {
    const ports: { port: number; routePort: number }[] = [];
    for (let i = 0; i < opts.count; i++) ports.push({ port: await freePort(), routePort: await freePort() });
    servers.length = 0;
    for (let i = 0; i < opts.count; i++) {
      const name = `s${i + 1}`;
      const store = join(dir, name);
      mkdirSync(store, { recursive: true });
      const lines = [`server_name: ${name}`, `listen: ${host(i)}:${ports[i]!.port}`, ...(opts.settings ?? [])];
      if (jetstream) lines.push(`jetstream { store_dir: ${JSON.stringify(store)} }`);
      if (opts.count > 1) {
        const routes = ports.flatMap((p, j) => (j === i ? [] : [`nats-route://${host(j)}:${p.routePort}`]));
        lines.push(`cluster { name: warren_dev, listen: ${host(i)}:${ports[i]!.routePort}, routes: [${routes.join(', ')}] }`);
      }
      const configFile = join(dir, `${name}.conf`);
      writeFileSync(configFile, `${lines.join('\n')}\n`);
      servers.push({ name, ...ports[i]!, configFile, child: undefined as unknown as ChildProcess, log: '' });
    }
  };
  const launch = (s: NatsServer, i: number): Promise<void> => {
    const prefix = opts.launcher?.(i) ?? [];
    const command = [...prefix, bin, '-c', s.configFile];
    const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    s.child = child;
    s.log = '';
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${s.name} not ready after ${opts.readyTimeoutMs ?? 15_000} ms:\n${s.log}`)), opts.readyTimeoutMs ?? 15_000);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new Error(`cannot start ${bin}: ${e.message}`));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new ExitedEarly(`${s.name} exited with ${String(code)}:\n${s.log}`, s.log.includes('address already in use')));
      });
      child.stderr!.setEncoding('utf8').on('data', (d: string) => {
        if (s.log.length < 200_000) s.log += d;
        if (s.log.includes('Server is ready')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  };
  const killAll = async (): Promise<void> => {
    for (const s of servers) if (s.child !== undefined && s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGTERM');
    await Promise.all(servers.map((s) => (s.child === undefined ? undefined : exited(s.child))));
  };
  const stopAll = async (): Promise<void> => {
    await killAll();
    if (ownDir) await rm(dir, { recursive: true, force: true });
  };
  // A port free when asked can be taken before the server binds it (by another listener, or as the
  // local port of some outgoing connection): such a start is tried again on other ports.
  for (let attempt = 1; ; attempt++) {
    try {
      await configure();
      await Promise.all(servers.map(launch));
      break;
    } catch (e) {
      await killAll();
      if (e instanceof ExitedEarly && e.portTaken && attempt < START_ATTEMPTS) continue;
      await stopAll();
      throw e;
    }
  }
  /** A restart keeps its ports; one taken meanwhile is waited for a little. */
  const restart = async (i: number): Promise<void> => {
    for (let attempt = 1; ; attempt++) {
      try {
        await launch(servers[i]!, i);
        return;
      } catch (e) {
        if (!(e instanceof ExitedEarly && e.portTaken) || attempt >= START_ATTEMPTS) throw e;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  };
  return {
    dir,
    servers,
    url: servers.map((s, i) => `nats://${host(i)}:${s.port}`).join(','),
    kill: async (i) => {
      const s = servers[i]!;
      s.child.kill('SIGKILL');
      await exited(s.child);
    },
    restart,
    stop: stopAll,
  };
}

/** `bin/warren.js` of this installation. */
const WARREN_BIN = fileURLToPath(new URL('../../../bin/warren.js', import.meta.url));

interface DevNode {
  name: string;
  ports: { amqp: number; mqtt: number; stomp: number; http: number };
  child: ChildProcess;
}

/** The ports of a complete `warren ready amqp=... mqtt=... stomp=... http=...` line in `out`. */
function readyPorts(out: string): DevNode['ports'] | undefined {
  const start = out.indexOf('warren ready ');
  const end = start < 0 ? -1 : out.indexOf('\n', start);
  if (end < 0) return undefined;
  const got = new Map<string, number>();
  for (const field of out.slice(start + 'warren ready '.length, end).split(' ')) {
    const eq = field.indexOf('=');
    if (eq > 0) got.set(field.slice(0, eq), Number(field.slice(eq + 1)));
  }
  const amqp = got.get('amqp');
  const mqtt = got.get('mqtt');
  const stomp = got.get('stomp');
  const http = got.get('http');
  return amqp === undefined || mqtt === undefined || stomp === undefined || http === undefined ? undefined : { amqp, mqtt, stomp, http };
}

/**
 * `warren dev-cluster --nodes N`: N nats-servers and N Warren nodes on free local ports, until
 * SIGINT or SIGTERM; then everything stops and the temporary directory goes. Resolves with the
 * exit code.
 */
export async function runDevCluster(opts: { nodes: number; out: (line: string) => void; logLevel?: string }): Promise<number> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-dev-cluster-'));
  const out = opts.out;
  let nats: NatsServers | undefined;
  const nodes: DevNode[] = [];
  const stopAll = async (): Promise<void> => {
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGTERM');
    await Promise.all(nodes.map((n) => exited(n.child)));
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    out(`starting ${opts.nodes} nats-server(s) with JetStream in ${dir} ...`);
    nats = await startNatsServers({ count: opts.nodes, dir: join(dir, 'nats') });
    for (let i = 0; i < opts.nodes; i++) {
      const name = `n${i + 1}`;
      // Port 0 lets each listener bind a free port itself (no window for another socket to take it);
      // the ready line says which. WARREN_PORT_RANGE hands out ports of its range instead.
      const port = async (): Promise<string> => (portRange() === undefined ? '0' : String(await freePort()));
      const args = [
        WARREN_BIN, 'start', '--cluster', 'dev', '--cluster-url', nats.url, '--node-name', name, '--data-dir', join(dir, name), '--bind', '127.0.0.1',
        '--amqp-port', await port(), '--mqtt-port', await port(), '--stomp-port', await port(), '--http-port', await port(),
        '--amqps-port', 'off', '--mqtts-port', 'off', '--stomps-port', 'off', '--https-port', 'off', '--log-level', opts.logLevel ?? 'warn',
      ];
      const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      const node: DevNode = { name, ports: { amqp: 0, mqtt: 0, stomp: 0, http: 0 }, child };
      nodes.push(node);
      node.ports = await new Promise<DevNode['ports']>((resolve, reject) => {
        let seen = '';
        child.stdout!.setEncoding('utf8').on('data', (d: string) => {
          seen += d;
          const ready = readyPorts(seen);
          if (ready !== undefined) resolve(ready);
        });
        child.once('exit', (code) => reject(new Error(`node ${name} exited with ${String(code)} before it was ready`)));
      });
    }
  } catch (e) {
    out(`dev-cluster: ${e instanceof Error ? e.message : String(e)}`);
    await stopAll();
    return 1;
  }
  out('');
  out(`cluster 'dev': ${opts.nodes} NATS servers (${nats.url}) and ${opts.nodes} Warren nodes`);
  for (const n of nodes) {
    out(
      `  ${n.name}: amqp://guest:guest@127.0.0.1:${n.ports.amqp}  mqtt://127.0.0.1:${n.ports.mqtt}  stomp 127.0.0.1:${n.ports.stomp}  ` +
        `http://127.0.0.1:${n.ports.http}/ (guest/guest)`,
    );
  }
  out(`  warren cluster status --url http://127.0.0.1:${nodes[0]!.ports.http}`);
  out('Ctrl-C stops everything and removes the temporary directory.');
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      out('stopping ...');
      stopAll().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    for (const n of nodes) {
      n.child.once('exit', (code, signal) => {
        if (!stopping) out(`node ${n.name} exited (${signal ?? String(code)}); the others go on`);
      });
    }
  });
}
