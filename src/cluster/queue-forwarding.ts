import { BrokerError, ReplyCode, type Core, type Queue, type QueueForwarder, type StoredMessage } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter, readProperties, writeProperties } from '../store/index.js';
import { NoResponderError, type BusSubscription, type ClusterBus } from './engine.js';

/**
 * Classic queues live on their home node (the node that declared them). A publish on another
 * node that routes to one is sent to the home by request on `warren.<cluster>.home.<node>`; the
 * home enqueues it as routed (exchange and routing key kept) and answers once it is settled there
 * (for a persistent message on a durable queue: on disk). The answer is the publisher's confirm;
 * no answer (the home is down, or too slow) is a `basic.nack` (MQTT and STOMP: their failure
 * replies). Requests from one node arrive in publish order, so a publisher's order is kept.
 *
 * Wire (request): u8 version | str16 vhost | str16 queue | str16 exchange | str16 routing key |
 * properties (the store's codec) | bytes32 body. Answer: u8 0 (ok), or u8 1 | u16 reply code |
 * str16 text.
 */

const VERSION = 1;
const OK = 0;
const FAILED = 1;

export const DEFAULT_FORWARD_TIMEOUT_MS = 5000;

export class QueueForwarding implements QueueForwarder {
  private readonly w = new ByteWriter(4096);
  private readonly r = new ByteReader();
  private sub: BusSubscription | undefined;
  private readonly homes = new WeakMap<Queue, string>();
  /** Forwarded publishes waiting for their home's answer. */
  inFlight = 0;
  readonly stats = { forwarded: 0, received: 0, failed: 0 };
  /** Whether a node is running (the registry's view); unset: every home counts as running. */
  homeRunning: ((node: string) => boolean) | undefined = undefined;

  constructor(
    private readonly core: Core,
    private readonly bus: ClusterBus,
    private readonly cluster: string,
    readonly nodeName: string,
    private readonly log: Logger,
    private readonly timeoutMs = DEFAULT_FORWARD_TIMEOUT_MS,
  ) {}

  subject(node: string): string {
    return `warren.${this.cluster}.home.${node}`;
  }

  /** Answers the requests of other nodes for the queues whose home this node is. */
  start(): void {
    this.sub = this.bus.subscribe(this.subject(this.nodeName), (data, _subject, reply) => this.onForwarded(data, reply));
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
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
    this.homes.set(queue, home);
    queue.forwarder = this;
  }

  unavailable(queue: Queue): string | undefined {
    const home = this.homes.get(queue);
    if (home === undefined) return `queue '${queue.name}' has no home node`;
    if (this.homeRunning === undefined || this.homeRunning(home)) return undefined;
    this.stats.failed++;
    return `queue '${queue.name}' is unavailable: its home node '${home}' is not running`;
  }

  forward(queue: Queue, msg: StoredMessage): Promise<void> {
    const home = this.homes.get(queue);
    if (home === undefined) {
      const failed = Promise.reject(BrokerError.internal(`queue '${queue.name}' has no home node`));
      failed.catch(() => undefined);
      return failed;
    }
    const w = this.w.reset();
    w.u8(VERSION);
    w.str16(queue.host.name);
    w.str16(queue.name);
    w.str16(msg.exchange);
    w.str16(msg.routingKey);
    writeProperties(w, msg.properties);
    w.bytes32(msg.body);
    const data = Buffer.from(w.buf.subarray(0, w.pos));
    this.inFlight++;
    this.stats.forwarded++;
    const settled = this.bus.request(this.subject(home), data, this.timeoutMs).then(
      (answer) => {
        this.inFlight--;
        if (answer[0] === OK) return;
        this.stats.failed++;
        const r = this.r.reset(Buffer.from(answer.buffer, answer.byteOffset, answer.byteLength), 1);
        throw new BrokerError(r.u16() as ReplyCode, r.str16());
      },
      (e: unknown) => {
        this.inFlight--;
        this.stats.failed++;
        const why = e instanceof NoResponderError ? `its home node '${home}' is not running` : `its home node '${home}' did not answer`;
        throw new BrokerError(ReplyCode.INTERNAL_ERROR, `queue '${queue.name}' is unavailable: ${why}`);
      },
    );
    // Some publishes inside the core (dead-lettering, delayed releases, wills) do not wait for
    // their settle: a failure must not count as an unhandled rejection.
    settled.catch(() => undefined);
    return settled;
  }

  // ---- receiving ----------------------------------------------------------------------------

  private onForwarded(data: Uint8Array, reply: ((data: Uint8Array) => void) | undefined): void {
    this.stats.received++;
    let settled: Promise<void>;
    try {
      const r = this.r.reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      if (r.u8() !== VERSION) throw BrokerError.notImplemented('unknown forwarding version');
      const vhostName = r.str16();
      const queueName = r.str16();
      const exchange = r.str16();
      const routingKey = r.str16();
      const properties = readProperties(r);
      const body = Buffer.from(r.bytes32()); // owned: the bus may reuse its buffer
      const vhost = this.core.vhosts.get(vhostName);
      const q = vhost?.queues.get(queueName);
      if (vhost === undefined || q === undefined) throw BrokerError.notFound(`no queue '${queueName}' in vhost '${vhostName}' on node '${this.nodeName}'`);
      if (q.forwarder !== undefined) throw BrokerError.notFound(`queue '${queueName}' does not live on node '${this.nodeName}'`);
      settled = vhost.enqueueForwarded(q, { exchange, routingKey, properties, body }, 0);
    } catch (e) {
      settled = Promise.reject(e);
    }
    settled.then(
      () => reply?.(ANSWER_OK),
      (e: unknown) => {
        const err = e instanceof BrokerError ? e : BrokerError.internal(e instanceof Error ? e.message : String(e));
        if (!(e instanceof BrokerError)) this.log.error({ err: e }, 'cluster: a forwarded message could not be enqueued');
        if (reply === undefined) return;
        const w = this.w.reset();
        w.u8(FAILED);
        w.u16(err.code);
        w.str16(err.text.slice(0, 1000));
        reply(Buffer.from(w.buf.subarray(0, w.pos)));
      },
    );
  }
}

const ANSWER_OK = Uint8Array.of(OK);
