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
  Deque,
  MessageRefusedError,
  ReplyCode,
  SETTLED,
  processMemory,
  type Closable,
  type CoreChannel,
  type CoreConnection,
  type Delivery,
  type DeliverySink,
  type MemorySource,
  type Message,
  type MessageProperties,
  type PublishResult,
} from '../../src/core/index.js';
import type { Logger } from '../../src/logger.js';
import type { Peer, TransportControl } from '../../src/transport/adapter.js';
import { InputGuard, type GuardedConnection } from '../../src/transport/guard.js';
import { HARD_LIMIT, HIGH_WATERMARK } from '../../src/transport/outbound.js';
import {
  PINGRESP,
  MqttError,
  PacketReader,
  checkDecodedString,
  checkFixedLength,
  checkPublishTopicBytes,
  encode,
  encodeAck,
  encodePublish,
  parsePacket,
  peekConnect,
  type EncodeOptions,
} from './codec.js';
import {
  CLOSE_TIMEOUT_MS,
  ConnackCode,
  MAX_CLIENT_ID_LENGTH,
  MAX_INFLIGHT,
  MAX_PACKET_SIZE_UNAUTHENTICATED,
  MAX_SUBSCRIPTIONS,
  MAX_UNSETTLED_PUBLISHES,
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
import { publishQosOf, toAmqpProperties, toMqttProperties, wasRetained, type PublishProperties } from './properties.js';
import type { RetainedMessage } from './retained.js';
import { OutState, Session, subscriptionArgs, type Outgoing, type Subscription } from './session.js';
import { checkTopicName, matchWords, parseFilter, printable, routingKeyToTopic, topicToRoutingKey, type ParsedFilter } from './topic.js';

type State = 'connect' | 'running' | 'closed';

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

/** An inbound PUBLISH waiting for the core to settle; acknowledged in arrival order [MQTT-4.6.0-2]. */
interface PendingAck {
  readonly type: typeof PacketType.PUBACK | typeof PacketType.PUBREC;
  readonly packetId: number;
  readonly reason: number;
  /** 0 pending, 1 settled, 2 failed. */
  state: 0 | 1 | 2;
  error: unknown;
}

const ENCODE: Record<ProtocolLevel, EncodeOptions> = {
  3: { protocolVersion: 3 },
  4: { protocolVersion: 4 },
  5: { protocolVersion: 5 },
};

const PAUSE_ALARM = 1;
const PAUSE_UNSETTLED = 2;

/** The connection a stream belongs to: lets every stream share one set of event listeners. */
const CONNECTION = Symbol('mqtt connection');
interface Attached {
  [CONNECTION]?: MqttConnection;
}

/** MQTT 5 reason code for a core error (STYLE P5). */
export function mqttReasonFor(e: unknown): number {
  if (!(e instanceof BrokerError)) return Reason.UNSPECIFIED_ERROR;
  // A message the broker could not deliver on every protocol (e.g. a property AMQP cannot carry).
  if (e instanceof MessageRefusedError) return Reason.IMPLEMENTATION_SPECIFIC_ERROR;
  switch (e.code) {
    case ReplyCode.ACCESS_REFUSED:
      return Reason.NOT_AUTHORIZED;
    case ReplyCode.CONTENT_TOO_LARGE:
      return Reason.PACKET_TOO_LARGE;
    case ReplyCode.RESOURCE_ERROR:
      return Reason.QUOTA_EXCEEDED;
    case ReplyCode.FRAME_ERROR:
    case ReplyCode.SYNTAX_ERROR:
      return Reason.MALFORMED_PACKET;
    default:
      return Reason.UNSPECIFIED_ERROR;
  }
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Copies a view of a socket chunk so a queued message does not keep the whole chunk alive (STYLE P3). */
function own(b: Buffer): Buffer {
  return b.length === b.buffer.byteLength ? b : Buffer.from(b);
}

function destroyStream(s: Duplex): void {
  s.destroy();
}

function payloadOf(p: string | Buffer): Buffer {
  return typeof p === 'string' ? Buffer.from(p, 'utf8') : own(p);
}

/**
 * One MQTT network connection: CONNECT, then packets translated into calls on the session's
 * CoreChannel; it is the DeliverySink of the session's consumers.
 */
export class MqttConnection implements Closable, DeliverySink, GuardedConnection, MemorySource {
  /** Everything the client's input sets off runs under it (failure isolation). */
  private readonly guard: InputGuard;
  private state: State = 'connect';
  level: ProtocolLevel | undefined;
  private readonly reader = new PacketReader(MAX_PACKET_SIZE_UNAUTHENTICATED);
  /** Writes of this tick are corked and go out in one syscall (as Outbound does, without per-connection closures). */
  private corked = false;
  session: Session | undefined;
  core: CoreConnection | undefined;
  private ch: CoreChannel | undefined;
  clientId = '';
  private user = '';
  private vhost = '';
  /** Keep-alive in ms (0 = off); the adapter's sweep closes the connection after 1.5x of silence. */
  keepAliveMs = 0;
  /**
   * When the last packet arrived, on the adapter's clock; until CONNECT is accepted, when the
   * connection was opened (a client trickling bytes does not extend the CONNECT timeout).
   */
  lastRecv: number;
  /** v5: the client's maximum packet size (0 = no limit) and topic alias maximum. */
  private clientMaxPacket = 0;
  private clientAliasMax = 0;
  /** Outbound QoS >= 1 deliveries allowed in flight: the client's receive maximum (v5), capped. */
  private window = MAX_INFLIGHT;
  private inAliases: Map<number, string> | undefined;
  private outAliases: Map<string, number> | undefined;
  private acks: Deque<PendingAck> | undefined;
  private retainedBacklog: Deque<[RetainedMessage, QoS]> | undefined;
  private will: Will | undefined;
  /** The session queue's consumer acks (some subscription has QoS >= 1); undefined = not consuming. */
  private ownAcks: boolean | undefined;
  private sharedConsumers: Set<string> | undefined;
  private paused = 0;
  private publisher = false;
  private blocked = false;
  /** The client ended with DISCONNECT (no will), or the server shut down. */
  private noWill = false;
  private closeReason = 'client closed the connection';

  constructor(
    private readonly adapter: MqttAdapter,
    private readonly stream: Duplex,
    readonly peer: Peer,
    readonly transport: string,
    private readonly transportControl?: TransportControl,
  ) {
    this.lastRecv = adapter.now();
    this.blocked = adapter.ctx.core.alarms.blocked;
    (stream as Duplex & Attached)[CONNECTION] = this;
    this.guard = new InputGuard(stream, this, adapter.ctx.log);
    stream.on('error', MqttConnection.onStreamError);
    stream.on('drain', MqttConnection.onStreamDrain);
    stream.on('close', MqttConnection.onStreamClose);
    // A TCP socket ends itself when the peer does; other duplexes (WebSocket) may be half-open.
    if (transport !== 'tcp') stream.on('end', MqttConnection.onStreamEnd);
  }

  // Shared by every stream (no closures per connection: idle connections stay small).
  private static onStreamError(this: Duplex, e: Error): void {
    const c = (this as Attached)[CONNECTION];
    if (c !== undefined && c.state !== 'closed') c.closeReason = `socket error: ${e.message}`;
  }

  private static onStreamEnd(this: Duplex): void {
    this.end();
  }

  private static onStreamClose(this: Duplex): void {
    const c = (this as Attached)[CONNECTION];
    c?.guard.run(MqttConnection.closed, c);
  }

  private static closed(c: MqttConnection): void {
    c.cleanup();
  }

  private static onStreamDrain(this: Duplex): void {
    const c = (this as Attached)[CONNECTION];
    c?.guard.run(MqttConnection.drained, c);
  }

  private static drained(c: MqttConnection): void {
    c.ch?.resume();
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

  private static uncork(c: MqttConnection): void {
    c.corked = false;
    c.stream.uncork();
    // Bytes the socket did not take at once are held until it drains: the memory account polls them.
    if (c.stream.writableLength > 0) processMemory.track(c);
  }

  /** MemorySource: bytes waiting in the stream's write buffer (0 once it is destroyed). */
  get heldBytes(): number {
    const s = this.stream;
    return s.destroyed ? 0 : s.writableLength;
  }

  /**
   * A logger for the connection's warnings, made when needed: the opened and closed lines carry the
   * same fields, so connections that only open and close keep no logger.
   */
  private get log(): Logger {
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

  private write(buf: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.writableEnded) return;
    if (!this.corked) {
      this.corked = true;
      s.cork();
      process.nextTick(MqttConnection.uncork, this);
    }
    s.write(buf);
    if (s.writableLength > HARD_LIMIT) s.destroy(new Error('slow consumer: outbound buffer over limit'));
    const c = this.core;
    if (c !== undefined) {
      c.traffic.sendOct += buf.length;
      c.traffic.sendCnt++;
    }
  }

  private send(p: Packet): void {
    this.write(encode(p, ENCODE[this.level ?? 4]));
  }

  // ---- inbound ------------------------------------------------------------------------------

  /** The stream's data, through the input guard. */
  onInput(chunk: Buffer): void {
    if (this.state === 'closed') return;
    if (this.state === 'running') this.lastRecv = this.adapter.now();
    if (this.core !== undefined) this.core.traffic.recvOct += chunk.length;
    this.reader.push(chunk);
    try {
      for (let raw = this.reader.next(); raw !== null; raw = this.reader.next()) {
        this.handlePacket(raw);
        if ((this.state as State) === 'closed') return;
      }
    } catch (e) {
      this.reader.clear();
      this.protocolError(e);
      return;
    }
    if (this.blocked && this.publisher) this.pause(PAUSE_ALARM);
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
    if (type === PacketType.PUBLISH) checkPublishTopicBytes(raw);
    const p = parsePacket(raw, level);
    this.core!.traffic.recvCnt++;
    switch (p.cmd) {
      case 'publish':
        this.onPublish(p, raw);
        return;
      case 'puback':
        this.onPuback(p.messageId ?? 0);
        return;
      case 'pubrec':
        this.onPubrec(p.messageId ?? 0, p.reasonCode ?? 0);
        return;
      case 'pubrel':
        this.onPubrel(p.messageId ?? 0);
        return;
      case 'pubcomp':
        this.onPubcomp(p.messageId ?? 0);
        return;
      case 'subscribe':
        this.onSubscribe(p, raw);
        return;
      case 'unsubscribe':
        this.onUnsubscribe(p, raw);
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
    this.user = username;
    this.vhost = vhost;
    const core = this.adapter.ctx.core;
    try {
      core.authenticate(username, password, this.peer.address);
    } catch (e) {
      const loopback = errorText(e).includes('localhost');
      this.refuse(
        loopback ? (v5 ? Reason.NOT_AUTHORIZED : ConnackCode.NOT_AUTHORIZED) : v5 ? Reason.BAD_USERNAME_OR_PASSWORD : ConnackCode.BAD_USERNAME_OR_PASSWORD,
        `authentication failed for user '${printable(username)}': ${errorText(e)}`,
      );
      return;
    }

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

    try {
      this.core = core.connect(
        {
          protocol: PROTOCOL_NAMES[level],
          peer: this.peer,
          user: username,
          vhost,
          clientId,
        },
        this,
      );
    } catch (e) {
      this.refuse(v5 ? Reason.NOT_AUTHORIZED : ConnackCode.NOT_AUTHORIZED, `vhost access refused: ${errorText(e)}`);
      return;
    }

    // Session: take over an existing connection, resume or replace the session.
    let expiry: number;
    if (v5) expiry = props?.sessionExpiryInterval ?? 0;
    else expiry = clean ? 0 : SESSION_EXPIRY_NEVER;
    const { session, present } = this.adapter.openSession(vhost, clientId, clean, this);
    session.expiryInterval = expiry;
    this.adapter.sessionAttached(session);
    this.session = session;
    this.will = will;
    this.keepAliveMs = (p.keepalive ?? 0) * 1000;
    if (v5) {
      this.clientMaxPacket = props?.maximumPacketSize ?? 0;
      this.clientAliasMax = props?.topicAliasMaximum ?? 0;
      this.window = Math.min(MAX_INFLIGHT, props?.receiveMaximum ?? 65535);
    }
    this.reader.maxSize = this.adapter.maxPacketSize;
    this.transportControl?.authenticated(this.adapter.maxPacketSize);
    this.state = 'running';
    this.lastRecv = this.adapter.now();

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
      };
      if (assigned) ack.properties.assignedClientIdentifier = clientId;
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
        this.writeRetained(e.retained, e.qos, e.packetId, true);
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

  private channel(): CoreChannel {
    return (this.ch ??= this.core!.openChannel(1));
  }

  private onPublish(p: IPublishPacket, raw: Buffer): void {
    const s = this.session!;
    const qos = p.qos;
    const v5 = this.level === 5;
    if (qos === 0 && p.dup) throw new MqttError(Reason.PROTOCOL_ERROR, 'DUP set on a QoS 0 PUBLISH'); // [MQTT-3.3.1-2]
    let topic = p.topic;
    let props: PublishProperties | undefined;
    if (v5 && p.properties !== undefined) {
      const { topicAlias, subscriptionIdentifier, ...rest } = p.properties;
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
    const packetId = p.messageId ?? 0;
    if (qos > 0 && packetId === 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'PUBLISH without packet identifier');

    if (qos === 2) {
      const known = s.incoming?.get(packetId);
      if (known !== undefined) {
        // A resent PUBLISH still awaiting PUBREL: acknowledge again, do not route twice.
        this.queueAck(PacketType.PUBREC, packetId, known ?? SETTLED, Reason.SUCCESS);
        return;
      }
    }
    const body = payloadOf(p.payload);
    const properties = toAmqpProperties(qos, p.retain, props);
    const msg: Message = { exchange: TOPIC_EXCHANGE, routingKey: topicToRoutingKey(topic), properties, body };
    let r: PublishResult;
    try {
      r = this.channel().publish(msg);
    } catch (e) {
      this.publishRefused(e, qos, packetId, topic);
      return;
    }
    this.publisher = true;
    if (p.retain) this.adapter.retain(this.vhost, topic, qos, properties, body);
    if (qos === 0) {
      if (r.settled !== SETTLED) r.settled.catch(() => undefined);
      return;
    }
    const reason = v5 && r.routed === 0 ? Reason.NO_MATCHING_SUBSCRIBERS : Reason.SUCCESS;
    if (qos === 1) this.queueAck(PacketType.PUBACK, packetId, r.settled, reason);
    else if (s.expiryInterval === 0) {
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
    const entry: PendingAck = { type: qos === 1 ? PacketType.PUBACK : PacketType.PUBREC, packetId, reason: 0, state: 2, error: e };
    (this.acks ??= new Deque()).push(entry);
    this.flushAcks();
  }

  /** Sends PUBACK/PUBREC once `settled` resolves, in the order the PUBLISHes arrived. */
  private queueAck(type: PendingAck['type'], packetId: number, settled: Promise<void>, reason: number): void {
    const acks = this.acks;
    if (settled === SETTLED && (acks === undefined || acks.length === 0)) {
      this.sendAck(type, packetId, reason);
      return;
    }
    const entry: PendingAck = { type, packetId, reason, state: settled === SETTLED ? 1 : 0, error: undefined };
    (this.acks ??= new Deque()).push(entry);
    if (entry.state === 0) {
      settled
        .then(
          () => {
            entry.state = 1;
            this.flushAcks();
          },
          (e: unknown) => {
            entry.state = 2;
            entry.error = e;
            this.flushAcks();
          },
        )
        .catch(this.guard.catcher);
      if (this.acks.length > MAX_UNSETTLED_PUBLISHES) this.pause(PAUSE_UNSETTLED);
    } else this.flushAcks();
  }

  private flushAcks(): void {
    const acks = this.acks;
    if (acks === undefined) return;
    for (let e = acks.peek(); e !== undefined && e.state !== 0; e = acks.peek()) {
      acks.shift();
      if (this.state !== 'running') continue;
      if (e.state === 1) {
        this.sendAck(e.type, e.packetId, e.reason);
        continue;
      }
      const err = e.error;
      if (e.type === PacketType.PUBREC) this.session?.incoming?.delete(e.packetId);
      this.log.warn({ clientId: this.clientId, packetId: e.packetId }, `publish not accepted: ${errorText(err)}`);
      if (this.level === 5) {
        this.send({ cmd: e.type === PacketType.PUBACK ? 'puback' : 'pubrec', messageId: e.packetId, reasonCode: mqttReasonFor(err) });
      } else {
        this.closeWith(Reason.UNSPECIFIED_ERROR, `publish not accepted: ${errorText(err)}`);
        return;
      }
    }
    if ((this.paused & PAUSE_UNSETTLED) !== 0 && acks.length <= MAX_UNSETTLED_PUBLISHES / 2) this.unpause(PAUSE_UNSETTLED);
  }

  private sendAck(type: PendingAck['type'], packetId: number, reason: number): void {
    if (type === PacketType.PUBREC) {
      const inc = this.session?.incoming;
      if (inc !== undefined && inc.get(packetId) !== undefined) inc.set(packetId, null);
    }
    this.write(encodeAck(type, this.level!, packetId, reason));
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
    return this.stream.writableLength > HIGH_WATERMARK || (s !== undefined && s.inflight >= this.window);
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
      if (sub === undefined || !matchWords(sub.words, msg.routingKey.split('.'), '*')) qos = -1;
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
      this.writePublish(topic, msg.body, msg.properties, 0, 0, false, retain, ids, expiresAt);
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
      } else if (!d.redelivered) this.dropStaleRequeued(s);
    }
    if (entry === undefined) {
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
      written = this.writePublish(topic, msg.body, msg.properties, entry.qos, entry.packetId, dup, retain, ids, expiresAt);
    } catch (e) {
      // Nothing was sent: forget the packet id; the core takes the delivery back.
      s.deleteOutgoing(entry.packetId);
      this.releaseInflight(s);
      throw e;
    }
    if (!written) {
      // Larger than the client accepts [MQTT-3.1.2-25]: dropped as if acknowledged.
      s.deleteOutgoing(entry.packetId);
      this.releaseInflight(s);
      this.channel().ack(d.deliveryTag);
    }
  }

  /** Requeued deliveries that did not come back before fresh ones (expired, purged...): forget them. */
  private dropStaleRequeued(s: Session): void {
    for (const e of s.requeued!.values()) s.deleteOutgoing(e.packetId);
    s.requeued = undefined;
  }

  cancelled(consumerTag: string): void {
    // The queue was deleted (e.g. by an operator): stop treating it as consumed.
    if (consumerTag === this.session?.queue) {
      this.ownAcks = undefined;
      this.session.hasQueue = false;
    } else this.sharedConsumers?.delete(consumerTag);
  }

  /**
   * Encodes and writes a PUBLISH; false when it exceeds the client's maximum packet size.
   * v5: properties, subscription identifiers and an outbound topic alias.
   */
  private writePublish(
    topic: string,
    body: Buffer,
    amqp: MessageProperties,
    qos: QoS,
    packetId: number,
    dup: boolean,
    retain: boolean,
    ids: number[] | undefined,
    expiresAt: number,
  ): boolean {
    let wireTopic = topic;
    let props: PublishProperties | undefined;
    let newAlias = 0;
    if (this.level === 5) {
      props = toMqttProperties(amqp, expiresAt, expiresAt > 0 ? Date.now() : 0);
      if (ids !== undefined) (props ??= {}).subscriptionIdentifier = ids.length === 1 ? ids[0]! : ids;
      if (this.clientAliasMax > 0) {
        const aliases = (this.outAliases ??= new Map());
        const alias = aliases.get(topic);
        if (alias !== undefined) {
          (props ??= {}).topicAlias = alias;
          wireTopic = '';
        } else if (aliases.size < this.clientAliasMax) {
          newAlias = aliases.size + 1;
          aliases.set(topic, newAlias);
          (props ??= {}).topicAlias = newAlias;
        }
      }
    }
    const buf = encodePublish(this.level!, wireTopic, body, qos, packetId, dup, retain, props);
    if (this.clientMaxPacket > 0 && buf.length > this.clientMaxPacket) {
      if (newAlias !== 0) this.outAliases!.delete(topic);
      this.log.debug({ clientId: this.clientId, size: buf.length, max: this.clientMaxPacket }, 'message larger than the client maximum packet size dropped');
      return false;
    }
    this.write(buf);
    return true;
  }

  private writeRetained(m: RetainedMessage, qos: QoS, packetId: number, dup: boolean): void {
    this.writePublish(m.topic, m.body, m.properties, qos, packetId, dup, true, undefined, m.expiresAt);
  }

  private onPuback(packetId: number): void {
    const s = this.session!;
    const e = s.outgoing.get(packetId);
    if (e === undefined || e.qos !== 1 || e.state !== OutState.PUBLISH) return; // unknown or late: ignore
    s.deleteOutgoing(packetId);
    const tag = e.tag;
    this.releaseInflight(s);
    if (tag !== 0) this.channel().ack(tag);
  }

  private onPubrec(packetId: number, reasonCode: number): void {
    const s = this.session!;
    const e = s.outgoing.get(packetId);
    if (e === undefined || e.qos !== 2 || e.state !== OutState.PUBLISH) {
      this.write(encodeAck(PacketType.PUBREL, this.level!, packetId, Reason.PACKET_IDENTIFIER_NOT_FOUND));
      return;
    }
    // The client owns the message now: it leaves the queue; only the PUBREL/PUBCOMP exchange remains.
    if (e.tag !== 0) this.channel().ack(e.tag);
    e.tag = 0;
    if (reasonCode >= 0x80) {
      s.deleteOutgoing(packetId);
      this.releaseInflight(s);
      return;
    }
    e.state = OutState.PUBREL;
    void this.adapter.saveSession(s);
    this.write(encodeAck(PacketType.PUBREL, this.level!, packetId, Reason.SUCCESS));
  }

  private onPubcomp(packetId: number): void {
    const s = this.session!;
    const e = s.outgoing.get(packetId);
    if (e === undefined || e.state !== OutState.PUBREL) return;
    s.deleteOutgoing(packetId);
    void this.adapter.saveSession(s);
    this.releaseInflight(s);
  }

  /** One QoS >= 1 delivery completed: send waiting retained messages, then let the queues dispatch. */
  private releaseInflight(s: Session): void {
    const wasFull = s.inflight >= this.window;
    s.inflight--;
    const backlog = this.retainedBacklog;
    while (backlog !== undefined && backlog.length > 0 && s.inflight < this.window) {
      const [m, qos] = backlog.shift()!;
      this.sendRetained(s, m, qos);
    }
    if (wasFull && s.inflight < this.window) this.ch?.resume();
  }

  private sendRetained(s: Session, m: RetainedMessage, qos: QoS): void {
    if (qos === 0) {
      this.writeRetained(m, 0, 0, false);
      return;
    }
    if (s.inflight >= this.window) {
      (this.retainedBacklog ??= new Deque()).push([m, qos]);
      return;
    }
    const packetId = s.allocatePacketId();
    const entry: Outgoing = { packetId, qos, state: OutState.PUBLISH, tag: 0, msgId: 0, retained: m, shared: false };
    s.addOutgoing(entry);
    s.inflight++;
    if (!this.writePublish(m.topic, m.body, m.properties, qos, packetId, false, true, undefined, m.expiresAt)) {
      s.deleteOutgoing(packetId);
      s.inflight--;
    }
  }

  // ---- SUBSCRIBE / UNSUBSCRIBE --------------------------------------------------------------

  private onSubscribe(p: ISubscribePacket, raw: Buffer): void {
    const s = this.session!;
    const v5 = this.level === 5;
    let subId = 0;
    if (v5 && p.properties?.subscriptionIdentifier !== undefined) {
      const id = p.properties.subscriptionIdentifier as unknown;
      if (typeof id !== 'number' || id < 1) throw new MqttError(Reason.PROTOCOL_ERROR, 'invalid subscription identifier');
      subId = id;
    }
    if (p.subscriptions.length === 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'SUBSCRIBE without topic filters'); // [MQTT-3.8.3-3]
    const granted: number[] = [];
    const replay: [RetainedMessage, QoS][] = [];
    for (const req of p.subscriptions) {
      checkDecodedString(req.topic, raw, 'topic filter');
      const parsed = parseFilter(req.topic);
      if (typeof parsed === 'string') {
        this.log.warn({ clientId: this.clientId, filter: printable(req.topic) }, `subscription refused: ${parsed}`);
        granted.push(v5 ? Reason.TOPIC_FILTER_INVALID : SUBACK_FAILURE);
        continue;
      }
      const noLocal = req.nl ?? false;
      if (parsed.group !== undefined && noLocal) throw new MqttError(Reason.PROTOCOL_ERROR, 'no local on a shared subscription'); // [MQTT-3.8.3-4]
      const existing = s.subscriptions.get(req.topic);
      if (existing === undefined && s.subscriptions.size >= MAX_SUBSCRIPTIONS) {
        this.log.warn({ clientId: this.clientId }, `subscription refused: more than ${MAX_SUBSCRIPTIONS} subscriptions`);
        granted.push(v5 ? Reason.QUOTA_EXCEEDED : SUBACK_FAILURE);
        continue;
      }
      const qos = req.qos;
      const rap = req.rap ?? false;
      const rh = req.rh ?? 0;
      try {
        const sub = parsed.group === undefined ? this.subscribeOwn(s, parsed, qos, noLocal, rap, rh, subId, existing) : this.subscribeShared(s, parsed, qos, rap, rh, subId, existing);
        granted.push(sub.qos);
        if (parsed.group === undefined && (rh === 0 || (rh === 1 && existing === undefined))) {
          for (const m of this.adapter.retained.match(this.vhost, parsed.filter)) replay.push([m, Math.min(m.qos, qos) as QoS]);
        }
      } catch (e) {
        if (!(e instanceof BrokerError)) throw e;
        this.log.warn({ user: this.user, vhost: this.vhost, clientId: this.clientId, filter: printable(req.topic) }, `subscription refused: ${e.message}`);
        granted.push(v5 ? mqttReasonFor(e) : SUBACK_FAILURE);
      }
    }
    this.send({ cmd: 'suback', messageId: p.messageId ?? 0, granted });
    for (const [m, qos] of replay) this.sendRetained(s, m, qos);
  }

  private ensureQueue(s: Session): void {
    if (s.hasQueue && this.adapter.queueExists(s.vhost, s.queue)) return;
    const ch = this.channel();
    if (this.adapter.queueExists(s.vhost, s.queue)) ch.declareQueue(s.queue, {}, true);
    else if (s.expiryInterval > 0) ch.declareQueue(s.queue, { durable: true });
    else ch.declareQueue(s.queue, { exclusive: true });
    s.hasQueue = true;
  }

  private subscribeOwn(s: Session, parsed: ParsedFilter, qos: QoS, noLocal: boolean, rap: boolean, rh: number, id: number, existing: Subscription | undefined): Subscription {
    this.ensureQueue(s);
    const ch = this.channel();
    const args = subscriptionArgs(qos, noLocal, rap, rh, id);
    ch.bindQueue(s.queue, TOPIC_EXCHANGE, parsed.bindingKey, args);
    const sub: Subscription = {
      parsed,
      qos,
      noLocal,
      retainAsPublished: rap,
      retainHandling: rh,
      id,
      queue: s.queue,
      words: parsed.bindingKey.split('.'),
      args,
    };
    s.setSubscription(sub);
    if (existing !== undefined) this.unbindIfUnused(s, existing);
    this.ensureOwnConsumer();
    return sub;
  }

  /** Removes a replaced or unsubscribed binding unless another subscription still uses it. */
  private unbindIfUnused(s: Session, old: Subscription): void {
    for (const o of s.subscriptions.values()) {
      if (o.parsed.group === undefined && o.parsed.bindingKey === old.parsed.bindingKey && sameArgs(o, old)) return;
    }
    this.channel().unbindQueue(s.queue, TOPIC_EXCHANGE, old.parsed.bindingKey, old.args);
  }

  /** Consumes the session queue; with acknowledgements once any subscription has QoS >= 1. */
  private ensureOwnConsumer(): void {
    const s = this.session!;
    const wantAcks = s.maxOwnQos > 0;
    if (this.ownAcks === true || this.ownAcks === wantAcks) return;
    const ch = this.channel();
    if (this.ownAcks !== undefined) ch.cancel(s.queue);
    ch.consume(s.queue, { consumerTag: s.queue, noAck: !wantAcks, prefetch: wantAcks ? this.window : 0 }, this);
    this.ownAcks = wantAcks;
  }

  private subscribeShared(s: Session, parsed: ParsedFilter, qos: QoS, rap: boolean, rh: number, id: number, existing: Subscription | undefined): Subscription {
    const queue = existing?.queue ?? this.adapter.joinShared(s, parsed, this.channel());
    const sub: Subscription = {
      parsed,
      qos,
      noLocal: false,
      retainAsPublished: rap,
      retainHandling: rh,
      id,
      queue,
      words: parsed.bindingKey.split('.'),
      args: {},
    };
    s.setSubscription(sub);
    this.ensureSharedConsumer(queue);
    return sub;
  }

  private ensureSharedConsumer(queue: string): void {
    const consumers = (this.sharedConsumers ??= new Set());
    if (consumers.has(queue)) return;
    this.channel().consume(queue, { consumerTag: queue, noAck: false, prefetch: this.window }, this);
    consumers.add(queue);
  }

  private onUnsubscribe(p: IUnsubscribePacket, raw: Buffer): void {
    const s = this.session!;
    if (p.unsubscriptions.length === 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'UNSUBSCRIBE without topic filters'); // [MQTT-3.10.3-2]
    const codes: number[] = [];
    for (const f of p.unsubscriptions) {
      checkDecodedString(f, raw, 'topic filter');
      const sub = s.subscriptions.get(f);
      if (sub === undefined) {
        codes.push(typeof parseFilter(f) === 'string' ? Reason.TOPIC_FILTER_INVALID : Reason.NO_SUBSCRIPTION_EXISTED);
        continue;
      }
      try {
        s.deleteSubscription(f);
        if (sub.parsed.group === undefined) this.unbindIfUnused(s, sub);
        else {
          if (this.sharedConsumers?.delete(sub.queue) === true) this.ch?.cancel(sub.queue);
          this.adapter.leaveShared(s, sub.parsed);
        }
        codes.push(Reason.SUCCESS);
      } catch (e) {
        if (!(e instanceof BrokerError)) throw e;
        this.log.warn({ clientId: this.clientId, filter: printable(f) }, `unsubscribe failed: ${e.message}`);
        codes.push(mqttReasonFor(e));
      }
    }
    if (this.level === 5) this.send({ cmd: 'unsuback', messageId: p.messageId ?? 0, granted: codes });
    else this.send({ cmd: 'unsuback', messageId: p.messageId ?? 0, granted: [] });
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
      this.stream.destroy();
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
    this.stream.destroy();
  }

  /** Flushes what was written and ends the socket; the session is detached now, not when the socket closes. */
  private terminate(): void {
    if (this.state === 'closed') return;
    this.cleanup();
    const stream = this.stream;
    if (!stream.destroyed && !stream.writableEnded) stream.end();
    setTimeout(destroyStream, CLOSE_TIMEOUT_MS, stream).unref();
  }

  private cleanup(): void {
    if (this.state === 'closed') return;
    const wasRunning = this.state === 'running';
    this.state = 'closed';
    this.reader.clear();
    const s = this.session;
    if (s !== undefined && s.connection === this) {
      this.detachOutgoing(s);
      this.core?.close();
      this.adapter.sessionDetached(s, this.noWill ? undefined : this.will, this.user, this.core?.id ?? 0);
    } else this.core?.close();
    this.acks = undefined;
    this.retainedBacklog = undefined;
    const log = this.adapter.ctx.log;
    if (wasRunning && log.isLevelEnabled('info')) log.info({ ...this.logFields(), reason: this.closeReason }, 'connection closed');
    this.adapter.connectionGone(this);
  }

  /** Deliveries in flight become REQUEUED (the core puts them back) or RESEND (retained messages). */
  private detachOutgoing(s: Session): void {
    let inflight = 0;
    for (const e of s.outgoing.values()) {
      if (e.state === OutState.PUBLISH) {
        if (e.retained !== undefined) e.state = OutState.RESEND;
        else if (e.shared || s.expiryInterval === 0) {
          // Shared-queue messages go to other members; a session that ends forgets everything.
          s.deleteOutgoing(e.packetId);
          continue;
        } else {
          e.state = OutState.REQUEUED;
          (s.requeued ??= new Map()).set(e.msgId, e);
        }
        e.tag = 0;
      } else if (e.state === OutState.PUBREL) inflight++;
    }
    s.inflight = inflight;
  }

  // ---- flow control -------------------------------------------------------------------------

  /** A resource alarm: connections that publish stop being read until it clears (STYLE P11). */
  setBlocked(blocked: boolean): void {
    this.blocked = blocked;
    if (!blocked) this.unpause(PAUSE_ALARM);
    else if (this.publisher && this.state === 'running') this.pause(PAUSE_ALARM);
  }

  private pause(why: number): void {
    if (this.paused === 0) this.stream.pause();
    this.paused |= why;
  }

  private unpause(why: number): void {
    if ((this.paused & why) === 0) return;
    this.paused &= ~why;
    if (this.paused === 0 && this.state !== 'closed') this.stream.resume();
  }
}

function sameArgs(a: Subscription, b: Subscription): boolean {
  return a.qos === b.qos && a.noLocal === b.noLocal && a.retainAsPublished === b.retainAsPublished && a.retainHandling === b.retainHandling && a.id === b.id;
}
