import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Core } from '../core/index.js';
import type { Logger } from '../logger.js';
import { decodeJson, encodeJson, type ClusterKV, type KvEntry, type KvWatch } from './engine.js';

/**
 * The node registry: who is in the cluster and who is running. Two buckets: `nodes` holds each
 * node's identity (kept after it stops, so a stopped node is listed as not running, as RabbitMQ
 * lists a stopped cluster member), `alive` a heartbeat record rewritten every `heartbeatMs` and
 * dropped by the engine after `ttlMs`. A node counts as running while its heartbeat is younger than
 * the TTL, by this node's own clock (the time the heartbeat was seen), or until it deletes its
 * heartbeat on a clean stop.
 */

export interface NodeListener {
  protocol: string;
  port: number;
}

/** A node's identity, written when it starts. */
export interface NodeIdentity {
  name: string;
  /** Random per process start: two processes claiming one name are told apart. */
  instance: string;
  host: string;
  pid: number;
  version: string;
  startedAt: number;
  listeners: NodeListener[];
}

/** A node's heartbeat: how it is doing now. */
export interface NodeHeartbeat {
  name: string;
  instance: string;
  at: number;
  memUsed: number;
  memLimit: number;
  alarms: string[];
  connections: number;
}

/** One node as `/api/nodes` and `warren cluster status` show it. */
export interface ClusterNodeInfo {
  name: string;
  running: boolean;
  host: string;
  pid: number;
  version: string;
  startedAt: number;
  /** Milliseconds since it started; 0 when not running. */
  uptime: number;
  memUsed: number;
  memLimit: number;
  alarms: string[];
  connections: number;
  listeners: NodeListener[];
}

/** Another live process holds this node name. */
export class NodeNameTaken extends Error {
  override readonly name = 'NodeNameTaken';
}

export interface RegistryOptions {
  heartbeatMs: number;
  ttlMs: number;
}

export class NodeRegistry {
  private readonly identities = new Map<string, NodeIdentity>();
  private readonly beats = new Map<string, { beat: NodeHeartbeat; seen: number }>();
  private readonly watches: KvWatch[] = [];
  private timer: NodeJS.Timeout | undefined;
  readonly instance = randomUUID();
  private identity: NodeIdentity;
  private readonly startedAt = Date.now();
  private watching = false;
  private beatFailing = false;

  constructor(
    private readonly core: Core,
    private readonly nodesKv: ClusterKV,
    private readonly aliveKv: ClusterKV,
    readonly nodeName: string,
    version: string,
    private readonly opts: RegistryOptions,
    private readonly log: Logger,
  ) {
    this.identity = { name: nodeName, instance: this.instance, host: hostname(), pid: process.pid, version, startedAt: this.startedAt, listeners: [] };
  }

  /** Claims the node name (refused while another live process has it), then watches the registry. */
  async start(): Promise<void> {
    const key = this.nodeName;
    const beat = encodeJson(this.heartbeat());
    if ((await this.aliveKv.create(key, beat)) === undefined) await this.takeOver(key);
    await this.nodesKv.put(key, encodeJson(this.identity));
    for (const [kv, on] of [
      [this.nodesKv, (e: KvEntry) => this.onIdentity(e)],
      [this.aliveKv, (e: KvEntry) => this.onBeat(e)],
    ] as const) {
      const w = await kv.watch(on);
      this.watches.push(w);
      await w.ready;
    }
    this.watching = true;
    this.timer = setInterval(() => this.beat(), this.opts.heartbeatMs);
    this.timer.unref();
  }

  /**
   * The name has a heartbeat: a process that just died (restarted by its supervisor) or one that
   * runs. Waits one TTL: a live holder writes a new heartbeat meanwhile and the name is refused;
   * a dead one does not, and the name is taken over (compare-and-set, so two newcomers cannot both
   * win).
   */
  private async takeOver(key: string): Promise<void> {
    for (;;) {
      const held = await this.aliveKv.get(key);
      if (held === undefined) {
        if ((await this.aliveKv.create(key, encodeJson(this.heartbeat()))) !== undefined) return;
        continue;
      }
      const other = decodeJson(held.value!) as NodeHeartbeat;
      if (Date.now() - other.at >= this.opts.ttlMs) {
        if ((await this.aliveKv.compareAndSet(key, encodeJson(this.heartbeat()), held.revision)) !== undefined) return;
        throw new NodeNameTaken(`node name '${key}' was just taken by another process; choose another --node-name`);
      }
      this.log.info({ node: key }, 'cluster: this node name has a recent heartbeat; waiting to see whether its holder is alive');
      await new Promise((resolve) => setTimeout(resolve, this.opts.ttlMs + this.opts.heartbeatMs));
      const now = await this.aliveKv.get(key);
      if (now !== undefined && now.revision !== held.revision) {
        throw new NodeNameTaken(`node name '${key}' is in use by a running node; choose another --node-name or stop that node`);
      }
      const taken = now === undefined ? await this.aliveKv.create(key, encodeJson(this.heartbeat())) : await this.aliveKv.compareAndSet(key, encodeJson(this.heartbeat()), now.revision);
      if (taken !== undefined) return;
    }
  }

  /** The listeners once they are bound (written to the node's identity). */
  async setListeners(listeners: NodeListener[]): Promise<void> {
    this.identity = { ...this.identity, listeners };
    await this.nodesKv.put(this.nodeName, encodeJson(this.identity));
  }

  /** Stops the heartbeat and deletes it: the others list this node as not running at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const w of this.watches) w.stop();
    try {
      await this.aliveKv.delete(this.nodeName);
    } catch (err) {
      this.log.warn({ err }, 'cluster: cannot remove the heartbeat (the others see this node stop after the TTL)');
    }
  }

  private heartbeat(): NodeHeartbeat {
    const alarms = this.core.alarms;
    return {
      name: this.nodeName,
      instance: this.instance,
      at: Date.now(),
      memUsed: alarms.memoryFigure().total,
      memLimit: alarms.memoryLimit,
      alarms: [...alarms.active],
      connections: this.core.connections.size,
    };
  }

  private beat(): void {
    this.aliveKv.put(this.nodeName, encodeJson(this.heartbeat())).then(
      () => {
        if (this.beatFailing) this.log.info('cluster: heartbeat written again');
        this.beatFailing = false;
      },
      (err: unknown) => {
        // Once per outage, not once a second.
        if (!this.beatFailing) this.log.warn({ err }, 'cluster: heartbeat not written: the other nodes will list this one as stopped');
        this.beatFailing = true;
      },
    );
  }

  private onIdentity(e: KvEntry): void {
    if (e.value === undefined) {
      this.identities.delete(e.key);
      return;
    }
    try {
      this.identities.set(e.key, decodeJson(e.value) as NodeIdentity);
    } catch {
      // not a record of ours
    }
  }

  private onBeat(e: KvEntry): void {
    if (e.value === undefined) {
      this.beats.delete(e.key);
      return;
    }
    try {
      const beat = decodeJson(e.value) as NodeHeartbeat;
      // A heartbeat read when the watch starts counts from when it was written (at the latest
      // now); a new one from when it arrives, so other nodes' clocks matter only at the start.
      // A heartbeat read again (the watch re-reads the bucket) that is already older than the TTL
      // by its writer's clock does not make a dead node look alive.
      const now = Date.now();
      this.beats.set(e.key, { beat, seen: this.watching && now - beat.at < this.opts.ttlMs ? now : Math.min(now, beat.at) });
    } catch {
      // not a record of ours
    }
  }

  /** Whether `name` is running, as {@link nodes} says, without building the list. */
  isRunning(name: string): boolean {
    if (name === this.nodeName) return true;
    const b = this.beats.get(name);
    // A node this one has not heard of yet (it joined a moment ago) is not judged down: a publish
    // is forwarded and its answer decides.
    if (b === undefined) return !this.identities.has(name);
    if (Date.now() - b.seen >= this.opts.ttlMs) return false;
    const id = this.identities.get(name);
    return id === undefined || b.beat.instance === id.instance;
  }

  /** Every node that ever joined, running or not, by name. */
  nodes(): ClusterNodeInfo[] {
    const now = Date.now();
    const names = new Set([...this.identities.keys(), ...this.beats.keys(), this.nodeName]);
    const out: ClusterNodeInfo[] = [];
    for (const name of [...names].sort()) {
      const id = name === this.nodeName ? this.identity : this.identities.get(name);
      const b = name === this.nodeName ? { beat: this.heartbeat(), seen: now } : this.beats.get(name);
      const running = b !== undefined && now - b.seen < this.opts.ttlMs && (id === undefined || b.beat.instance === id.instance);
      out.push({
        name,
        running,
        host: id?.host ?? '',
        pid: id?.pid ?? 0,
        version: id?.version ?? '',
        startedAt: id?.startedAt ?? 0,
        uptime: running && id !== undefined ? now - id.startedAt : 0,
        memUsed: running ? (b?.beat.memUsed ?? 0) : 0,
        memLimit: b?.beat.memLimit ?? 0,
        alarms: running ? (b?.beat.alarms ?? []) : [],
        connections: running ? (b?.beat.connections ?? 0) : 0,
        listeners: id?.listeners ?? [],
      });
    }
    return out;
  }
}
