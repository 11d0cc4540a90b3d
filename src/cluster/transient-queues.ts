import { tableFromJson, tableToJson, type Core, type JsonValue, type Queue, type VHost } from '../core/index.js';
import type { Logger } from '../logger.js';
import { decodeJson, encodeJson, type ClusterKV, type KvEntry, type KvWatch } from './engine.js';

/**
 * Named transient queues cluster-wide. A non-durable, non-exclusive queue lives on the node that
 * declared it (its home), as before, and that node announces it in a replicated bucket, one key
 * per queue (`<node>.<vhost>.<queue>`, each base64url), the way nodes announce their routing
 * interest: written with the declare, deleted with the queue, withdrawn at a clean stop, and
 * what a node's earlier run left is deleted when it starts again (its transient queues did not
 * survive it).
 *
 * Every other node keeps a stand-in for each such queue whose home is running, as it does for a
 * durable queue homed elsewhere: a passive declare finds it, publishes routed to it here are
 * forwarded to the home, consumers and `basic.get` attach to the home's queue, and the
 * management API lists it. A stand-in never keeps messages, never expires or auto-deletes by
 * itself (its home decides), and goes when the queue is deleted, or when its home stops running
 * (RabbitMQ removes a transient queue whose node is down); it comes back if the home runs again
 * with the queue. Deleting a stand-in deletes the queue at its home.
 */

interface TransientRecord {
  node: string;
  vhost: string;
  name: string;
  autoDelete: boolean;
  arguments: Record<string, JsonValue>;
}

interface StandIn {
  readonly vhost: VHost;
  readonly queue: Queue;
  readonly node: string;
}

function b64(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

/** The bucket key of a transient queue. */
export function transientQueueKey(node: string, vhost: string, queue: string): string {
  return `${b64(node)}.${b64(vhost)}.${b64(queue)}`;
}

function isRecord(v: unknown): v is TransientRecord {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return typeof r['node'] === 'string' && typeof r['vhost'] === 'string' && typeof r['name'] === 'string' && typeof r['autoDelete'] === 'boolean';
}

export class TransientQueues {
  /** This node's announced queues, by queue and by key, with the revision of their write. */
  private readonly own = new Map<Queue, string>();
  private readonly ownByKey = new Map<string, Queue>();
  private readonly ownRevision = new Map<string, number>();
  /** Other nodes' queues, by key. */
  private readonly known = new Map<string, TransientRecord>();
  private readonly standIns = new Map<string, StandIn>();
  private readonly standInKeys = new Map<Queue, string>();
  private readonly ownPrefix: string;
  /** Set while this node declares or removes a stand-in itself (not a client's change). */
  private placing = false;
  private running = false;
  private watch: KvWatch | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly core: Core,
    private readonly kv: ClusterKV,
    private readonly nodeName: string,
    private readonly log: Logger,
    /** Places a stand-in at its home (undefined: here), as durable queues are placed. */
    private readonly place: (q: Queue, home: string | undefined) => void,
    /** Whether a node is running. */
    private readonly isRunning: (node: string) => boolean,
    private readonly checkMs = 1000,
  ) {
    this.ownPrefix = `${b64(nodeName)}.`;
  }

  /** Reads the bucket, announces this node's transient queues and drops what an earlier run left. */
  async start(): Promise<void> {
    const stale: string[] = [];
    this.watch = await this.kv.watch((e) => this.onEntry(e, stale));
    await this.watch.ready;
    this.running = true;
    for (const v of this.core.vhosts.values()) for (const q of v.queues.values()) this.added(v, q);
    for (const key of stale) if (!this.ownByKey.has(key)) this.deleteKey(key);
    for (const key of this.known.keys()) this.reconcile(key);
    this.timer = setInterval(() => {
      for (const key of this.known.keys()) this.reconcile(key);
    }, this.checkMs);
    this.timer.unref();
  }

  /** Withdraws this node's queues (they end with it). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    this.watch?.stop();
    this.watch = undefined;
    const keys = [...this.ownByKey.keys()];
    this.own.clear();
    this.ownByKey.clear();
    await Promise.all(keys.map((k) => this.kv.delete(k).catch(() => undefined)));
  }

  /** The home of a stand-in here; undefined for every other queue. */
  homeOf(vhost: string, queue: string): string | undefined {
    const q = this.core.vhosts.get(vhost)?.queues.get(queue);
    const key = q === undefined ? undefined : this.standInKeys.get(q);
    return key === undefined ? undefined : this.standIns.get(key)?.node;
  }

  /** How many queues this node announces, and how many stand-ins it has for other nodes'. */
  get counts(): { own: number; standIns: number } {
    return { own: this.own.size, standIns: this.standIns.size };
  }

  /** A non-durable queue was declared here (told by the routing relay). */
  added(vhost: VHost, q: Queue): void {
    if (!this.running || this.placing || q.durable || q.exclusive || this.own.has(q) || this.standInKeys.has(q)) return;
    const key = transientQueueKey(this.nodeName, vhost.name, q.name);
    this.own.set(q, key);
    this.ownByKey.set(key, q);
    this.ownRevision.delete(key);
    const rec: TransientRecord = { node: this.nodeName, vhost: vhost.name, name: q.name, autoDelete: q.autoDelete, arguments: tableToJson(q.args) };
    this.kv.put(key, encodeJson(rec)).then(
      (rev) => {
        if (this.ownByKey.get(key) === q) this.ownRevision.set(key, rev);
      },
      (e: unknown) => this.log.warn({ queue: q.name, vhost: vhost.name, err: e instanceof Error ? e.message : String(e) }, 'cluster: could not announce a transient queue'),
    );
  }

  /** A non-durable queue here was deleted. */
  removed(_vhost: VHost, q: Queue): void {
    const key = this.own.get(q);
    if (key !== undefined) {
      this.own.delete(q);
      if (this.ownByKey.get(key) === q) {
        this.ownByKey.delete(key);
        this.ownRevision.delete(key);
      }
      this.deleteKey(key);
      return;
    }
    const sk = this.standInKeys.get(q);
    if (sk === undefined) return;
    this.standInKeys.delete(q);
    this.standIns.delete(sk);
    if (this.placing) return;
    // Deleted by a client here: the queue goes at its home too (and is not stood in for again).
    this.known.delete(sk);
    this.deleteKey(sk);
  }

  private deleteKey(key: string): void {
    this.kv.delete(key).catch((e: unknown) => this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cluster: could not withdraw a transient queue'));
  }

  private onEntry(e: KvEntry, stale: string[]): void {
    if (e.key.startsWith(this.ownPrefix)) {
      if (!this.running) {
        if (e.value !== undefined) stale.push(e.key);
        return;
      }
      // Deleted on another node after this node announced it: the queue goes here.
      const q = this.ownByKey.get(e.key);
      const rev = this.ownRevision.get(e.key);
      if (e.value === undefined && q !== undefined && rev !== undefined && e.revision > rev && !q.deleted) {
        this.core.vhosts.get(q.host.name)?.removeQueue(q);
      }
      return;
    }
    if (e.value === undefined) {
      this.known.delete(e.key);
      this.dropStandIn(e.key);
      return;
    }
    let rec: unknown;
    try {
      rec = decodeJson(e.value);
    } catch {
      return;
    }
    if (!isRecord(rec)) return;
    this.known.set(e.key, rec);
    if (this.running) this.reconcile(e.key);
  }

  /** A stand-in while the queue's home runs, none otherwise. */
  private reconcile(key: string): void {
    const rec = this.known.get(key);
    if (rec === undefined || !this.isRunning(rec.node)) this.dropStandIn(key);
    else if (!this.standIns.has(key)) this.addStandIn(key, rec);
  }

  private addStandIn(key: string, rec: TransientRecord): void {
    const vhost = this.core.vhosts.get(rec.vhost);
    // A queue of the same name here (declared here meanwhile) keeps it: the first declare wins.
    if (vhost === undefined || vhost.queues.has(rec.name)) return;
    let q: Queue;
    this.placing = true;
    try {
      q = vhost.declareQueue(rec.name, { durable: false, exclusive: false, autoDelete: rec.autoDelete, arguments: tableFromJson(rec.arguments) }, false, 0);
    } catch (e) {
      this.log.warn({ queue: rec.name, vhost: rec.vhost, node: rec.node, err: e instanceof Error ? e.message : String(e) }, 'cluster: could not add a transient queue of another node');
      return;
    } finally {
      this.placing = false;
    }
    this.standIns.set(key, { vhost, queue: q, node: rec.node });
    this.standInKeys.set(q, key);
    this.place(q, rec.node);
    q.touch();
  }

  private dropStandIn(key: string): void {
    const s = this.standIns.get(key);
    if (s === undefined) return;
    this.placing = true;
    try {
      s.vhost.removeQueue(s.queue);
    } finally {
      this.placing = false;
    }
    this.standIns.delete(key);
    this.standInKeys.delete(s.queue);
    this.place(s.queue, undefined);
  }
}
