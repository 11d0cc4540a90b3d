import { createHash, randomBytes } from 'node:crypto';
import { BrokerError, ReplyCode, SETTLED, type Core, type Queue, type QueueEntry, type QueueForwarder, type QueueReplica, type StoredMessage } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter } from '../store/index.js';
import { LogFullError, NoResponderError, type BusSubscription, type ClusterEngine, type LogMessage, type LogOptions, type LogStatus, type ReplicatedLog } from './engine.js';
import { appendRetried, decodeLogEntry, deliveredBefore, EngineOpen, encodeLogEntry, statusWithin } from './log-entry.js';

/**
 * Replicated queues: a queue declared with `x-queue-type: quorum` (or matched by a policy with
 * `ha-mode`) keeps its messages in a replicated log of the engine (a JetStream stream) instead of
 * on one node. No node owns it:
 *
 * - A publish routed to it on any node is appended to the log with a broker-generated message id
 *   (a retried append deduplicates); the publisher's confirm waits for the engine's answer.
 * - Every node with consumers on it pulls from the log's shared cursor up to its consumers' free
 *   prefetch, and delivers locally; the node's queue holds what it pulled, in memory only. While
 *   the log is empty the pull waits on the engine (a long poll): nothing is polled, and an append
 *   on any node reaches a waiting puller at once.
 * - Ack or dead-lettering acks in the log; a requeue or a closed channel naks (the message goes
 *   to any node again, `redelivered`, its `x-delivery-count` from the log's delivery count); a
 *   node that dies stops sending in-progress for what it held, and after the ack wait the log
 *   hands those messages to another node.
 *
 * - A purge takes every message the log has not handed out (pulled and acked at once by the
 *   purging node), then asks every other running node to drop what it pulled and has not
 *   delivered yet (`warren.<cluster>.rq.<node>`: str16 vhost | str16 queue; answer u32 purged).
 *   What consumers hold stays, as on one node.
 *
 * A log entry is a message as log-entry.ts encodes it.
 */

/**
 * The most messages asked of the log at once. A node has one pull in flight per queue, so a
 * consumer's rate is at most this many per round trip to the engine, and a round trip grows while
 * the engine is busy taking appends: as many as a consumer's usual prefetch (1000) in one go lets a
 * consumer keep up with a publisher where a quarter of it fell behind. The pull asks no more than
 * the free prefetch of the node's consumers, and the engine answers at once with what it has.
 */
const MAX_PULL = 1000;
/**
 * How long a pull of a node with consumers and free credit waits on the engine for the first
 * message when the log has none (a long poll, asked again when it ends empty): an idle queue costs
 * one request per this long, and a message appended on any node reaches a waiting puller at once.
 */
const LONG_POLL_MS = 5000;
/**
 * A long poll that ended empty sooner than this (an engine answering with an error status, a
 * connection that moved) is asked again only after {@link SHORT_POLL_BACKOFF_MS}, never in a loop.
 */
const SHORT_POLL_MS = 50;
const SHORT_POLL_BACKOFF_MS = 100;
/** After a failed pull (engine unreachable), the next try. */
const RETRY_MS = 1000;
/** Attempts to open a queue's log for a publish before the publish fails. */
const OPEN_ATTEMPTS = 3;
/** Messages of a classic queue appended to its new log at once, while it becomes replicated. */
const MOVE_BATCH = 500;
/** While a queue becoming replicated waits for its consumers' unacked messages, or a stand-in for its consumers to go. */
const MOVE_WAIT_MS = 200;
/** How long a purge waits for another node's count before it leaves that node out. */
const PURGE_ASK_MS = 2000;
export const DEFAULT_ACK_WAIT_MS = 30_000;
export const DEFAULT_REPLICAS = 3;

interface Link {
  readonly queue: Queue;
  /** The copies the log keeps (a mirroring policy's change or removal changes them). */
  replicas: number;
  /** The replica changes asked of the engine, one after the other. */
  scaling: Promise<void>;
  /** The queue's log, opened (created when missing) on first use. */
  readonly log: EngineOpen<ReplicatedLog>;
  /** The entries this node pulled and has not settled or given back, by log sequence. */
  readonly held: Map<number, QueueEntry>;
  /**
   * The queue was a classic queue with messages here (an `ha-mode` policy came after its declare,
   * or a move was cut short): publishes go to the log already, and what the queue holds here
   * moves to the log before the queue takes messages from it (see {@link ReplicatedQueues.move}).
   */
  migrating: boolean;
  pulling: boolean;
  again: boolean;
  /** Dropping messages from the head of a queue over its `x-max-length` (one drop at a time per node). */
  trimming: boolean;
  trimAgain: boolean;
  /** The engine's count of ready messages being asked (one ask at a time, shared by the publishes that wait for it). */
  readyAsk: Promise<{ ready: number; passedBefore: number; inFlight: number }> | undefined;
  /** Publishes of this node that passed the `x-max-length` check, and those of them not settled yet. */
  passed: number;
  unsettled: number;
  /** A basic.get found nothing: one message is pulled for the next get even without consumers. */
  forGet: boolean;
  timer: NodeJS.Timeout | undefined;
  immediate: boolean;
  /** The highest log sequence this node has pulled (see {@link ReplicatedQueues.take}). */
  maxPulled: number;
}

/** The queue name prefixes of the MQTT adapter's persistent sessions and the STOMP adapter's durable topic subscriptions. */
const SESSION_QUEUE_PREFIXES = ['mqtt-subscription-', 'stomp-subscription-'];

/**
 * A durable queue that holds a client's session state between connections: a persistent MQTT
 * session's queue (clean sessions and sessions expiring at disconnect have exclusive ones) or a
 * durable STOMP topic subscription's. In a cluster these are replicated, so that the client finds
 * its messages on whichever node it reconnects to, even after the node it left has died.
 */
export function isSessionQueue(q: Pick<Queue, 'name' | 'durable' | 'exclusive' | 'autoDelete'>): boolean {
  if (!q.durable || q.exclusive || q.autoDelete) return false;
  for (const p of SESSION_QUEUE_PREFIXES) if (q.name.startsWith(p)) return true;
  return false;
}

/**
 * The log's options for a queue: `x-max-length-bytes` (with `x-overflow`) is the stream's, so
 * that it holds for the queue as a whole, whichever node publishes; the stream drops what it
 * removes without dead-lettering it. So is `x-message-ttl` on a queue without a dead-letter
 * exchange (what expires is dropped); with one, the nodes dead-letter what expires (see
 * {@link watchesExpiry}). `x-max-length` is not the stream's: it counts the ready messages only,
 * as RabbitMQ's does (see {@link ReplicatedQueues.trim}).
 */
function logOptions(q: Queue, replicas: number, ackWaitMs: number): LogOptions {
  const l = q.limits;
  const opts: LogOptions = { replicas, ackWaitMs };
  if (l.maxLengthBytes !== undefined) opts.maxBytes = l.maxLengthBytes;
  if (l.messageTtl !== undefined && l.deadLetterExchange === undefined) opts.maxAgeMs = l.messageTtl;
  if (l.overflow !== 'drop-head' && l.maxLengthBytes !== undefined) opts.rejectWhenFull = true;
  return opts;
}

/**
 * A queue whose `x-message-ttl` dead-letters what expires. Such a queue is often consumed by no
 * one (a delay before a retry), so every node that has it and no consumer on it keeps its oldest
 * message pulled, one at a time, and dead-letters it when its TTL passes (`expired`); one already
 * expired goes at once. A consumer that comes on another node meanwhile gets every message but
 * those (one per node) held that way until they expire.
 */
function watchesExpiry(q: Queue): boolean {
  return q.limits.messageTtl !== undefined && q.limits.deadLetterExchange !== undefined;
}

function intOf(v: unknown): number | undefined {
  const n = typeof v === 'bigint' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) ? n : undefined;
}

export class ReplicatedQueues implements QueueForwarder, QueueReplica {
  private readonly links = new Map<Queue, Link>();
  private readonly w = new ByteWriter(4096);
  private readonly r = new ByteReader();
  /** See {@link messageOf}. */
  private readBefore = 0;
  /** Makes this process's message ids unique across restarts of the node. */
  private readonly boot = randomBytes(6).toString('hex');
  private counter = 0;
  private readonly ticker: NodeJS.Timeout;
  private stopped = false;
  private lastWarn = 0;
  private sub: BusSubscription | undefined;
  /** The other running nodes (a purge asks them); set by the membership. */
  others: () => string[] = () => [];
  /** Makes a stand-in of a queue homed on another node a queue of this node again; set by the membership. */
  unplace: (q: Queue) => void = () => undefined;
  /**
   * Stand-ins of classic queues homed elsewhere that an `ha-mode` policy now matches: each
   * becomes a replicated queue here once no consumer of this node is attached to it through its
   * home (until then its publishes and consumers go through the home, which serves the queue from
   * its log).
   */
  private readonly standIns = new Set<Queue>();
  /** Queues move to their logs one after the other (a policy matching many full queues takes a bounded amount of memory). */
  private moving: Promise<void> = Promise.resolve();
  private standInTimer: NodeJS.Timeout | undefined;
  /**
   * The queues' logs the engine had when this node started (see {@link findLogs}): a queue with
   * one is served from it even when no policy makes it replicated any more. Emptied once the
   * node's queues are placed ({@link placed}).
   */
  private logsAtStart = new Set<string>();
  readonly stats = { appended: 0, pulled: 0, acked: 0, returned: 0, deadLettered: 0, expired: 0, failed: 0 };

  constructor(
    private readonly core: Core,
    private readonly engine: ClusterEngine,
    private readonly cluster: string,
    readonly nodeName: string,
    private readonly log: Logger,
    readonly ackWaitMs = DEFAULT_ACK_WAIT_MS,
  ) {
    // What this node holds stays its own while it runs: in-progress well before the ack wait.
    this.ticker = setInterval(() => this.keepHeld(), Math.max(100, Math.floor(ackWaitMs / 3)));
    this.ticker.unref();
  }

  /** Answers other nodes' purges of replicated queues. */
  start(): void {
    this.sub ??= this.engine.bus.subscribe(purgeSubject(this.cluster, this.nodeName), (data, _subject, reply) => {
      const w = this.w.reset();
      try {
        const r = this.r.reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
        const vhost = r.str16();
        const name = r.str16();
        const q = this.core.vhosts.get(vhost)?.queues.get(name);
        w.u32(q !== undefined && this.links.has(q) ? q.purge() : 0);
      } catch (err) {
        this.log.warn({ err }, "cluster: another node's purge of a replicated queue could not be read");
        w.reset().u32(0);
      }
      reply?.(Buffer.from(w.buf.subarray(0, w.pos)));
    });
  }

  /**
   * How many copies a queue's log keeps when the queue is replicated, else undefined: a quorum
   * queue (`x-quorum-initial-group-size`, default 3), a durable, non-exclusive queue matched
   * by a policy with `ha-mode` `all` (every engine server) or `exactly` (`ha-params`), or the
   * queue of a persistent MQTT session or of a durable STOMP topic subscription (see
   * {@link isSessionQueue}).
   */
  replicasFor(q: Queue): number | undefined {
    // A stream is replicated as a stream (replicated-streams.ts), whatever policy matches it.
    if (q.exclusive || q.type.name === 'stream') return undefined;
    const servers = this.engine.info.clusterSize;
    if (q.type.name === 'quorum') {
      const n = intOf(q.args['x-quorum-initial-group-size']);
      return Math.max(1, Math.min(n !== undefined && n > 0 ? n : DEFAULT_REPLICAS, servers));
    }
    if (!q.durable) return undefined;
    if (isSessionQueue(q)) return Math.max(1, Math.min(DEFAULT_REPLICAS, servers));
    const asked = this.askedByPolicy(q);
    return asked === undefined ? undefined : Math.max(1, Math.min(asked, servers));
  }

  /**
   * The copies the `ha-mode` policy matching a queue asks for, not capped by the servers there are
   * (`all`: infinity); undefined when no such policy matches it.
   */
  private askedByPolicy(q: Queue): number | undefined {
    const p = this.core.policies.match(q.host.name, 'queue', q.name);
    const mode = p?.definition['ha-mode'];
    if (mode === 'all') return Number.POSITIVE_INFINITY;
    if (mode === 'exactly') {
      const n = intOf(p?.definition['ha-params']);
      return n !== undefined && n > 0 ? n : DEFAULT_REPLICAS;
    }
    return undefined;
  }

  /**
   * The copies a queue's log keeps when it is attached: {@link replicasFor}, else one for a queue
   * whose log the engine had at start (a mirroring policy removed: the queue stays where its
   * messages are, unmirrored).
   */
  private wantedReplicas(q: Queue): number | undefined {
    const n = this.replicasFor(q);
    if (n !== undefined) return n;
    if (q.exclusive || !q.durable || q.type.name !== 'classic') return undefined;
    return this.logsAtStart.has(this.logName(q.host.name, q.name)) ? 1 : undefined;
  }

  /**
   * Before the node places its queues: the logs of queues the engine has. A queue that a mirroring
   * policy made replicated stays so when the policy goes, and a node that starts after that finds
   * its messages in the log here.
   */
  async findLogs(): Promise<void> {
    try {
      this.logsAtStart = new Set(await this.engine.logNames(`warren_${this.cluster}_q_`));
    } catch (err) {
      this.log.warn({ err }, "cluster: the engine's list of replicated queue logs could not be read; queues without a mirroring policy are placed as classic queues");
    }
  }

  /** The node's queues are placed: {@link findLogs}'s list is no longer needed. */
  placed(): void {
    this.logsAtStart.clear();
  }

  /** The log's name for a queue: its vhost and name hashed (stream names are restricted). */
  logName(vhost: string, queue: string): string {
    const h = createHash('sha256').update(vhost).update('\0').update(queue).digest('hex').slice(0, 32);
    return `warren_${this.cluster}_q_${h}`;
  }

  /** Whether a queue is served by this module. */
  has(q: Queue): boolean {
    return this.links.has(q);
  }

  /** Whether the queue `name` of `vhost` exists on this node and is replicated. */
  isReplicated(vhost: string, name: string): boolean {
    const q = this.core.vhosts.get(vhost)?.queues.get(name);
    return q !== undefined && this.links.has(q);
  }

  /**
   * Makes `q` a replicated queue on this node if it is one (see {@link replicasFor}); true when
   * it is. Idempotent.
   */
  attach(q: Queue): boolean {
    if (this.links.has(q)) return true;
    const replicas = this.wantedReplicas(q);
    if (replicas === undefined || this.stopped) return false;
    if (q.remote !== undefined) {
      // A stand-in of a classic queue homed on another node, now matched by an 'ha-mode' policy.
      this.standIns.add(q);
      if (this.standInTimer === undefined) this.waitForStandIns();
      return false;
    }
    // Messages held here: a classic queue an 'ha-mode' policy came to match after its declare
    // (or a node that stopped while moving them): they move to the log first.
    const migrating = q.readyCount > 0 || q.unackedCount > 0 || q.delayedCount > 0;
    // A classic queue a mirroring policy made replicated (not a quorum queue, not a session's).
    const mirrored = q.type.name !== 'quorum' && !isSessionQueue(q);
    if (mirrored && this.askedByPolicy(q) !== undefined) {
      this.log.info({ vhost: q.host.name, queue: q.name, replicas, moving: q.readyCount }, "cluster: queue matched by an 'ha-mode' policy: served by a replicated queue");
    } else if (mirrored) {
      this.log.info({ vhost: q.host.name, queue: q.name }, "cluster: queue served by its replicated log, one copy (no 'ha-mode' policy matches it any more)");
    }
    const link: Link = {
      queue: q,
      replicas,
      scaling: Promise.resolve(),
      log: new EngineOpen(() => this.engine.openLog(this.logName(q.host.name, q.name), logOptions(q, link.replicas, this.ackWaitMs))),
      held: new Map(),
      migrating,
      pulling: false,
      again: false,
      trimming: false,
      trimAgain: false,
      readyAsk: undefined,
      passed: 0,
      unsettled: 0,
      forGet: false,
      timer: undefined,
      immediate: false,
      maxPulled: 0,
    };
    this.links.set(q, link);
    q.forwarder = this;
    // A log that exists keeps its copies when opened: a policy changed while this node was down
    // is applied to it here.
    if (mirrored) this.scale(link, this.askedByPolicy(q) ?? 1);
    if (migrating) {
      this.moving = this.moving
        .then(() => this.move(link))
        .catch((err: unknown) => this.log.error({ err, vhost: q.host.name, queue: q.name }, 'cluster: moving a queue to its replicated log failed'));
      return true;
    }
    q.replica = this;
    this.open(link).then(
      () => this.wanted(q),
      (err: unknown) => this.log.warn({ err, vhost: q.host.name, queue: q.name }, 'cluster: the replicated queue could not be opened on the engine yet; its next use tries again'),
    );
    return true;
  }

  /**
   * The policies changed: the durable classic queues an `ha-mode` policy matches now become
   * replicated queues; a queue a policy made replicated keeps the copies its policy now asks
   * for, and one copy when no policy matches it any more (it stays served from its log).
   */
  policiesChanged(): void {
    if (this.stopped) return;
    for (const link of this.links.values()) {
      const q = link.queue;
      if (q.type.name === 'quorum' || isSessionQueue(q)) continue;
      // Made replicated by a policy: without one, it keeps one copy.
      const byPolicy = this.askedByPolicy(q);
      const asked = byPolicy ?? 1;
      const replicas = Math.max(1, Math.min(asked, this.engine.info.clusterSize));
      if (replicas === link.replicas) continue;
      this.log.info(
        { vhost: q.host.name, queue: q.name, from: link.replicas, replicas },
        byPolicy === undefined
          ? "cluster: no 'ha-mode' policy matches the queue any more: its replicated log keeps one copy"
          : "cluster: the queue's 'ha-mode' policy changed its replica count",
      );
      link.replicas = replicas;
      this.scale(link, asked);
    }
    for (const vh of this.core.vhosts.values()) {
      for (const q of vh.queues.values()) {
        if (q.deleted || this.links.has(q) || q.type.name !== 'classic') continue;
        if (q.forwarder !== undefined && q.remote === undefined) continue; // a stream or another kind of stand-in
        this.attach(q);
      }
    }
  }

  /**
   * Asks the engine to keep `replicas` copies of the queue's log (after the changes asked before);
   * `replicas` is what the policy asks, not capped by the servers this node knows of.
   */
  private scale(link: Link, replicas: number): void {
    const q = link.queue;
    link.scaling = link.scaling
      .then(() => this.open(link))
      .then((l) => l.setReplicas(replicas))
      .catch((err: unknown) => this.log.warn({ err, vhost: q.host.name, queue: q.name, replicas }, "cluster: the replicated queue's replica count could not be changed on the engine"));
  }

  /** Stand-ins whose node has no consumer on them any more become replicated queues here. */
  private switchStandIns(): void {
    this.standInTimer = undefined;
    if (this.stopped) return;
    for (const q of [...this.standIns]) {
      if (q.deleted || this.links.has(q) || this.replicasFor(q) === undefined) {
        this.standIns.delete(q);
        continue;
      }
      if (q.consumers.length > 0) continue;
      this.standIns.delete(q);
      this.unplace(q);
      this.attach(q);
    }
    if (this.standIns.size > 0) this.waitForStandIns();
  }

  private waitForStandIns(): void {
    this.standInTimer = setTimeout(() => this.switchStandIns(), MOVE_WAIT_MS);
    this.standInTimer.unref();
  }

  /**
   * Moves what a queue becoming replicated holds here into its log, oldest first: each message is
   * appended (with an id made of this node's name and its sequence in the queue, so that a move
   * cut short and done again after a restart deduplicates) and then acked here. Publishes go to
   * the log meanwhile; the queue's consumers here keep taking what it still holds. Once nothing
   * is left here, not even unacked, the queue takes its messages from the log.
   */
  private async move(link: Link): Promise<void> {
    const q = link.queue;
    let moved = 0;
    while (this.links.get(q) === link && !this.stopped && !q.deleted) {
      const batch: QueueEntry[] = [];
      for (let t = q.take(false); t !== undefined; t = batch.length < MOVE_BATCH ? q.take(false) : undefined) batch.push(t.entry);
      if (batch.length === 0) {
        if (q.unackedCount === 0 && q.delayedCount === 0) break;
        await new Promise((resolve) => setTimeout(resolve, MOVE_WAIT_MS));
        continue;
      }
      let failed = false;
      try {
        const log = await this.open(link);
        const appends = batch.map((e) => appendRetried(log, encodeLogEntry(this.w, e.msg, e.deliveryCount - 1), movedId(this.nodeName, this.boot, e), () => this.stopped));
        const results = await Promise.allSettled(appends);
        results.forEach((r, i) => {
          const e = batch[i]!;
          if (r.status === 'fulfilled') {
            q.ack(e);
            moved++;
          } else {
            failed = true;
            q.requeue(e);
          }
        });
      } catch {
        failed = true;
        for (const e of batch) q.requeue(e);
      }
      if (failed) {
        this.log.warn({ vhost: q.host.name, queue: q.name, moved }, 'cluster: moving a queue to its replicated log failed for now; trying again');
        await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
      }
    }
    if (this.links.get(q) !== link || this.stopped || q.deleted) return;
    link.migrating = false;
    q.replica = this;
    this.log.info({ vhost: q.host.name, queue: q.name, moved }, 'cluster: queue moved to its replicated log');
    this.wanted(q);
  }

  /**
   * Resolves once the log of a replicated queue exists on the engine (a declare is answered after
   * it, so a publish on any node right after the declare finds it); undefined for another queue.
   */
  ready(q: Queue): Promise<void> | undefined {
    const link = this.links.get(q);
    if (link === undefined) return undefined;
    return this.open(link).then(() => undefined);
  }

  private open(link: Link): Promise<ReplicatedLog> {
    return link.log.get();
  }

  /** The queue is gone here (deleted, or no longer replicated). */
  detach(q: Queue): void {
    const link = this.links.get(q);
    if (link === undefined) return;
    this.links.delete(q);
    if (link.timer !== undefined) clearTimeout(link.timer);
    if (q.forwarder === this) q.forwarder = undefined;
    if (q.replica === this) q.replica = undefined;
  }

  /**
   * A queue deleted on this node: if it was replicated, its log goes (for every node; the others
   * drop their copy of the queue when the deletion reaches their definitions).
   */
  removed(vhost: string, name: string): void {
    for (const link of this.links.values()) {
      const q = link.queue;
      if (q.host.name !== vhost || q.name !== name) continue;
      this.detach(q);
      this.open(link).then(
        (l) => l.destroy(),
        () => undefined,
      ).catch((err: unknown) => this.log.warn({ err, vhost, queue: name }, "cluster: a deleted replicated queue's log could not be removed"));
      return;
    }
  }

  /** The replication status of a queue's log (management). */
  async status(q: Queue): Promise<(LogStatus & { replicas: number }) | undefined> {
    const link = this.links.get(q);
    if (link === undefined) return undefined;
    const st = await (await this.open(link)).status();
    return { replicas: link.replicas, ...st };
  }

  /**
   * The replication status of every replicated queue on this node (health checks, listings):
   * `status` undefined when the engine did not answer within `timeoutMs` (no leader, engine down).
   */
  async report(timeoutMs = 3000): Promise<Array<{ vhost: string; name: string; replicas: number; status: LogStatus | undefined }>> {
    const links = [...this.links.values()];
    return Promise.all(
      links.map(async (link) => {
        const q = link.queue;
        const status = await statusWithin(async () => (await this.open(link)).status(), timeoutMs);
        return { vhost: q.host.name, name: q.name, replicas: link.replicas, status };
      }),
    );
  }

  // ---- publishing (QueueForwarder) ----------------------------------------------------------

  forward(queue: Queue, msg: StoredMessage): Promise<void> {
    const link = this.links.get(queue);
    if (link === undefined) return failed(BrokerError.internal(`queue '${queue.name}' is not replicated on this node`));
    const at = this.heldNowhere(queue, msg);
    if (at !== undefined) return at;
    const data = encodeLogEntry(this.w, msg);
    const msgId = `${this.nodeName}.${this.boot}.${++this.counter}`;
    const settled = this.appendFor(link, msg, data, msgId);
    // Publishes inside the core (dead-lettering) do not wait for their settle.
    settled.catch(noop);
    return settled;
  }

  /**
   * A message the queue could not hold even empty, settled without the log as on one node: over
   * `x-max-length: 0` or larger than `x-max-length-bytes` (dropped, or refused with
   * `reject-publish`; dead-lettered `maxlen` except with plain `reject-publish`), or with a TTL of
   * 0 (dead-lettered `expired`). Undefined for any other message.
   */
  private heldNowhere(q: Queue, msg: StoredMessage): Promise<void> | undefined {
    const l = q.limits;
    if (l.maxLength === 0 || (l.maxLengthBytes !== undefined && msg.size > l.maxLengthBytes)) {
      if (l.overflow !== 'reject-publish' && l.deadLetterExchange !== undefined) q.host.deadLetter(q, msg, 'maxlen');
      return l.overflow === 'drop-head' ? SETTLED : failed(new BrokerError(ReplyCode.PRECONDITION_FAILED, 'message rejected by a full queue'));
    }
    if (q.effectiveTtl(msg) === 0) {
      if (l.deadLetterExchange !== undefined) q.host.deadLetter(q, msg, 'expired');
      return SETTLED;
    }
    return undefined;
  }

  private async appendFor(link: Link, msg: StoredMessage, data: Uint8Array, msgId: string): Promise<void> {
    const queue = link.queue.name;
    try {
      let log = link.log.current;
      // A log still being created by another node, or an engine slow to answer: a few tries.
      for (let attempt = 1; log === undefined; attempt++) {
        try {
          log = await this.open(link);
        } catch (e) {
          if (attempt >= OPEN_ATTEMPTS || this.stopped) throw e;
          await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        }
      }
      const max = link.queue.limits.maxLength;
      const rejecting = link.queue.limits.overflow !== 'drop-head';
      // x-overflow reject-publish: refused while the ready messages are at the limit.
      const counted = max !== undefined && rejecting;
      if (counted) {
        // The check and the count of this publish in one step (no await between them).
        const c = await this.readyCount(link, log);
        if (c.ready + c.inFlight + (link.passed - c.passedBefore) >= max) throw new LogFullError('the queue is at its x-max-length');
        link.passed++;
        link.unsettled++;
      }
      try {
        await appendRetried(log, data, msgId, () => this.stopped);
      } finally {
        if (counted) link.unsettled--;
      }
      this.stats.appended++;
      if (max !== undefined && !rejecting) this.trim(link, log, max);
    } catch (e) {
      this.stats.failed++;
      // x-overflow reject-publish: the publisher's nack, as on one node (reject-publish-dlx dead-letters it too).
      if (e instanceof LogFullError) {
        const q = link.queue;
        if (q.limits.overflow === 'reject-publish-dlx' && q.limits.deadLetterExchange !== undefined) q.host.deadLetter(q, msg, 'maxlen');
        throw new BrokerError(ReplyCode.PRECONDITION_FAILED, 'message rejected by a full queue');
      }
      const now = Date.now();
      if (now - this.lastWarn > 10_000) {
        this.lastWarn = now;
        this.log.warn({ err: e, vhost: link.queue.host.name, queue }, 'cluster: a publish to a replicated queue was not taken by the engine');
      }
      throw new BrokerError(ReplyCode.INTERNAL_ERROR, `replicated queue '${queue}' is unavailable: ${e instanceof Error ? e.message : String(e)}`);
    }
  }

  /**
   * The queue's ready messages as the engine counts them; with it, this node's publishes the
   * engine may not have counted are added by the caller: those in flight when the count was asked
   * (`inFlight`) and those that passed since (`passed - passedBefore`). Publishes that come while
   * it is being asked wait for that answer instead of asking again, so a busy publisher costs the
   * engine one ask per round trip, and a burst on one node stops at the limit (a publish in flight
   * that the engine had counted already is counted twice: the limit errs on the side of refusing).
   */
  private readyCount(link: Link, log: ReplicatedLog): Promise<{ ready: number; passedBefore: number; inFlight: number }> {
    let ask = link.readyAsk;
    if (ask === undefined) {
      const passedBefore = link.passed;
      const inFlight = link.unsettled;
      ask = log.ready().then((ready) => ({ ready, passedBefore, inFlight }));
      link.readyAsk = ask;
      const clear = (): void => {
        if (link.readyAsk === ask) link.readyAsk = undefined;
      };
      ask.then(clear, clear);
    }
    return ask;
  }

  /**
   * `x-max-length` with `drop-head`, after an append: while the log has more ready messages
   * (never handed out, see {@link ReplicatedLog.ready}) than the limit, the oldest of them are
   * taken and dead-lettered `maxlen` (dropped without a dead-letter exchange), as on one node.
   * Several nodes publishing at once may each drop for the same excess, so the queue can end up a
   * few messages below its limit.
   */
  private trim(link: Link, log: ReplicatedLog, max: number): void {
    if (link.trimming) {
      link.trimAgain = true;
      return;
    }
    link.trimming = true;
    void (async () => {
      try {
        do {
          link.trimAgain = false;
          const over = (await log.ready()) - max;
          if (over <= 0) continue;
          if (over > MAX_PULL) link.trimAgain = true;
          const q = link.queue;
          for (const m of await log.pull(Math.min(over, MAX_PULL), 0)) {
            this.stats.deadLettered++;
            const msg = q.limits.deadLetterExchange !== undefined ? this.messageOf(q, m) : undefined;
            if (msg !== undefined) q.host.deadLetter(q, msg, 'maxlen');
            log.ack(m.seq);
          }
        } while (link.trimAgain && !this.stopped && this.links.get(link.queue) === link);
      } catch (err) {
        this.log.warn({ err, vhost: link.queue.host.name, queue: link.queue.name }, 'cluster: dropping messages over x-max-length failed; the next publish tries again');
      } finally {
        link.trimming = false;
      }
    })();
  }

  // ---- consuming (QueueReplica) -------------------------------------------------------------

  wanted(queue: Queue): void {
    const link = this.links.get(queue);
    if (link === undefined || link.immediate || link.migrating) return;
    if (queue.consumers.length === 0 && !link.forGet && !watchesExpiry(queue)) return;
    link.immediate = true;
    setImmediate(runPull, this, link);
  }

  getEmpty(queue: Queue): void {
    const link = this.links.get(queue);
    if (link === undefined) return;
    link.forGet = true;
    this.wanted(queue);
  }

  settled(queue: Queue, e: QueueEntry): void {
    const link = this.links.get(queue);
    if (link === undefined || link.held.get(e.seq) !== e) return;
    link.held.delete(e.seq);
    this.stats.acked++;
    link.log.current?.ack(e.seq);
    // Expired and dead-lettered on a node without consumers: the next oldest.
    if (queue.consumers.length === 0 && watchesExpiry(queue)) this.wanted(queue);
  }

  returned(queue: Queue, e: QueueEntry, delayMs: number): void {
    const link = this.links.get(queue);
    if (link === undefined || link.held.get(e.seq) !== e) return;
    link.held.delete(e.seq);
    this.stats.returned++;
    link.log.current?.nak(e.seq, delayMs);
  }

  async purge(queue: Queue): Promise<number> {
    const link = this.links.get(queue);
    if (link === undefined) return queue.purge();
    // First what the log has not handed out to any node: pulled and acked until none is left,
    // and at most what it held when the purge began (publishers going on do not keep it here).
    let n = 0;
    try {
      const log = await this.open(link);
      const held = (await log.status()).messages;
      while (n < held) {
        const msgs = await log.pull(Math.min(MAX_PULL, held - n), 0);
        if (msgs.length === 0) break;
        for (const m of msgs) log.ack(m.seq);
        n += msgs.length;
      }
    } catch (e) {
      throw new BrokerError(ReplyCode.INTERNAL_ERROR, `replicated queue '${queue.name}' is unavailable: ${e instanceof Error ? e.message : String(e)}`);
    }
    // Then what each node pulled before that and has not delivered (here, and on the others).
    n += queue.purge();
    const w = this.w.reset();
    w.str16(queue.host.name);
    w.str16(queue.name);
    const ask = Buffer.from(w.buf.subarray(0, w.pos));
    const counts = await Promise.all(
      this.others().map((node) =>
        this.engine.bus.request(purgeSubject(this.cluster, node), ask, PURGE_ASK_MS).then(
          (a) => (a.byteLength >= 4 ? this.r.reset(Buffer.from(a.buffer, a.byteOffset, a.byteLength)).u32() : 0),
          (err: unknown) => {
            // A node that went: what it pulled comes back to the log after the ack wait.
            if (!(err instanceof NoResponderError)) this.log.warn({ err, node, vhost: queue.host.name, queue: queue.name }, 'cluster: a node did not answer a purge of a replicated queue');
            return 0;
          },
        ),
      ),
    );
    for (const c of counts) n += c;
    return n;
  }

  /** Free prefetch of the queue's consumers on this node, less what is already pulled and waiting. */
  private want(q: Queue): number {
    let credit = 0;
    for (const c of q.consumers) {
      if (c.noAck || c.prefetch === 0) return Math.max(0, MAX_PULL - q.readyCount);
      if (c.prefetch > c.unacked) credit += c.prefetch - c.unacked;
    }
    return Math.max(0, Math.min(credit, MAX_PULL) - q.readyCount);
  }

  /** @internal the pull loop of one queue (see {@link wanted}). */
  async pull(link: Link): Promise<void> {
    link.immediate = false;
    if (link.pulling) {
      link.again = true;
      return;
    }
    if (link.timer !== undefined) {
      clearTimeout(link.timer);
      link.timer = undefined;
    }
    const q = link.queue;
    link.pulling = true;
    let next = 0;
    try {
      for (;;) {
        link.again = false;
        if (q.deleted) this.detach(q);
        if (this.stopped || q.deleted || this.links.get(q) !== link) break;
        const forGet = link.forGet && q.readyCount === 0;
        link.forGet = false;
        let n: number;
        if (forGet) n = Math.max(1, this.want(q));
        else if (q.consumers.length > 0) n = this.want(q);
        // No consumer here: the oldest message, held until it expires (see watchesExpiry).
        else n = watchesExpiry(q) && q.readyCount === 0 ? 1 : 0;
        if (n <= 0) break;
        const log = link.log.current ?? (await this.open(link));
        // A pull for a basic.get does not wait: the get was answered empty already.
        const waitMs = forGet ? 0 : LONG_POLL_MS;
        const started = Date.now();
        const msgs = await log.pull(n, waitMs);
        if (this.stopped || this.links.get(q) !== link) {
          // Left (or the queue went) while the poll waited: back for the other nodes at once.
          for (const m of msgs) log.nak(m.seq);
          break;
        }
        if (forGet && msgs.length === 0 && q.consumers.length === 0) break;
        for (const m of msgs) this.take(link, log, m);
        // The last consumer went while the poll waited: what it brought is for the other nodes.
        if (q.consumers.length === 0 && !link.forGet && !forGet && !watchesExpiry(q)) q.returnPulled();
        if (msgs.length === 0 && !link.again && (waitMs === 0 || Date.now() - started < SHORT_POLL_MS)) {
          next = SHORT_POLL_BACKOFF_MS;
          break;
        }
      }
    } catch (err) {
      next = RETRY_MS;
      const now = Date.now();
      if (now - this.lastWarn > 10_000) {
        this.lastWarn = now;
        this.log.warn({ err, vhost: q.host.name, queue: q.name }, 'cluster: pulling from a replicated queue failed; retrying');
      }
    } finally {
      link.pulling = false;
    }
    if (this.stopped || this.links.get(q) !== link) return;
    if (link.again) this.wanted(q);
    else if (next > 0 && link.timer === undefined) {
      link.timer = setTimeout(() => {
        link.timer = undefined;
        this.wanted(q);
      }, next);
      link.timer.unref();
    }
  }

  /** A pulled message: to this node's queue, or dead-lettered when it is past its delivery limit. */
  private take(link: Link, log: ReplicatedLog, m: LogMessage): void {
    const q = link.queue;
    this.stats.pulled++;
    const msg = this.messageOf(q, m);
    if (msg === undefined) {
      log.ack(m.seq);
      return;
    }
    let previous = m.deliveries - 1 + this.readBefore;
    // The log hands messages out for the first time in sequence order, so one at or below the
    // highest this node pulled was handed out before, whatever its count says (a consumer leader
    // of the engine that took over without the latest count): it goes out as redelivered.
    if (previous === 0 && m.seq <= link.maxPulled) previous = 1;
    if (m.seq > link.maxPulled) link.maxPulled = m.seq;
    if (q.limits.deliveryLimit !== undefined && previous > q.limits.deliveryLimit) {
      // Past its limit (its earlier deliveries ended without an ack, on some node): as a return
      // over the limit does on one node.
      this.stats.deadLettered++;
      if (q.limits.deadLetterExchange !== undefined) q.host.deadLetter(q, msg, 'delivery_limit');
      log.ack(m.seq);
      return;
    }
    // Its TTL (`expiration`, `x-message-ttl`) counts from when the log took it, on every node.
    const ttl = q.effectiveTtl(msg);
    let expiresAt = 0;
    if (ttl !== undefined && Number.isFinite(ttl)) {
      expiresAt = Math.max(1, m.appendedAt + ttl);
      if (expiresAt <= Date.now()) {
        this.stats.expired++;
        if (q.limits.deadLetterExchange !== undefined) q.host.deadLetter(q, msg, 'expired');
        log.ack(m.seq);
        return;
      }
    }
    const e = q.enqueuePulled(msg, m.seq, previous, expiresAt);
    if (e !== undefined) link.held.set(m.seq, e);
    else log.nak(m.seq);
  }

  /**
   * A pulled message as the queue's vhost stores it, with the deliveries it had before it reached
   * the log in {@link readBefore}; undefined (logged) when it cannot be read.
   */
  private messageOf(q: Queue, m: LogMessage): StoredMessage | undefined {
    try {
      const entry = decodeLogEntry(this.r, m.data);
      this.readBefore = deliveredBefore(this.r);
      const vhost = this.core.vhosts.get(q.host.name);
      if (vhost === undefined) throw new Error(`no vhost '${q.host.name}'`);
      return vhost.storedFromCluster(entry, 0);
    } catch (err) {
      this.log.error({ err, queue: q.name, seq: m.seq }, 'cluster: a replicated queue message could not be read; dropped');
      return undefined;
    }
  }

  private keepHeld(): void {
    for (const link of this.links.values()) {
      const log = link.log.current;
      // A queue still moving its messages to the log holds none of the log's.
      if (log === undefined || link.migrating) continue;
      // Pulled for a basic.get that did not come back for it: the others may have it.
      if (link.queue.consumers.length === 0 && !watchesExpiry(link.queue)) link.queue.returnPulled();
      for (const seq of link.held.keys()) log.inProgress(seq);
    }
  }

  /** Leaving: what this node holds goes back to the log at once (not after the ack wait). */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.ticker);
    this.sub?.unsubscribe();
    this.sub = undefined;
    if (this.standInTimer !== undefined) clearTimeout(this.standInTimer);
    this.standIns.clear();
    for (const link of [...this.links.values()]) {
      for (const seq of link.held.keys()) link.log.current?.nak(seq);
      link.held.clear();
      this.detach(link.queue);
    }
  }
}

/**
 * The append id of a message moved from a queue to its log: a persistent message keeps its
 * sequence in the queue across restarts of the node (a move done again deduplicates); a transient
 * one is gone after a restart, and its sequence may be given again.
 */
function movedId(node: string, boot: string, e: QueueEntry): string {
  return e.msg.persistent ? `${node}.moved.${e.seq}` : `${node}.${boot}.moved.${e.seq}`;
}

function purgeSubject(cluster: string, node: string): string {
  // Cluster and node names are [A-Za-z0-9_-]: safe as subject tokens.
  return `warren.${cluster}.rq.${node}`;
}

function runPull(rq: ReplicatedQueues, link: Link): void {
  void rq.pull(link);
}

function noop(): void {}

function failed(e: BrokerError): Promise<void> {
  const p = Promise.reject(e);
  p.catch(noop);
  return p;
}
