/**
 * The brokers under test: Warren started as a child process, a peer given by URL, or a private
 * RabbitMQ node started from the Debian package. Each gives endpoints per protocol and, when it can,
 * the pid whose CPU time is charged to the broker.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

import { probeAmqp } from './clients/amqp.js';
import { probeMqtt } from './clients/mqtt.js';
import { probeStomp } from './clients/stomp.js';
import type { Protocol } from './clients/types.js';
import { sleep } from './clock.js';
import { childPids, pidListeningOn } from './proc.js';
import { benchCertificate } from './tls.js';
import { freePort } from '../src/cluster/dev-cluster.js';

export interface Broker {
  /** Label in reports, e.g. `Warren 0.1.0` or `RabbitMQ 3.10.8`. */
  name: string;
  isWarren: boolean;
  endpoints: Partial<Record<Protocol, string>>;
  /** The OS process whose CPU time is the broker's, or null when unknown (reported as n/a). */
  pid: number | null;
  /**
   * Every process whose CPU time and memory are the broker's, when it is more than one (Warren's
   * workers, the nodes of a cluster); `pid` alone otherwise.
   */
  pids?: () => number[];
  /**
   * The processes of the engine the broker runs on (a Warren cluster's nats-servers), whose CPU
   * time is reported apart from the broker's; undefined when it has none.
   */
  enginePids?: () => number[];
  /** Processes that accept the clients' connections (each with its own open-files limit); default 1. */
  servingProcesses?: number;
  /** Where consumers connect when not to `endpoints` (publish on one cluster node, consume on another). */
  consumerEndpoints?: Partial<Record<Protocol, string>>;
  /** A broker that outlives this run (given by URL): its queues get an x-expires safety net. */
  shared: boolean;
  /** Free-form details for the report header (pid, platform, how it was started). */
  details: string;
  /**
   * A full garbage collection in the broker, then its memory (Warren started by the harness:
   * `node --expose-gc`, SIGUSR2, the figures from its log). Undefined for other brokers.
   */
  fullGc?: () => Promise<GcReading | null>;
  stop(): Promise<void>;
}

/** Memory right after a full garbage collection, bytes (process.memoryUsage()). */
export interface GcReading {
  rss: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
}

/** How long the broker may take to answer a full-GC request. */
const GC_TIMEOUT_MS = 20_000;

const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

/** The harness only ever sends traffic to this machine's loopback addresses. */
export function assertLoopback(url: string): URL {
  const u = new URL(url);
  if (!LOOPBACK.has(u.hostname) && !/^127\.\d+\.\d+\.\d+$/.test(u.hostname)) {
    throw new Error(`refusing ${u.protocol}//${u.host}: the benchmark only targets loopback addresses (127.0.0.1)`);
  }
  return u;
}

const DEFAULT_PORTS: Record<string, number> = { 'amqp:': 5672, 'mqtt:': 1883, 'stomp:': 61613, 'ws:': 80 };

/** `ws://` URLs are STOMP over WebSocket (e.g. RabbitMQ's Web STOMP, ws://127.0.0.1:15674/ws). */
function protocolOf(u: URL): Protocol {
  if (u.protocol === 'amqp:') return 'amqp';
  if (u.protocol === 'mqtt:') return 'mqtt';
  if (u.protocol === 'stomp:') return 'stomp';
  if (u.protocol === 'ws:') return 'stomp-ws';
  throw new Error(`unsupported peer URL scheme ${u.protocol} (supported: amqp:, mqtt:, stomp:, ws: for STOMP over WebSocket)`);
}

/**
 * Connect once to the endpoint to check it answers; returns the server's name and version when the
 * protocol tells it (AMQP server properties, STOMP's `server` header), else ''.
 */
export async function probeEndpoint(protocol: Protocol, url: string): Promise<{ name: string; platform: string }> {
  switch (protocol) {
    case 'amqp': {
      const info = await probeAmqp(url);
      return { name: [info.product, info.version].join(' ').trim(), platform: info.platform };
    }
    case 'mqtt':
      await probeMqtt(url);
      return { name: '', platform: '' };
    case 'amqps':
    case 'mqtts':
      throw new Error(`${protocol} endpoints are not probed (the harness does not trust their CA)`);
    case 'stomp':
    case 'stomp-ws': {
      // `server:RabbitMQ/3.10.8` -> `RabbitMQ 3.10.8`
      const server = await probeStomp(url);
      return { name: server.replace('/', ' '), platform: '' };
    }
  }
}

/** Resolve after `child` exits, or after `ms` (then SIGKILL). */
export async function waitExit(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const timedOut = await Promise.race([exited.then(() => false), sleep(ms).then(() => true)]);
  if (timedOut) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Keep the last lines of a child's output for error messages (and drain the pipe so it never blocks). */
export function tail(stream: NodeJS.ReadableStream | null, lines: string[], echo: boolean, onLine?: (line: string) => void): void {
  if (stream === null) return;
  createInterface({ input: stream }).on('line', (line) => {
    onLine?.(line);
    lines.push(line);
    if (lines.length > 40) lines.shift();
    if (echo) process.stderr.write(`  [broker] ${line}\n`);
  });
}

export interface WarrenOptions {
  /** Path to bin/warren.js. */
  bin: string;
  /** Extra arguments after `start`. */
  extraArgs: string[];
  /** Node.js options before the script, e.g. `--cpu-prof`. */
  nodeArgs?: string[];
  /** Extra environment variables for Warren's process (e.g. WARREN_LATENCY_TRACE). */
  env?: Record<string, string>;
  verbose: boolean;
  startTimeoutMs: number;
  /** The label in reports instead of the product and version. */
  label?: string;
}

/**
 * `node bin/warren.js start --amqp-port 0 --mqtt-port 0 --stomp-port 0 --http-port 0 --data-dir <tmp>`;
 * waits for the line `warren ready amqp=<port> ...` on stdout. Every `<proto>=<port>` token becomes an
 * endpoint (`http` becomes STOMP over WebSocket on its `/ws` path).
 */
export async function startWarren(o: WarrenOptions): Promise<Broker> {
  if (!existsSync(o.bin)) throw new Error(`${o.bin} not found (run npm run build first)`);
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-bench-'));
  const tls = benchCertificate();
  // Ephemeral ports unless WARREN_PORT_RANGE asks for ports of a given range.
  const port = async (): Promise<string> => (process.env['WARREN_PORT_RANGE'] === undefined ? '0' : String(await freePort()));
  const args = [
    // The memory scenarios trigger a full collection before their settled reading (SIGUSR2).
    '--expose-gc',
    ...(o.nodeArgs ?? []),
    o.bin,
    'start',
    '--amqp-port',
    await port(),
    '--mqtt-port',
    await port(),
    '--stomp-port',
    await port(),
    '--http-port',
    await port(),
    '--data-dir',
    dataDir,
    // TLS: AMQP and MQTT over TLS next to the plain ports, for the TLS-cost scenarios.
    '--tls-cert',
    tls.cert,
    '--tls-key',
    tls.key,
    '--amqps-port',
    await port(),
    '--mqtts-port',
    await port(),
    '--stomps-port',
    'off',
    '--https-port',
    'off',
    ...o.extraArgs,
  ];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(o.env !== undefined ? { env: { ...process.env, ...o.env } } : {}),
  });
  const output: string[] = [];
  // The log (stderr, JSON lines): its last lines for errors, and the answers to fullGc().
  const gcWaiters: Array<(r: GcReading | null) => void> = [];
  tail(child.stderr, output, o.verbose, (line) => {
    if (gcWaiters.length === 0 || !line.includes('memory after a full garbage collection')) return;
    let r: GcReading | null = null;
    try {
      r = (JSON.parse(line) as { memory?: GcReading }).memory ?? null;
    } catch {
      // not JSON (a pretty log): no figures
    }
    gcWaiters.shift()?.(r);
  });
  const fullGc = async (): Promise<GcReading | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return null;
    const answered = new Promise<GcReading | null>((resolve) => gcWaiters.push(resolve));
    child.kill('SIGUSR2');
    const r = await Promise.race([answered, sleep(GC_TIMEOUT_MS).then(() => null)]);
    return r;
  };
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
  const mqttPort = ports.get('mqtt');
  if (mqttPort !== undefined) endpoints.mqtt = `mqtt://127.0.0.1:${mqttPort}`;
  const stompPort = ports.get('stomp');
  if (stompPort !== undefined) endpoints.stomp = `stomp://guest:guest@127.0.0.1:${stompPort}`;
  const amqpsPort = ports.get('amqps');
  if (amqpsPort !== undefined) endpoints.amqps = `amqps://guest:guest@127.0.0.1:${amqpsPort}`;
  const mqttsPort = ports.get('mqtts');
  if (mqttsPort !== undefined) endpoints.mqtts = `mqtts://127.0.0.1:${mqttsPort}`;
  const httpPort = ports.get('http');
  if (httpPort !== undefined) endpoints['stomp-ws'] = `ws://guest:guest@127.0.0.1:${httpPort}/ws`;
  let name = 'Warren';
  if (endpoints.amqp !== undefined) {
    const info = await probeAmqp(endpoints.amqp).catch(() => null);
    if (info !== null && info.product.length > 0) name = [info.product, info.version].join(' ').trim();
  }
  const pid = child.pid ?? null;
  // With --workers the primary only supervises: the workers are its children.
  const workers = o.extraArgs.includes('--workers');
  return {
    name: o.label ?? name,
    isWarren: true,
    endpoints,
    pid,
    ...(workers && pid !== null ? { pids: () => [pid, ...childPids(pid)], servingProcesses: Number(o.extraArgs[o.extraArgs.indexOf('--workers') + 1]) } : {}),
    shared: false,
    details: `started by the harness: node ${args.slice(0, args.indexOf('start') + 1).join(' ')} ... (pid ${child.pid ?? '?'})`,
    fullGc,
    stop,
  };
}

/** The processes whose CPU time and memory are the broker's, or null when unknown. */
export function brokerPids(b: Broker): number[] | null {
  if (b.pids !== undefined) return b.pids();
  return b.pid === null ? null : [b.pid];
}

/**
 * Warren as a cluster of `nodes` nodes on the engine at `clusterUrl` (one process each): publishers
 * connect to n1, consumers to n2; CPU and memory are the sum of all nodes.
 */
export async function startWarrenCluster(o: WarrenOptions & { clusterUrl: string; nodes: number }): Promise<Broker> {
  const nodes: Broker[] = [];
  try {
    for (let i = 1; i <= o.nodes; i++) {
      nodes.push(await startWarren({ ...o, extraArgs: ['--cluster', 'bench', '--cluster-url', o.clusterUrl, '--node-name', `n${i}`, ...o.extraArgs] }));
    }
  } catch (e) {
    await Promise.all(nodes.map((n) => n.stop()));
    throw e;
  }
  const [n1, n2] = [nodes[0]!, nodes[1] ?? nodes[0]!];
  return {
    name: o.label ?? `Warren cluster of ${o.nodes} (publish n1, consume n2)`,
    isWarren: true,
    endpoints: n1.endpoints,
    consumerEndpoints: n2.endpoints,
    pid: n1.pid,
    pids: () => nodes.flatMap((n) => (n.pid === null ? [] : [n.pid])),
    shared: false,
    details: `${o.nodes} nodes started by the harness on ${o.clusterUrl}: ${nodes.map((n, i) => `n${i + 1} pid ${n.pid ?? '?'}`).join(', ')}`,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()));
    },
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
  const info = await probeEndpoint(protocol, o.url);
  const port = u.port === '' ? (DEFAULT_PORTS[u.protocol] ?? 0) : Number(u.port);
  const pid = o.pid ?? pidListeningOn(port);
  const name = o.name ?? (info.name || `peer ${u.host}`);
  return {
    name,
    isWarren: false,
    endpoints: { [protocol]: o.url },
    pid,
    shared: true,
    details:
      `given by URL ${u.protocol}//${u.host}${info.platform !== '' ? `; ${info.platform}` : ''}; ` +
      (pid === null ? 'pid unknown (CPU n/a; pass --peer-pid)' : `pid ${pid} (listening on port ${port})`),
    stop: () => Promise.resolve(),
  };
}

/**
 * Peers given by several URLs that one process serves (RabbitMQ on 5672, 1883, 61613 and 15674) are
 * one broker with several endpoints: merge them (the first one's name wins unless it is a generic
 * `peer host` label). Peers whose pid is unknown stay separate.
 */
export function mergePeers(peers: Broker[]): Broker[] {
  const out: Broker[] = [];
  for (const p of peers) {
    const same = p.pid === null ? undefined : out.find((b) => b.pid === p.pid && !b.isWarren);
    if (same === undefined) {
      out.push({ ...p, endpoints: { ...p.endpoints } });
      continue;
    }
    for (const [k, v] of Object.entries(p.endpoints) as Array<[Protocol, string]>) same.endpoints[k] ??= v;
    if (same.name.startsWith('peer ') && !p.name.startsWith('peer ')) same.name = p.name;
    same.details += `; also ${Object.values(p.endpoints).map((url) => new URL(url).protocol + '//' + new URL(url).host).join(', ')}`;
  }
  return out;
}

/** RabbitMQ's plugin listeners on their default ports: MQTT, STOMP, Web STOMP. */
const PLUGIN_ENDPOINTS: Array<{ protocol: Protocol; port: number; url: string }> = [
  { protocol: 'mqtt', port: 1883, url: 'mqtt://127.0.0.1:1883' },
  { protocol: 'stomp', port: 61613, url: 'stomp://guest:guest@127.0.0.1:61613' },
  { protocol: 'stomp-ws', port: 15674, url: 'ws://guest:guest@127.0.0.1:15674/ws' },
];

/**
 * For a peer found on the default AMQP port: add the MQTT, STOMP and Web STOMP endpoints that the
 * same process listens on at their default ports (RabbitMQ with rabbitmq_mqtt, rabbitmq_stomp,
 * rabbitmq_web_stomp enabled) and that answer. Returns the endpoints added.
 */
export async function addPluginEndpoints(peer: Broker): Promise<Protocol[]> {
  if (peer.pid === null) return [];
  const added: Protocol[] = [];
  for (const e of PLUGIN_ENDPOINTS) {
    if (peer.endpoints[e.protocol] !== undefined || pidListeningOn(e.port) !== peer.pid) continue;
    const ok = await probeEndpoint(e.protocol, e.url).then(
      () => true,
      () => false,
    );
    if (!ok) continue;
    peer.endpoints[e.protocol] = e.url;
    added.push(e.protocol);
  }
  if (added.length > 0) peer.details += `; also ${added.join(', ')} on their default ports`;
  return added;
}

export { freePort };

/** Where the Debian package keeps the real scripts (the /usr/sbin ones re-run them via `su rabbitmq`). */
const RABBITMQ_SCRIPT_CANDIDATES = ['/usr/lib/rabbitmq/bin/rabbitmq-server', '/usr/sbin/rabbitmq-server'];

export function rabbitmqInstalled(): boolean {
  return RABBITMQ_SCRIPT_CANDIDATES.some((p) => existsSync(p));
}

/**
 * The environment of a private RabbitMQ node: its own name, ports, and every file (mnesia, logs,
 * config, plugins, pid, Erlang cookie via HOME) under `dir`, listening on 127.0.0.1 only.
 */
export function rabbitmqNodeEnv(dir: string, nodeName: string, amqpPort: number, distPort: number, epmdPort?: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    // A port of its own for the Erlang port mapper, when the default one is not this run's to use.
    ...(epmdPort !== undefined ? { ERL_EPMD_PORT: String(epmdPort) } : {}),
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
}

/** One private RabbitMQ node (see {@link rabbitmqNodeEnv}) being started; `stop` removes `dir`. */
interface RabbitmqNode {
  readonly name: string;
  readonly dir: string;
  readonly env: NodeJS.ProcessEnv;
  readonly url: string;
  readonly child: ChildProcess;
  /** Resolves with the server's properties once it accepts AMQP; stops it and rejects when it does not. */
  listening(timeoutMs: number): Promise<Awaited<ReturnType<typeof probeAmqp>>>;
  stop(): Promise<void>;
}

function launchRabbitmqNode(script: string, dir: string, name: string, amqpPort: number, distPort: number, verbose: boolean, epmdPort?: number): RabbitmqNode {
  const env = rabbitmqNodeEnv(dir, name, amqpPort, distPort, epmdPort);
  const child = spawn(script, [], { env, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  tail(child.stdout, output, verbose);
  tail(child.stderr, output, verbose);
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await waitExit(child, 30_000);
    await rm(dir, { recursive: true, force: true });
  };
  const url = `amqp://guest:guest@127.0.0.1:${amqpPort}`;
  const listening = async (timeoutMs: number): Promise<Awaited<ReturnType<typeof probeAmqp>>> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (child.exitCode !== null) {
        await stop();
        throw new Error(`rabbitmq-server ${name} exited (${child.exitCode}):\n${output.join('\n')}`);
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`rabbitmq-server ${name} not accepting AMQP on ${amqpPort} after ${timeoutMs} ms`);
      }
      const info = await probeAmqp(url).catch(() => null);
      if (info !== null) return info;
      await sleep(500);
    }
  };
  return { name, dir, env, url, child, listening, stop };
}

/**
 * A private RabbitMQ cluster of `nodes` nodes for this run only (quorum queues need one): each
 * node a private node as {@link startLocalRabbitmq} starts one (no plugins), all with one Erlang
 * cookie; nodes 2.. `join_cluster` node 1. Publishers connect to node 1, consumers to node 2; CPU
 * is the sum of every node's Erlang VM. Needs root or the rabbitmq user (the Debian scripts).
 */
export async function startRabbitmqCluster(o: { nodes: number; verbose: boolean; startTimeoutMs: number }): Promise<Broker> {
  const script = RABBITMQ_SCRIPT_CANDIDATES.find((p) => existsSync(p));
  if (script === undefined) throw new Error('rabbitmq-server is not installed (apt-get install -y rabbitmq-server)');
  const ctl = join(dirname(script), 'rabbitmqctl');
  const cookie = randomBytes(20).toString('hex').toUpperCase();
  const nodes: RabbitmqNode[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  const run = (n: RabbitmqNode, args: string[]): void => {
    // The package's own rabbitmqctl with the node's environment (its HOME holds the cookie).
    const r = spawnSync(ctl, ['-n', n.name, ...args], { env: n.env, encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) throw new Error(`rabbitmqctl -n ${n.name} ${args.join(' ')}: ${(r.stderr || r.stdout || String(r.error)).trim()}`);
  };
  try {
    for (let i = 1; i <= o.nodes; i++) {
      const dir = await mkdtemp(join(tmpdir(), `warren-bench-rabbitmq-c${i}-`));
      await writeFile(join(dir, 'enabled_plugins'), '[].\n');
      await writeFile(join(dir, '.erlang.cookie'), cookie, { mode: 0o400 });
      nodes.push(launchRabbitmqNode(script, dir, `warren-bench-c${i}-${process.pid}@localhost`, await freePort(), await freePort(), o.verbose));
    }
    const infos = await Promise.all(nodes.map((n) => n.listening(o.startTimeoutMs)));
    for (const n of nodes.slice(1)) {
      run(n, ['stop_app']);
      run(n, ['join_cluster', nodes[0]!.name]);
      run(n, ['start_app']);
      await n.listening(o.startTimeoutMs);
    }
  } catch (e) {
    await stopAll();
    throw e;
  }
  const pids = nodes.map((n) => pidListeningOn(Number(new URL(n.url).port)));
  const info = await probeAmqp(nodes[0]!.url);
  return {
    name: `${[info.product, info.version].join(' ').trim()} cluster of ${o.nodes}`,
    isWarren: false,
    endpoints: { amqp: nodes[0]!.url },
    consumerEndpoints: { amqp: (nodes[1] ?? nodes[0]!).url },
    pid: pids[0] ?? null,
    pids: () => pids.flatMap((p) => (p === null ? [] : [p])),
    shared: false,
    details: `${o.nodes} private nodes started by the harness and joined (join_cluster): ${nodes.map((n, i) => `${n.name} pid ${pids[i] ?? '?'}`).join(', ')}; ${info.platform}`,
    stop: stopAll,
  };
}

/**
 * Start a private RabbitMQ node for this run only: its own node name, ports, mnesia and log
 * directories and Erlang cookie (HOME) in a temp dir, listening on 127.0.0.1 only; SIGTERM to the
 * rabbitmq-server script stops it gracefully. Needs root or the rabbitmq user (the Debian scripts).
 */
export async function startLocalRabbitmq(o: {
  verbose: boolean;
  startTimeoutMs: number;
  /**
   * Its AMQP port; the node's other ports follow it (+1 distribution, +2 AMQPS, +3 MQTT, +4 MQTTS,
   * +5 STOMP, +6 the Erlang port mapper). Unset: free ports, and the port mapper's default.
   */
  amqpPort?: number;
}): Promise<Broker> {
  const script = RABBITMQ_SCRIPT_CANDIDATES.find((p) => existsSync(p));
  if (script === undefined) throw new Error('rabbitmq-server is not installed (apt-get install -y rabbitmq-server)');
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-rabbitmq-'));
  const base = o.amqpPort;
  const port = async (n: number): Promise<number> => (base === undefined ? freePort() : base + n);
  const amqpPort = await port(0);
  const distPort = await port(1);
  // The same certificate as Warren's: AMQP and MQTT over TLS (and plain MQTT) on free ports.
  const tls = benchCertificate();
  const amqpsPort = await port(2);
  const mqttPort = await port(3);
  const mqttsPort = await port(4);
  const stompPort = await port(5);
  await writeFile(join(dir, 'enabled_plugins'), '[rabbitmq_mqtt,rabbitmq_stomp].\n');
  await writeFile(
    join(dir, 'rabbitmq.conf'),
    [
      `listeners.ssl.default = 127.0.0.1:${amqpsPort}`,
      `mqtt.listeners.tcp.default = 127.0.0.1:${mqttPort}`,
      `mqtt.listeners.ssl.default = 127.0.0.1:${mqttsPort}`,
      'mqtt.allow_anonymous = true',
      // QoS 1 deliveries awaiting PUBACK per subscriber: 1024 like Warren's and Mosquitto's (default 10).
      'mqtt.prefetch = 1024',
      `stomp.listeners.tcp.1 = 127.0.0.1:${stompPort}`,
      `ssl_options.cacertfile = ${tls.ca}`,
      `ssl_options.certfile = ${tls.cert}`,
      `ssl_options.keyfile = ${tls.key}`,
      'ssl_options.verify = verify_none',
      'ssl_options.fail_if_no_peer_cert = false',
      '',
    ].join('\n'),
  );
  const nodeName = `warren-bench-${process.pid}@localhost`;
  const node = launchRabbitmqNode(script, dir, nodeName, amqpPort, distPort, o.verbose, base === undefined ? undefined : base + 6);
  const { stop, url } = node;
  const info = await node.listening(o.startTimeoutMs);
  const pid = pidListeningOn(amqpPort);
  return {
    name: [info.product, info.version].join(' ').trim(),
    isWarren: false,
    endpoints: {
      amqp: url,
      amqps: `amqps://guest:guest@127.0.0.1:${amqpsPort}`,
      mqtt: `mqtt://127.0.0.1:${mqttPort}`,
      mqtts: `mqtts://127.0.0.1:${mqttsPort}`,
      stomp: `stomp://guest:guest@127.0.0.1:${stompPort}`,
    },
    pid,
    shared: false,
    details: `private node ${nodeName} started by the harness (with rabbitmq_mqtt, mqtt.prefetch 1024, and rabbitmq_stomp; TLS with the run's certificate); ${info.platform}; pid ${pid ?? 'unknown'}`,
    stop,
  };
}
