import { createHash, randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type { AdapterContext } from '../../src/transport/adapter.js';
import {
  BrokerError,
  ReplyCode,
  SETTLED,
  replyName,
  type Closable,
  type Teardown,
  type CoreChannel,
  type CoreConnection,
  type Delivery,
  type FieldTable,
  type Message,
  type User,
} from '../../src/core/index.js';
import type { Logger } from '../../src/logger.js';
import type { Peer, TransportControl } from '../../src/transport/adapter.js';
import { certificateUser } from '../../src/transport/tls.js';
import { CLOSED_BY_CLIENT, Link, PauseReason, type LinkOwner } from '../../src/transport/link.js';
import { SettleBudget, SettleQueue, type SettleTarget } from '../../src/transport/settle-queue.js';
import {
  CLIENT_COMMANDS,
  Escaping,
  PRE_CONNECT_LIMITS,
  SUPPORTED_VERSIONS,
  connectedLimits,
  escapingFor,
  type StompVersion,
} from './codec/constants.js';
import { FrameDecoder, type StompFrame } from './codec/frame-decoder.js';
import { HEARTBEAT, encodeFrame, encodeRaw, type HeaderList } from './codec/frame-encoder.js';
import { directReplyTo, parseDestination, routeOf, type Destination } from './destination.js';
import { SERVER_CANCELLED, STOMP_ERRORS, StompError, describeSubscription } from './errors.js';
import { HEADERS_NOT_ON_SEND, booleanHeader, propertiesFromSend, propertyLines, queueArguments } from './headers.js';
import { isLocalHost } from './local-host.js';
import { Subscription, type AckMode, type SubscriptionHost } from './subscription.js';

const SERVER = 'Warren/0.1.0';
/** A client has this long to send CONNECT. */
const CONNECT_TIMEOUT_MS = 10_000;
/** After ERROR or DISCONNECT, how long the peer gets to close before the socket is dropped. */
const CLOSE_TIMEOUT_MS = 1000;
/** Heart-beats are never scheduled more often than this, whatever the client asks. */
export const MIN_HEARTBEAT_MS = 500;
/** Missed client heart-beat intervals before the connection is dropped. */
const HEARTBEAT_GRACE = 2;
/** Bytes of SEND bodies buffered by open transactions of one connection. */
const MAX_TX_BYTES = 64 * 1024 * 1024;
const MAX_OPEN_TRANSACTIONS = 1000;
/** Entries in the per-connection cache of SEND routes (destinations already parsed and declared). */
const ROUTE_CACHE_SIZE = 256;
/** Bodies from this size go out as their own write on TCP instead of being copied into the frame. */
const SEPARATE_BODY_BYTES = 64 * 1024;
const TEMP_QUEUE_PREFIX = '/temp-queue/';
const ERROR_VERSION_HEADER = SUPPORTED_VERSIONS.join(',');
const NUL_BYTE = Buffer.from([0]);
const EMPTY = Buffer.alloc(0);
const NOOP = (): void => undefined;

type State = 'connecting' | 'authenticating' | 'connected' | 'disconnecting' | 'closed';

/** A publish (or ack) buffered by BEGIN until COMMIT. */
type TxOp =
  | { readonly kind: 'send'; readonly msg: Message; readonly receipt: string | undefined }
  | { readonly kind: 'ack'; readonly sub: Subscription; readonly tag: number; readonly nack: boolean; readonly requeue: boolean };

interface Transaction {
  readonly ops: TxOp[];
  bytes: number;
}

/** A RECEIPT owed to the client. Receipts go out in frame order; a SEND's waits for `settled`. */
interface PendingReceipt {
  readonly id: string;
  readonly disconnect: boolean;
  /** The receipt waits for definitions (a durable queue or binding) to be on disk. */
  readonly definitions: boolean;
}

interface Route {
  readonly exchange: string;
  readonly routingKey: string;
}

/**
 * The body a message keeps. A view that fills most of its backing buffer is kept (zero-copy);
 * a small view of a big socket chunk is copied so that it does not pin the chunk (STYLE P3).
 */
function ownBody(view: Buffer): Buffer {
  if (view.length === 0) return EMPTY;
  const backing = view.buffer.byteLength;
  if (backing <= 8192 || view.length * 2 >= backing) return view;
  return Buffer.from(view);
}

/** The queue of a durable topic subscription: derived from destination and id, so a reconnect finds it. */
function durableQueueName(destination: string, id: string): string {
  const digest = createHash('md5').update(destination).update('\u0000').update(id).digest('base64url');
  return `stomp-subscription-${digest}`;
}

function negotiateVersion(acceptVersion: string): StompVersion | undefined {
  const offered = acceptVersion.split(',').map((v) => v.trim());
  for (let i = SUPPORTED_VERSIONS.length - 1; i >= 0; i--) {
    const v = SUPPORTED_VERSIONS[i]!;
    if (offered.includes(v)) return v;
  }
  return undefined;
}

function destinationOf(f: StompFrame): string {
  const v = f.headers.get('destination');
  if (v === undefined) throw STOMP_ERRORS.missingDestination(f.command);
  return v;
}

/** Room for the digits of any delivery tag (Number.MAX_SAFE_INTEGER has 16). */
const TAG_DIGITS = Buffer.allocUnsafe(16);

/**
 * A delivery tag as decimal text, made fresh each time: `'' + n` goes through the engine's
 * number-to-string cache, which keeps the string of each of the last thousands of tags alive,
 * long enough at a few thousand messages a second to be moved to the old generation: tens of
 * bytes per message that only a full collection frees.
 */
function tagText(n: number): string {
  let i = TAG_DIGITS.length;
  do {
    TAG_DIGITS[--i] = 48 + (n % 10);
    n = Math.floor(n / 10);
  } while (n > 0);
  return TAG_DIGITS.toString('latin1', i, TAG_DIGITS.length);
}

/**
 * One STOMP connection (1.0, 1.1 or 1.2, over TCP or WebSocket): CONNECT and version
 * negotiation, heart-beats, the frame handlers, transactions and receipts. Its CoreChannel is
 * the session on the core; each SUBSCRIBE is one core consumer (a Subscription).
 */
export class StompConnection implements Closable, SubscriptionHost, LinkOwner, SettleTarget<PendingReceipt> {
  /** The connection's transport: outbound buffer, flow, heart-beats, deadlines. */
  readonly link: Link;
  private readonly decoder = new FrameDecoder(PRE_CONNECT_LIMITS);
  private state: State = 'connecting';
  version: StompVersion = '1.0';
  escaping = Escaping.NONE;
  sessionId = '';
  private core: CoreConnection | undefined;
  private channel: CoreChannel | undefined;
  private user = '';
  private vhost = '';
  private readonly subscriptions = new Map<string, Subscription>();
  private readonly transactions = new Map<string, Transaction>();
  private txBytes = 0;
  /** Temp-queue name -> the server-named queue behind it. */
  private readonly replyQueues = new Map<string, string>();
  private readonly routes = new Map<string, Route>();
  /** RECEIPTs in frame order; SENDs' wait for their publish to settle. */
  private readonly receipts: SettleQueue<PendingReceipt>;
  private readonly maxBody: number;
  private publisher = false;
  private blocked: boolean;
  private closeReason = CLOSED_BY_CLIENT;
  private readonly unsubscribeAlarms: () => void;
  private readonly log: Logger;

  constructor(
    private readonly ctx: AdapterContext,
    stream: Duplex,
    readonly peer: Peer,
    readonly transport: string,
    private readonly onGone: (c: StompConnection) => void,
    control?: TransportControl,
  ) {
    this.log = ctx.log.child({ protocol: 'stomp', peer: `${peer.address}:${peer.port}`, transport });
    this.maxBody = Math.min(ctx.options.stompMaxMessageSize, ctx.options.maxMessageSize);
    this.decoder.commands = CLIENT_COMMANDS;
    // Before CONNECT, RabbitMQ answers any other command (known or not) this way.
    this.decoder.unknownCommand = STOMP_ERRORS.illegalCommand;
    this.link = new Link(stream, this, this.log, transport, control);
    this.receipts = new SettleQueue<PendingReceipt>(this, new SettleBudget(this.link));
    this.blocked = ctx.core.alarms.blocked;
    this.unsubscribeAlarms = ctx.core.alarms.on(this.link.guard.wrap((blocked: boolean) => this.onAlarm(blocked)));
    this.link.expectHandshake(CONNECT_TIMEOUT_MS);
  }

  /** Resolves when the connection has closed and released its session on the core. */
  get closed(): Promise<void> {
    return this.link.closed;
  }

  get congested(): boolean {
    return this.link.congested;
  }

  /** LinkOwner: the client has read what was buffered; deliveries resume. */
  linkDrained(): void {
    this.channel?.resume();
  }

  /** LinkOwner: the stream is gone. */
  /** LinkOwner: closes go through the core's teardown queue (sliced in a storm of closes). */
  get teardown(): Teardown {
    return this.ctx.core.teardown;
  }

  linkClosed(reason: string): void {
    if (reason !== CLOSED_BY_CLIENT) this.closeReason = reason;
    this.cleanup();
  }

  /** LinkOwner: no CONNECT in time, or the client's heart-beats stopped. */
  linkExpired(kind: 'handshake' | 'silence'): boolean {
    if (kind === 'handshake') this.log.warn('no CONNECT frame in time, closing');
    else this.log.warn({ user: this.user }, 'missed heart-beats from client, closing connection');
    return false;
  }

  // ---- inbound ------------------------------------------------------------------------------

  /** The stream's data, through the input guard. */
  onInput(chunk: Buffer): void {
    if (this.state === 'closed' || this.state === 'disconnecting') return;
    this.decoder.push(chunk);
    this.drainDecoder();
  }

  /** Handles the frames the decoder holds; stops while an access token is being verified. */
  private drainDecoder(): void {
    if (this.state === 'authenticating') return;
    let f: StompFrame | null = null;
    try {
      for (f = this.decoder.next(); f !== null; f = this.decoder.next()) {
        if (this.core !== undefined) this.core.traffic.recvCnt++;
        this.handleFrame(f);
        if (this.state !== 'connected') return;
        f = null;
      }
    } catch (e) {
      this.fail(e, f);
      return;
    }
    if (this.publisher && this.blocked) this.link.pause(PauseReason.ALARM);
  }

  private handleFrame(f: StompFrame): void {
    const cmd = f.command;
    if (this.state === 'connecting') {
      if (cmd === 'CONNECT' || cmd === 'STOMP') this.onConnect(f);
      else throw STOMP_ERRORS.illegalCommand();
      return;
    }
    switch (cmd) {
      case 'SEND':
        this.onSend(f);
        return; // its receipt waits for the publish to settle
      case 'SUBSCRIBE':
        this.onSubscribe(f);
        break;
      case 'UNSUBSCRIBE':
        this.onUnsubscribe(f);
        break;
      case 'ACK':
        this.onAck(f, false);
        break;
      case 'NACK':
        this.onAck(f, true);
        break;
      case 'BEGIN':
        this.onBegin(f);
        break;
      case 'COMMIT':
        this.onCommit(f);
        break;
      case 'ABORT':
        this.onAbort(f);
        break;
      case 'DISCONNECT':
        this.onDisconnect(f);
        return;
      case 'CONNECT':
      case 'STOMP':
        throw STOMP_ERRORS.alreadyConnected();
      default:
        throw STOMP_ERRORS.badCommand(cmd);
    }
    const receipt = f.headers.get('receipt');
    // A SUBSCRIBE that declared a durable queue or binding (or an UNSUBSCRIBE that deleted one)
    // is confirmed once that is on disk.
    const defs = this.channel?.definitionsSettled() ?? SETTLED;
    if (defs !== SETTLED) this.receiptAfterDefinitions(defs, receipt);
    else if (receipt !== undefined) this.receipts.push({ id: receipt, disconnect: false, definitions: false });
  }

  private receiptAfterDefinitions(defs: Promise<void>, receipt: string | undefined): void {
    if (receipt === undefined) {
      // Nothing to confirm, but a failed write still ends the connection.
      defs.then(NOOP, (e: unknown) => this.fail(e, undefined)).catch(this.link.guard.catcher);
      return;
    }
    this.receipts.push({ id: receipt, disconnect: false, definitions: true }, defs);
  }

  // ---- CONNECT ------------------------------------------------------------------------------

  private onConnect(f: StompFrame): void {
    const version = negotiateVersion(f.headers.get('accept-version') ?? '1.0');
    if (version === undefined) {
      throw STOMP_ERRORS.versionMismatch(ERROR_VERSION_HEADER);
    }
    // STOMP 1.0 header values lose their leading whitespace, CONNECT's included (RabbitMQ).
    const h = (name: string): string | undefined => {
      const v = f.headers.get(name);
      return version === '1.0' && v !== undefined ? v.trimStart() : v;
    };
    const hb = /^\s*(\d{1,9})\s*,\s*(\d{1,9})\s*$/.exec(h('heart-beat') ?? '0,0');
    if (hb === null) throw STOMP_ERRORS.badHeartBeat(h('heart-beat') ?? '');
    const login = h('login');
    // Without a login RabbitMQ uses its default user; so do we (guest is loopback-only).
    const user = login ?? 'guest';
    const passcode = login === undefined ? 'guest' : (h('passcode') ?? '');
    const vhost = this.vhostFor(h('host'));
    // Certificate login (RabbitMQ's ssl_cert_login): a verified certificate and no passcode.
    const certUser =
      this.ctx.options.tlsCertLogin && h('passcode') === undefined ? certificateUser(this.peer.tls, this.ctx.options.tlsCertLoginFrom) : undefined;
    let result: User | Promise<User>;
    try {
      result = certUser !== undefined ? this.ctx.core.auth.authenticateCertificate(certUser, this.peer.address) : this.ctx.core.login(user, passcode, this.peer.address);
    } catch (e) {
      this.loginRefused(certUser ?? user, e);
    }
    if (result instanceof Promise) {
      // An access token: later frames wait in the decoder (the socket paused) until it is verified.
      this.state = 'authenticating';
      this.link.pause(PauseReason.AUTH);
      result.then(
        (u) => {
          if (this.state !== 'authenticating') return;
          this.state = 'connecting';
          this.link.unpause(PauseReason.AUTH);
          try {
            this.connectAs(u, vhost, version, hb);
          } catch (e) {
            this.fail(e, f);
            return;
          }
          this.drainDecoder();
        },
        (e: unknown) => {
          if (this.state !== 'authenticating') return;
          this.state = 'connecting';
          this.fail(this.refusal(user, e), f);
        },
      ).catch(this.link.guard.catcher);
      return;
    }
    this.connectAs(result, vhost, version, hb);
  }

  /**
   * The vhost a CONNECT `host` header selects: the vhost of that name when there is one; else, for
   * a host name or address of this broker (stomp.py 1.2 sends the host it connected to), the
   * default vhost unless `stompHostFallback` is off; else the name (refused as not found).
   */
  private vhostFor(host: string | undefined): string {
    const core = this.ctx.core;
    if (host === undefined) return core.defaultVhost;
    if (core.vhosts.has(host) || !this.ctx.options.stompHostFallback) return host;
    return isLocalHost(host, this.ctx.options.bind) ? core.defaultVhost : host;
  }

  private refusal(user: string, e: unknown): StompError {
    const reason = e instanceof Error ? e.message : String(e);
    this.log.warn({ user }, `STOMP login failed: ${reason}`);
    this.closeReason = 'authentication failed';
    // The core refuses a loopback-only user (guest) from elsewhere with this text.
    if (e instanceof BrokerError && e.text.endsWith('can only connect via localhost')) return STOMP_ERRORS.nonLoopback();
    return STOMP_ERRORS.accessRefused(user);
  }

  private loginRefused(user: string, e: unknown): never {
    throw this.refusal(user, e);
  }

  /** CONNECT after the login succeeded: vhost, limits, CONNECTED. */
  private connectAs(u: User, vhost: string, version: StompVersion, hb: RegExpExecArray): void {
    const user = u.name;
    this.user = user;
    this.vhost = vhost;
    try {
      this.core = this.ctx.core.connect(
        { protocol: `STOMP ${version}`, peer: this.peer, user, vhost },
        this,
      );
    } catch (e) {
      if (e instanceof BrokerError) {
        this.log.warn({ user, vhost }, `STOMP login failed: ${e.message}`);
        if (!this.ctx.core.vhosts.has(vhost)) {
          this.closeReason = 'vhost not found';
          throw STOMP_ERRORS.vhostNotFound(vhost);
        }
        this.closeReason = 'vhost access refused';
        throw STOMP_ERRORS.vhostAccessDenied(vhost);
      }
      throw e;
    }
    this.core.expireAt(u.tokenExpiresAt);
    this.channel = this.core.openChannel(1);
    this.version = version;
    this.escaping = escapingFor(version);
    this.sessionId = `session-${randomBytes(16).toString('base64url')}`;
    const clientSends = Number(hb[1]);
    const clientWants = Number(hb[2]);
    const sendEvery = clientWants > 0 ? Math.max(clientWants, MIN_HEARTBEAT_MS) : 0;
    const expectEvery = clientSends > 0 ? Math.max(clientSends, MIN_HEARTBEAT_MS) : 0;
    this.decoder.limits = connectedLimits(this.maxBody);
    this.decoder.unknownCommand = STOMP_ERRORS.badCommand;
    this.decoder.escaping = this.escaping;
    this.decoder.trimValues = version === '1.0';
    this.link.authenticated(this.decoder.limits.maxFrame);
    this.link.traffic = this.core.traffic;
    this.state = 'connected';
    this.write(
      encodeFrame('CONNECTED', [
        ['server', SERVER],
        ['session', this.sessionId],
        ['heart-beat', `${sendEvery},${expectEvery}`],
        ['version', version],
      ]),
    );
    this.startHeartbeats(sendEvery, expectEvery);
    this.log.info({ user, vhost, version }, 'connection opened');
  }

  // ---- SEND ---------------------------------------------------------------------------------

  private onSend(f: StompFrame): void {
    const ch = this.channel!;
    for (const h of HEADERS_NOT_ON_SEND) if (f.headers.has(h)) throw STOMP_ERRORS.notAllowedOnSend(h);
    const dest = destinationOf(f);
    if (f.body.length > this.maxBody) throw STOMP_ERRORS.messageTooLarge(f.body.length, this.maxBody);
    const route = this.routes.get(dest) ?? this.resolveRoute(dest, f);
    const rt = f.headers.get('reply-to');
    const replyTo = rt === undefined ? undefined : rt.startsWith(TEMP_QUEUE_PREFIX) ? this.ensureReplyQueue(rt) : directReplyTo(rt);
    const msg: Message = {
      exchange: route.exchange,
      routingKey: route.routingKey,
      properties: propertiesFromSend(f.headers, replyTo),
      body: ownBody(f.body),
    };
    const receipt = f.headers.get('receipt');
    const txId = f.headers.get('transaction');
    if (txId !== undefined) {
      const tx = this.transaction(txId);
      ch.checkPublishable(msg.exchange);
      ch.checkContent(msg); // refused now, not at COMMIT after the transaction's earlier sends
      if (this.txBytes + msg.body.length > MAX_TX_BYTES) {
        throw STOMP_ERRORS.transactionTooLarge(MAX_TX_BYTES);
      }
      this.txBytes += msg.body.length;
      tx.bytes += msg.body.length;
      tx.ops.push({ kind: 'send', msg, receipt });
      return;
    }
    this.publish(msg, receipt);
  }

  /** Parses a SEND destination (declaring a `/queue/` queue the first time) and caches the route. */
  private resolveRoute(dest: string, f: StompFrame): Route {
    const d = parseDestination(dest);
    if (d.kind === 'temp-queue') throw STOMP_ERRORS.notValidFor(dest, 'SEND');
    // A SEND declares a missing queue; an existing one is used as it is (RabbitMQ would redeclare
    // it and fail on any difference in its arguments, which only ever bites).
    if (d.kind === 'queue' && !this.channel!.vhost.queues.has(d.name)) this.declareQueue(d.name, f.headers, true);
    const route = routeOf(d);
    if (this.routes.size >= ROUTE_CACHE_SIZE) this.routes.clear();
    this.routes.set(dest, route);
    return route;
  }

  /**
   * Declares a `/queue/` queue: durable unless `durable:false` (then exclusive and auto-delete,
   * as RabbitMQ's STOMP plugin does), `exclusive`/`auto-delete` headers win, `x-*` arguments.
   */
  private declareQueue(name: string, headers: ReadonlyMap<string, string>, forSend: boolean): void {
    const durableHeader = booleanHeader(headers.get('durable')) ?? (forSend ? undefined : booleanHeader(headers.get('persistent')));
    const durable = durableHeader ?? true;
    this.channel!.declareQueue(name, {
      durable,
      exclusive: booleanHeader(headers.get('exclusive')) ?? !durable,
      autoDelete: booleanHeader(headers.get('auto-delete')) ?? !durable,
      arguments: queueArguments(headers),
    });
  }

  private publish(msg: Message, receipt: string | undefined): void {
    const ch = this.channel!;
    const d = msg.properties.headers?.['x-delay'];
    const r = ch.publish(msg, typeof d === 'number' && d > 0 ? { delay: d } : undefined);
    this.publisher = true;
    // A SEND that declared its durable `/queue/` is confirmed once the queue is on disk too.
    const defs = ch.definitionsSettled();
    if (defs !== SETTLED) this.receiptAfterDefinitions(defs, r.settled === SETTLED ? receipt : undefined);
    if (receipt === undefined) {
      if (r.settled !== SETTLED) r.settled.then(NOOP, NOOP);
      return;
    }
    if (r.settled === SETTLED) {
      if (defs === SETTLED) this.receipts.push({ id: receipt, disconnect: false, definitions: false });
      return;
    }
    // The queue's definition went to the store before the message did: it settles no later.
    this.receipts.push({ id: receipt, disconnect: false, definitions: false }, r.settled);
  }

  // ---- temp queues --------------------------------------------------------------------------

  /**
   * `reply-to:/temp-queue/<n>`: a private, server-named queue per session and name, consumed
   * (auto ack) under subscription id `/temp-queue/<n>`. The reply-to the responder sees is the
   * queue's name, which AMQP clients publish to directly and STOMP sees as `/reply-queue/<q>`.
   */
  private ensureReplyQueue(replyTo: string): string {
    const known = this.replyQueues.get(replyTo);
    if (known !== undefined) return known;
    const d = parseDestination(replyTo);
    if (d.kind !== 'temp-queue') throw STOMP_ERRORS.invalidDestination(replyTo, 'temp_queue');
    const ch = this.channel!;
    const queue = ch.declareQueue('', { exclusive: true, autoDelete: true }).queue;
    const tag = `T_${replyTo}`;
    const sub = new Subscription(this, tag, replyTo, queue, 'auto', queue);
    ch.consume(queue, { consumerTag: tag, noAck: true }, sub);
    this.subscriptions.set(tag, sub);
    this.replyQueues.set(replyTo, queue);
    return queue;
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE ----------------------------------------------------------------

  private onSubscribe(f: StompFrame): void {
    const ch = this.channel!;
    const id = f.headers.get('id');
    const durable = booleanHeader(f.headers.get('durable')) === true || booleanHeader(f.headers.get('persistent')) === true;
    if (durable && id === undefined) throw STOMP_ERRORS.durableWithoutId();
    const dest = destinationOf(f);
    if (id !== undefined && id.startsWith(TEMP_QUEUE_PREFIX)) throw STOMP_ERRORS.invalidId('SUBSCRIBE');
    const tag = id !== undefined ? `T_${id}` : `Q_${dest}`;
    if (this.subscriptions.has(tag)) throw STOMP_ERRORS.duplicateSubscription(tag);
    const ackMode = parseAckMode(f.headers.get('ack'));
    const pc = f.headers.get('prefetch-count');
    let prefetch = 0;
    if (pc !== undefined) {
      if (!/^\s*[0-9]{1,9}\s*$/.test(pc)) throw STOMP_ERRORS.invalidHeader('prefetch-count', `must be a non-negative integer, got '${pc}'`);
      prefetch = Number(pc.trim());
    }
    const queue = this.ensureSource(parseDestination(dest), dest, f.headers, id, durable);
    const sub = new Subscription(this, tag, id, dest, ackMode, queue);
    ch.consume(queue, { consumerTag: tag, noAck: ackMode === 'auto', prefetch, arguments: streamArguments(f.headers) }, sub);
    this.subscriptions.set(tag, sub);
  }

  /** The queue a SUBSCRIBE consumes, declared and bound as DESIGN's STOMP table says. */
  private ensureSource(d: Destination, dest: string, headers: ReadonlyMap<string, string>, id: string | undefined, durable: boolean): string {
    const ch = this.channel!;
    switch (d.kind) {
      case 'queue':
        this.declareQueue(d.name, headers, false);
        return d.name;
      case 'amqqueue':
      case 'reply-queue':
        return d.name;
      case 'temp-queue':
        throw STOMP_ERRORS.notValidFor(dest, 'SUBSCRIBE');
      case 'topic':
      case 'exchange': {
        const { exchange, routingKey } = routeOf(d);
        if (d.kind === 'exchange') ch.declareExchange(exchange, '', {}, true); // NOT_FOUND when missing
        const name =
          headers.get('x-queue-name') ?? (durable ? durableQueueName(dest, id!) : `stomp-subscription-${randomBytes(16).toString('base64url')}`);
        // Non-durable: a private queue that goes with the subscription; durable: a named queue
        // that outlives the connection (`auto-delete`/`exclusive` headers still win).
        ch.declareQueue(name, {
          durable,
          exclusive: booleanHeader(headers.get('exclusive')) ?? !durable,
          autoDelete: booleanHeader(headers.get('auto-delete')) ?? !durable,
          arguments: queueArguments(headers),
        });
        ch.bindQueue(name, exchange, routingKey);
        return name;
      }
    }
  }

  private onUnsubscribe(f: StompFrame): void {
    const id = f.headers.get('id');
    const dest = f.headers.get('destination');
    const durableHeader = booleanHeader(f.headers.get('durable')) === true || booleanHeader(f.headers.get('persistent')) === true;
    if (durableHeader && id === undefined) throw STOMP_ERRORS.durableWithoutId();
    if (id !== undefined && id.startsWith(TEMP_QUEUE_PREFIX)) throw STOMP_ERRORS.invalidId('UNSUBSCRIBE');
    if (id === undefined && dest === undefined) throw STOMP_ERRORS.missingDestinationOrId();
    const tag = id !== undefined ? `T_${id}` : `Q_${dest!}`;
    const sub = this.subscriptions.get(tag);
    if (sub === undefined) throw STOMP_ERRORS.noSubscription(describeSubscription(id, dest!));
    this.subscriptions.delete(tag);
    this.channel!.cancel(tag);
    // RabbitMQ: UNSUBSCRIBE with durable:true removes a durable topic subscription's queue.
    if (durableHeader && id !== undefined && sub.destination.startsWith('/topic/')) {
      this.channel!.deleteQueue(f.headers.get('x-queue-name') ?? durableQueueName(sub.destination, id));
    }
  }

  /** The server cancelled a consumer (its queue was deleted): RabbitMQ reports it in an ERROR and goes on. */
  subscriptionCancelled(sub: Subscription): void {
    if (this.subscriptions.get(sub.tag) !== sub) return;
    this.subscriptions.delete(sub.tag);
    if (sub.id !== undefined && sub.id.startsWith(TEMP_QUEUE_PREFIX)) this.replyQueues.delete(sub.id);
    if (this.state !== 'connected') return;
    const headers: [string, string][] = [['message', SERVER_CANCELLED.summary]];
    if (sub.id !== undefined) headers.push(['subscription', sub.id]);
    headers.push(['content-type', 'text/plain'], ['version', ERROR_VERSION_HEADER]);
    const body = SERVER_CANCELLED.detail(describeSubscription(sub.id, sub.destination));
    this.write(encodeFrame('ERROR', headers, Buffer.from(body), this.escaping));
    this.log.warn({ user: this.user, subscription: sub.id ?? sub.destination }, 'subscription cancelled by the server: its queue was deleted');
  }

  // ---- ACK / NACK ---------------------------------------------------------------------------

  private onAck(f: StompFrame, nack: boolean): void {
    const header = this.version === '1.2' ? 'id' : 'message-id';
    const value = f.headers.get(header);
    if (value === undefined) throw STOMP_ERRORS.missingAckHeader(f.command, header);
    const parsed = this.parseAckId(value);
    if (parsed === undefined) throw STOMP_ERRORS.invalidAckHeader(f.command, header);
    const sub = this.subscriptions.get(parsed.tag);
    if (sub === undefined) throw STOMP_ERRORS.messageNotFound(parsed.deliveryTag);
    const requeue = booleanHeader(f.headers.get('requeue')) ?? true;
    const txId = f.headers.get('transaction');
    if (txId !== undefined) {
      this.transaction(txId).ops.push({ kind: 'ack', sub, tag: parsed.deliveryTag, nack, requeue });
      return;
    }
    this.settle(sub, parsed.deliveryTag, nack, requeue);
  }

  /**
   * `<consumer tag>@@<session>@@<delivery tag>` -> its parts; undefined for an id of another
   * session (one a publisher put in a message header, say), as RabbitMQ checks.
   */
  private parseAckId(v: string): { tag: string; deliveryTag: number } | undefined {
    const last = v.lastIndexOf('@@');
    if (last <= 0) return undefined;
    const digits = v.slice(last + 2);
    if (!/^[0-9]{1,15}$/.test(digits)) return undefined;
    const rest = v.slice(0, last);
    const sep = rest.lastIndexOf('@@');
    if (sep < 0 || rest.slice(sep + 2) !== this.sessionId) return undefined;
    return { tag: rest.slice(0, sep), deliveryTag: Number(digits) };
  }

  /**
   * client-individual settles one message; client settles every message of the subscription up
   * to this one (STOMP's cumulative ACK, per subscription as the spec says).
   */
  private settle(sub: Subscription, deliveryTag: number, nack: boolean, requeue: boolean): void {
    const ch = this.channel!;
    const pending = sub.outstanding;
    if (pending === undefined) {
      try {
        if (nack) ch.nack(deliveryTag, false, requeue);
        else ch.ack(deliveryTag, false);
      } catch (e) {
        // The core's "unknown delivery tag": RabbitMQ's STOMP text for it.
        if (e instanceof BrokerError && e.code === ReplyCode.PRECONDITION_FAILED && e.text.startsWith('unknown delivery tag')) {
          throw STOMP_ERRORS.messageNotFound(deliveryTag);
        }
        throw e;
      }
      return;
    }
    let n = 0;
    for (let i = 0; i < pending.length; i++) {
      const t = pending.at(i)!;
      if (t > deliveryTag) break;
      if (t === deliveryTag) n = i + 1;
    }
    if (n === 0) throw STOMP_ERRORS.messageNotFound(deliveryTag);
    for (let i = 0; i < n; i++) {
      const t = pending.shift()!;
      if (nack) ch.nack(t, false, requeue);
      else ch.ack(t, false);
    }
  }

  // ---- transactions -------------------------------------------------------------------------

  private transaction(id: string): Transaction {
    const tx = this.transactions.get(id);
    if (tx === undefined) throw STOMP_ERRORS.badTransaction(id);
    return tx;
  }

  private onBegin(f: StompFrame): void {
    const id = txHeader(f);
    if (this.transactions.has(id)) throw STOMP_ERRORS.transactionOpen(id);
    if (this.transactions.size >= MAX_OPEN_TRANSACTIONS) throw STOMP_ERRORS.transactionLimit(MAX_OPEN_TRANSACTIONS);
    this.transactions.set(id, { ops: [], bytes: 0 });
  }

  private onCommit(f: StompFrame): void {
    const id = txHeader(f);
    const tx = this.transaction(id);
    this.transactions.delete(id);
    this.txBytes -= tx.bytes;
    for (const op of tx.ops) {
      if (op.kind === 'send') this.publish(op.msg, op.receipt);
      else this.settle(op.sub, op.tag, op.nack, op.requeue);
    }
  }

  private onAbort(f: StompFrame): void {
    const id = txHeader(f);
    const tx = this.transaction(id);
    this.transactions.delete(id);
    this.txBytes -= tx.bytes;
  }

  // ---- receipts, DISCONNECT -----------------------------------------------------------------

  /** SettleTarget: a receipt's turn has come. */
  settledInOrder(pr: PendingReceipt): void {
    if (this.state === 'closed') return;
    const frame = encodeFrame('RECEIPT', [['receipt-id', pr.id]], undefined, this.escaping);
    if (pr.disconnect) {
      this.write(frame);
      this.finish('client disconnected');
      return;
    }
    // After the deliveries a SEND was routed to (see Link.writeAfterDeliveries).
    this.link.writeAfterDeliveries(frame);
  }

  /** SettleTarget: a rejected publish (or a definition that could not be written) ends the connection with ERROR. */
  settleFailed(pr: PendingReceipt, err: unknown): void {
    if (this.state === 'closed') return;
    if (pr.definitions) {
      this.fail(err, undefined, pr.id);
      return;
    }
    const reason = err instanceof BrokerError ? err.replyText : 'the message was not accepted';
    this.fail(STOMP_ERRORS.messageRejected(reason), undefined, pr.id);
  }

  private onDisconnect(f: StompFrame): void {
    this.closeReason = 'client disconnected';
    this.state = 'disconnecting';
    this.releaseCore();
    const receipt = f.headers.get('receipt');
    if (receipt === undefined) this.finish('client disconnected');
    else this.receipts.push({ id: receipt, disconnect: true, definitions: false });
  }

  // ---- outbound -----------------------------------------------------------------------------

  private write(buf: Buffer): void {
    this.link.write(buf);
  }

  /** MESSAGE for one delivery: the constant header prefix comes from the subscription. */
  writeMessage(sub: Subscription, d: Delivery): void {
    const m = d.message;
    const body = m.body;
    const mid = sub.idPrefix + tagText(d.deliveryTag);
    let head = sub.head + sub.destinationLine(m.exchange, m.routingKey) + 'message-id:' + mid;
    head += d.redelivered ? '\nredelivered:true\n' : '\nredelivered:false\n';
    if (sub.ackHeader) head += 'ack:' + mid + '\n';
    head += propertyLines(m.properties, this.escaping);
    head += 'content-length:' + body.length + '\n\n';
    if (body.length < SEPARATE_BODY_BYTES || this.transport !== 'tcp') {
      this.write(encodeRaw(head, body));
      return;
    }
    // Large body over TCP: header, body and NUL as three writes in one corked batch, no body copy.
    this.write(Buffer.from(head, 'utf8'));
    this.write(body);
    this.write(NUL_BYTE);
  }

  // ---- errors and closing -------------------------------------------------------------------

  /**
   * Any error ends the connection: an ERROR frame (`message` header, detail in the body,
   * `receipt-id` when the failing frame asked for a receipt), a log line, then the close.
   */
  private fail(err: unknown, f: StompFrame | null | undefined, receiptId?: string): void {
    if (this.state === 'closed') return;
    let summary: string;
    let detail: string;
    if (err instanceof StompError) {
      summary = err.summary;
      detail = err.detail;
    } else if (err instanceof BrokerError) {
      // As RabbitMQ writes an AMQP error on STOMP: `not_found`, `no exchange 'x' in vhost '/'`.
      summary = replyName(err.code).toLowerCase();
      detail = err.text;
    } else {
      this.log.error({ err }, 'internal error');
      const pe = STOMP_ERRORS.processingError();
      summary = pe.summary;
      detail = pe.detail;
    }
    this.log.warn({ user: this.user, vhost: this.vhost, command: f?.command }, `protocol error: ${summary} - ${detail.trimEnd()}`);
    this.errorAndClose(summary, detail, receiptId ?? f?.headers.get('receipt'));
  }

  /**
   * GuardedConnection: an exception escaped the handling of this connection's input. The client
   * gets an ERROR frame (`message:Processing error`, as RabbitMQ), then the close; the stack goes
   * to the log.
   */
  failInternal(err: unknown): void {
    this.log.error({ err, user: this.user, vhost: this.vhost }, 'internal error');
    if (this.state === 'closed' || this.state === 'disconnecting') {
      this.link.destroy();
      return;
    }
    const pe = STOMP_ERRORS.processingError();
    this.errorAndClose(pe.summary, pe.detail, undefined);
  }

  /** ERROR (`message`, the detail as its body, `receipt-id` when given), then the close. */
  private errorAndClose(summary: string, detail: string, receiptId: string | undefined): void {
    this.closeReason = `${summary} - ${detail.trimEnd()}`;
    const headers: [string, string][] = [
      ['message', summary],
      ['content-type', 'text/plain'],
      ['version', ERROR_VERSION_HEADER],
    ];
    if (receiptId !== undefined) headers.push(['receipt-id', receiptId]);
    this.write(encodeFrame('ERROR', headers, Buffer.from(detail), this.escaping));
    this.finish(this.closeReason);
  }

  /** Stop reading, release the core session, flush what is written, end the stream. */
  private finish(reason: string): void {
    this.closeReason = reason;
    this.state = 'closed';
    this.decoder.clear();
    this.releaseCore();
    this.link.closeAfter(CLOSE_TIMEOUT_MS);
  }

  /** Closable: the access token the client logged in with has expired (RabbitMQ's ERROR for it). */
  credentialExpired(): void {
    if (this.state !== 'connected') {
      this.link.destroy();
      return;
    }
    const ce = STOMP_ERRORS.credentialExpired();
    this.log.info({ user: this.user, vhost: this.vhost }, 'closing connection: credential expired');
    this.errorAndClose(ce.summary, ce.detail, undefined);
  }

  /** Closable: broker shutdown or an operator closing the connection. */
  forceClose(code: number, reason: string): void {
    if (this.state === 'connected') {
      this.log.info({ user: this.user, vhost: this.vhost, reason }, 'closing connection');
      this.errorAndClose(replyName(code).toLowerCase(), `${replyName(code)} - ${reason}`, undefined);
    } else this.link.destroy();
  }

  /** Consumers cancelled, unacknowledged messages requeued, exclusive queues deleted. */
  private releaseCore(): void {
    this.transactions.clear();
    this.txBytes = 0;
    this.subscriptions.clear();
    this.channel = undefined;
    this.core?.close();
  }

  private cleanup(): void {
    this.unsubscribeAlarms();
    this.receipts.clear();
    this.state = 'closed';
    this.decoder.clear(); // unread input leaves the memory account with the connection
    const wasOpen = this.core !== undefined;
    this.releaseCore();
    if (wasOpen) this.log.info({ user: this.user, vhost: this.vhost, reason: this.closeReason }, 'connection closed');
    this.core = undefined;
    this.onGone(this);
  }

  // ---- heart-beats, flow ----------------------------------------------------------------------

  /**
   * Heart-beats through the link's sweep: one is written whenever nothing was for half the agreed
   * interval (so no gap reaches it), and the client is dropped after HEARTBEAT_GRACE intervals
   * of silence (not while it is paused: a connection that is not read proves nothing by silence).
   */
  private startHeartbeats(sendEvery: number, expectEvery: number): void {
    this.link.keepAlive(sendEvery / 2, sendEvery > 0 ? HEARTBEAT : undefined, expectEvery * HEARTBEAT_GRACE);
  }

  /** While a resource alarm is raised, publishing connections stop being read (STYLE P11). */
  private onAlarm(blocked: boolean): void {
    this.blocked = blocked;
    if (!blocked) this.link.unpause(PauseReason.ALARM);
  }
}

function txHeader(f: StompFrame): string {
  const id = f.headers.get('transaction');
  if (id === undefined) throw STOMP_ERRORS.missingTransaction(f.command);
  return id;
}

function parseAckMode(v: string | undefined): AckMode {
  if (v === undefined || v === 'auto') return 'auto';
  if (v === 'client' || v === 'client-individual') return v;
  throw STOMP_ERRORS.invalidHeader('ack', `must be auto, client or client-individual, got '${v}'`);
}

/**
 * A stream consumer's arguments from SUBSCRIBE headers (RabbitMQ's form): `x-stream-offset`
 * (first, last, next, offset=<n>, timestamp=<unix seconds>, or an interval such as 1h),
 * `x-stream-filter` (comma-separated values) and `x-stream-match-unfiltered`.
 */
function streamArguments(headers: ReadonlyMap<string, string>): FieldTable | undefined {
  const offset = headers.get('x-stream-offset');
  const filter = headers.get('x-stream-filter');
  if (offset === undefined && filter === undefined) return undefined;
  const args: FieldTable = {};
  if (offset !== undefined) args['x-stream-offset'] = offset;
  if (filter !== undefined) args['x-stream-filter'] = filter.split(',').map((v) => v.trim());
  if (headers.get('x-stream-match-unfiltered') === 'true') args['x-stream-match-unfiltered'] = true;
  return args;
}
