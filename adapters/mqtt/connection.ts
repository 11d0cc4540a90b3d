import { randomBytes } from 'node:crypto';
import type { Duplex } from 'node:stream';
import type {
  IConnackPacket,
  IConnectPacket,
  IDisconnectPacket,
  IPublishPacket,
  ISubscribePacket,
  IUnsubscribePacket,
  Packet,
} from 'mqtt-packet';
import {
  BrokerError,
  MessageRefusedError,
  REPLY_TO_QUEUE,
  ReplyCode,
  SETTLED,
  type Closable,
  type ConnectionInfo,
  type Teardown,
  type CoreChannel,
  type CoreConnection,
  type Delivery,
  type DeliverySink,
  type FieldTable,
  type MemorySource,
  type Message,
  type PublishResult,
  type User,
} from '../../src/core/index.js';
import type { Logger } from '../../src/logger.js';
import type { Peer, TransportControl } from '../../src/transport/adapter.js';
import { certificateUser } from '../../src/transport/tls.js';
import { CLOSED_BY_CLIENT, Link, PauseReason, type LinkOwner } from '../../src/transport/link.js';
import { SettleBudget, SettleQueue, type SettleTarget } from '../../src/transport/settle-queue.js';
import {
  PINGRESP,
  MqttError,
  PacketReader,
  checkDecodedString,
  checkFixedLength,
  checkPublishTopicBytes,
  encode,
  encodeAck,
  parsePacket,
  peekConnect,
  publishHead,
  readPublishHead,
  type EncodeOptions,
} from './codec.js';
import {
  CLOSE_TIMEOUT_MS,
  CONNECT_TIMEOUT_MS,
  ConnackCode,
  MAX_CLIENT_ID_LENGTH,
  MAX_INFLIGHT,
  MAX_PACKET_SIZE_UNAUTHENTICATED,
  MAX_SUBSCRIPTIONS,
  PROTOCOL_NAMES,
  PacketType,
  Reason,
  SESSION_EXPIRY_NEVER,
  SUBACK_FAILURE,
  TOPIC_ALIAS_MAXIMUM,
  TOPIC_EXCHANGE,
  type ProtocolLevel,
  type QoS,
} from './constants.js';
import type { MqttAdapter } from './index.js';
import { publishQosOf, toAmqpProperties, wasRetained, type PublishProperties } from './properties.js';
import { Qos0Sink, type Qos0Host } from './qos0.js';
import { isReplyAddress, requestDirectReplies } from './direct-reply.js';
import { errorText, mqttReasonFor } from './errors.js';
import { OutboundFlow, type OutboundHost } from './outbound.js';
import { onSubscribe, onUnsubscribe, type SubscribeHost } from './subscriptions.js';
import type { RetainedMessage } from './retained.js';
import { NO_ARGS, OutState, Session, subscriptionArgs, type ClientClaim, type Outgoing, type Subscription } from './session.js';
import { checkTopicName, filterWords, matchWords, parseDelayedTopic, parseFilter, printable, routingKeyToTopic, topicToRoutingKey, type ParsedFilter } from './topic.js';

type State = 'connect' | 'authenticating' | 'running' | 'closed';

/** A will message, kept from CONNECT until the connection ends. */
export interface Will {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  readonly properties: PublishProperties | undefined;
  /** v5 will delay interval, seconds. */
  readonly delay: number;
}

/** A PUBACK or PUBREC owed to the client, released in PUBLISH order once the publish settles. */
interface PendingAck {
  readonly type: typeof PacketType.PUBACK | typeof PacketType.PUBREC;
  readonly packetId: number;
  readonly reason: number;
}

const ENCODE: Record<ProtocolLevel, EncodeOptions> = {
  3: { protocolVersion: 3 },
  4: { protocolVersion: 4 },
  5: { protocolVersion: 5 },
};


/** Copies a view of a socket chunk so a queued message does not keep the whole chunk alive (STYLE P3). */
function own(b: Buffer): Buffer {
  return b.length === b.buffer.byteLength ? b : Buffer.from(b);
}


function payloadOf(p: string | Buffer): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : own(p);
}

/** A copy of `bytes[at, end)`: what {@link own} makes of that view, without the view. */
function ownedFrom(bytes: Buffer, at: number, end: number): Buffer {
  const b = Buffer.allocUnsafe(end - at);
  bytes.copy(b, 0, at, end);
  return b;
}

/**
 * One MQTT network connection: CONNECT, then packets translated into calls on the session's
 * CoreChannel; it is the DeliverySink of the session's consumers.
 */
export class MqttConnection implements Closable, ConnectionInfo, DeliverySink, LinkOwner, SettleTarget<PendingAck>, Qos0Host, OutboundHost, SubscribeHost {
  /** The connection's transport: outbound buffer, flow, keep-alive, deadlines. */
  readonly link: Link;
  private state: State = 'connect';
  level: ProtocolLevel | undefined;
  private readonly reader = new PacketReader(MAX_PACKET_SIZE_UNAUTHENTICATED);
  session: Session | undefined;
  core: CoreConnection | undefined;
  private ch: CoreChannel | undefined;
  clientId = '';
  user = '';
  vhost = '';
  /** Keep-alive in ms (0 = off); the link's sweep closes the connection after 1.5x of silence. */
  keepAliveMs = 0;
  private inAliases: Map<number, string> | undefined;
  /** Deliveries to the client: QoS 1/2 state, in-flight window, retained backlog, topic aliases. */
  readonly out = new OutboundFlow(this);
  /** PUBACK/PUBREC in PUBLISH order (made at the first publish that must wait). */
  private acks: SettleQueue<PendingAck> | undefined;
  /** QoS 1 PUBLISHes whose PUBACK waits in `acks`: with `qos2Here`, what counts against the v5 receive maximum. */
  private pendingPubacks = 0;
  /**
   * v5: QoS 2 packet ids accepted on this connection and not yet released by PUBREL. Ids a
   * persistent session kept from an earlier connection do not count: the client's quota starts
   * afresh with each connection (MQTT 5 §4.9).
   */
  private qos2Here: Set<number> | undefined;
  private will: Will | undefined;
  /** A cluster node's hold on the client id. */
  private claim: ClientClaim | undefined;
  /** The sink of the session queue while it is consumed without acknowledgements (bounded, drops the oldest). */
  private qos0: Qos0Sink | undefined;
  /** The session queue's consumer acks (some subscription has QoS >= 1); undefined = not consuming. */
  private ownAcks: boolean | undefined;
  private sharedConsumers: Set<string> | undefined;
  private publisher = false;
  private blocked = false;
  /** The client ended with DISCONNECT (no will), or the server shut down. */
  private noWill = false;
  private closeReason = CLOSED_BY_CLIENT;

  constructor(
    readonly adapter: MqttAdapter,
    stream: Duplex,
    readonly peer: Peer,
    readonly transport: string,
    control?: TransportControl,
  ) {
    this.blocked = adapter.ctx.core.alarms.blocked;
    // The CONNECT deadline runs from the connection's start: trickling bytes does not extend it.
    this.link = new Link(stream, this, adapter.ctx.log, transport, control);
    this.link.expectHandshake(CONNECT_TIMEOUT_MS);
  }

  /** ConnectionInfo: the protocol and version, as management shows it. */
  get protocol(): string {
    return this.level === undefined ? 'MQTT' : PROTOCOL_NAMES[this.level];
  }

  /** Everything the client's input sets off runs under it (failure isolation). */
  private get guard(): Link['guard'] {
    return this.link.guard;
  }

  /** LinkOwner: the client has read what was buffered; deliveries resume. */
  linkDrained(): void {
    this.qos0?.flush();
    this.ch?.resume();
  }

  /** Qos0Host: the link is over its high watermark. */
  get linkCongested(): boolean {
    return this.link.congested;
  }

  /** Qos0Host: a QoS 0 delivery whose turn has come. */
  deliverNow(d: Delivery): void {
    this.deliver(d);
  }

  /** Qos0Host: a waiting delivery could not be encoded; the core logs it. */
  undeliverable(d: Delivery, err: unknown): void {
    this.ch?.undeliverable(d, err);
  }

  /** Qos0Host: QoS 0 messages dropped because this client did not keep up. */
  dropped(n: number): void {
    if (this.core !== undefined) this.core.traffic.dropped += n;
  }

  /** LinkOwner: the stream is gone. */
  /** LinkOwner: closes go through the core's teardown queue (sliced in a storm of closes). */
  get teardown(): Teardown {
    return this.adapter.ctx.core.teardown;
  }

  linkClosed(reason: string): void {
    if (reason !== CLOSED_BY_CLIENT && this.state !== 'closed') this.closeReason = reason;
    this.cleanup();
  }

  /** LinkOwner: no CONNECT in time (the socket goes), or the keep-alive ran out (DISCONNECT first). */
  linkExpired(kind: 'handshake' | 'silence'): boolean {
    if (kind === 'handshake') {
      this.connectTimeout();
      return false;
    }
    this.keepAliveExpired();
    return true;
  }

  /**
   * Runs `fn(this, arg)` under this connection's guard: the adapter's sweeps and broadcasts call
   * into each connection this way, so one connection's failure stays with it.
   */
  guarded<A>(fn: (c: MqttConnection, arg: A) => void, arg: A): void {
    try {
      fn(this, arg);
    } catch (err) {
      this.guard.contain(err);
    }
  }

  /**
   * A logger for the connection's warnings, made when needed: the opened and closed lines carry the
   * same fields, so connections that only open and close keep no logger.
   */
  get log(): Logger {
    return this.adapter.ctx.log.child({ protocol: 'mqtt', peer: `${this.peer.address}:${this.peer.port}` });
  }

  /** Fields of the opened/closed lines, the same as the connection logger's bindings plus the session. */
  private logFields(): Record<string, unknown> {
    return { protocol: 'mqtt', peer: `${this.peer.address}:${this.peer.port}`, user: this.user, vhost: this.vhost, clientId: this.clientId };
  }

  get isRunning(): boolean {
    return this.state === 'running';
  }

  get isConnecting(): boolean {
    return this.state === 'connect';
  }

  /** OutboundHost: buffers bytes for the client. */
  write(buf: Buffer): void {
    this.link.write(buf);
  }

  /** OutboundHost: a delivery the client has taken settles in the core. */
  ackDelivery(tag: number): void {
    this.channel().ack(tag);
  }

  /** OutboundHost: the in-flight window has room again. */
  resumeDeliveries(): void {
    this.ch?.resume();
  }

  /** OutboundHost: the session's packet-id state changed. */
  persistSession(s: Session): void {
    void this.adapter.saveSession(s);
  }

  /** OutboundHost: a debug line in the connection's log. */
  logDebug(fields: Record<string, unknown>, text: string): void {
    this.log.debug({ clientId: this.clientId, ...fields }, text);
  }

  send(p: Packet): void {
    this.write(encode(p, ENCODE[this.level ?? 4]));
  }

  // ---- inbound ------------------------------------------------------------------------------

  /** The stream's data, through the input guard. */
  onInput(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.reader.push(chunk);
    this.drainReader();
  }

  /** Handles the packets the reader holds; stops while an access token is being verified. */
  private drainReader(): void {
    if (this.state === 'authenticating') return;
    try {
      const reader = this.reader;
      for (;;) {
        // Acknowledgements are most of what a subscriber sends: read without a view or a packet.
        const ack = this.state === 'connect' ? -1 : reader.nextAck();
        const chunk = reader.unreadChunk;
        const end = ack >= 0 || chunk === undefined || this.state === 'connect' ? -1 : reader.nextSpan();
        if (ack >= 0) {
          this.core!.traffic.recvCnt++;
          this.onAck(ack >>> 16, ack & 0xffff, 0);
        } else if (end >= 0) {
          // A packet whole in the chunk: a common PUBLISH is read in place, anything else as a view.
          const start = reader.spanStart;
          if (chunk![start]! >> 4 !== PacketType.PUBLISH || !this.publishFrom(chunk!, start, end)) this.handlePacket(chunk!.subarray(start, end));
        } else {
          const raw = reader.next();
          if (raw === null) break;
          this.handlePacket(raw);
        }
        if ((this.state as State) === 'closed' || (this.state as State) === 'authenticating') return;
      }
    } catch (e) {
      this.reader.clear();
      this.protocolError(e);
      return;
    }
    if (this.blocked && this.publisher) this.link.pause(PauseReason.ALARM);
  }

  private handlePacket(raw: Buffer): void {
    const type = raw[0]! >> 4;
    if (this.state === 'connect') {
      if (type !== PacketType.CONNECT) throw new MqttError(Reason.PROTOCOL_ERROR, 'the first packet must be CONNECT');
      this.handleConnect(raw);
      return;
    }
    const level = this.level!;
    if (type === PacketType.CONNECT) throw new MqttError(Reason.PROTOCOL_ERROR, 'second CONNECT packet');
    checkFixedLength(raw, level);
    if (type === PacketType.PUBLISH && this.publishFrom(raw, 0, raw.length)) return;
    const p = parsePacket(raw, level);
    this.core!.traffic.recvCnt++;
    switch (p.cmd) {
      case 'publish':
        this.onPublish(p.topic, payloadOf(p.payload), p.qos, p.dup, p.retain, p.messageId ?? 0, p.properties, raw);
        return;
      case 'puback':
        this.onAck(PacketType.PUBACK, p.messageId ?? 0, 0);
        return;
      case 'pubrec':
        this.onAck(PacketType.PUBREC, p.messageId ?? 0, p.reasonCode ?? 0);
        return;
      case 'pubrel':
        this.onAck(PacketType.PUBREL, p.messageId ?? 0, 0);
        return;
      case 'pubcomp':
        this.onAck(PacketType.PUBCOMP, p.messageId ?? 0, 0);
        return;
      case 'subscribe':
        onSubscribe(this, p, raw);
        return;
      case 'unsubscribe':
        onUnsubscribe(this, p, raw);
        return;
      case 'pingreq':
        this.write(PINGRESP);
        return;
      case 'disconnect':
        this.onDisconnect(p);
        return;
      default:
        throw new MqttError(Reason.PROTOCOL_ERROR, `unexpected ${p.cmd.toUpperCase()} packet from a client`);
    }
  }

  /**
   * The PUBLISH `bytes[start, end)` of a running connection, its topic checked as UTF-8 (throws if
   * not). Without v5 properties it is handled here, its fields straight from the bytes and its
   * payload copied once: true. False: the parser is to read it.
   */
  private publishFrom(bytes: Buffer, start: number, end: number): boolean {
    checkPublishTopicBytes(bytes, start, end);
    if (!readPublishHead(bytes, this.level!, start, end)) return false;
    this.core!.traffic.recvCnt++;
    const h = publishHead;
    this.onPublish(h.topic, ownedFrom(bytes, h.payloadAt, end), h.qos, h.dup, h.retain, h.messageId, undefined, bytes);
    return true;
  }

  /** PUBACK, PUBREC (with its reason code), PUBREL or PUBCOMP for `packetId`. */
  private onAck(type: number, packetId: number, reasonCode: number): void {
    switch (type) {
      case PacketType.PUBACK:
        this.out.onPuback(this.session!, packetId);
        return;
      case PacketType.PUBREC:
        this.out.onPubrec(this.session!, packetId, reasonCode);
        return;
      case PacketType.PUBREL:
        this.onPubrel(packetId);
        return;
      default:
        this.out.onPubcomp(this.session!, packetId);
    }
  }

  // ---- CONNECT ------------------------------------------------------------------------------

  private handleConnect(raw: Buffer): void {
    const head = peekConnect(raw);
    if (head === undefined) throw new MqttError(Reason.MALFORMED_PACKET, 'truncated CONNECT');
    const lvl = head.level & 0x7f; // the top bit marks a bridge (mosquitto's try_private)
    const nameOk = (head.name === 'MQTT' && (lvl === 4 || lvl === 5)) || (head.name === 'MQIsdp' && lvl === 3);
    if (!nameOk) {
      // [MQTT-3.1.2-2] unacceptable protocol level: CONNACK 0x01 (v3 form), or 0x84 when v5 was asked for.
      const v5 = lvl === 5;
      this.level = v5 ? 5 : 4;
      this.refuse(v5 ? Reason.UNSUPPORTED_PROTOCOL_VERSION : ConnackCode.UNACCEPTABLE_PROTOCOL_VERSION,
        `unsupported protocol '${printable(head.name)}' level ${head.level}`);
      return;
    }
    const level = lvl as ProtocolLevel;
    this.level = level;
    const p = parsePacket(raw, undefined);
    if (p.cmd !== 'connect') throw new MqttError(Reason.PROTOCOL_ERROR, 'the first packet must be CONNECT');
    const v5 = level === 5;
    checkDecodedString(p.clientId, raw, 'client identifier');
    checkDecodedString(p.username, raw, 'user name');
    if (level < 5 && p.password !== undefined && p.username === undefined) {
      throw new MqttError(Reason.MALFORMED_PACKET, 'password without user name'); // [MQTT-3.1.2-22]
    }
    const props = v5 ? p.properties : undefined;
    if (props?.authenticationMethod !== undefined) {
      this.refuse(Reason.BAD_AUTHENTICATION_METHOD, `unsupported authentication method '${printable(props.authenticationMethod)}'`);
      return;
    }
    if (props?.receiveMaximum === 0 || props?.maximumPacketSize === 0) {
      throw new MqttError(Reason.PROTOCOL_ERROR, 'receive maximum and maximum packet size must not be 0');
    }
    let will: Will | undefined;
    if (p.will !== undefined) {
      will = this.parseWill(p, raw);
      if (will === undefined) return;
    }

    // Authentication: `vhost:user` selects a vhost; no user name = anonymous (guest, as RabbitMQ's default).
    let username = p.username ?? 'guest';
    const password = p.username === undefined && p.password === undefined ? 'guest' : (p.password?.toString('utf8') ?? '');
    let vhost = this.adapter.ctx.core.defaultVhost;
    const colon = username.indexOf(':');
    if (colon > 0) {
      vhost = username.slice(0, colon);
      username = username.slice(colon + 1);
    }
    const core = this.adapter.ctx.core;
    // Certificate login (RabbitMQ's ssl_cert_login): a client with a verified certificate that
    // sends no password is the user its certificate names.
    const certUser =
      this.adapter.ctx.options.tlsCertLogin && p.password === undefined ? certificateUser(this.peer.tls, this.adapter.ctx.options.tlsCertLoginFrom) : undefined;
    if (certUser !== undefined) username = certUser;
    this.user = username;
    this.vhost = vhost;
    let result: User | Promise<User>;
    try {
      result = certUser !== undefined ? core.auth.authenticateCertificate(certUser, this.peer.address) : core.login(username, password, this.peer.address);
    } catch (e) {
      this.loginRefused(username, e);
      return;
    }
    if (result instanceof Promise) {
      // An access token: later packets wait in the reader (and the socket is paused) until it is verified.
      this.connectAfter(result, (u) => this.connectAs(u, vhost, p, will), (e) => this.loginRefused(username, e));
      return;
    }
    this.connectAs(result, vhost, p, will);
  }

  private loginRefused(username: string, e: unknown): void {
    const v5 = this.level === 5;
    const loopback = errorText(e).includes('localhost');
    this.refuse(
      loopback ? (v5 ? Reason.NOT_AUTHORIZED : ConnackCode.NOT_AUTHORIZED) : v5 ? Reason.BAD_USERNAME_OR_PASSWORD : ConnackCode.BAD_USERNAME_OR_PASSWORD,
      `authentication failed for user '${printable(username)}': ${errorText(e)}`,
    );
  }

  /** CONNECT after the login succeeded: client id, vhost, session, CONNACK. */
  private connectAs(user: User, vhost: string, p: IConnectPacket, will: Will | undefined): void {
    const core = this.adapter.ctx.core;
    const level = this.level!;
    const v5 = level === 5;
    const props = v5 ? p.properties : undefined;
    const username = user.name;
    this.user = username;

    // Client identifier [MQTT-3.1.3-6..9].
    const clean = p.clean ?? true;
    let clientId = p.clientId;
    let assigned = false;
    if (clientId.length === 0) {
      if (level === 3 || (level === 4 && !clean)) {
        this.refuse(ConnackCode.IDENTIFIER_REJECTED, 'empty client identifier');
        return;
      }
      clientId = `warren-${randomBytes(12).toString('base64url')}`;
      assigned = true;
    }
    if (Buffer.byteLength(clientId) > MAX_CLIENT_ID_LENGTH) {
      this.refuse(v5 ? Reason.CLIENT_IDENTIFIER_NOT_VALID : ConnackCode.IDENTIFIER_REJECTED, `client identifier longer than ${MAX_CLIENT_ID_LENGTH} bytes`);
      return;
    }
    this.clientId = clientId;
    const maxKeepalive = this.adapter.maxKeepalive;
    if (!v5 && maxKeepalive > 0 && ((p.keepalive ?? 0) === 0 || (p.keepalive ?? 0) > maxKeepalive)) {
      // 3.1/3.1.1 have no way to tell the client a shorter keep-alive: refused, as Mosquitto does.
      this.refuse(ConnackCode.IDENTIFIER_REJECTED, `keep-alive ${p.keepalive ?? 0} s outside 1..${maxKeepalive} s (--mqtt-max-keepalive)`);
      return;
    }

    try {
      // The connection is its own ConnectionInfo (protocol, peer, user, vhost, client id): no copy.
      this.core = core.connect(this, this);
    } catch (e) {
      this.refuse(v5 ? Reason.NOT_AUTHORIZED : ConnackCode.NOT_AUTHORIZED, `vhost access refused: ${errorText(e)}`);
      return;
    }
    this.core.expireAt(user.tokenExpiresAt);

    // A cluster node records the client id cluster-wide first (the connection holding it on
    // another node closes when it sees the record): CONNACK waits for the record.
    const cluster = this.adapter.cluster;
    if (cluster !== undefined && !assigned) {
      const claim = cluster.claimClientId(vhost, clientId);
      this.claim = claim;
      this.connectAfter(claim.written, () => this.attachSession(vhost, p, will, clientId, assigned), (e) => this.unavailable('client id not recorded in the cluster', e));
      return;
    }
    this.attachSession(vhost, p, will, clientId, assigned);
  }

  /** CONNECT, last part: the session (taken over, resumed or new), the will, CONNACK. */
  private attachSession(vhost: string, p: IConnectPacket, will: Will | undefined, clientId: string, assigned: boolean): void {
    const level = this.level!;
    const v5 = level === 5;
    const props = v5 ? p.properties : undefined;
    const clean = p.clean ?? true;

    // Session: take over an existing connection, resume or replace the session.
    let expiry: number;
    if (v5) expiry = props?.sessionExpiryInterval ?? 0;
    else expiry = clean ? 0 : SESSION_EXPIRY_NEVER;
    const { session, present, discarded } = this.adapter.openSession(vhost, clientId, clean, this);
    session.expiryInterval = expiry;
    this.adapter.sessionAttached(session);
    this.session = session;
    // A session discarded (clean start) had its queue deleted: CONNACK once the deletion is durable
    // and, in a cluster, in the cluster (a connection on another node right after finds no session).
    const defs = discarded ? this.core!.core.persistence.definitionsSettled() : SETTLED;
    if (defs === SETTLED) {
      this.startSession(session, present, p, will, assigned);
      return;
    }
    this.connectAfter(defs, () => this.startSession(session, present, p, will, assigned), (e) => this.unavailable('the earlier session was not discarded', e));
  }

  /**
   * CONNECT goes on with `next` once `first` resolves (the connection reads nothing meanwhile), or
   * ends with `failed` when it rejects.
   */
  private connectAfter<T>(first: Promise<T>, next: (v: T) => void, failed: (e: unknown) => void): void {
    this.state = 'authenticating';
    this.link.pause(PauseReason.AUTH);
    first
      .then(
        (v) => {
          if (this.state !== 'authenticating') return;
          this.state = 'connect';
          this.link.unpause(PauseReason.AUTH);
          try {
            next(v);
          } catch (e) {
            this.reader.clear();
            this.protocolError(e);
            return;
          }
          this.drainReader();
        },
        (e: unknown) => {
          if (this.state !== 'authenticating') return;
          this.state = 'connect';
          failed(e);
        },
      )
      .catch(this.guard.catcher);
  }

  /** CONNECT refused: the server cannot serve it now. */
  private unavailable(text: string, e: unknown): void {
    this.refuse(this.level === 5 ? Reason.SERVER_UNAVAILABLE : ConnackCode.SERVER_UNAVAILABLE, `${text}: ${errorText(e)}`);
  }

  /** CONNECT, done: the will, keep-alive and limits, CONNACK, and a resumed session's state. */
  private startSession(session: Session, present: boolean, p: IConnectPacket, will: Will | undefined, assigned: boolean): void {
    const level = this.level!;
    const v5 = level === 5;
    const props = v5 ? p.properties : undefined;
    const clean = p.clean ?? true;
    this.will = will;
    this.adapter.willRecorded(session, this.user, will);
    // --mqtt-max-keepalive (Mosquitto's max_keepalive): a v5 client asking for more, or for none, is
    // told the cap in CONNACK (Server Keep Alive) and held to it.
    const askedKeepalive = p.keepalive ?? 0;
    const maxKeepalive = this.adapter.maxKeepalive;
    const serverKeepalive = v5 && maxKeepalive > 0 && (askedKeepalive === 0 || askedKeepalive > maxKeepalive) ? maxKeepalive : undefined;
    this.keepAliveMs = (serverKeepalive ?? askedKeepalive) * 1000;
    if (v5) {
      this.out.clientMaxPacket = props?.maximumPacketSize ?? 0;
      this.out.clientAliasMax = props?.topicAliasMaximum ?? 0;
      this.out.window = Math.min(MAX_INFLIGHT, props?.receiveMaximum ?? 65535);
    }
    this.reader.maxSize = this.adapter.maxPacketSize;
    this.link.authenticated(this.adapter.maxPacketSize);
    this.link.traffic = this.core!.traffic;
    this.link.keepAlive(0, undefined, this.keepAliveMs * 1.5);
    this.state = 'running';

    const ack: IConnackPacket = { cmd: 'connack', sessionPresent: present };
    if (v5) {
      ack.reasonCode = Reason.SUCCESS;
      ack.properties = {
        maximumPacketSize: this.adapter.maxPacketSize,
        topicAliasMaximum: TOPIC_ALIAS_MAXIMUM,
        retainAvailable: true,
        wildcardSubscriptionAvailable: true,
        subscriptionIdentifiersAvailable: true,
        sharedSubscriptionAvailable: true,
        receiveMaximum: this.adapter.receiveMaximum,
      };
      if (serverKeepalive !== undefined) ack.properties.serverKeepAlive = serverKeepalive;
      if (assigned) ack.properties.assignedClientIdentifier = session.clientId;
    } else ack.returnCode = ConnackCode.ACCEPTED;
    this.send(ack);
    const log = this.adapter.ctx.log;
    if (log.isLevelEnabled('info')) {
      log.info({ ...this.logFields(), version: PROTOCOL_NAMES[level], transport: this.transport, clean, sessionPresent: present, keepalive: p.keepalive ?? 0 }, 'connection opened');
    }
    if (present) this.resumeSession(session);
  }

  private parseWill(p: IConnectPacket, raw: Buffer): Will | undefined {
    const w = p.will!;
    checkDecodedString(w.topic, raw, 'will topic');
    if ((w.qos ?? 0) > 2) throw new MqttError(Reason.MALFORMED_PACKET, 'will QoS 3');
    const bad = checkTopicName(w.topic);
    if (bad !== undefined) {
      if (this.level === 5) this.refuse(Reason.TOPIC_NAME_INVALID, `will: ${bad.text}`);
      else throw new MqttError(bad.reason, `will: ${bad.text}`);
      return undefined;
    }
    const wp = w.properties;
    let properties: PublishProperties | undefined;
    if (wp !== undefined) {
      const { willDelayInterval: _delay, ...rest } = wp;
      if (Object.keys(rest).length > 0) properties = rest;
    }
    return {
      topic: w.topic,
      payload: payloadOf(w.payload),
      qos: (w.qos ?? 0) as QoS,
      retain: w.retain ?? false,
      properties,
      delay: wp?.willDelayInterval ?? 0,
    };
  }

  /** CONNACK with a failure code, then close [MQTT-3.2.2-5]. */
  private refuse(code: number, text: string): void {
    const ack: IConnackPacket = { cmd: 'connack', sessionPresent: false };
    if (this.level === 5) ack.reasonCode = code;
    else ack.returnCode = code;
    this.log.warn({ user: this.user || undefined, vhost: this.vhost || undefined, code }, `connection refused: ${text}`);
    this.closeReason = text;
    this.noWill = true;
    this.send(ack);
    this.terminate();
  }

  /** A resumed session: resend PUBRELs and unacknowledged retained PUBLISHes, restart consumers. */
  private resumeSession(s: Session): void {
    for (const e of s.outgoing.values()) {
      if (e.state === OutState.PUBREL) this.write(encodeAck(PacketType.PUBREL, this.level!, e.packetId, Reason.SUCCESS));
      else if (e.state === OutState.RESEND && e.retained !== undefined) {
        e.state = OutState.PUBLISH;
        s.inflight++;
        this.out.writeRetained(e.retained, e.qos, e.packetId, true);
      }
    }
    try {
      if (s.ownSubscriptionCount > 0) this.ensureOwnConsumer();
      for (const sub of s.subscriptions.values()) if (sub.parsed.group !== undefined) this.ensureSharedConsumer(sub.queue);
    } catch (e) {
      this.log.warn({ clientId: this.clientId }, `cannot resume consumers: ${errorText(e)}`);
    }
  }

  // ---- PUBLISH from the client --------------------------------------------------------------

  channel(): CoreChannel {
    return (this.ch ??= this.core!.openChannel(1));
  }

  /**
   * A PUBLISH from the client; `body` is its payload, owned (no view of a received chunk), `raw`
   * the bytes it was read from (the strings of v5 properties are checked against them).
   */
  private onPublish(
    name: string,
    body: Buffer,
    qos: QoS,
    dup: boolean,
    retainFlag: boolean,
    packetId: number,
    packetProps: IPublishPacket['properties'],
    raw: Buffer,
  ): void {
    const s = this.session!;
    const v5 = this.level === 5;
    if (qos === 0 && dup) throw new MqttError(Reason.PROTOCOL_ERROR, 'DUP set on a QoS 0 PUBLISH'); // [MQTT-3.3.1-2]
    let topic = name;
    let props: PublishProperties | undefined;
    if (v5 && packetProps !== undefined) {
      const { topicAlias, subscriptionIdentifier, ...rest } = packetProps;
      if (subscriptionIdentifier !== undefined) throw new MqttError(Reason.PROTOCOL_ERROR, 'subscription identifier in a PUBLISH from a client');
      if (topicAlias !== undefined) {
        if (typeof topicAlias !== 'number' || topicAlias === 0 || topicAlias > TOPIC_ALIAS_MAXIMUM) {
          throw new MqttError(Reason.TOPIC_ALIAS_INVALID, `topic alias ${String(topicAlias)} outside 1..${TOPIC_ALIAS_MAXIMUM}`);
        }
        if (topic.length === 0) {
          const known = this.inAliases?.get(topicAlias);
          if (known === undefined) throw new MqttError(Reason.PROTOCOL_ERROR, `unknown topic alias ${topicAlias}`);
          topic = known;
        } else (this.inAliases ??= new Map()).set(topicAlias, topic);
      }
      if (rest.responseTopic !== undefined) {
        checkDecodedString(rest.responseTopic, raw, 'response topic');
        if (checkTopicName(rest.responseTopic) !== undefined) throw new MqttError(Reason.PROTOCOL_ERROR, 'invalid response topic');
      }
      checkDecodedString(rest.contentType, raw, 'content type');
      if (rest.userProperties !== undefined) {
        for (const [k, v] of Object.entries(rest.userProperties)) {
          checkDecodedString(k, raw, 'user property');
          for (const x of Array.isArray(v) ? v : [v]) checkDecodedString(x, raw, 'user property');
        }
      }
      if (Object.keys(rest).length > 0) props = rest;
    }
    const bad = checkTopicName(topic);
    if (bad !== undefined) throw new MqttError(bad.reason, bad.text);
    let delay = 0;
    if (topic.charCodeAt(0) === 0x24) {
      // '$delayed/<seconds>/<topic>': routed to <topic> once the delay has passed.
      const d = parseDelayedTopic(topic);
      if (typeof d === 'string') throw new MqttError(Reason.TOPIC_NAME_INVALID, d);
      if (d !== undefined) {
        topic = d.topic;
        delay = d.delayMs;
      }
    }
    if (qos > 0 && packetId === 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'PUBLISH without packet identifier');

    if (qos === 2) {
      const known = s.incoming?.get(packetId);
      if (known !== undefined) {
        // A resent PUBLISH still awaiting PUBREL: acknowledge again, do not route twice.
        this.queueAck(PacketType.PUBREC, packetId, known ?? SETTLED, Reason.SUCCESS);
        return;
      }
    }
    if (v5 && qos > 0 && this.pendingPubacks + (this.qos2Here?.size ?? 0) >= this.adapter.receiveMaximum) {
      // [MQTT-3.3.4-9] more unacknowledged QoS 1/2 PUBLISHes than the Receive Maximum in CONNACK.
      throw new MqttError(Reason.RECEIVE_MAXIMUM_EXCEEDED, `more than ${this.adapter.receiveMaximum} unacknowledged QoS 1/2 publishes (receive maximum)`);
    }
    const properties = toAmqpProperties(qos, retainFlag, props);
    const routingKey = topicToRoutingKey(topic);
    const msg: Message = { exchange: isReplyAddress(routingKey) ? '' : TOPIC_EXCHANGE, routingKey, properties, body };
    let r: PublishResult;
    try {
      if (props?.responseTopic === REPLY_TO_QUEUE) requestDirectReplies(this.channel(), this.out, properties);
      r = this.channel().publish(msg, delay > 0 ? { delay } : undefined);
    } catch (e) {
      this.publishRefused(e, qos, packetId, topic);
      return;
    }
    this.publisher = true;
    if (retainFlag && delay === 0) {
      // A cluster node acknowledges a retained publish once the retained store is replicated too.
      const replicated = this.adapter.retain(this.vhost, topic, qos, properties, body);
      if (replicated !== undefined) {
        const routed = r.settled;
        r = { ...r, settled: routed === SETTLED ? replicated : Promise.all([routed, replicated]).then(() => undefined) };
      }
    }
    if (qos === 0) {
      if (r.settled !== SETTLED) r.settled.catch(() => undefined);
      return;
    }
    const reason = v5 && r.routed === 0 && r.delayed !== true ? Reason.NO_MATCHING_SUBSCRIBERS : Reason.SUCCESS;
    if (qos === 1) {
      this.queueAck(PacketType.PUBACK, packetId, r.settled, reason);
      return;
    }
    if (v5) (this.qos2Here ??= new Set()).add(packetId);
    if (s.expiryInterval === 0) {
      (s.incoming ??= new Map()).set(packetId, r.settled === SETTLED ? null : r.settled);
      this.queueAck(PacketType.PUBREC, packetId, r.settled, reason);
    } else {
      // A persistent session stores the packet id once the message is stored (a crash in between
      // can only cause a duplicate), and answers PUBREC once the id is on disk too.
      const inc = (s.incoming ??= new Map());
      let done: Promise<void>;
      if (r.settled === SETTLED) {
        inc.set(packetId, null);
        done = this.adapter.saveSession(s);
      } else {
        done = r.settled.then(() => this.incomingStored(s, packetId));
        inc.set(packetId, done);
      }
      this.queueAck(PacketType.PUBREC, packetId, done, reason);
    }
  }

  /** An inbound QoS 2 message of a persistent session is stored: its packet id is written next. */
  private incomingStored(s: Session, packetId: number): Promise<void> {
    const inc = s.incoming;
    if (inc === undefined || !inc.has(packetId)) return SETTLED;
    inc.set(packetId, null);
    return this.adapter.saveSession(s);
  }

  private publishRefused(e: unknown, qos: QoS, packetId: number, topic: string): void {
    if (!(e instanceof BrokerError)) throw e;
    this.log.warn({ user: this.user, vhost: this.vhost, clientId: this.clientId, topic: printable(topic) }, `publish refused: ${e.message}`);
    if (this.level !== 5) {
      // 3.1.1 cannot report a refused publish: close the connection, as RabbitMQ does.
      this.closeWith(Reason.NOT_AUTHORIZED, e.message);
      return;
    }
    if (qos === 0) {
      // A QoS 0 publish has no acknowledgement to carry the refusal: the client learns of it from
      // a DISCONNECT rather than losing messages without a word.
      if (e instanceof MessageRefusedError) this.closeWith(mqttReasonFor(e), e.message);
      return;
    }
    if (qos === 1) this.pendingPubacks++;
    this.ackQueue().push({ type: qos === 1 ? PacketType.PUBACK : PacketType.PUBREC, packetId, reason: 0 }, Promise.reject(e));
  }

  private ackQueue(): SettleQueue<PendingAck> {
    return (this.acks ??= new SettleQueue<PendingAck>(this, new SettleBudget(this.link)));
  }

  /** Sends PUBACK/PUBREC once `settled` resolves, in the order the PUBLISHes arrived. */
  private queueAck(type: PendingAck['type'], packetId: number, settled: Promise<void>, reason: number): void {
    const acks = this.acks;
    if (settled === SETTLED && (acks === undefined || acks.length === 0)) {
      this.sendAck(type, packetId, reason);
      return;
    }
    if (type === PacketType.PUBACK) this.pendingPubacks++;
    this.ackQueue().push({ type, packetId, reason }, settled === SETTLED ? undefined : settled);
  }

  /** SettleTarget: a publish settled in its turn. */
  settledInOrder(e: PendingAck): void {
    if (e.type === PacketType.PUBACK) this.pendingPubacks--;
    if (this.state === 'running') this.sendAck(e.type, e.packetId, e.reason);
  }

  /** SettleTarget: a publish was not accepted: a v5 reason code, or (3.1.1) the connection closes. */
  settleFailed(e: PendingAck, err: unknown): void {
    if (e.type === PacketType.PUBACK) this.pendingPubacks--;
    if (this.state !== 'running') return;
    if (e.type === PacketType.PUBREC) {
      this.session?.incoming?.delete(e.packetId);
      this.qos2Here?.delete(e.packetId);
    }
    this.log.warn({ clientId: this.clientId, packetId: e.packetId }, `publish not accepted: ${errorText(err)}`);
    if (this.level === 5) {
      this.send({ cmd: e.type === PacketType.PUBACK ? 'puback' : 'pubrec', messageId: e.packetId, reasonCode: mqttReasonFor(err) });
    } else this.closeWith(Reason.UNSPECIFIED_ERROR, `publish not accepted: ${errorText(err)}`);
  }

  private sendAck(type: PendingAck['type'], packetId: number, reason: number): void {
    if (type === PacketType.PUBREC) {
      const inc = this.session?.incoming;
      if (inc !== undefined && inc.get(packetId) !== undefined) inc.set(packetId, null);
    }
    // After the deliveries this publish was routed to (see Link.writeAfterDeliveries).
    this.link.writeAfterDeliveries(encodeAck(type, this.level!, packetId, reason));
  }

  private onPubrel(packetId: number): void {
    const s = this.session!;
    const inc = s.incoming;
    const known = inc?.has(packetId) ?? false;
    if (!known) {
      this.write(encodeAck(PacketType.PUBCOMP, this.level!, packetId, Reason.PACKET_IDENTIFIER_NOT_FOUND));
      return;
    }
    inc!.delete(packetId);
    this.qos2Here?.delete(packetId);
    // A persistent session's PUBCOMP waits until the id is forgotten on disk: the client may reuse it then.
    const saved = this.adapter.saveSession(s);
    if (saved === SETTLED) this.write(encodeAck(PacketType.PUBCOMP, this.level!, packetId, Reason.SUCCESS));
    else {
      saved
        .then(
          () => {
            if (this.state === 'running') this.write(encodeAck(PacketType.PUBCOMP, this.level!, packetId, Reason.SUCCESS));
          },
          (e: unknown) => this.closeWith(Reason.UNSPECIFIED_ERROR, `cannot store session state: ${errorText(e)}`),
        )
        .catch(this.guard.catcher);
    }
  }

  // ---- deliveries to the client -------------------------------------------------------------

  get congested(): boolean {
    const s = this.session;
    return this.link.congested || (s !== undefined && s.inflight >= this.out.window);
  }

  deliver(d: Delivery): void {
    const s = this.session!;
    const msg = d.message;
    const own = d.queue === s.queue;
    const needsAck = !own || this.ownAcks === true;
    let qos: number;
    let ids: number[] | undefined;
    let rap: boolean;
    let topic: string;
    if (own) {
      const m = s.match(msg.routingKey);
      const local = msg.publisherId === this.core!.id;
      qos = local ? m.localQos : m.qos;
      ids = local ? m.localIds : m.ids;
      rap = local ? m.localRap : m.rap;
      topic = m.topic;
    } else {
      const sub = s.sharedFor(d.queue);
      topic = routingKeyToTopic(msg.routingKey);
      if (sub === undefined || !matchWords(filterWords(sub.parsed), msg.routingKey.split('.'), '*')) qos = -1;
      else {
        qos = sub.qos;
        ids = sub.id > 0 ? [sub.id] : undefined;
        rap = sub.retainAsPublished;
      }
      rap ??= false;
    }
    if (qos < 0) {
      // Routed by AMQP semantics but not for this MQTT session ($ topics, no-local): settle it away.
      if (needsAck) this.channel().ack(d.deliveryTag);
      return;
    }
    const badTopic = checkTopicName(topic);
    if (badTopic !== undefined) {
      // A routing key that is no MQTT topic name (AMQP allows '#', '+', '' and more): the core
      // rejects what cannot be encoded.
      throw new BrokerError(ReplyCode.PRECONDITION_FAILED, `routing key '${printable(msg.routingKey)}' is no MQTT topic: ${badTopic.text}`);
    }
    const pq = publishQosOf(msg.properties);
    if (pq < qos) qos = pq;
    if (!needsAck) qos = 0;
    const retain = rap && wasRetained(msg.properties);
    const expiresAt = d.expiresAt ?? 0;
    if (qos === 0) {
      this.out.writePublish(topic, msg.body, msg.properties, 0, 0, false, retain, ids, expiresAt);
      if (needsAck) this.channel().ack(d.deliveryTag);
      return;
    }
    let entry: Outgoing | undefined;
    let dup = false;
    const requeued = s.requeued;
    if (requeued !== undefined && own) {
      if (d.redelivered) entry = requeued.get(msg.id);
      if (entry !== undefined) {
        requeued.delete(msg.id);
        dup = true;
      } else if (!d.redelivered) this.out.dropStaleRequeued(s);
    }
    if (entry === undefined) {
      // Handed out before without an acknowledgement (by this node before a restart, or by a
      // node the session was on): the client may have seen it [MQTT-3.3.1-1].
      dup = d.redelivered;
      const packetId = s.allocatePacketId();
      entry = { packetId, qos: qos as QoS, state: OutState.PUBLISH, tag: d.deliveryTag, msgId: msg.id, retained: undefined, shared: !own };
      s.addOutgoing(entry);
    } else {
      entry.state = OutState.PUBLISH;
      entry.tag = d.deliveryTag;
    }
    s.inflight++;
    let written: boolean;
    try {
      written = this.out.writePublish(topic, msg.body, msg.properties, entry.qos, entry.packetId, dup, retain, ids, expiresAt);
    } catch (e) {
      // Nothing was sent: forget the packet id; the core takes the delivery back.
      s.deleteOutgoing(entry.packetId);
      this.out.releaseInflight(s);
      throw e;
    }
    if (!written) {
      // Larger than the client accepts [MQTT-3.1.2-25]: dropped as if acknowledged.
      s.deleteOutgoing(entry.packetId);
      this.out.releaseInflight(s);
      this.channel().ack(d.deliveryTag);
    }
  }

  cancelled(consumerTag: string): void {
    // The queue was deleted (e.g. by an operator): stop treating it as consumed.
    if (consumerTag === this.session?.queue) {
      this.ownAcks = undefined;
      this.session.hasQueue = false;
    } else this.sharedConsumers?.delete(consumerTag);
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE (subscriptions.ts) ---------------------------------------------

  /** Consumes the session queue; with acknowledgements once any subscription has QoS >= 1. */
  ensureOwnConsumer(): void {
    const s = this.session!;
    const wantAcks = s.maxOwnQos > 0;
    if (this.ownAcks === true || this.ownAcks === wantAcks) return;
    const ch = this.channel();
    if (this.ownAcks !== undefined) ch.cancel(s.queue);
    const sink = wantAcks ? this : (this.qos0 ??= new Qos0Sink(this));
    ch.consume(s.queue, { consumerTag: s.queue, noAck: !wantAcks, prefetch: wantAcks ? this.out.window : 0, arguments: NO_ARGS }, sink);
    this.ownAcks = wantAcks;
  }

  ensureSharedConsumer(queue: string): void {
    const consumers = (this.sharedConsumers ??= new Set());
    if (consumers.has(queue)) return;
    this.channel().consume(queue, { consumerTag: queue, noAck: false, prefetch: this.out.window, arguments: NO_ARGS }, this);
    consumers.add(queue);
  }

  ensureStreamConsumer(stream: string, args: FieldTable): void {
    const consumers = (this.sharedConsumers ??= new Set());
    if (consumers.has(stream)) this.channel().cancel(stream);
    consumers.add(stream);
    try {
      this.channel().consume(stream, { consumerTag: stream, noAck: false, prefetch: Math.max(this.out.window, 1), arguments: args }, this);
    } catch (e) {
      consumers.delete(stream);
      throw e;
    }
  }

  /** SubscribeHost: stops consuming a shared group's queue; true if it was consumed. */
  stopShared(queue: string): boolean {
    if (this.sharedConsumers?.delete(queue) !== true) return false;
    this.ch?.cancel(queue);
    return true;
  }

  /** SubscribeHost: a definition of a SUBSCRIBE/UNSUBSCRIBE could not be written: the connection ends. */
  definitionsFailed(e: unknown): void {
    if (this.state !== 'running') return;
    this.log.error({ clientId: this.clientId, err: e }, 'subscription state could not be written');
    this.closeWith(Reason.UNSPECIFIED_ERROR, `subscription state could not be written: ${errorText(e)}`);
  }

  // ---- DISCONNECT and closing ---------------------------------------------------------------

  private onDisconnect(p: IDisconnectPacket): void {
    const s = this.session!;
    if (this.level === 5) {
      const se = p.properties?.sessionExpiryInterval;
      if (se !== undefined) {
        if (s.expiryInterval === 0 && se > 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'session expiry set on DISCONNECT after CONNECT asked for none'); // [MQTT-3.14.2-2]
        s.expiryInterval = se;
      }
    }
    this.noWill = !(this.level === 5 && p.reasonCode === Reason.DISCONNECT_WITH_WILL);
    this.closeReason = this.level === 5 && (p.reasonCode ?? 0) !== 0 ? `client disconnected with reason 0x${(p.reasonCode ?? 0).toString(16)}` : 'client disconnected';
    this.terminate();
  }

  /** Closes after a protocol violation: v5 DISCONNECT with the reason code, or just the socket. */
  private protocolError(e: unknown): void {
    if (e instanceof MqttError) {
      if (this.state === 'connect' && this.level === 5) {
        this.refuse(e.reason, e.message);
        return;
      }
      this.closeWith(e.reason, e.message);
      return;
    }
    this.failInternal(e);
  }

  /**
   * GuardedConnection: an exception escaped the handling of this connection's input. v5 clients
   * get DISCONNECT 0x83 (implementation specific error; a CONNACK with it before CONNECT was
   * accepted), v3 clients a closed socket; the stack goes to the log.
   */
  failInternal(err: unknown): void {
    this.log.error({ err, clientId: this.clientId || undefined }, 'internal error');
    this.reader.clear();
    if (this.state === 'closed') {
      this.link.destroy();
      return;
    }
    if (this.state === 'connect' && this.level === 5) {
      this.refuse(Reason.IMPLEMENTATION_SPECIFIC_ERROR, 'internal error');
      return;
    }
    this.closeWith(Reason.IMPLEMENTATION_SPECIFIC_ERROR, 'internal error');
  }

  /** Server-initiated close: DISCONNECT with a reason code (v5, once connected), then the socket. */
  closeWith(reason: number, text: string): void {
    if (this.state === 'closed') return;
    this.log.warn({ user: this.user || undefined, vhost: this.vhost || undefined, clientId: this.clientId || undefined, reason: `0x${reason.toString(16)}` }, `closing connection: ${text}`);
    this.closeReason = text;
    if (this.state === 'running' && this.level === 5) {
      try {
        this.send({ cmd: 'disconnect', reasonCode: reason, properties: { reasonString: text.slice(0, 200) } });
      } catch {
        this.send({ cmd: 'disconnect', reasonCode: reason });
      }
    }
    this.terminate();
  }

  /** Another connection took over the client id [MQTT-3.1.4-3]. */
  takeOver(): void {
    this.closeWith(Reason.SESSION_TAKEN_OVER, 'session taken over by a new connection with the same client id');
  }

  /** Closable: management closes the connection (v5: administrative action). */
  forceClose(_code: number, reason: string): void {
    this.closeWith(Reason.ADMINISTRATIVE_ACTION, reason);
  }

  /** The access token ended: v5 DISCONNECT 0xA0 (maximum connect time: it may stay no longer). */
  credentialExpired(): void {
    this.closeWith(Reason.MAXIMUM_CONNECT_TIME, 'credential expired');
  }

  /** Broker shutdown: v5 DISCONNECT 0x8B; no will is published. */
  shutdown(): void {
    this.noWill = true;
    this.closeWith(Reason.SERVER_SHUTTING_DOWN, 'broker shutting down');
  }

  /** Keep-alive ran out (1.5x the interval without a packet). */
  keepAliveExpired(): void {
    this.closeWith(Reason.KEEP_ALIVE_TIMEOUT, `no packet for 1.5 x ${this.keepAliveMs / 1000} s keep-alive`);
  }

  /** No CONNECT in time. */
  connectTimeout(): void {
    this.log.warn('no CONNECT received in time');
    this.closeReason = 'connect timeout';
    this.link.destroy();
  }

  /** Flushes what was written and ends the socket; the session is detached now, not when the socket closes. */
  private terminate(): void {
    if (this.state === 'closed') return;
    this.cleanup();
    this.link.closeAfter(CLOSE_TIMEOUT_MS);
  }

  private cleanup(): void {
    if (this.state === 'closed') return;
    const wasRunning = this.state === 'running';
    this.state = 'closed';
    this.reader.clear();
    this.claim?.release();
    const s = this.session;
    if (s !== undefined && s.connection === this) {
      this.out.detachOutgoing(s);
      this.core?.close();
      this.adapter.sessionDetached(s, this.noWill ? undefined : this.will, this.user, this.core?.id ?? 0);
    } else this.core?.close();
    this.acks?.clear();
    this.acks = undefined;
    this.pendingPubacks = 0;
    this.qos2Here = undefined;
    this.qos0 = undefined;
    this.out.reset();
    if (wasRunning) this.logClosed();
    this.adapter.connectionGone(this);
  }

  /**
   * The closing log line. In a storm of closes (thousands of sessions dropped at once) the
   * connection is counted instead, and the core's teardown logs one line for all of them; its
   * own line goes to the debug level.
   */
  private logClosed(): void {
    const log = this.adapter.ctx.log;
    const t = this.adapter.ctx.core.teardown;
    if (t.storming) {
      t.quietCloses++;
      if (log.isLevelEnabled('debug')) log.debug({ ...this.logFields(), reason: this.closeReason }, 'connection closed');
    } else if (log.isLevelEnabled('info')) log.info({ ...this.logFields(), reason: this.closeReason }, 'connection closed');
  }

  // ---- flow control -------------------------------------------------------------------------

  /** A resource alarm: connections that publish stop being read until it clears (STYLE P11). */
  setBlocked(blocked: boolean): void {
    this.blocked = blocked;
    if (!blocked) this.link.unpause(PauseReason.ALARM);
    else if (this.publisher && this.state === 'running') this.link.pause(PauseReason.ALARM);
  }
}

