/**
 * The brokers under test: Warren started as a child process, a peer given by URL, or a private
 * RabbitMQ node started from the Debian package. Each gives endpoints per protocol and, when it can,
 * the pid whose CPU time is charged to the broker.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { probeAmqp } from './clients/amqp.js';
import type { Protocol } from './clients/types.js';
import { sleep } from './clock.js';
import { pidListeningOn } from './proc.js';

export interface Broker {
  /** Label in reports, e.g. `Warren 0.1.0` or `RabbitMQ 3.10.8`. */
  name: string;
  isWarren: boolean;
  endpoints: Partial<Record<Protocol, string>>;
  /** The OS process whose CPU time is the broker's, or null when unknown (reported as n/a). */
  pid: number | null;
  /** A broker that outlives this run (given by URL): its queues get an x-expires safety net. */
  shared: boolean;
  /** Free-form details for the report header (pid, platform, how it was started). */
  details: string;
  stop(): Promise<void>;
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** The harness only ever sends traffic to this machine's loopback addresses. */
export function assertLoopback(url: string): URL {
  const u = new URL(url);
  if (!LOOPBACK.has(u.hostname) && !/^127\.\d+\.\d+\.\d+$/.test(u.hostname)) {
    throw new Error(`refusing ${u.protocol}//${u.host}: the benchmark only targets loopback addresses (127.0.0.1)`);
  }
  return u;
}

const DEFAULT_PORTS: Record<string, number> = { 'amqp:': 5672, 'mqtt:': 1883, 'stomp:': 61613 };

function protocolOf(u: URL): Protocol {
  if (u.protocol === 'amqp:') return 'amqp';
  throw new Error(`unsupported peer URL scheme ${u.protocol} (supported: amqp:)`);
}

/** Resolve after `child` exits, or after `ms` (then SIGKILL). */
async function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timedOut = await Promise.race([exited.then(() => false), sleep(ms).then(() => true)]);
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Keep the last lines of a child's output for error messages (and drain the pipe so it never blocks). */
function tail(stream: NodeJS.ReadableStream | null, lines: string[], echo: boolean): void {
  if (stream === null) return;
  createInterface({ input: stream }).on('line', (line) => {
    lines.push(line);
    if (lines.length > 40) lines.shift();
    if (echo) process.stderr.write(`  [broker] ${line}\n`);
  });
}

export interface WarrenOptions {
  /** Path to bin/warren.js. */
  bin: string;
  /** Extra arguments after `start` (e.g. later `--mqtt-port 0`). */
  extraArgs: string[];
  verbose: boolean;
  startTimeoutMs: number;
}

/**
 * `node bin/warren.js start --amqp-port 0 --http-port off --data-dir <tmp>`; waits for the line
 * `warren ready amqp=<port> ...` on stdout. Every `<proto>=<port>` token becomes an endpoint.
 */
export async function startWarren(o: WarrenOptions): Promise<Broker> {
  if (!existsSync(o.bin)) throw new Error(`${o.bin} not found (run npm run build first)`);
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-bench-'));
  const args = [o.bin, 'start', '--amqp-port', '0', '--http-port', 'off', '--data-dir', dataDir, ...o.extraArgs];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  tail(child.stderr, output, o.verbose);
  let stopping = false;
  const stop = async (): Promise<void> => {
    stopping = true;
    child.kill('SIGTERM');
    await waitExit(child, 10_000);
    await rm(dataDir, { recursive: true, force: true });
  };
  let ports: Map<string, number>;
  try {
    ports = await new Promise<Map<string, number>>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`warren did not print its ready line within ${o.startTimeoutMs} ms`)),
        o.startTimeoutMs,
      );
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        if (!stopping) reject(new Error(`warren exited (${signal ?? code}) before it was ready:\n${output.join('\n')}`));
      });
      let ready = false;
      // One reader for stdout: finds the ready line, then keeps draining (a full pipe would block warren).
      createInterface({ input: child.stdout! }).on('line', (line) => {
        output.push(line);
        if (output.length > 40) output.shift();
        if (o.verbose) process.stderr.write(`  [warren] ${line}\n`);
        const m = ready ? null : /\bwarren ready\b(.*)$/.exec(line);
        if (m === null) return;
        ready = true;
        clearTimeout(timer);
        const found = new Map<string, number>();
        for (const [, key, value] of (m[1] ?? '').matchAll(/(\w+)=(\S+)/g)) {
          const port = Number(/(\d+)$/.exec(value ?? '')?.[1]);
          if (key !== undefined && Number.isInteger(port) && port > 0) found.set(key, port);
        }
        resolve(found);
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  child.on('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`bench: warren exited unexpectedly (${signal ?? code})\n${output.join('\n')}\n`);
  });
  const endpoints: Partial<Record<Protocol, string>> = {};
  const amqpPort = ports.get('amqp');
  if (amqpPort !== undefined) endpoints.amqp = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  let name = 'Warren';
  if (endpoints.amqp !== undefined) {
    const info = await probeAmqp(endpoints.amqp).catch(() => null);
    if (info !== null && info.product.length > 0) name = [info.product, info.version].join(' ').trim();
  }
  return {
    name,
    isWarren: true,
    endpoints,
    pid: child.pid ?? null,
    shared: false,
    details: `started by the harness: node ${args.slice(0, 2).join(' ')} ... (pid ${child.pid ?? '?'})`,
    stop,
  };
}

export interface PeerOptions {
  url: string;
  name: string | null;
  pid: number | null;
}

/** A broker that is already running, given by URL. Its CPU is measured when its pid can be found. */
export async function connectPeer(o: PeerOptions): Promise<Broker> {
  const u = assertLoopback(o.url);
  const protocol = protocolOf(u);
  const info = await probeAmqp(o.url);
  const port = u.port === '' ? (DEFAULT_PORTS[u.protocol] ?? 0) : Number(u.port);
  const pid = o.pid ?? pidListeningOn(port);
  const name = o.name ?? ([info.product, info.version].join(' ').trim() || `peer ${u.host}`);
  return {
    name,
    isWarren: false,
    endpoints: { [protocol]: o.url },
    pid,
    shared: true,
    details:
      `given by URL ${u.protocol}//${u.host}; ${info.platform}; ` +
      (pid === null ? 'pid unknown (CPU n/a; pass --peer-pid)' : `pid ${pid} (listening on port ${port})`),
    stop: () => Promise.resolve(),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Where the Debian package keeps the real scripts (the /usr/sbin ones re-run them via `su rabbitmq`). */
const RABBITMQ_SCRIPT_CANDIDATES = ['/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/sbin/rabbitmq-server'];

export function rabbitmqInstalled(): boolean {
  return RABBITMQ_SCRIPT_CANDIDATES.some((p) => existsSync(p));
}

/**
 * Start a private RabbitMQ node for this run only: its own node name, ports, mnesia and log
 * directories and Erlang cookie (HOME) in a temp dir, listening on 127.0.0.1 only; SIGTERM to the
 * rabbitmq-server script stops it gracefully. Needs root or the rabbitmq user (the Debian scripts).
 */
export async function startLocalRabbitmq(o: { verbose: boolean; startTimeoutMs: number }): Promise<Broker> {
  const script = RABBITMQ_SCRIPT_CANDIDATES.find((p) => existsSync(p));
  if (script === undefined) throw new Error('rabbitmq-server is not installed (apt-get install -y rabbitmq-server)');
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-rabbitmq-'));
  await writeFile(join(dir, 'enabled_plugins'), '[].\n');
  const amqpPort = await freePort();
  const distPort = await freePort();
  const nodeName = `warren-bench-${process.pid}@localhost`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    HOME: dir,
    RABBITMQ_NODENAME: nodeName,
    RABBITMQ_NODE_IP_ADDRESS: '127.0.0.1',
    RABBITMQ_NODE_PORT: String(amqpPort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: join(dir, 'rabbitmq'),
    RABBITMQ_ADVANCED_CONFIG_FILE: join(dir, 'advanced.config'),
    RABBITMQ_ENABLED_PLUGINS_FILE: join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: join(dir, 'rabbitmq.pid'),
    RABBITMQ_CONF_ENV_FILE: join(dir, 'rabbitmq-env.conf'),
  };
  const child = spawn(script, [], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  tail(child.stdout, output, o.verbose);
  tail(child.stderr, output, o.verbose);
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await waitExit(child, 30_000);
    await rm(dir, { recursive: true, force: true });
  };
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  const deadline = Date.now() + o.startTimeoutMs;
  let info: Awaited<ReturnType<typeof probeAmqp>> | null = null;
  while (info === null) {
    if (child.exitCode !== null) {
      await stop();
      throw new Error(`rabbitmq-server exited (${child.exitCode}):\n${output.join('\n')}`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`rabbitmq-server not accepting AMQP on ${amqpPort} after ${o.startTimeoutMs} ms`);
    }
    info = await probeAmqp(url).catch(() => null);
    if (info === null) await sleep(500);
  }
  const pid = pidListeningOn(amqpPort);
  return {
    name: [info.product, info.version].join(' ').trim(),
    isWarren: false,
    endpoints: { amqp: url },
    pid,
    shared: false,
    details: `private node ${nodeName} started by the harness; ${info.platform}; pid ${pid ?? 'unknown'}`,
    stop,
  };
}
