import {
  BrokerError,
  ReplyCode,
  SETTLED,
  type CoreChannel,
  type Delivery,
  type DeliverySink,
  type GetResult,
  type Message,
  type MessageProperties,
} from '../../src/core/index.js';
import type { AmqpMethod, AmqpMethodOf } from './codec/methods.js';
import { encodeDelivery, encodeGetOk, encodeReturn, type Frame } from './codec/frames.js';
import { decodeContentHeader, type ContentHeader } from './codec/properties.js';
import type { AmqpConnection } from './connection.js';
import { SettleQueue, type SettleTarget } from '../../src/transport/settle-queue.js';

/** A publish waiting for its content header and body frames. */
interface PendingPublish {
  method: AmqpMethodOf<'basic.publish'>;
  properties: MessageProperties | undefined;
  rawProperties: Buffer | undefined;
  body: Buffer | undefined;
  bodySize: number;
  received: number;
}

/** Work buffered by tx.select until tx.commit. */
type TxOp =
  | { op: 'publish'; msg: Message; mandatory: boolean }
  | { op: 'ack'; tag: number; multiple: boolean }
  | { op: 'nack'; tag: number; multiple: boolean; requeue: boolean };

/** A method or content frame that arrived while the channel's previous reply waited for the disk. */
export type HeldFrame = AmqpMethod | Frame;

const NOOP = (): void => undefined;

/** Beyond this many bytes held behind a waiting reply, the connection stops reading for a while. */
const HOLD_LIMIT = 8 * 1024 * 1024;

/**
 * One AMQP channel: translates basic/queue/exchange/confirm/tx methods into core calls, and core
 * deliveries into basic.deliver frames. It is the DeliverySink of all its consumers.
 */
export class AmqpChannel implements DeliverySink, SettleTarget<number> {
  /**
   * 'closed' once released (either side closed it, or the connection is going): from then on
   * nothing is sent on this channel's number, which a new channel may already use.
   */
  state: 'open' | 'closed' = 'open';
  private pending: PendingPublish | undefined;
  /** The last content header received: the next one with the same property bytes shares its properties. */
  private lastHeader: ContentHeader | undefined;
  private confirm = false;
  private publishSeq = 0;
  /** Highest seq settled in order and not yet confirmed to the client. */
  private ackUpTo = 0;
  private acked = 0;
  /** Publisher confirms in publish order (sequence numbers), released as their publishes settle. */
  private readonly unconfirmed: SettleQueue<number>;
  private tx: TxOp[] | undefined;
  private flushScheduled = false;
  /**
   * Set while a declare/delete/bind/unbind reply waits for its definitions to be on disk: the
   * frames that follow on this channel wait here, so no later reply overtakes it (AMQP channels
   * process methods in order). Other channels and connections carry on.
   */
  private held: HeldFrame[] | undefined;
  private heldBytes = 0;
  /** This channel asked the connection to stop reading (too much held). */
  private pressing = false;

  constructor(
    readonly conn: AmqpConnection,
    readonly number: number,
    readonly core: CoreChannel,
  ) {
    this.unconfirmed = new SettleQueue<number>(this, conn.settleBudget);
    core.onConsumerTimeout = (consumerTag, timeoutMs) => this.consumerTimedOut(consumerTag, timeoutMs);
  }

  /**
   * The core cancelled a consumer that held a delivery too long (its messages are back in the
   * queue). A client that understands basic.cancel is told and keeps its channel; for one that
   * does not, and for basic.get, the channel is closed as RabbitMQ closes it.
   */
  private consumerTimedOut(consumerTag: string | null, timeoutMs: number): void {
    if (this.state !== 'open') return;
    if (consumerTag !== null && this.conn.capabilities.consumerCancelNotify) {
      this.conn.send(this.number, { kind: 'basic.cancel', consumerTag, noWait: true });
      return;
    }
    this.conn.closeChannelWith(
      this.number,
      BrokerError.precondition(
        `delivery acknowledgement on channel ${this.number} timed out. Timeout value used: ${timeoutMs} ms. This timeout value can be configured, see consumers doc guide to learn more`,
      ),
    );
  }

  get congested(): boolean {
    return this.conn.link.congested;
  }

  // ---- DeliverySink -------------------------------------------------------------------------

  deliver(d: Delivery): void {
    this.conn.link.write(encodeDelivery(this.number, this.conn.frameMax, d.consumerTag, d.deliveryTag, d.redelivered, d.message));
  }

  cancelled(consumerTag: string): void {
    if (this.conn.capabilities.consumerCancelNotify && this.state === 'open') {
      this.conn.send(this.number, { kind: 'basic.cancel', consumerTag, noWait: true });
    }
  }

  // ---- methods ------------------------------------------------------------------------------

  private reply(m: AmqpMethod): void {
    this.conn.send(this.number, m);
  }

  /** Whether frames for this channel must wait ({@link hold}) until a pending reply is sent. */
  get holding(): boolean {
    return this.held !== undefined;
  }

  hold(f: HeldFrame): void {
    this.held!.push(f);
    this.heldBytes += 'kind' in f ? 64 : f.payload.length + 8;
    if (this.heldBytes > HOLD_LIMIT && !this.pressing) {
      this.pressing = true;
      this.conn.holdPressure(true);
    }
  }

  private endPressure(): void {
    this.heldBytes = 0;
    if (!this.pressing) return;
    this.pressing = false;
    this.conn.holdPressure(false);
  }

  /**
   * Sends the reply of a definition-changing method once the change is on disk; at once when
   * nothing durable was involved. `reply` undefined (nowait): nothing is sent, but a failed write
   * still ends the channel. A failed write is never confirmed: the channel or connection closes
   * with 541 instead.
   */
  private replyDurable(reply: AmqpMethod | undefined, cause: AmqpMethod): void {
    const settled = this.core.definitionsSettled();
    if (settled === SETTLED) {
      if (reply !== undefined) this.reply(reply);
      return;
    }
    if (reply === undefined) {
      settled.then(NOOP, (e: unknown) => {
        if (this.state === 'open') this.conn.failChannel(this.number, e, cause);
      });
      return;
    }
    this.held = [];
    settled.then(
      () => this.afterWait(false, undefined, cause, () => this.reply(reply)),
      (e: unknown) => this.afterWait(true, e, cause, NOOP),
    );
  }

  /**
   * The end of a wait for the disk or another node while this channel's frames were held: `send`
   * writes the answer, or, when `failed`, the channel fails with `err`; then the frames held
   * meanwhile are handled.
   */
  private afterWait(failed: boolean, err: unknown, cause: AmqpMethod, send: () => void): void {
    const held = this.held ?? [];
    this.held = undefined;
    this.endPressure();
    if (this.state !== 'open') return;
    if (failed) {
      this.conn.failChannel(this.number, err, cause);
      return;
    }
    send();
    if (held.length > 0) this.conn.replayHeld(this.number, held);
  }

  private sendGet(r: GetResult | null): void {
    if (r === null) {
      this.reply({ kind: 'basic.get-empty' });
      return;
    }
    const d = r.delivery;
    let frames: Buffer;
    try {
      frames = encodeGetOk(this.number, this.conn.frameMax, d.deliveryTag, d.redelivered, r.messageCount, d.message);
    } catch (e) {
      // Not for this client (e.g. properties larger than its frame_max): the core rejects it.
      this.core.undeliverable(d, e);
      this.reply({ kind: 'basic.get-empty' });
      return;
    }
    this.conn.link.write(frames);
  }

  handleMethod(m: AmqpMethod): void {
    if (this.pending !== undefined) {
      throw BrokerError.unexpectedFrame(`expected content header for class 60, got non content header frame instead`);
    }
    const ch = this.core;
    switch (m.kind) {
      case 'basic.publish':
        this.conn.notePublish();
        this.pending = { method: m, properties: undefined, rawProperties: undefined, body: undefined, bodySize: 0, received: 0 };
        return;
      case 'basic.ack':
        if (this.tx) this.tx.push({ op: 'ack', tag: m.deliveryTag, multiple: m.multiple });
        else ch.ack(m.deliveryTag, m.multiple);
        return;
      case 'basic.nack':
        if (this.tx) this.tx.push({ op: 'nack', tag: m.deliveryTag, multiple: m.multiple, requeue: m.requeue });
        else ch.nack(m.deliveryTag, m.multiple, m.requeue);
        return;
      case 'basic.reject':
        if (this.tx) this.tx.push({ op: 'nack', tag: m.deliveryTag, multiple: false, requeue: m.requeue });
        else ch.nack(m.deliveryTag, false, m.requeue);
        return;
      case 'basic.qos':
        if (m.prefetchSize !== 0) {
          throw BrokerError.notImplemented(`prefetch_size!=0 (${m.prefetchSize})`);
        }
        ch.qos(m.prefetchCount, m.global);
        this.reply({ kind: 'basic.qos-ok' });
        return;
      case 'basic.consume': {
        const args = m.arguments;
        const prio = args['x-priority'];
        const tag = ch.consume(
          m.queue,
          {
            consumerTag: m.consumerTag,
            noAck: m.noAck,
            exclusive: m.exclusive,
            priority: typeof prio === 'number' ? prio : 0,
            arguments: args,
          },
          this,
        );
        if (!m.noWait) this.reply({ kind: 'basic.consume-ok', consumerTag: tag });
        return;
      }
      case 'basic.cancel':
        ch.cancel(m.consumerTag);
        if (!m.noWait) this.reply({ kind: 'basic.cancel-ok', consumerTag: m.consumerTag });
        return;
      case 'basic.get': {
        const remote = ch.getRemote(m.queue, m.noAck);
        if (remote !== undefined) {
          // The queue lives on another node: later frames of this channel wait for its answer.
          this.held = [];
          remote.then(
            (r) => this.afterWait(false, undefined, m, () => this.sendGet(r)),
            (e: unknown) => this.afterWait(true, e, m, NOOP),
          );
          return;
        }
        this.sendGet(ch.get(m.queue, m.noAck));
        return;
      }
      case 'basic.recover':
      case 'basic.recover-async':
        ch.recover();
        if (m.kind === 'basic.recover') this.reply({ kind: 'basic.recover-ok' });
        return;
      case 'exchange.declare':
        ch.declareExchange(
          m.exchange,
          m.type,
          { durable: m.durable, autoDelete: m.autoDelete, internal: m.internal, arguments: m.arguments },
          m.passive,
        );
        this.replyDurable(m.noWait ? undefined : { kind: 'exchange.declare-ok' }, m);
        return;
      case 'exchange.delete':
        ch.deleteExchange(m.exchange, m.ifUnused);
        this.replyDurable(m.noWait ? undefined : { kind: 'exchange.delete-ok' }, m);
        return;
      case 'exchange.bind':
        ch.bindExchange(m.destination, m.source, m.routingKey, m.arguments);
        this.replyDurable(m.noWait ? undefined : { kind: 'exchange.bind-ok' }, m);
        return;
      case 'exchange.unbind':
        ch.unbindExchange(m.destination, m.source, m.routingKey, m.arguments);
        this.replyDurable(m.noWait ? undefined : { kind: 'exchange.unbind-ok' }, m);
        return;
      case 'queue.declare': {
        const ok = ch.declareQueue(
          m.queue,
          { durable: m.durable, exclusive: m.exclusive, autoDelete: m.autoDelete, arguments: m.arguments },
          m.passive,
        );
        this.replyDurable(m.noWait ? undefined : { kind: 'queue.declare-ok', ...ok }, m);
        return;
      }
      case 'queue.bind':
        ch.bindQueue(m.queue, m.exchange, m.routingKey, m.arguments);
        this.replyDurable(m.noWait ? undefined : { kind: 'queue.bind-ok' }, m);
        return;
      case 'queue.unbind':
        ch.unbindQueue(m.queue, m.exchange, m.routingKey, m.arguments);
        this.replyDurable({ kind: 'queue.unbind-ok' }, m);
        return;
      case 'queue.purge': {
        const n = ch.purgeQueue(m.queue);
        if (typeof n === 'number') {
          if (!m.noWait) this.reply({ kind: 'queue.purge-ok', messageCount: n });
          return;
        }
        // Purged on other nodes too: later frames of this channel wait for the count.
        this.held = [];
        n.then(
          (count) => this.afterWait(false, undefined, m, () => {
            if (!m.noWait) this.reply({ kind: 'queue.purge-ok', messageCount: count });
          }),
          (e: unknown) => this.afterWait(true, e, m, NOOP),
        );
        return;
      }
      case 'queue.delete': {
        const n = ch.deleteQueue(m.queue, m.ifUnused, m.ifEmpty);
        this.replyDurable(m.noWait ? undefined : { kind: 'queue.delete-ok', messageCount: n }, m);
        return;
      }
      case 'channel.flow':
        ch.setFlow(m.active);
        this.reply({ kind: 'channel.flow-ok', active: m.active });
        return;
      case 'channel.flow-ok':
        return;
      case 'confirm.select':
        if (this.tx) throw BrokerError.precondition('cannot switch from tx to confirm mode');
        this.confirm = true;
        if (!m.noWait) this.reply({ kind: 'confirm.select-ok' });
        return;
      case 'tx.select':
        if (this.confirm) throw BrokerError.precondition('cannot switch from confirm to tx mode');
        this.tx ??= [];
        this.reply({ kind: 'tx.select-ok' });
        return;
      case 'tx.commit':
        if (!this.tx) throw BrokerError.precondition('channel is not transactional');
        this.commit();
        this.reply({ kind: 'tx.commit-ok' });
        return;
      case 'tx.rollback':
        if (!this.tx) throw BrokerError.precondition('channel is not transactional');
        this.tx = [];
        this.reply({ kind: 'tx.rollback-ok' });
        return;
      case 'access.request':
        this.reply({ kind: 'access.request-ok', ticket: 1 });
        return;
      default:
        throw BrokerError.commandInvalid(`unexpected method ${m.kind} on channel ${this.number}`);
    }
  }

  // ---- content ------------------------------------------------------------------------------

  get expectsContent(): boolean {
    return this.pending !== undefined;
  }

  handleHeader(payload: Buffer): void {
    const p = this.pending;
    if (p === undefined || p.properties !== undefined) {
      throw BrokerError.unexpectedFrame(`expected method frame, got non method frame instead`);
    }
    const h = decodeContentHeader(payload, this.lastHeader);
    this.lastHeader = h;
    if (h.classId !== 60) throw BrokerError.unexpectedFrame(`content header for class ${h.classId}, expected 60`);
    const max = this.conn.maxMessageSize;
    if (h.bodySize > max) {
      // The channel closes with this error; its remaining body frames are dropped until close-ok.
      this.pending = undefined;
      throw BrokerError.precondition(`message size ${h.bodySize} is larger than configured max size ${max}`);
    }
    p.properties = h.properties;
    p.rawProperties = h.rawProperties;
    p.bodySize = h.bodySize;
    if (h.bodySize === 0) {
      p.body = Buffer.alloc(0);
      this.completePublish(p);
    }
  }

  handleBody(payload: Buffer): void {
    const p = this.pending;
    if (p === undefined || p.properties === undefined) {
      throw BrokerError.unexpectedFrame(`expected method frame, got non method frame instead`);
    }
    const n = payload.length;
    if (p.received + n > p.bodySize) {
      throw BrokerError.unexpectedFrame(`body frames carry ${p.received + n} bytes, header said ${p.bodySize}`);
    }
    if (p.body === undefined) {
      if (n === p.bodySize) {
        // The whole body in one frame: one copy, so the message does not pin the socket chunk.
        p.body = Buffer.allocUnsafe(n);
        payload.copy(p.body, 0);
        p.received = n;
        this.completePublish(p);
        return;
      }
      p.body = Buffer.allocUnsafe(p.bodySize);
    }
    payload.copy(p.body, p.received);
    p.received += n;
    if (p.received === p.bodySize) this.completePublish(p);
  }

  private completePublish(p: PendingPublish): void {
    this.pending = undefined;
    const m = p.method;
    const msg: Message = {
      exchange: m.exchange,
      routingKey: m.routingKey,
      properties: p.properties!,
      body: p.body!,
      rawProperties: p.rawProperties,
    };
    if (this.tx) {
      this.core.checkPublishable(m.exchange);
      this.core.checkContent(msg); // refused now, not at tx.commit after the transaction's earlier publishes
      this.tx.push({ op: 'publish', msg, mandatory: m.mandatory });
      return;
    }
    this.publish(msg, m.mandatory);
  }

  private publish(msg: Message, mandatory: boolean): void {
    let seq = 0;
    if (this.confirm) seq = ++this.publishSeq;
    let r;
    try {
      r = this.core.publish(msg);
    } catch (e) {
      if (seq !== 0) this.publishSeq--;
      throw e;
    }
    if (mandatory && r.routed === 0) {
      this.core.stats.returned++;
      this.conn.link.write(encodeReturn(this.number, this.conn.frameMax, ReplyCode.NO_ROUTE, 'NO_ROUTE', msg));
    }
    if (seq === 0) return;
    // Confirmed in publish order, so that `multiple` never covers a pending publish.
    this.unconfirmed.push(seq, r.settled === SETTLED ? undefined : r.settled);
  }

  /** SettleTarget: publish `seq` is settled; acks of one turn coalesce into one basic.ack. */
  settledInOrder(seq: number): void {
    if (this.state !== 'open') return;
    this.ackUpTo = seq;
    this.scheduleFlush();
  }

  /** SettleTarget: publish `seq` could not be settled: basic.nack, after the acks before it. */
  settleFailed(seq: number): void {
    if (this.state !== 'open') return;
    this.flushAcks();
    this.reply({ kind: 'basic.nack', deliveryTag: seq, multiple: false, requeue: false });
    this.acked = seq;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    process.nextTick(this.flushBound);
  }

  private readonly flushBound = (): void => {
    this.flushScheduled = false;
    try {
      this.flushAcks();
    } catch (e) {
      this.conn.guard.contain(e);
    }
  };

  /** One basic.ack (multiple when it covers several) for everything settled so far. */
  private flushAcks(): void {
    if (this.ackUpTo <= this.acked || this.state !== 'open') return;
    const multiple = this.ackUpTo - this.acked > 1;
    this.acked = this.ackUpTo;
    this.conn.sendAfterDeliveries(this.number, { kind: 'basic.ack', deliveryTag: this.ackUpTo, multiple });
  }

  private commit(): void {
    const ops = this.tx!;
    this.tx = [];
    for (const op of ops) {
      if (op.op === 'publish') this.publish(op.msg, op.mandatory);
      else if (op.op === 'ack') this.core.ack(op.tag, op.multiple);
      else this.core.nack(op.tag, op.multiple, op.requeue);
    }
  }

  /**
   * The client sent channel.close: confirms already settled go out before close-ok (as RabbitMQ
   * sends what is due first); the ones still waiting are dropped with the channel.
   */
  closeByClient(): void {
    this.flushAcks();
    this.release();
  }

  /**
   * Closes the core side: consumers cancelled, unacked messages requeued. Nothing is sent on the
   * channel after this: confirms that settle later, a flush already scheduled and consumer
   * timeouts all find it closed.
   */
  release(): void {
    this.state = 'closed';
    this.held = undefined;
    this.endPressure();
    this.pending = undefined;
    this.tx = undefined;
    this.unconfirmed.clear();
    this.core.close();
  }
}
