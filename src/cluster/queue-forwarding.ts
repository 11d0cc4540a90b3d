import { BrokerError, ReplyCode, SETTLED, type Core, type Queue, type QueueForwarder, type StoredMessage } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter, readProperties, writeProperties } from '../store/index.js';
import { BATCH_MAX_RECORDS, Batch, TurnBatches } from './bus-batch.js';
import { NoResponderError, type BusSubscription, type ClusterBus } from './engine.js';

/**
 * Classic queues live on their home node (the node that declared them). A publish on another
 * node that routes to one is sent to the home on `warren.<cluster>.home.<node>`; the home enqueues
 * it as routed (exchange and routing key kept) and answers once it is settled there (for a
 * persistent message on a durable queue: on disk). The answer is the publisher's confirm; no
 * answer (the home is down, or too slow) is a `basic.nack` (MQTT and STOMP: their failure
 * replies).
 *
 * Publishes bound for one home in one event-loop turn travel as one request (a batch, at most
 * BATCH_MAX_RECORDS messages or BATCH_MAX_BYTES; see TurnBatches), which the home applies in
 * order and answers once, with the outcome of each message. Requests from one node arrive in the
 * order they were sent, so a publisher's order is kept. The bytes sent to a home and not answered
 * yet are bounded (`maxInFlightBytes`): above it this node's publishers are blocked (the alarms'
 * flow hold: AMQP connection.blocked, other protocols stop being read) until half has drained.
 *
 * Wire (request): u8 version | u32 n | n × (str16 vhost | str16 queue | str16 exchange |
 * str16 routing key | properties (the store's codec) | bytes32 body). Answer: u8 0 (every message
 * enqueued), or u8 1 | u32 k | k × (u32 index | u16 reply code | str16 text).
 */

const VERSION = 2;
const OK = 0;
const FAILED = 1;
/** Per-message bytes a record carries besides its strings, properties and body. */
const RECORD_OVERHEAD = 4 * 2 + 4 + 64;

export const DEFAULT_FORWARD_TIMEOUT_MS = 5000;
/** Forwarded bytes per home node in flight (sent or gathered, not answered) before publishers are held. */
export const DEFAULT_FORWARD_MAX_IN_FLIGHT_BYTES = 16 * 1024 * 1024;

const NOOP = (): void => undefined;

/** The outcome of one batch, shared by its messages' promises. */
class Outcome {
  readonly queues: Queue[] = [];
  bytes = 0;
  /** Every message failed (no answer): why. */
  why: string | undefined = undefined;
  /** Messages the home refused, by index. */
  failures: Map<number, BrokerError> | undefined = undefined;
  resolve!: (o: Outcome) => void;
  readonly answered = new Promise<Outcome>((resolve) => (this.resolve = resolve));

  /** Throws the failure of message `i`, if it failed. */
  check(i: number): void {
    if (this.why !== undefined) throw new BrokerError(ReplyCode.INTERNAL_ERROR, `queue '${this.queues[i]!.name}' is unavailable: ${this.why}`);
    const f = this.failures?.get(i);
    if (f !== undefined) throw f;
  }
}

/** One check per position in a batch, made once: a message's promise needs no closure of its own. */
const CHECKS: ((o: Outcome) => void)[] = Array.from({ length: BATCH_MAX_RECORDS }, (_, i) => (o: Outcome) => o.check(i));

/** What is gathered for, and in flight to, one home node. */
class HomeBatch extends Batch {
  outcome = new Outcome();
  /** Bytes gathered here or sent and not answered yet. */
  inFlightBytes = 0;
  held = false;
  readonly holdName: string;

  constructor(
    subject: string,
    readonly home: string,
  ) {
    super(subject, writeVersion);
    this.holdName = `cluster forwarding to node '${home}' is behind`;
  }
}

function writeVersion(w: ByteWriter): void {
  w.u8(VERSION);
}

export class QueueForwarding implements QueueForwarder {
  private readonly w = new ByteWriter(4096);
  private sub: BusSubscription | undefined;
  private readonly homes = new WeakMap<Queue, HomeBatch>();
  private readonly batches = new Map<string, HomeBatch>();
  private readonly turn = new TurnBatches<HomeBatch>((b) => this.send(b));
  /** Forwarded publishes waiting for their home's answer. */
  inFlight = 0;
  readonly stats = { forwarded: 0, batches: 0, received: 0, failed: 0, held: 0 };
  /** Whether a node is running (the registry's view); unset: every home counts as running. */
  homeRunning: ((node: string) => boolean) | undefined = undefined;

  constructor(
    private readonly core: Core,
    private readonly bus: ClusterBus,
    private readonly cluster: string,
    readonly nodeName: string,
    private readonly log: Logger,
    private readonly timeoutMs = DEFAULT_FORWARD_TIMEOUT_MS,
    readonly maxInFlightBytes = DEFAULT_FORWARD_MAX_IN_FLIGHT_BYTES,
  ) {}

  subject(node: string): string {
    return `warren.${this.cluster}.home.${node}`;
  }

  /** Answers the requests of other nodes for the queues whose home this node is. */
  start(): void {
    this.sub = this.bus.subscribe(this.subject(this.nodeName), (data, _subject, reply) => this.onForwarded(data, reply));
  }

  stop(): void {
    this.turn.flushAll();
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  /** Bytes forwarded to `home` and not answered yet (gathered ones included). */
  inFlightBytes(home: string): number {
    return this.batches.get(home)?.inFlightBytes ?? 0;
  }

  // ---- sending ------------------------------------------------------------------------------

  /**
   * Where a queue lives: on another node, publishes to it are forwarded there; on this one (or
   * unknown), they are enqueued here.
   */
  place(queue: Queue, home: string | undefined): void {
    if (home === undefined || home === this.nodeName) {
      if (queue.forwarder === this) queue.forwarder = undefined;
      this.homes.delete(queue);
      return;
    }
    let b = this.batches.get(home);
    if (b === undefined) this.batches.set(home, (b = new HomeBatch(this.subject(home), home)));
    this.homes.set(queue, b);
    queue.forwarder = this;
  }

  unavailable(queue: Queue): string | undefined {
    const b = this.homes.get(queue);
    if (b === undefined) return `queue '${queue.name}' has no home node`;
    if (this.homeRunning === undefined || this.homeRunning(b.home)) return undefined;
    this.stats.failed++;
    return `queue '${queue.name}' is unavailable: its home node '${b.home}' is not running`;
  }

  forward(queue: Queue, msg: StoredMessage): Promise<void> {
    const b = this.homes.get(queue);
    if (b === undefined) {
      const failed = Promise.reject(BrokerError.internal(`queue '${queue.name}' has no home node`));
      failed.catch(NOOP);
      return failed;
    }
    const size = RECORD_OVERHEAD + queue.host.name.length + queue.name.length + msg.exchange.length + msg.routingKey.length + msg.body.length;
    const w = this.turn.record(b, size);
    const at = w.pos;
    w.str16(queue.host.name);
    w.str16(queue.name);
    w.str16(msg.exchange);
    w.str16(msg.routingKey);
    writeProperties(w, msg.properties);
    w.bytes32(msg.body);
    const o = b.outcome;
    const i = o.queues.length;
    o.queues.push(queue);
    const bytes = w.pos - at;
    o.bytes += bytes;
    b.inFlightBytes += bytes;
    if (!b.held && b.inFlightBytes > this.maxInFlightBytes) {
      b.held = true;
      this.stats.held++;
      this.core.alarms.hold(b.holdName, true);
    }
    this.inFlight++;
    this.stats.forwarded++;
    const settled = o.answered.then(CHECKS[i]);
    // Some publishes inside the core (dead-lettering, delayed releases, wills) do not wait for
    // their settle: a failure must not count as an unhandled rejection.
    settled.catch(NOOP);
    return settled;
  }

  private send(b: HomeBatch): void {
    const o = b.outcome;
    b.outcome = new Outcome();
    const data = b.take();
    this.stats.batches++;
    this.bus.request(b.subject, data, this.timeoutMs).then(
      (answer) => this.answered(b, o, answer),
      (e: unknown) => {
        o.why = e instanceof NoResponderError ? `its home node '${b.home}' is not running` : `its home node '${b.home}' did not answer`;
        this.settledBatch(b, o, o.queues.length);
      },
    );
  }

  private answered(b: HomeBatch, o: Outcome, answer: Uint8Array): void {
    let failed = 0;
    if (answer[0] !== OK) {
      try {
        const r = new ByteReader().reset(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength), 1);
        const failures = new Map<number, BrokerError>();
        for (let k = r.u32(); k > 0; k--) {
          const i = r.u32();
          failures.set(i, new BrokerError(r.u16() as ReplyCode, r.str16()));
        }
        o.failures = failures;
        failed = failures.size;
      } catch {
        o.why = `its home node '${b.home}' sent an answer this node cannot read`;
        failed = o.queues.length;
      }
    }
    this.settledBatch(b, o, failed);
  }

  private settledBatch(b: HomeBatch, o: Outcome, failed: number): void {
    this.inFlight -= o.queues.length;
    this.stats.failed += failed;
    b.inFlightBytes -= o.bytes;
    if (b.held && b.inFlightBytes <= this.maxInFlightBytes >> 1) {
      b.held = false;
      this.core.alarms.hold(b.holdName, false);
    }
    o.resolve(o);
  }

  // ---- receiving ----------------------------------------------------------------------------

  private onForwarded(data: Uint8Array, reply: ((data: Uint8Array) => void) | undefined): void {
    // A reader per batch: enqueueing may forward (dead-lettering) before this returns.
    const r = new ByteReader().reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    let n = 0;
    let failures: Map<number, BrokerError> | undefined;
    let pending: Promise<void>[] | undefined;
    let pendingAt: number[] | undefined;
    let i = 0;
    try {
      if (r.u8() !== VERSION) throw BrokerError.notImplemented('unknown forwarding version');
      n = r.u32();
      for (; i < n; i++) {
        const vhostName = r.str16();
        const queueName = r.str16();
        const exchange = r.str16();
        const routingKey = r.str16();
        const properties = readProperties(r);
        const body = Buffer.from(r.bytes32()); // owned: the bus may reuse its buffer
        this.stats.received++;
        try {
          const vhost = this.core.vhosts.get(vhostName);
          const q = vhost?.queues.get(queueName);
          if (vhost === undefined || q === undefined) throw BrokerError.notFound(`no queue '${queueName}' in vhost '${vhostName}' on node '${this.nodeName}'`);
          if (q.forwarder !== undefined && q.remote !== undefined) throw BrokerError.notFound(`queue '${queueName}' does not live on node '${this.nodeName}'`);
          // A queue that became replicated here while other nodes still forward to it: to its log.
          const settled =
            q.forwarder !== undefined ? q.forwarder.forward(q, vhost.storedFromCluster({ exchange, routingKey, properties, body }, 0)) : vhost.enqueueForwarded(q, { exchange, routingKey, properties, body }, 0);
          if (settled !== SETTLED) {
            (pending ??= []).push(settled);
            (pendingAt ??= []).push(i);
          }
        } catch (e) {
          (failures ??= new Map()).set(i, this.brokerError(e));
        }
      }
    } catch (e) {
      // A batch this node cannot read: what is left of it fails.
      const err = this.brokerError(e);
      failures ??= new Map();
      for (; i < Math.max(n, 1); i++) failures.set(i, err);
    }
    if (pending === undefined) {
      this.answer(reply, failures);
      return;
    }
    const at = pendingAt!;
    void Promise.allSettled(pending).then((results) => {
      for (let k = 0; k < results.length; k++) {
        const res = results[k]!;
        if (res.status === 'rejected') (failures ??= new Map()).set(at[k]!, this.brokerError(res.reason));
      }
      this.answer(reply, failures);
    });
  }

  private brokerError(e: unknown): BrokerError {
    if (e instanceof BrokerError) return e;
    this.log.error({ err: e }, 'cluster: a forwarded message could not be enqueued');
    return BrokerError.internal(e instanceof Error ? e.message : String(e));
  }

  private answer(reply: ((data: Uint8Array) => void) | undefined, failures: Map<number, BrokerError> | undefined): void {
    if (reply === undefined) return;
    if (failures === undefined || failures.size === 0) {
      reply(ANSWER_OK);
      return;
    }
    const w = this.w.reset();
    w.u8(FAILED);
    w.u32(failures.size);
    for (const [i, err] of failures) {
      w.u32(i);
      w.u16(err.code);
      w.str16(err.text.slice(0, 256));
    }
    reply(Buffer.from(w.buf.subarray(0, w.pos)));
  }
}

const ANSWER_OK = Uint8Array.of(OK);
