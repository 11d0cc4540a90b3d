import { randomBytes } from 'node:crypto';
import type { Access, Auth } from './auth.js';
import type { CoreConnection } from './connection.js';
import type { Pattern } from './pattern.js';
import { BrokerError } from './errors.js';
import { Exchange, type Destination } from './exchanges/exchange.js';
import { Consumer, type ConsumerOwner } from './queues/consumer.js';
import type { QueueEntry } from './queues/entry.js';
import { ChannelCounters, epochMs, msSinceStart, type ChannelStats } from './stats.js';
import type { Queue } from './queues/queue.js';
import { REPLY_TO_PREFIX, REPLY_TO_QUEUE, type ReplyTarget } from './reply-to.js';
import { SETTLED } from './types.js';
import { UnackedLog, type Unacked } from './unacked-log.js';
import type {
  ConsumeOptions,
  Delivery,
  DeliverySink,
  ExchangeOptions,
  FieldTable,
  GetResult,
  Message,
  MessageProperties,
  PublishOptions,
  PublishResult,
  QueueDeclareOk,
  QueueOptions,
  StoredMessage,
} from './types.js';
import type { VHost } from './vhost.js';

/** A delivery waiting for its acknowledgement. */
export type { Unacked } from './unacked-log.js';

const NO_UNACKED = new UnackedLog();

/**
 * Shared by every channel until it first needs a map of its own: an idle session (a sleeping MQTT
 * device) then costs no maps at all. Never written to: writers swap in a private map first.
 */
const NO_CONSUMERS: ReadonlyMap<string, Consumer> = new Map();
/** A consumer's arguments when none were given: shared, never written to. */
const NO_ARGS: FieldTable = Object.freeze({});

/**
 * A session on the core: one per AMQP channel, per MQTT session, per STOMP connection.
 * Holds consumers, delivery tags, unacknowledged deliveries and prefetch; checks permissions.
 * Its message counters (ChannelStats) are fields of its own, not an object.
 */
export class CoreChannel extends ChannelCounters implements ConsumerOwner {
  /**
   * This channel's consumers: none, the one (an MQTT session's, most AMQP channels') held as is,
   * or a map by tag from the second on.
   */
  private consumerSlot: Consumer | Map<string, Consumer> | undefined = undefined;
  /** Shared and empty until the first delivery that needs an ack (most sessions never hold one). */
  private unacked = NO_UNACKED;
  private nextTag = 1;
  /** basic.qos global=false: the prefetch given to consumers created afterwards. */
  private consumerPrefetch = 0;
  /** basic.qos global=true: a limit shared by all consumers of the channel. */
  private channelPrefetch = 0;
  private flowActive = true;
  private closed = false;
  /** The last queue declared on this channel: AMQP lets '' name it. */
  private lastQueue: string | undefined;
  /** Last exchange name the user was allowed to publish to (skips the regex on the hot path). */
  private writeOk: string | undefined;
  /** The Auth generation `writeOk` was checked under: any permission change invalidates it. */
  private writeGen = -1;
  /** The exchange `writeOk` names, and the topic permission pattern its routing keys must match. */
  private writeEx: Exchange | undefined;
  private writeTopic: Pattern | undefined;
  /** The last definition call concerned a durable (or missing) object: its reply waits for the store. */
  private waitDefinitions = false;
  /** This channel's direct reply-to consumer (at most one, as RabbitMQ allows). */
  private reply: ReplyTarget | undefined;
  private readonly auth: Auth;
  /** When it opened, as ms since the process started (see openedAt). */
  private readonly openedSince = msSinceStart();
  /**
   * Set by an adapter that handles consumer timeouts: the consumer (null: a basic.get delivery)
   * was cancelled and its deliveries requeued; the adapter tells the client. Channels without it
   * are not swept.
   */
  onConsumerTimeout: ((consumerTag: string | null, timeoutMs: number) => void) | undefined;

  /** The channel's message counters: the channel itself. */
  get stats(): ChannelStats {
    return this;
  }

  /** When it opened (ms since the epoch). */
  get openedAt(): number {
    return epochMs(this.openedSince);
  }

  constructor(
    readonly connection: CoreConnection,
    /** The protocol's channel number (AMQP) or 1. */
    readonly number: number,
  ) {
    super();
    this.auth = connection.core.auth;
    connection.core.totals.of(connection.info.protocol).channelsOpened++;
  }

  /** This channel's consumers by tag. */
  get consumers(): ReadonlyMap<string, Consumer> {
    const s = this.consumerSlot;
    if (s === undefined) return NO_CONSUMERS;
    // Management reads a single consumer as a map (made for the call, not kept).
    if (s instanceof Consumer) return new Map([[s.tag, s]]);
    return s;
  }

  /** The consumer with `tag`, if this channel has it. */
  private consumerOf(tag: string): Consumer | undefined {
    const s = this.consumerSlot;
    if (s === undefined) return undefined;
    if (s instanceof Consumer) return s.tag === tag ? s : undefined;
    return s.get(tag);
  }

  private addConsumerSlot(c: Consumer): void {
    const s = this.consumerSlot;
    if (s === undefined) this.consumerSlot = c;
    else if (s instanceof Consumer) this.consumerSlot = new Map([[s.tag, s], [c.tag, c]]);
    else s.set(c.tag, c);
  }

  private dropConsumerSlot(tag: string): void {
    const s = this.consumerSlot;
    if (s instanceof Consumer) {
      if (s.tag === tag) this.consumerSlot = undefined;
    } else s?.delete(tag);
  }

  get vhost(): VHost {
    return this.connection.vhost;
  }

  get connectionId(): number {
    return this.connection.id;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get unackedCount(): number {
    return this.unacked.size;
  }

  get prefetchCount(): number {
    return this.channelPrefetch || this.consumerPrefetch;
  }

  // ---- permissions --------------------------------------------------------------------------

  private check(access: Access, kind: 'queue' | 'exchange', name: string): void {
    const c = this.connection;
    if (!this.auth.permitted(c.user, c.vhost.name, access, name)) {
      throw BrokerError.accessRefused(
        `access to ${kind} '${name === '' ? 'amq.default' : name}' in vhost '${c.vhost.name}' refused for user '${c.user}'`,
      );
    }
  }

  /** RabbitMQ's topic authorisation: only topic exchanges, only when the user has a topic permission there. */
  private checkTopic(access: 'write' | 'read', ex: Exchange, routingKey: string): void {
    if (ex.type !== 'topic') return;
    const c = this.connection;
    const vhost = c.vhost.name;
    if (!this.auth.hasTopicPermission(c.user, vhost, ex.name)) return;
    const vars = { username: c.user, vhost, client_id: c.info.clientId };
    if (!this.auth.topicPermitted(c.user, vhost, ex.name, access, routingKey, vars)) {
      throw BrokerError.accessRefused(
        `${access} access to topic '${routingKey}' in exchange '${ex.name}' in vhost '${vhost}' refused for user '${c.user}'`,
      );
    }
  }

  /** The publish-path topic check, with the pattern kept since `checkPublishable`. */
  private checkTopicWrite(pattern: Pattern, routingKey: string): void {
    if (pattern.test(routingKey)) return;
    const c = this.connection;
    throw BrokerError.accessRefused(
      `write access to topic '${routingKey}' in exchange '${this.writeEx!.name}' in vhost '${c.vhost.name}' refused for user '${c.user}'`,
    );
  }

  private resolveQueueName(name: string): string {
    if (name !== '') return name;
    if (this.lastQueue === undefined) throw BrokerError.notFound('no previously declared queue');
    return this.lastQueue;
  }

  private queueFor(name: string): Queue {
    const q = this.vhost.getQueue(this.resolveQueueName(name));
    this.vhost.checkExclusiveAccess(q, this.connection.id);
    return q;
  }

  // ---- declarations -------------------------------------------------------------------------

  declareExchange(name: string, type: string, opts: ExchangeOptions, passive = false): void {
    if (!passive) this.check('configure', 'exchange', name);
    const ae = opts.arguments?.['alternate-exchange'];
    if (!passive && typeof ae === 'string') {
      // RabbitMQ: read on the exchange being declared, write on its alternate exchange.
      this.check('read', 'exchange', name);
      this.check('write', 'exchange', ae);
    }
    this.waitDefinitions = this.vhost.declareExchange(name, type, opts, passive).durable;
  }

  deleteExchange(name: string, ifUnused = false): void {
    this.check('configure', 'exchange', name);
    const ex = this.vhost.exchanges.get(name);
    this.waitDefinitions = ex === undefined || ex.durable;
    this.vhost.deleteExchange(name, ifUnused);
  }

  /**
   * Resolves once the definitions the last declare, delete, bind or unbind on this channel
   * touched are on disk (fsynced), so that its reply confirms something durable; rejects with a
   * 541 BrokerError when the write failed. Is {@link SETTLED} itself when the call concerned only
   * transient, exclusive or auto-delete non-durable objects or nothing is waiting for the disk: the
   * reply goes out at once.
   */
  definitionsSettled(): Promise<void> {
    if (!this.waitDefinitions) return SETTLED;
    this.waitDefinitions = false;
    return this.connection.core.persistence.definitionsSettled();
  }

  declareQueue(name: string, opts: QueueOptions, passive = false): QueueDeclareOk {
    if (name.startsWith(REPLY_TO_QUEUE)) {
      const reply = this.declareReplyTo(name);
      if (reply !== undefined) return reply;
    }
    if (!passive) {
      if (name !== '') this.check('configure', 'queue', name);
      const dlx = opts.arguments?.['x-dead-letter-exchange'];
      if (typeof dlx === 'string' && name !== '') {
        // RabbitMQ: dead-lettering reads from the queue and writes to the dead-letter exchange.
        this.check('read', 'queue', name);
        this.check('write', 'exchange', dlx);
      }
    }
    const existed = name !== '' && this.vhost.queues.has(name);
    const q = this.vhost.declareQueue(name, opts, passive, this.connection.id);
    if (!passive && name === '' && !existed) {
      // A server-named queue needs configure permission on the name it got (RabbitMQ checks the
      // generated name); the name is only known now, so undo the declaration when refused.
      try {
        this.check('configure', 'queue', q.name);
        const dlx = opts.arguments?.['x-dead-letter-exchange'];
        if (typeof dlx === 'string') {
          this.check('read', 'queue', q.name);
          this.check('write', 'exchange', dlx);
        }
      } catch (e) {
        this.vhost.removeQueue(q);
        throw e;
      }
    }
    this.lastQueue = q.name;
    this.waitDefinitions = q.durable;
    return { queue: q.name, messageCount: q.readyCount, consumerCount: q.consumerCount };
  }

  /**
   * RabbitMQ's answer to a declare (passive or not) of the direct reply-to pseudo-queue or of a
   * reply address: nothing is created; it exists (0 messages, 1 consumer) while a requester holds
   * it, else 404. Undefined for other `amq.rabbitmq.reply-to*` names (declared as usual).
   */
  private declareReplyTo(name: string): QueueDeclareOk | undefined {
    if (name !== REPLY_TO_QUEUE && !name.startsWith(REPLY_TO_PREFIX)) return undefined;
    this.waitDefinitions = false;
    if (!this.vhost.directReply.exists(name)) throw BrokerError.notFound(`no queue '${name}' in vhost '${this.vhost.name}'`);
    return { queue: name, messageCount: 0, consumerCount: 1 };
  }

  deleteQueue(name: string, ifUnused = false, ifEmpty = false): number {
    const qname = this.resolveQueueName(name);
    this.check('configure', 'queue', qname);
    const q = this.vhost.queues.get(qname);
    this.waitDefinitions = q === undefined || q.durable;
    return this.vhost.deleteQueue(qname, ifUnused, ifEmpty, this.connection.id);
  }

  /**
   * Drops the queue's ready messages; returns how many. A number when the queue's messages are all
   * here; a promise for a queue of a cluster whose messages live on another node or in a
   * replicated log (the others are asked).
   */
  purgeQueue(name: string): number | Promise<number> {
    this.check('read', 'queue', this.resolveQueueName(name));
    const q = this.queueFor(name);
    if (q.remote !== undefined) return q.remote.purge(q);
    if (q.forwarder?.purge !== undefined) return q.forwarder.purge(q);
    return q.purge();
  }

  // RabbitMQ's binding_action: write on the destination, read on the source, then topic read on
  // the binding key when the source is a topic exchange.

  bindQueue(queue: string, exchange: string, routingKey: string, args: FieldTable = {}): void {
    this.check('write', 'queue', this.resolveQueueName(queue));
    this.check('read', 'exchange', exchange);
    const q = this.queueFor(queue);
    const src = this.vhost.getExchange(exchange);
    this.checkTopic('read', src, routingKey);
    this.waitDefinitions = src.durable && q.durable;
    this.vhost.bind(src, q, routingKey, args);
  }

  unbindQueue(queue: string, exchange: string, routingKey: string, args: FieldTable = {}): void {
    this.check('write', 'queue', this.resolveQueueName(queue));
    this.check('read', 'exchange', exchange);
    const q = this.queueFor(queue);
    const src = this.vhost.getExchange(exchange);
    this.checkTopic('read', src, routingKey);
    this.waitDefinitions = src.durable && q.durable;
    this.vhost.unbind(src, q, routingKey, args);
  }

  bindExchange(destination: string, source: string, routingKey: string, args: FieldTable = {}): void {
    this.check('write', 'exchange', destination);
    this.check('read', 'exchange', source);
    const dest: Destination = this.vhost.getExchange(destination);
    const src = this.vhost.getExchange(source);
    this.checkTopic('read', src, routingKey);
    this.waitDefinitions = src.durable && dest.durable;
    this.vhost.bind(src, dest, routingKey, args);
  }

  unbindExchange(destination: string, source: string, routingKey: string, args: FieldTable = {}): void {
    this.check('write', 'exchange', destination);
    this.check('read', 'exchange', source);
    const dest: Exchange = this.vhost.getExchange(destination);
    const src = this.vhost.getExchange(source);
    this.checkTopic('read', src, routingKey);
    this.waitDefinitions = src.durable && dest.durable;
    this.vhost.unbind(src, dest, routingKey, args);
  }

  // ---- publishing ---------------------------------------------------------------------------

  /**
   * Routes a message. With `mandatory` and no route the caller returns it to the publisher
   * (AMQP basic.return) — the core only reports `routed: 0`. The vhost checks the message
   * (see `checkMessage`): it can be delivered on every protocol, or the publish is refused (406).
   */
  publish(msg: Message, opts?: PublishOptions): PublishResult {
    if (this.writeOk !== msg.exchange || this.writeGen !== this.auth.generation || this.writeEx!.deleted) {
      this.checkPublishable(msg.exchange);
    }
    if (this.writeTopic !== undefined) this.checkTopicWrite(this.writeTopic, msg.routingKey);
    const uid = msg.properties.userId;
    if (uid !== undefined && uid !== this.connection.user) {
      throw BrokerError.precondition(`user_id property set to '${uid}' but authenticated user was '${this.connection.user}'`);
    }
    if (msg.properties.replyTo === REPLY_TO_QUEUE) msg = this.withReplyAddress(msg);
    this.published++;
    return this.vhost.publish(msg, this.connection.id, opts?.delay);
  }

  /**
   * A request naming `reply-to: amq.rabbitmq.reply-to` gets this channel's reply address instead
   * (406 when the channel does not consume the pseudo-queue, as RabbitMQ answers). The AMQP
   * property bytes no longer describe the properties, so they are dropped and re-encoded.
   */
  private withReplyAddress(msg: Message): Message {
    if (this.reply === undefined) throw BrokerError.precondition('fast reply consumer does not exist');
    const properties: MessageProperties = { ...msg.properties, replyTo: REPLY_TO_PREFIX + this.reply.token };
    return { exchange: msg.exchange, routingKey: msg.routingKey, properties, body: msg.body };
  }

  /** This channel's reply address (`amq.rabbitmq.reply-to.<token>`) while it consumes the pseudo-queue. */
  get replyAddress(): string | undefined {
    return this.reply === undefined ? undefined : REPLY_TO_PREFIX + this.reply.token;
  }

  /**
   * Throws what `publish` would throw for this message's content (see `checkMessage`), without
   * routing it: a transaction refuses a message when it is buffered, not at commit.
   */
  checkContent(msg: Message): void {
    if (msg.properties.replyTo === REPLY_TO_QUEUE && this.reply === undefined) throw BrokerError.precondition('fast reply consumer does not exist');
    this.vhost.checkContent(msg);
  }

  /** Throws unless this channel may publish to the exchange (exists, not internal, permitted). */
  checkPublishable(exchange: string): void {
    this.writeOk = undefined;
    this.check('write', 'exchange', exchange);
    const ex = this.vhost.getExchange(exchange);
    if (ex.internal) {
      throw BrokerError.accessRefused(`cannot publish to internal exchange '${ex.name}' in vhost '${this.vhost.name}'`);
    }
    const c = this.connection;
    const vhost = c.vhost.name;
    this.writeTopic =
      ex.type === 'topic' ? this.auth.topicPattern(c.user, vhost, ex.name, 'write', { username: c.user, vhost, client_id: c.info.clientId }) : undefined;
    this.writeGen = this.auth.generation;
    this.writeEx = ex;
    this.writeOk = exchange;
  }

  /**
   * Throws unless a publish to `exchange` with `routingKey` would pass the permission checks
   * (write on the exchange, topic write on the routing key): MQTT and STOMP check before
   * acknowledging or to choose a reason code.
   */
  checkPublish(exchange: string, routingKey: string): void {
    if (this.writeOk !== exchange || this.writeGen !== this.auth.generation || this.writeEx!.deleted) this.checkPublishable(exchange);
    if (this.writeTopic !== undefined) this.checkTopicWrite(this.writeTopic, routingKey);
  }

  // ---- consuming ----------------------------------------------------------------------------

  /** basic.qos. `global` = channel-wide limit (RabbitMQ's per_consumer_qos semantics). */
  qos(prefetchCount: number, global: boolean): void {
    if (global) {
      const grew = prefetchCount === 0 || prefetchCount > this.channelPrefetch;
      this.channelPrefetch = prefetchCount;
      if (grew) this.resume();
    } else this.consumerPrefetch = prefetchCount;
  }

  consume(queue: string, opts: ConsumeOptions, sink: DeliverySink): string {
    if (queue === REPLY_TO_QUEUE) return this.consumeReplies(opts, sink);
    this.check('read', 'queue', this.resolveQueueName(queue));
    const q = this.queueFor(queue);
    let tag = opts.consumerTag ?? '';
    if (tag === '') tag = `amq.ctag-${randomBytes(16).toString('base64url').slice(0, 22)}`;
    if (this.consumerOf(tag) !== undefined || this.reply?.consumerTag === tag) throw BrokerError.notAllowed(`attempt to reuse consumer tag '${tag}'`);
    const c = new Consumer(
      tag,
      q,
      this,
      sink,
      opts.noAck ?? false,
      opts.exclusive ?? false,
      opts.priority ?? 0,
      opts.prefetch ?? this.consumerPrefetch,
      opts.arguments ?? NO_ARGS,
    );
    q.addConsumer(c);
    this.addConsumerSlot(c);
    return tag;
  }

  /**
   * Consuming `amq.rabbitmq.reply-to` (RabbitMQ's direct reply-to): no queue, no declare; the
   * channel gets a token, and replies published to `amq.rabbitmq.reply-to.<token>` reach `sink`
   * directly. RabbitMQ's rules: no-ack only, one such consumer per channel.
   */
  private consumeReplies(opts: ConsumeOptions, sink: DeliverySink): string {
    let tag = opts.consumerTag ?? '';
    if (tag === '') tag = `amq.ctag-${randomBytes(16).toString('base64url').slice(0, 22)}`;
    if (this.consumerOf(tag) !== undefined || this.reply?.consumerTag === tag) throw BrokerError.notAllowed(`attempt to reuse consumer tag '${tag}'`);
    if (opts.noAck !== true) throw BrokerError.precondition('reply consumer cannot acknowledge');
    if (this.reply !== undefined) throw BrokerError.precondition('reply consumer already set');
    if (this.closed) throw BrokerError.precondition('channel is closed');
    const registry = this.vhost.directReply;
    this.reply = { token: registry.newToken(), consumerTag: tag, sink, channel: this };
    registry.add(this.reply);
    return tag;
  }

  /**
   * Hands a direct reply to this channel's reply consumer (called by the vhost's routing);
   * false when it is dropped: the channel is closing, or the sink could not encode it.
   */
  deliverReply(target: ReplyTarget, msg: StoredMessage): boolean {
    if (this.closed || this.reply !== target) return false;
    try {
      target.sink.deliver({
        message: msg,
        deliveryTag: this.nextTag++,
        redelivered: false,
        consumerTag: target.consumerTag,
        queue: REPLY_TO_QUEUE,
        deliveryCount: 0,
      });
    } catch (err) {
      this.reportUndeliverable(REPLY_TO_QUEUE, msg.id, target.consumerTag, false, err);
      return false;
    }
    this.delivered++;
    return true;
  }

  private stopReplies(): void {
    if (this.reply === undefined) return;
    this.vhost.directReply.remove(this.reply);
    this.reply = undefined;
  }

  /** basic.cancel; false when no such consumer. */
  cancel(consumerTag: string): boolean {
    if (this.reply?.consumerTag === consumerTag) {
      this.stopReplies();
      return true;
    }
    const c = this.consumerOf(consumerTag);
    if (!c) return false;
    this.dropConsumerSlot(consumerTag);
    c.queue.removeConsumer(c);
    return true;
  }

  /** The queue of a consumer was deleted: forget the consumer and tell the sink. */
  consumerCancelled(c: Consumer): void {
    if (this.consumerOf(c.tag) !== c) return;
    this.dropConsumerSlot(c.tag);
    c.sink.cancelled?.(c.tag);
  }

  /** The connection is closed and its teardown (which closes this channel) is still to come. */
  get closing(): boolean {
    return !this.closed && this.connection.isClosed;
  }

  finishClose(): void {
    this.connection.finishTeardown();
  }

  canDeliver(): boolean {
    return this.flowActive && !this.closed && !this.connection.isClosed && (this.channelPrefetch === 0 || this.unacked.size < this.channelPrefetch);
  }

  /**
   * Hands a queue entry to a consumer's sink; false when the sink could not encode it. That is
   * never a crash: the delivery is taken back and the message rejected without requeue, so it is
   * dead-lettered (x-death reason `rejected`) when the queue has a dead-letter exchange and dropped
   * otherwise, with a log line either way. The consumer carries on with the next message.
   */
  deliverFromQueue(c: Consumer, q: Queue, e: QueueEntry, redelivered: boolean): boolean {
    const tag = this.nextTag++;
    if (!c.noAck) {
      this.unackedLog().add(tag, { entry: e, queue: q, consumer: c, at: Date.now() });
      c.unacked++;
    }
    try {
      c.sink.deliver({
        message: e.returns === 0 ? e.msg : q.messageFor(e),
        deliveryTag: tag,
        redelivered,
        consumerTag: c.tag,
        queue: q.name,
        deliveryCount: e.deliveryCount - 1,
        expiresAt: e.expiresAt,
      });
    } catch (err) {
      if (!c.noAck) {
        this.unacked.take(tag);
        c.unacked--;
        q.reject(e, true);
      }
      this.reportUndeliverable(q.name, e.msg.id, c.tag, q.limits.deadLetterExchange !== undefined, err);
      return false;
    }
    this.delivered++;
    if (redelivered) this.redelivered++;
    return true;
  }

  /**
   * A delivery handed out by {@link get} could not be encoded for the client: it is rejected
   * without requeue (dead-lettered or dropped, with a log line), as a consumer's would be.
   */
  undeliverable(d: Delivery, err: unknown): void {
    const u = this.unacked.get(d.deliveryTag);
    let deadLettered = false;
    if (u !== undefined && u.entry.msg === d.message) {
      this.unacked.take(d.deliveryTag);
      deadLettered = u.queue.limits.deadLetterExchange !== undefined;
      u.queue.reject(u.entry, true);
    }
    this.reportUndeliverable(d.queue, d.message.id, d.consumerTag, deadLettered, err);
  }

  private reportUndeliverable(queue: string, messageId: number, consumerTag: string, deadLettered: boolean, err: unknown): void {
    const c = this.connection;
    c.core.log.warn(
      {
        vhost: c.vhost.name,
        queue,
        protocol: c.info.protocol,
        user: c.user,
        consumerTag,
        messageId,
        deadLettered,
        err: err instanceof Error ? err.message : String(err),
      },
      'message cannot be encoded for this consumer: rejected without requeue',
    );
  }

  /**
   * basic.get of a queue that lives on another node of a cluster: its home answers. Undefined
   * for a queue that lives here ({@link get} answers at once).
   */
  getRemote(queue: string, noAck: boolean): Promise<GetResult | null> | undefined {
    this.check('read', 'queue', this.resolveQueueName(queue));
    const q = this.queueFor(queue);
    const remote = q.remote;
    if (remote === undefined) return undefined;
    return remote.get(q, noAck).then((taken) => {
      if (taken === undefined) return null;
      if (this.closed) {
        // The channel closed while the home answered: the message goes back at once.
        if (!noAck) q.requeue(taken.entry);
        return null;
      }
      const tag = this.nextTag++;
      if (!noAck) {
        this.unackedLog().add(tag, { entry: taken.entry, queue: q, consumer: null, at: Date.now() });
      }
      this.got++;
      return {
        delivery: {
          message: taken.entry.msg,
          deliveryTag: tag,
          redelivered: taken.redelivered,
          consumerTag: '',
          queue: q.name,
          deliveryCount: taken.entry.deliveryCount - 1,
          expiresAt: taken.entry.expiresAt,
        },
        messageCount: taken.messageCount,
      };
    });
  }

  get(queue: string, noAck: boolean): GetResult | null {
    this.check('read', 'queue', this.resolveQueueName(queue));
    const q = this.queueFor(queue);
    const taken = q.take(noAck);
    if (!taken) return null;
    const tag = this.nextTag++;
    if (!noAck) {
      this.unackedLog().add(tag, { entry: taken.entry, queue: q, consumer: null, at: Date.now() });
    }
    this.got++;
    return {
      delivery: {
        message: q.messageFor(taken.entry),
        deliveryTag: tag,
        redelivered: taken.redelivered,
        consumerTag: '',
        queue: q.name,
        deliveryCount: taken.entry.deliveryCount - 1,
        expiresAt: taken.entry.expiresAt,
      },
      messageCount: q.readyCount,
    };
  }

  // ---- acknowledgements ---------------------------------------------------------------------

  /** basic.ack: tag 0 with multiple = everything outstanding. */
  ack(deliveryTag: number, multiple = false): void {
    this.settle(deliveryTag, multiple, 0);
  }

  /** basic.nack / basic.reject. */
  nack(deliveryTag: number, multiple = false, requeue = true): void {
    this.settle(deliveryTag, multiple, requeue ? 1 : 2);
  }

  /** 0 = ack, 1 = requeue, 2 = reject (dead-letter or drop). */
  private settle(deliveryTag: number, multiple: boolean, how: 0 | 1 | 2): void {
    const wasFull = this.channelPrefetch !== 0 && this.unacked.size >= this.channelPrefetch;
    if (!multiple) {
      const u = this.unacked.take(deliveryTag);
      if (!u) throw BrokerError.precondition(`unknown delivery tag ${deliveryTag}`);
      this.settleOne(u, how);
    } else {
      if (deliveryTag >= this.nextTag) throw BrokerError.precondition(`unknown delivery tag ${deliveryTag}`);
      const upTo = deliveryTag === 0 ? Number.MAX_SAFE_INTEGER : deliveryTag;
      for (let u = this.unacked.takeOldest(upTo); u !== undefined; u = this.unacked.takeOldest(upTo)) this.settleOne(u, how);
    }
    if (wasFull) this.resume();
  }

  private unackedLog(): UnackedLog {
    if (this.unacked === NO_UNACKED) this.unacked = new UnackedLog();
    return this.unacked;
  }

  private settleOne(u: Unacked, how: 0 | 1 | 2): void {
    const c = u.consumer;
    if (how === 0) {
      u.queue.ack(u.entry);
      this.acked++;
    } else if (how === 1) u.queue.requeue(u.entry, true);
    else u.queue.reject(u.entry);
    if (c !== null) {
      const wasFull = c.prefetch !== 0 && c.unacked >= c.prefetch;
      c.unacked--;
      if (wasFull || how === 1) c.queue.kick();
    }
  }

  /** Unacknowledged deliveries, oldest first. */
  unackedDeliveries(): IterableIterator<Unacked> {
    return this.unacked.values();
  }

  /**
   * A consumer (null: basic.get) held a delivery past its timeout: its unacknowledged deliveries go
   * back to their queues, redelivered, the consumer is cancelled, and the adapter is told. The
   * channel's other consumers go on.
   */
  timeOutConsumer(c: Consumer | null, timeoutMs: number): void {
    this.unacked.takeWhere(
      (u) => u.consumer === c,
      (u) => {
        u.queue.requeue(u.entry);
        if (c !== null) c.unacked--;
      },
    );
    if (c !== null && this.consumerOf(c.tag) === c) {
      this.dropConsumerSlot(c.tag);
      c.queue.removeConsumer(c);
    }
    this.onConsumerTimeout?.(c === null ? null : c.tag, timeoutMs);
    this.resume();
  }

  /** basic.recover: every unacknowledged delivery goes back to its queue, flagged redelivered. */
  recover(): void {
    this.requeueAll();
    this.resume();
  }

  private requeueAll(): void {
    this.unacked.drain(requeueUnacked);
  }

  /** channel.flow. */
  setFlow(active: boolean): void {
    this.flowActive = active;
    if (active) this.resume();
  }

  /** A sink drained or credit grew: let every queue with a consumer here dispatch again. */
  resume(): void {
    const s = this.consumerSlot;
    if (s === undefined) return;
    if (s instanceof Consumer) s.queue.kick();
    else for (const c of s.values()) c.queue.kick();
  }

  /** Closes the channel: consumers are cancelled and unacknowledged messages requeued. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stopReplies();
    const s = this.consumerSlot;
    this.consumerSlot = undefined;
    if (s instanceof Consumer) s.queue.removeConsumer(s);
    else if (s !== undefined) for (const c of s.values()) c.queue.removeConsumer(c);
    this.requeueAll();
    this.connection.channelClosed(this);
    this.connection.core.totals.retireChannel(this.connection.info.protocol, this.stats);
  }
}

function requeueUnacked(u: Unacked): void {
  u.queue.requeue(u.entry);
  if (u.consumer) u.consumer.unacked--;
}
