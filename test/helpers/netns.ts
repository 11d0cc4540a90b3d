import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startNatsServers, type NatsServers } from '../../src/cluster/dev-cluster.js';
import { spawnNode, type NodeProcess } from './cluster.js';

/**
 * A cluster split over network namespaces, so that one part of it can be cut off from the rest:
 * namespace `i` runs one nats-server and one Warren node. The namespaces hang off one bridge in
 * the test's namespace by a veth pair each (the cluster network, 10.A.B.0/25: NATS client and
 * route traffic), and each also has a second veth pair straight to the test's namespace (the
 * access network, a /30 in 10.A.B.128/25) on which the test reaches that node's AMQP and HTTP
 * ports. {@link NetnsCluster.isolate} takes the namespace's bridge port down: its NATS server and
 * Warren node lose every other server, while the test still talks to the node.
 *
 * Names carry the test process's pid (`wrn<pid>` namespaces, `wr<pid36>...` links), so a run
 * finds and removes what a crashed run left behind without touching a live one's.
 */

const run = promisify(execFile);

async function ip(...args: string[]): Promise<string> {
  return (await run('ip', args)).stdout;
}

async function ipQuiet(...args: string[]): Promise<void> {
  await run('ip', args).catch(() => undefined);
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export async function netnsUnavailable(): Promise<string | undefined> {
  const probe = `wrnprobe${process.pid}`;
  try {
    await ip('netns', 'add', probe);
    await ip('netns', 'exec', probe, 'ip', 'link', 'set', 'lo', 'up');
    return undefined;
  } catch (e) {
    return `'ip netns' is not permitted here (${e instanceof Error ? e.message.split('\n')[0] : String(e)}); partition tests need root and iproute2`;
  } finally {
    await ipQuiet('netns', 'del', probe);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Namespaces and bridges of earlier runs whose process is gone: their processes killed, then removed. */
export async function removeLeftovers(): Promise<void> {
  const namespaces = (await ip('netns', 'list')).split('\n').map((l) => l.split(' ')[0] ?? '');
  for (const ns of namespaces) {
    const m = /^wrn(\d+)x\d+n\d+$/.exec(ns);
    if (m === null || alive(Number(m[1]))) continue;
    await removeNamespace(ns);
  }
  const links = (await ip('-o', 'link', 'show', 'type', 'bridge')).split('\n');
  for (const line of links) {
    const m = /^\d+: (wrb([0-9a-z]+)x[0-9a-z]+)[:@]/.exec(line);
    if (m === null || alive(parseInt(m[2]!, 36))) continue;
    await ipQuiet('link', 'del', m[1]!);
  }
}

async function removeNamespace(ns: string): Promise<void> {
  const pids = (await ip('netns', 'pids', ns).catch(() => '')).split('\n').filter((p) => p !== '');
  for (const p of pids) {
    try {
      process.kill(Number(p), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  await ipQuiet('netns', 'del', ns);
}

export interface NetnsCluster {
  readonly dir: string;
  /** Namespace names, one per server and node. */
  readonly namespaces: string[];
  readonly nats: NatsServers;
  /** Node `i` (named `n<i+1>`) runs in namespace `i`; started by {@link start}. */
  readonly nodes: NodeProcess[];
  /** The address the test reaches namespace `i` on (its access link). */
  readonly access: string[];
  /** Starts node `n<i+1>` in namespace `i`, connected to every NATS server, listening on all addresses. */
  start(i: number, extra?: string[]): Promise<NodeProcess>;
  /** `amqp://` URL of node `i` on its access address. */
  amqpUrl(i: number): string;
  /** Cuts namespace `i` off the cluster network (its bridge port down). */
  isolate(i: number): Promise<void>;
  /** Puts namespace `i` back on the cluster network. */
  heal(i: number): Promise<void>;
  /** Kills every process, removes the namespaces, links, bridge and directory; safe to call twice. */
  stop(): Promise<void>;
}

let runs = 0;

/**
 * `count` namespaces on a bridge, a clustered nats-server with JetStream in each. NATS servers
 * ping their routes every second, so a cut-off route is noticed within seconds.
 */
export async function startNetnsCluster(count = 3): Promise<NetnsCluster> {
  await removeLeftovers();
  const k = runs++;
  const pid36 = process.pid.toString(36);
  const bridge = `wrb${pid36}x${k.toString(36)}`;
  const namespaces = Array.from({ length: count }, (_, i) => `wrn${process.pid}x${k}n${i}`);
  const clusterLink = (i: number): string => `wrc${pid36}x${k.toString(36)}${i}`;
  const accessLink = (i: number): string => `wra${pid36}x${k.toString(36)}${i}`;
  // 10.A.B.0/24 from the pid and the run: unlikely to meet another run's or the machine's own.
  const a = 16 + ((process.pid >> 8) % 200);
  const b = (process.pid + k * 37) % 256;
  const net = `10.${a}.${b}`;
  const hosts = namespaces.map((_, i) => `${net}.${i + 2}`);
  const access = namespaces.map((_, i) => `${net}.${128 + 4 * i + 2}`);
  const dir = await mkdtemp(join(tmpdir(), 'warren-netns-'));
  const nodes: NodeProcess[] = [];
  let nats: NatsServers | undefined;
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    for (const n of nodes) if (n.child.exitCode === null && n.child.signalCode === null) n.child.kill('SIGKILL');
    await Promise.all(nodes.map((n) => n.exited));
    await nats?.stop().catch(() => undefined);
    for (const ns of namespaces) await removeNamespace(ns);
    for (let i = 0; i < count; i++) {
      await ipQuiet('link', 'del', clusterLink(i));
      await ipQuiet('link', 'del', accessLink(i));
    }
    await ipQuiet('link', 'del', bridge);
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await ip('link', 'add', bridge, 'type', 'bridge');
    await ip('link', 'set', bridge, 'up');
    for (let i = 0; i < count; i++) {
      const ns = namespaces[i]!;
      await ip('netns', 'add', ns);
      await ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
      await ip('link', 'add', clusterLink(i), 'type', 'veth', 'peer', 'name', 'cluster0', 'netns', ns);
      await ip('link', 'set', clusterLink(i), 'master', bridge);
      await ip('link', 'set', clusterLink(i), 'up');
      await ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${hosts[i]}/25`, 'dev', 'cluster0');
      await ip('netns', 'exec', ns, 'ip', 'link', 'set', 'cluster0', 'up');
      await ip('link', 'add', accessLink(i), 'type', 'veth', 'peer', 'name', 'access0', 'netns', ns);
      await ip('addr', 'add', `${net}.${128 + 4 * i + 1}/30`, 'dev', accessLink(i));
      await ip('link', 'set', accessLink(i), 'up');
      await ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${access[i]}/30`, 'dev', 'access0');
      await ip('netns', 'exec', ns, 'ip', 'link', 'set', 'access0', 'up');
    }
    nats = await startNatsServers({
      count,
      dir: join(dir, 'nats'),
      hosts,
      launcher: (i) => ['ip', 'netns', 'exec', namespaces[i]!],
      settings: ['ping_interval: "1s"', 'ping_max: 3'],
    });
  } catch (e) {
    await stop();
    throw e;
  }
  const started = nats;
  return {
    dir,
    namespaces,
    nats: started,
    nodes,
    access,
    async start(i, extra = []) {
      const args = ['--bind', '0.0.0.0', '--guest-remote', 'true', ...extra];
      const n = await spawnNode(started.url, `n${i + 1}`, join(dir, `n${i + 1}`), args, 30_000, ['ip', 'netns', 'exec', namespaces[i]!]);
      nodes[i] = n;
      return n;
    },
    amqpUrl: (i) => `amqp://guest:guest@${access[i]}:${nodes[i]!.amqpPort}`,
    isolate: (i) => ip('link', 'set', clusterLink(i), 'down').then(() => undefined),
    heal: (i) => ip('link', 'set', clusterLink(i), 'up').then(() => undefined),
    stop,
  };
}
