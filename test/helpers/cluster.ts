import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import amqp from 'amqplib';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { freePort, startNatsServers, type NatsServers } from '../../src/cluster/dev-cluster.js';
import { MemoryEngine, type ClusterEngine } from '../../src/cluster/index.js';
import { connectNats } from '../../src/cluster/nats/nats-engine.js';
import { WARREN_BIN } from './warren-process.js';

/** A Warren node as a child process of the test, joined to a cluster. */
export interface NodeProcess {
  readonly name: string;
  readonly dataDir: string;
  child: ChildProcessWithoutNullStreams;
  amqpPort: number;
  httpPort: number;
  /** Set when the node was started with an MQTT port (`--mqtt-port 0`). */
  mqttPort: number | undefined;
  /** Set when the node was started with a STOMP port (`--stomp-port 0`). */
  stompPort: number | undefined;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

export interface TestCluster {
  readonly dir: string;
  readonly nats: NatsServers;
  readonly nodes: Map<string, NodeProcess>;
  /** Starts (or starts again, on its data directory) the node `name`. */
  start(name: string, extra?: string[]): Promise<NodeProcess>;
  /** SIGKILLs a node. */
  kill(name: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Spawns `warren start` joined to `url` with AMQP and HTTP on ephemeral ports (MQTT and STOMP
 * off); resolves once the ready line is printed, rejects if the process exits first. `launcher`
 * is a command to start it under (`ip netns exec NAME`).
 */
export async function spawnNode(url: string, name: string, dataDir: string, extra: string[] = [], timeoutMs = 20_000, launcher: string[] = []): Promise<NodeProcess> {
  const args = [
    WARREN_BIN, 'start', '--cluster', 'test', '--cluster-url', url, '--node-name', name, '--data-dir', dataDir, '--bind', '127.0.0.1',
    '--amqp-port', '0', '--http-port', '0', '--mqtt-port', 'off', '--stomp-port', 'off', '--log-level', 'warn', ...extra,
  ];
  // Ports of WARREN_PORT_RANGE instead of ephemeral ones when it is set.
  if (process.env['WARREN_PORT_RANGE'] !== undefined) {
    for (let i = 1; i < args.length; i++) if (args[i] === '0' && args[i - 1]!.endsWith('-port')) args[i] = String(await freePort());
  }
  const command = [...launcher, process.execPath, ...args];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (s: string) => stdout.push(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ports = await new Promise<{ amqp: number; http: number; mqtt: number | undefined; stomp: number | undefined }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no ready line after ${timeoutMs} ms: ${stderr.join('')}`)), timeoutMs);
    const onData = (): void => {
      const line = /warren ready [^\n]*/.exec(stdout.join(''))?.[0];
      const port = (name: string): number | undefined => {
        const m = new RegExp(`\\b${name}=(\\d+)`).exec(line ?? '');
        return m ? Number(m[1]) : undefined;
      };
      const amqp = port('amqp');
      const httpPort = port('http');
      if (amqp !== undefined && httpPort !== undefined) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve({ amqp, http: httpPort, mqtt: port('mqtt'), stomp: port('stomp') });
      }
    };
    child.stdout.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code} before it was ready: ${stderr.join('')}`));
    });
  });
  return { name, dataDir, child, amqpPort: ports.amqp, httpPort: ports.http, mqttPort: ports.mqtt, stompPort: ports.stomp, stdout, stderr, exited };
}

/** An AMQP connection to a node as guest, kept in `conns` (for the test to close); its errors are the test's to see. */
export async function connectAmqp(node: NodeProcess, conns: amqp.ChannelModel[]): Promise<amqp.ChannelModel> {
  const c = await amqp.connect(`amqp://guest:guest@127.0.0.1:${node.amqpPort}`);
  c.on('error', () => undefined);
  conns.push(c);
  return c;
}

/** `servers` nats-servers with JetStream, clustered, in a temporary directory; nodes started on demand. */
export async function startTestCluster(servers = 3): Promise<TestCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-cluster-'));
  const nats = await startNatsServers({ count: servers, dir: join(dir, 'nats') });
  const nodes = new Map<string, NodeProcess>();
  return {
    dir,
    nats,
    nodes,
    async start(name, extra = []) {
      const n = await spawnNode(nats.url, name, join(dir, name), extra);
      nodes.set(name, n);
      return n;
    },
    async kill(name) {
      const n = nodes.get(name);
      if (!n) return;
      n.child.kill('SIGKILL');
      await n.exited;
    },
    async stop() {
      for (const n of nodes.values()) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGTERM');
      await Promise.all([...nodes.values()].map((n) => n.exited));
      await nats.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The two engines a contract test runs against, as `describe.each` rows: the in-process engine and
 * one nats-server with JetStream, started before the file's tests and stopped after them. Every
 * engine a row connects is closed at the end.
 */
export function contractEngines(clientName: string): Array<[string, () => Promise<ClusterEngine>]> {
  let nats: NatsServers | undefined;
  let memory: MemoryEngine | undefined;
  const engines: ClusterEngine[] = [];
  beforeAll(async () => {
    nats = await startNatsServers({ count: 1 });
    memory = new MemoryEngine();
  }, 30_000);
  afterAll(async () => {
    for (const e of engines) await e.close();
    memory?.stop();
    await nats?.stop();
  });
  const kept = (e: ClusterEngine): ClusterEngine => {
    engines.push(e);
    return e;
  };
  return [
    ['memory', async () => kept(started(memory).connect('t'))],
    ['nats', async () => kept(await connectNats({ servers: [started(nats).url], name: clientName }))],
  ];
}

function started<T>(v: T | undefined): T {
  if (v === undefined) throw new Error('the engines start in beforeAll');
  return v;
}
