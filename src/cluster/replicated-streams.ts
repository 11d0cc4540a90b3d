import { createHash, randomBytes } from 'node:crypto';
import { BrokerError, ReplyCode, StreamQueue, type Core, type Queue, type QueueForwarder, type StoredMessage, type StreamLimits } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter } from '../store/index.js';
import type { ClusterEngine, LogStatus, ReplicatedStream, StreamEntry, StreamFollow, StreamLogOptions } from './engine.js';
import { appendRetried, decodeLogEntry, EngineOpen, encodeLogEntry, statusWithin } from './log-entry.js';

/**
 * Stream queues in a cluster: a queue declared with `x-queue-type: stream` is a replicated stream
 * of the engine (a JetStream stream with limits retention), the stream's source of truth.
 *
 * - A publish routed to it on any node is appended to the engine's stream with a
 *   broker-generated message id (a retried append deduplicates); the publisher's confirm waits
 *   for the engine's answer.
 * - Every node with the queue keeps its own segment store as a read cache, fed in order by one
 *   follower of the engine's stream from the cache's end: offset = engine sequence - 1. Readers,
 *   filters, offset specs and credit work on the cache as on one node.
 * - A cache behind the engine's first message (retention dropped what it had not fetched yet)
 *   starts again at the engine's first sequence - 1; one ahead of the engine (the stream was made
 *   again) starts again from the engine's stream.
 * - Retention (`x-max-length-bytes`, `x-max-age`) is the engine stream's limits as well as each
 *   cache's own.
 */

/** RabbitMQ's default replica count of a stream (`x-initial-cluster-size`). */
export const DEFAULT_STREAM_REPLICAS = 3;
/** After a failed open or resync, the next try. */
const RETRY_MS = 1000;
/** How often links of streams deleted on this node (by another node's delete) are let go. */
const SWEEP_MS = 2000;

interface StreamLink {
  readonly queue: StreamQueue;
  readonly replicas: number;
  /** The engine's stream, opened (created when missing) on first use. */
  readonly stream: EngineOpen<ReplicatedStream>;
  follow: StreamFollow | undefined;
  /** The engine sequence the cache takes next (its end + 1). */
  next: number;
  /** The last append to the cache: settles once everything fed so far is on disk (or failed). */
  lastAppend: Promise<void>;
  timer: NodeJS.Timeout | undefined;
  /** Being resynchronised: entries are not taken meanwhile. */
  resyncing: boolean;
}

function intOf(v: unknown): number | undefined {
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) ? n : undefined;
}

function limitsOptions(replicas: number, l: StreamLimits): StreamLogOptions {
  return { replicas, ...(l.maxBytes !== undefined ? { maxBytes: l.maxBytes } : {}), ...(l.maxAgeMs !== undefined ? { maxAgeMs: l.maxAgeMs } : {}) };
}

export class ReplicatedStreams implements QueueForwarder {
  private readonly links = new Map<Queue, StreamLink>();
  private readonly w = new ByteWriter(4096);
  private readonly r = new ByteReader();
  private readonly boot = randomBytes(6).toString('hex');
  private counter = 0;
  private stopped = false;
  private lastWarn = 0;
  private readonly sweeper: NodeJS.Timeout;
  readonly stats = { appended: 0, fed: 0, failed: 0, restarts: 0 };

  constructor(
    private readonly core: Core,
    private readonly engine: ClusterEngine,
    private readonly cluster: string,
    readonly nodeName: string,
    private readonly log: Logger,
  ) {
    this.sweeper = setInterval(() => {
      for (const q of [...this.links.keys()]) if (q.deleted) this.detach(q);
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  /** Copies kept of a stream: `x-initial-cluster-size` (default 3), capped by the engine's servers. */
  replicasFor(q: Queue): number {
    const n = intOf(q.args['x-initial-cluster-size']);
    return Math.max(1, Math.min(n !== undefined && n > 0 ? n : DEFAULT_STREAM_REPLICAS, this.engine.info.clusterSize));
  }

  /** The engine stream's name for a queue: its vhost and name hashed (stream names are restricted). */
  streamName(vhost: string, queue: string): string {
    const h = createHash('sha256').update(vhost).update('\0').update(queue).digest('hex').slice(0, 32);
    return `warren_${this.cluster}_s_${h}`;
  }

  has(q: Queue): boolean {
    return this.links.has(q);
  }

  /** Makes `q` a replicated stream on this node if it is a stream queue; true when it is. Idempotent. */
  attach(q: Queue): boolean {
    if (this.links.has(q)) return true;
    if (!(q instanceof StreamQueue) || q.deleted || this.stopped) return false;
    const link: StreamLink = {
      queue: q,
      replicas: this.replicasFor(q),
      stream: new EngineOpen(() => this.engine.openStream(this.streamName(q.host.name, q.name), limitsOptions(this.replicasFor(q), q.streamLimits))),
      follow: undefined,
      next: q.log.end + 1,
      lastAppend: Promise.resolve(),
      timer: undefined,
      resyncing: false,
    };
    this.links.set(q, link);
    q.forwarder = this;
    q.limitsChanged = (l) => {
      if (this.links.get(q) !== link) return;
      this.engine.openStream(this.streamName(q.host.name, q.name), limitsOptions(link.replicas, l)).catch((err: unknown) => {
        this.log.warn({ err, vhost: q.host.name, queue: q.name }, "cluster: a stream's new retention could not be given to the engine");
      });
    };
    this.start(link);
    return true;
  }

  /** Resolves once the engine's stream exists (a declare is answered after it); undefined for another queue. */
  ready(q: Queue): Promise<void> | undefined {
    return this.links.get(q)?.stream.get().then(() => undefined);
  }

  /** Opens the engine's stream and feeds the cache from its end (again after a failure). */
  private start(link: StreamLink): void {
    this.feed(link).catch((err: unknown) => {
      if (this.links.get(link.queue) !== link) return;
      this.warn(err, link.queue, 'cluster: a stream could not be followed on the engine yet; trying again');
      this.later(link);
    });
  }

  private later(link: StreamLink): void {
    if (link.timer !== undefined) return;
    link.timer = setTimeout(() => {
      link.timer = undefined;
      if (this.links.get(link.queue) === link) this.start(link);
    }, RETRY_MS);
    link.timer.unref();
  }

  private async feed(link: StreamLink): Promise<void> {
    link.follow?.stop();
    link.follow = undefined;
    const stream = await link.stream.get();
    const q = link.queue;
    await link.lastAppend.catch(() => undefined);
    if (this.links.get(q) !== link) return;
    const b = await stream.bounds();
    if (this.links.get(q) !== link) return;
    const end = q.log.end;
    if (end + 1 < b.first || end > b.last) {
      // Behind the engine's first message, or past its last (a stream made again): start again there.
      this.log.warn({ vhost: q.host.name, queue: q.name, cached: end, first: b.first - 1, last: b.last }, "cluster: a stream's local copy does not match the engine's stream: it is dropped and starts again at the engine's first offset");
      this.stats.restarts++;
      q.log.restartAt(b.first - 1);
    }
    link.next = q.log.end + 1;
    link.follow = stream.follow(link.next, (e) => this.take(link, e));
  }

  /** An entry of the engine's stream: appended to the cache, in order. */
  private take(link: StreamLink, e: StreamEntry): void {
    const q = link.queue;
    if (this.links.get(q) !== link || link.resyncing) return;
    if (q.deleted) {
      this.detach(q);
      return;
    }
    if (e.seq < link.next) return;
    if (e.seq > link.next) {
      // Retention on the engine dropped messages before the cache had them: it starts again.
      this.resync(link);
      return;
    }
    link.next = e.seq + 1;
    let msg: StoredMessage;
    try {
      const vhost = this.core.vhosts.get(q.host.name);
      if (vhost === undefined) throw new Error(`no vhost '${q.host.name}'`);
      msg = vhost.storedFromCluster(decodeLogEntry(this.r, e.data), 0);
    } catch (err) {
      // Kept as an empty message, so the offsets stay the engine's.
      this.log.error({ err, vhost: q.host.name, queue: q.name, seq: e.seq }, 'cluster: a stream message could not be read; kept empty');
      msg = { exchange: '', routingKey: '', properties: {}, body: Buffer.alloc(0), rawProperties: undefined, id: 0, size: 0, persistent: true, refs: 0, publisherId: 0 };
    }
    const f = msg.properties.headers?.['x-stream-filter-value'];
    this.stats.fed++;
    q.stats.published++;
    const appended = q.log.append(msg, typeof f === 'string' ? f : undefined);
    link.lastAppend = appended;
    appended.catch((err: unknown) => {
      if (this.links.get(q) === link && !q.deleted) this.warn(err, q, "cluster: a stream's local copy could not be written");
    });
  }

  private resync(link: StreamLink): void {
    link.resyncing = true;
    link.follow?.stop();
    link.follow = undefined;
    void link.lastAppend
      .catch(() => undefined)
      .then(() => {
        link.resyncing = false;
        if (this.links.get(link.queue) === link) this.start(link);
      });
  }

  /** The stream is gone here (deleted): its follower stops. */
  detach(q: Queue): void {
    const link = this.links.get(q);
    if (link === undefined) return;
    this.links.delete(q);
    link.follow?.stop();
    if (link.timer !== undefined) clearTimeout(link.timer);
    if (q.forwarder === this) q.forwarder = undefined;
    if (q instanceof StreamQueue) q.limitsChanged = undefined;
  }

  /** A stream deleted on this node: the engine's stream goes (for every node). */
  removed(vhost: string, name: string): void {
    for (const link of this.links.values()) {
      const q = link.queue;
      if (q.host.name !== vhost || q.name !== name) continue;
      this.detach(q);
      link.stream.get()
        .then((s) => s.destroy())
        .catch((err: unknown) => this.log.warn({ err, vhost, queue: name }, "cluster: a deleted stream's engine stream could not be removed"));
      return;
    }
  }

  /** Where a stream's replicas are (management); undefined for a queue that is not a replicated stream. */
  async status(q: Queue): Promise<(LogStatus & { replicas: number }) | undefined> {
    const link = this.links.get(q);
    if (link === undefined) return undefined;
    const st = await (await link.stream.get()).status();
    return { replicas: link.replicas, ...st };
  }

  /**
   * Every replicated stream on this node with its replicas (health checks, listings): `status`
   * undefined when the engine did not answer within `timeoutMs`.
   */
  async report(timeoutMs = 3000): Promise<Array<{ vhost: string; name: string; replicas: number; status: LogStatus | undefined }>> {
    return Promise.all(
      [...this.links.values()].map(async (link) => ({
        vhost: link.queue.host.name,
        name: link.queue.name,
        replicas: link.replicas,
        status: await statusWithin(async () => (await link.stream.get()).status(), timeoutMs),
      })),
    );
  }

  // ---- publishing (QueueForwarder) ----------------------------------------------------------

  forward(queue: Queue, msg: StoredMessage): Promise<void> {
    const link = this.links.get(queue);
    if (link === undefined) {
      const p = Promise.reject(BrokerError.internal(`stream '${queue.name}' is not replicated on this node`));
      p.catch(noop);
      return p;
    }
    const data = encodeLogEntry(this.w, msg);
    const msgId = `${this.nodeName}.${this.boot}.s${++this.counter}`;
    const settled = this.appendFor(link, data, msgId);
    settled.catch(noop);
    return settled;
  }

  private async appendFor(link: StreamLink, data: Uint8Array, msgId: string): Promise<void> {
    const q = link.queue;
    try {
      const stream = link.stream.current ?? (await link.stream.get());
      await appendRetried(stream, data, msgId, () => this.stopped);
      this.stats.appended++;
    } catch (e) {
      this.stats.failed++;
      this.warn(e, q, 'cluster: a publish to a stream was not taken by the engine');
      throw new BrokerError(ReplyCode.INTERNAL_ERROR, `stream '${q.name}' is unavailable: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  private warn(err: unknown, q: Queue, what: string): void {
    const now = Date.now();
    if (now - this.lastWarn < 10_000) return;
    this.lastWarn = now;
    this.log.warn({ err, vhost: q.host.name, queue: q.name }, what);
  }

  /** Leaving: every follower stops. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.sweeper);
    for (const q of [...this.links.keys()]) this.detach(q);
  }
}

function noop(): void {}
