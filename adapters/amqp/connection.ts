import type { Duplex } from 'node:stream';
import type { AdapterContext } from '../../src/transport/adapter.js';
import {
  BrokerError,
  ReplyCode,
  type Closable,
  type Teardown,
  type CoreConnection,
  type FieldTable,
  type User,
} from '../../src/core/index.js';
import type { Logger } from '../../src/logger.js';
import type { Peer, TransportControl } from '../../src/transport/adapter.js';
import { certificateUser } from '../../src/transport/tls.js';
import { CLOSED_BY_CLIENT, Link, PauseReason, type LinkOwner } from '../../src/transport/link.js';
import { SettleBudget } from '../../src/transport/settle-queue.js';
import { AmqpChannel, type HeldFrame } from './channel.js';
import { FRAME_MIN_SIZE, FrameType, PROTOCOL_HEADER } from './codec/constants.js';
import { decodeFieldTable } from './codec/field-table.js';
import { FrameDecoder, encodeHeartbeat, type Frame } from './codec/frames.js';
import { decodeMethod, encodeMethod, methodIdOf, type AmqpMethod } from './codec/methods.js';

const VERSION = '0.1.0';
/** After sending connection.close, how long to wait for close-ok before dropping the socket. */
const CLOSE_TIMEOUT_MS = 1000;
/** A client has this long from the protocol header to connection.open. */
const HANDSHAKE_TIMEOUT_MS = 10_000;

type State = 'header' | 'start' | 'authenticating' | 'tune' | 'open' | 'running' | 'closing' | 'closed';

export interface ClientCapabilities {
  consumerCancelNotify: boolean;
  connectionBlocked: boolean;
  authenticationFailureClose: boolean;
}

function capabilitiesOf(props: FieldTable): ClientCapabilities {
  const caps = props['capabilities'];
  const t: FieldTable = caps !== null && typeof caps === 'object' && !Array.isArray(caps) && !Buffer.isBuffer(caps) && !(caps instanceof Date) && !('scale' in caps) ? (caps as FieldTable) : {};
  return {
    consumerCancelNotify: t['consumer_cancel_notify'] === true,
    connectionBlocked: t['connection.blocked'] === true,
    authenticationFailureClose: t['authentication_failure_close'] === true,
  };
}

/**
 * One AMQP 0-9-1 connection: handshake, heartbeats, channels, error handling (close discipline,
 * STYLE P6) and flow control on resource alarms.
 */
export class AmqpConnection implements Closable, LinkOwner {
  /** The connection's transport: outbound buffer, flow, heartbeats, deadlines. */
  readonly link: Link;
  /** Unsettled publishes (confirms owed) of all channels: one bound per connection. */
  readonly settleBudget: SettleBudget;
  private readonly decoder: FrameDecoder;
  private state: State = 'header';
  private readonly channels = new Map<number, AmqpChannel>();
  /** Channels the server closed, awaiting channel.close-ok: their frames are dropped. */
  private readonly closingChannels = new Set<number>();
  private core: CoreConnection | undefined;
  private user = '';
  /** When the access token the client logged in with ends (epoch ms). */
  private tokenExpiresAt: number | undefined;
  private vhost = '';
  private clientProperties: FieldTable = {};
  capabilities: ClientCapabilities = { consumerCancelNotify: false, connectionBlocked: false, authenticationFailureClose: false };
  frameMax: number;
  channelMax: number;
  heartbeat = 0;
  readonly maxMessageSize: number;
  private publisher = false;
  private blocked = false;
  /** Channels holding too many frames behind a reply that waits for the disk: reading stops. */
  private holdPaused = 0;
  private closeReason = CLOSED_BY_CLIENT;
  private readonly unsubscribeAlarms: () => void;
  private readonly log: Logger;

  constructor(
    private readonly ctx: AdapterContext,
    stream: Duplex,
    readonly peer: Peer,
    readonly transport: string,
    private readonly onGone: (c: AmqpConnection) => void,
    control?: TransportControl,
  ) {
    this.log = ctx.log.child({ protocol: 'amqp', peer: `${peer.address}:${peer.port}` });
    this.frameMax = ctx.options.frameMax;
    this.channelMax = ctx.options.channelMax;
    this.maxMessageSize = ctx.options.maxMessageSize;
    // Until tune-ok, frames are limited to the spec minimum: an unauthenticated peer cannot
    // make the broker buffer more (STYLE P2).
    this.decoder = new FrameDecoder(FRAME_MIN_SIZE);
    this.link = new Link(stream, this, this.log, transport, control);
    this.settleBudget = new SettleBudget(this.link);
    this.unsubscribeAlarms = ctx.core.alarms.on(this.link.guard.wrap((blocked: boolean, reason: string) => this.onAlarm(blocked, reason)));
    this.blocked = ctx.core.alarms.blocked;
    this.link.expectHandshake(HANDSHAKE_TIMEOUT_MS);
  }

  /** Everything the client's input sets off runs under it (failure isolation). */
  get guard(): Link['guard'] {
    return this.link.guard;
  }

  /** Resolves when the connection has closed and released its channels. */
  get closed(): Promise<void> {
    return this.link.closed;
  }

  /** LinkOwner: the client has read what was buffered; deliveries resume. */
  linkDrained(): void {
    for (const ch of this.channels.values()) ch.core.resume();
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

  /** LinkOwner: no connection.open in time, or the client's heartbeats stopped. */
  linkExpired(kind: 'handshake' | 'silence'): boolean {
    if (kind === 'handshake') this.log.warn({ state: this.state }, 'handshake timeout');
    else this.log.warn({ user: this.user, timeout: this.heartbeat }, 'missed heartbeats from client, closing connection');
    return false;
  }

  /** Encodes and writes a method frame. */
  send(channel: number, m: AmqpMethod): void {
    this.link.write(encodeMethod(channel, m));
  }

  /** A publisher confirm: sent after the deliveries its publishes were routed to (see Link.writeAfterDeliveries). */
  sendAfterDeliveries(channel: number, m: AmqpMethod): void {
    this.link.writeAfterDeliveries(encodeMethod(channel, m));
  }

  // ---- inbound ------------------------------------------------------------------------------

  /** The stream's data, through the input guard. */
  onInput(chunk: Buffer): void {
    if (this.state === 'closed') return;
    this.decoder.push(chunk);
    try {
      if (this.state === 'header') {
        const h = this.decoder.takeProtocolHeader();
        if (h === null) return;
        if (!h.equals(PROTOCOL_HEADER)) {
          this.log.warn({ header: h.toString('latin1') }, 'bad protocol header');
          this.state = 'closed';
          this.link.end(Buffer.from(PROTOCOL_HEADER));
          return;
        }
        this.sendStart();
      }
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) {
        this.handleFrame(f);
        if ((this.state as State) === 'closed') return;
      }
    } catch (e) {
      // Errors here are about the frame stream itself: the connection cannot continue.
      this.decoder.clear();
      this.fail(e, 0, undefined);
    }
    if (this.publisher && this.blocked && this.state === 'running') this.link.pause(PauseReason.ALARM);
  }

  private handleFrame(f: Frame): void {
    if (this.core) this.core.traffic.recvCnt++;
    if (this.state === 'closing') {
      // Only connection.close / close-ok matter now (STYLE P6).
      if (f.type === FrameType.METHOD && f.channel === 0) {
        const m = decodeMethod(f.payload);
        if (m.kind === 'connection.close-ok') this.link.destroy();
        else if (m.kind === 'connection.close') {
          this.send(0, { kind: 'connection.close-ok' });
          this.terminate();
        }
      }
      return;
    }
    switch (f.type) {
      case FrameType.HEARTBEAT:
        if (f.channel !== 0) throw BrokerError.frameError(`heartbeat frame on channel ${f.channel}`);
        return;
      case FrameType.METHOD: {
        let m: AmqpMethod;
        try {
          m = decodeMethod(f.payload);
        } catch (e) {
          this.fail(e, 0, undefined);
          return;
        }
        if (f.channel === 0) this.handleConnectionMethod(m);
        else if (this.state !== 'running') this.fail(BrokerError.commandInvalid(`channel method ${m.kind} before connection.open`), 0, m);
        else this.handleChannelMethod(f.channel, m);
        return;
      }
      case FrameType.HEADER:
      case FrameType.BODY:
        this.handleContent(f);
        return;
      default:
        throw BrokerError.frameError(`unknown frame type ${f.type}`);
    }
  }

  private handleContent(f: Frame): void {
    if (this.closingChannels.has(f.channel)) return;
    const ch = this.channels.get(f.channel);
    if (ch !== undefined && ch.holding && this.state === 'running') {
      ch.hold(f);
      return;
    }
    if (ch === undefined || this.state !== 'running') {
      this.fail(BrokerError.channelError(`expected 'channel.open' on channel ${f.channel}`), 0, undefined);
      return;
    }
    try {
      if (f.type === FrameType.HEADER) ch.handleHeader(f.payload);
      else ch.handleBody(f.payload);
    } catch (e) {
      this.fail(e, f.channel, { kind: 'basic.publish', exchange: '', routingKey: '', mandatory: false, immediate: false });
    }
  }

  // ---- connection class ---------------------------------------------------------------------

  private sendStart(): void {
    this.state = 'start';
    this.send(0, {
      kind: 'connection.start',
      versionMajor: 0,
      versionMinor: 9,
      serverProperties: {
        product: 'Warren',
        version: VERSION,
        platform: `Node.js ${process.version}`,
        copyright: 'Warren contributors',
        information: 'Licensed under the MIT license',
        cluster_name: 'warren',
        capabilities: {
          publisher_confirms: true,
          exchange_exchange_bindings: true,
          'basic.nack': true,
          consumer_cancel_notify: true,
          'connection.blocked': true,
          consumer_priorities: true,
          authentication_failure_close: true,
          per_consumer_qos: true,
          direct_reply_to: true,
        },
      },
      mechanisms: this.mechanisms,
      locales: 'en_US',
    });
  }

  private handleConnectionMethod(m: AmqpMethod): void {
    try {
      switch (m.kind) {
        case 'connection.start-ok':
          if (this.state !== 'start') break;
          this.clientProperties = m.clientProperties;
          this.capabilities = capabilitiesOf(m.clientProperties);
          this.authenticate(m.mechanism, m.response);
          return;
        case 'connection.tune-ok':
          if (this.state !== 'tune') break;
          this.tune(m.channelMax, m.frameMax, m.heartbeat);
          return;
        case 'connection.open':
          if (this.state !== 'open') break;
          this.open(m.virtualHost);
          return;
        case 'connection.close':
          this.closeReason = `client closed: ${m.replyCode} ${m.replyText}`;
          this.send(0, { kind: 'connection.close-ok' });
          this.terminate();
          return;
        case 'connection.close-ok':
          this.link.destroy();
          return;
        case 'connection.update-secret':
          if (this.state !== 'running') break;
          this.updateSecret(m.newSecret, m.reason);
          return;
        case 'connection.blocked':
        case 'connection.unblocked':
          return;
        default:
          break;
      }
      throw BrokerError.commandInvalid(`unexpected method ${m.kind} in state ${this.state}`);
    } catch (e) {
      this.fail(e, 0, m);
    }
  }

  /** The mechanisms offered: EXTERNAL only to a client that presented a verified certificate. */
  private get mechanisms(): string {
    return this.peer.tls?.authorized === true && this.peer.tls.certificate !== undefined ? 'PLAIN AMQPLAIN EXTERNAL' : 'PLAIN AMQPLAIN';
  }

  private authenticate(mechanism: string, response: Buffer): void {
    let user = '';
    let pass = '';
    if (mechanism === 'PLAIN') {
      const parts = response.toString('utf8').split('\u0000');
      user = parts[1] ?? '';
      pass = parts[2] ?? '';
    } else if (mechanism === 'AMQPLAIN') {
      const len = Buffer.allocUnsafe(4);
      len.writeUInt32BE(response.length);
      const t = decodeFieldTable(Buffer.concat([len, response]));
      user = typeof t['LOGIN'] === 'string' ? t['LOGIN'] : '';
      pass = typeof t['PASSWORD'] === 'string' ? t['PASSWORD'] : '';
    } else if (mechanism !== 'EXTERNAL') {
      throw BrokerError.commandInvalid(`unknown authentication mechanism '${mechanism}'`);
    }
    let result: User | Promise<User>;
    try {
      if (mechanism === 'EXTERNAL') {
        // RabbitMQ's rabbitmq_auth_mechanism_ssl: the user is named by the verified client certificate.
        user = certificateUser(this.peer.tls, this.ctx.options.tlsCertLoginFrom) ?? '';
        if (user === '') throw BrokerError.accessRefused('EXTERNAL login needs a verified client certificate');
        result = this.ctx.core.auth.authenticateCertificate(user, this.peer.address);
      } else result = this.ctx.core.login(user, pass, this.peer.address);
    } catch (e) {
      this.loginFailed(user, mechanism, e);
      return;
    }
    if (result instanceof Promise) {
      // An access token: nothing else may happen on this connection until it is verified.
      this.state = 'authenticating';
      result.then(
        (u) => {
          if (this.state === 'authenticating') this.loggedIn(u);
        },
        (e: unknown) => {
          if (this.state === 'authenticating') this.loginFailed(user, mechanism, e);
        },
      ).catch(this.guard.catcher);
      return;
    }
    this.loggedIn(result);
  }

  private loginFailed(user: string, mechanism: string, e: unknown): void {
    this.log.warn({ user, mechanism }, `authentication failed: ${e instanceof Error ? e.message : String(e)}`);
    this.closeReason = 'authentication failed';
    if (this.capabilities.authenticationFailureClose) {
      const text = `ACCESS_REFUSED - Login was refused using authentication mechanism ${mechanism}. For details see the broker logfile.`;
      this.send(0, { kind: 'connection.close', replyCode: ReplyCode.ACCESS_REFUSED, replyText: text, classId: 10, methodId: 11 });
      this.state = 'closing';
      this.armCloseTimer();
    } else this.terminate();
  }

  private loggedIn(u: User): void {
    this.user = u.name;
    this.tokenExpiresAt = u.tokenExpiresAt;
    this.state = 'tune';
    this.send(0, {
      kind: 'connection.tune',
      channelMax: this.channelMax,
      frameMax: this.ctx.options.frameMax,
      heartbeat: this.ctx.options.heartbeat,
    });
  }

  /** connection.update-secret (RabbitMQ): a renewed access token moves the connection's end. */
  private updateSecret(secret: Buffer, reason: string): void {
    const core = this.core;
    if (core === undefined) throw BrokerError.commandInvalid('connection.update-secret before connection.open');
    this.ctx.core.renewToken(core, secret.toString('utf8')).then(
      () => {
        this.log.info({ user: this.user, reason }, 'access token renewed');
        this.send(0, { kind: 'connection.update-secret-ok' });
      },
      (e: unknown) => this.fail(BrokerError.notAllowed(`Secret update failed: ${e instanceof BrokerError ? e.text : String(e)}`), 0, undefined),
    ).catch(this.guard.catcher);
  }

  private tune(channelMax: number, frameMax: number, heartbeat: number): void {
    const serverMax = this.ctx.options.frameMax;
    const fm = frameMax === 0 ? serverMax : frameMax;
    if (fm < FRAME_MIN_SIZE) {
      throw BrokerError.notAllowed(`negotiated frame_max = ${fm} is lower than the minimum allowed value (${FRAME_MIN_SIZE})`);
    }
    if (fm > serverMax) {
      throw BrokerError.notAllowed(`negotiated frame_max = ${fm} is higher than the maximum allowed value (${serverMax})`);
    }
    this.frameMax = fm;
    this.decoder.frameMax = fm;
    // A client may write a whole publish (method, header and every body frame) at once, and over
    // WebSocket one write is one message (amqp-client's AMQPWebSocketClient does this): that is
    // what a transport buffering messages must take in from now on.
    this.link.authenticated(this.maxMessageSize + Math.ceil(this.maxMessageSize / (fm - 8)) * 8 + 2 * fm);
    this.channelMax = channelMax === 0 ? this.channelMax : Math.min(channelMax, this.channelMax);
    this.heartbeat = heartbeat;
    this.state = 'open';
    if (heartbeat > 0) this.startHeartbeat(heartbeat);
  }

  private open(vhostName: string): void {
    const vhost = vhostName === '' ? this.ctx.core.defaultVhost : vhostName;
    this.vhost = vhost;
    this.core = this.ctx.core.connect(
      {
        protocol: 'AMQP 0-9-1',
        peer: this.peer,
        user: this.user,
        vhost,
        clientProperties: this.clientProperties,
      },
      this,
    );
    this.state = 'running';
    this.core.expireAt(this.tokenExpiresAt);
    this.link.traffic = this.core.traffic;
    this.send(0, { kind: 'connection.open-ok' });
    this.log.info({ user: this.user, vhost, transport: this.transport }, 'connection opened');
    if (this.blocked && this.capabilities.connectionBlocked) {
      this.send(0, { kind: 'connection.blocked', reason: 'low on resources' });
    }
  }

  // ---- channels -----------------------------------------------------------------------------

  private handleChannelMethod(n: number, m: AmqpMethod): void {
    if (this.closingChannels.has(n)) {
      if (m.kind === 'channel.close-ok') this.closingChannels.delete(n);
      else if (m.kind === 'channel.close') {
        // Both sides closed at once: the spec says answer with close-ok.
        this.closingChannels.delete(n);
        this.send(n, { kind: 'channel.close-ok' });
      }
      return;
    }
    const ch = this.channels.get(n);
    if (ch !== undefined && ch.holding) {
      ch.hold(m);
      return;
    }
    if (m.kind === 'channel.open') {
      if (ch !== undefined) {
        this.fail(BrokerError.channelError(`second 'channel.open' seen`), n, m);
        return;
      }
      if (n > this.channelMax) {
        this.fail(BrokerError.notAllowed(`channel_max ${this.channelMax} exceeded by channel ${n}`), 0, m);
        return;
      }
      this.channels.set(n, new AmqpChannel(this, n, this.core!.openChannel(n)));
      this.send(n, { kind: 'channel.open-ok' });
      return;
    }
    if (ch === undefined) {
      this.fail(BrokerError.channelError(`expected 'channel.open' on channel ${n}`), 0, m);
      return;
    }
    if (m.kind === 'channel.close') {
      this.channels.delete(n);
      ch.closeByClient();
      this.send(n, { kind: 'channel.close-ok' });
      return;
    }
    if (m.kind === 'channel.close-ok') return;
    try {
      ch.handleMethod(m);
    } catch (e) {
      this.fail(e, n, m);
    }
  }

  /** The frames a channel held while a reply waited for the disk, handled now in their order. */
  replayHeld(n: number, frames: HeldFrame[]): void {
    for (let i = 0; i < frames.length; i++) {
      if (this.state !== 'running') return;
      const ch = this.channels.get(n);
      if (ch !== undefined && ch.holding) {
        for (let j = i; j < frames.length; j++) ch.hold(frames[j]!);
        return;
      }
      const f = frames[i]!;
      if ('kind' in f) this.handleChannelMethod(n, f);
      else this.handleContent(f);
    }
  }

  /** A channel holds (or no longer holds) more frames than it should buffer: pause reading. */
  holdPressure(on: boolean): void {
    if (on) {
      if (this.holdPaused++ === 0) this.link.pause(PauseReason.HELD);
    } else if (--this.holdPaused === 0) this.link.unpause(PauseReason.HELD);
  }

  /** A channel's asynchronous failure (its definitions could not be written). */
  failChannel(n: number, err: unknown, m: AmqpMethod): void {
    if (this.state !== 'running' || !this.channels.has(n)) return;
    this.fail(err, n, m);
  }

  /** Closes one channel with a soft error (as a failed method would). */
  closeChannelWith(channel: number, err: BrokerError): void {
    this.fail(err, channel, undefined);
  }

  notePublish(): void {
    this.publisher = true;
  }

  // ---- errors and closing -------------------------------------------------------------------

  /**
   * Soft errors close the channel; hard errors (and anything on channel 0) close the connection.
   * Unknown exceptions are logged with their stack; the client only sees 541 INTERNAL_ERROR.
   */
  private fail(err: unknown, channel: number, m: AmqpMethod | undefined): void {
    let e: BrokerError;
    if (err instanceof BrokerError) e = err;
    else {
      this.log.error({ err }, 'internal error');
      e = BrokerError.internal('internal error');
    }
    const id = e.method ?? (m ? methodIdOf(m) : { classId: 0, methodId: 0 });
    const text = truncate(e.replyText);
    this.log.warn({ user: this.user, vhost: this.vhost, channel, code: e.code, method: m?.kind }, `protocol error: ${text}`);
    if (channel === 0 || e.isHard) {
      this.closeConnection(e.code, text, id.classId, id.methodId);
      return;
    }
    const ch = this.channels.get(channel);
    if (ch) {
      this.channels.delete(channel);
      ch.release();
    }
    this.closingChannels.add(channel);
    this.send(channel, { kind: 'channel.close', replyCode: e.code, replyText: text, classId: id.classId, methodId: id.methodId });
  }

  /**
   * GuardedConnection: an exception escaped the handling of this connection's input. The client
   * gets connection.close 541 INTERNAL_ERROR (or, when a close is already under way or the
   * handshake has not started, the socket is dropped); the stack goes to the log.
   */
  failInternal(err: unknown): void {
    this.log.error({ err, user: this.user, vhost: this.vhost }, 'internal error');
    this.decoder.clear();
    if (this.state === 'header' || this.state === 'closing' || this.state === 'closed') {
      this.link.destroy();
      return;
    }
    this.closeConnection(ReplyCode.INTERNAL_ERROR, 'INTERNAL_ERROR', 0, 0);
  }

  private closeConnection(code: number, text: string, classId: number, methodId: number): void {
    if (this.state === 'closing' || this.state === 'closed') return;
    this.closeReason = text;
    this.send(0, { kind: 'connection.close', replyCode: code, replyText: text, classId, methodId });
    this.state = 'closing';
    this.releaseChannels();
    this.armCloseTimer();
  }

  private armCloseTimer(): void {
    this.link.destroyAfter(CLOSE_TIMEOUT_MS);
  }

  /** Closable: the broker shuts down or an operator closed the connection. */
  forceClose(code: number, reason: string): void {
    if (this.state === 'running') {
      this.closeConnection(code, truncate(`CONNECTION_FORCED - ${reason}`), 0, 0);
    } else {
      this.link.destroy();
    }
  }

  /** Flush and end the socket (after close-ok was sent). */
  private terminate(): void {
    this.state = 'closed';
    this.releaseChannels();
    this.link.closeAfter(CLOSE_TIMEOUT_MS);
  }

  private releaseChannels(): void {
    for (const ch of this.channels.values()) ch.release();
    this.channels.clear();
  }

  private cleanup(): void {
    this.unsubscribeAlarms();
    const wasOpen = this.core !== undefined;
    this.state = 'closed';
    this.decoder.clear(); // unread input leaves the memory account with the connection
    this.releaseChannels();
    this.core?.close();
    if (wasOpen) this.log.info({ user: this.user, vhost: this.vhost, reason: this.closeReason }, 'connection closed');
    this.onGone(this);
  }

  // ---- heartbeats, flow ---------------------------------------------------------------------

  /**
   * Heartbeats through the link's sweep: one is sent when nothing was for half the interval, and
   * the client is dropped after two intervals of silence (RabbitMQ), unless it is paused.
   */
  private startHeartbeat(seconds: number): void {
    const ms = seconds * 1000;
    this.link.keepAlive(ms / 2, encodeHeartbeat(), ms * 2);
  }

  private onAlarm(blocked: boolean, reason: string): void {
    this.blocked = blocked;
    if (this.state !== 'running') return;
    if (this.capabilities.connectionBlocked) {
      this.send(0, blocked ? { kind: 'connection.blocked', reason } : { kind: 'connection.unblocked' });
    }
    if (!blocked) this.link.unpause(PauseReason.ALARM);
  }
}

function truncate(text: string): string {
  if (Buffer.byteLength(text) <= 255) return text;
  let t = text.slice(0, 255);
  while (Buffer.byteLength(t) > 255) t = t.slice(0, -1);
  return t;
}
