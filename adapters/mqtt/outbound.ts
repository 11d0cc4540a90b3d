import { Deque, type MessageProperties } from '../../src/core/index.js';
import { encodeAck, encodePublish } from './codec.js';
import { MAX_INFLIGHT, PacketType, Reason, type ProtocolLevel, type QoS } from './constants.js';
import { toMqttProperties, type PublishProperties } from './properties.js';
import type { RetainedMessage } from './retained.js';
import { OutState, type Outgoing, type Session } from './session.js';

/** What the outbound state machine needs from its connection. */
export interface OutboundHost {
  readonly level: ProtocolLevel | undefined;
  write(buf: Buffer): void;
  /** Settles a delivery in the core (the client has taken it). */
  ackDelivery(tag: number): void;
  /** The in-flight window has room again: the queues may dispatch. */
  resumeDeliveries(): void;
  /** Writes the session's packet-id state (persistent sessions). */
  persistSession(s: Session): void;
  logDebug(fields: Record<string, unknown>, text: string): void;
}

/**
 * Deliveries to one MQTT client: encoding PUBLISH (v5 properties, subscription identifiers,
 * outbound topic aliases, the client's maximum packet size), the QoS 1/2 state machine
 * (PUBACK; PUBREC, PUBREL, PUBCOMP) within the in-flight window (the client's receive maximum),
 * retained messages waiting for that window, and what happens to deliveries in flight when the
 * connection goes.
 */
export class OutboundFlow {
  /** Outbound QoS >= 1 deliveries allowed in flight: the client's receive maximum (v5), capped. */
  window = MAX_INFLIGHT;
  /** v5: the client's maximum packet size (0 = no limit) and topic alias maximum. */
  clientMaxPacket = 0;
  clientAliasMax = 0;
  private outAliases: Map<string, number> | undefined;
  private retainedBacklog: Deque<[RetainedMessage, QoS]> | undefined;

  constructor(private readonly host: OutboundHost) {}

  /** The connection is gone: retained messages waiting for the window are forgotten. */
  reset(): void {
    this.retainedBacklog = undefined;
  }

  /** Requeued deliveries that did not come back before fresh ones (expired, purged...): forget them. */
  dropStaleRequeued(s: Session): void {
    for (const e of s.requeued!.values()) s.deleteOutgoing(e.packetId);
    s.requeued = undefined;
  }

  /**
   * Encodes and writes a PUBLISH; false when it exceeds the client's maximum packet size.
   * v5: properties, subscription identifiers and an outbound topic alias.
   */
  writePublish(
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
    if (this.host.level === 5) {
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
    const buf = encodePublish(this.host.level!, wireTopic, body, qos, packetId, dup, retain, props);
    if (this.clientMaxPacket > 0 && buf.length > this.clientMaxPacket) {
      if (newAlias !== 0) this.outAliases!.delete(topic);
      this.host.logDebug({ size: buf.length, max: this.clientMaxPacket }, 'message larger than the client maximum packet size dropped');
      return false;
    }
    this.host.write(buf);
    return true;
  }

  writeRetained(m: RetainedMessage, qos: QoS, packetId: number, dup: boolean): void {
    this.writePublish(m.topic, m.body, m.properties, qos, packetId, dup, true, undefined, m.expiresAt);
  }

  onPuback(s: Session, packetId: number): void {
    const e = s.outgoing.get(packetId);
    if (e === undefined || e.qos !== 1 || e.state !== OutState.PUBLISH) return; // unknown or late: ignore
    s.deleteOutgoing(packetId);
    const tag = e.tag;
    this.releaseInflight(s);
    if (tag !== 0) this.host.ackDelivery(tag);
  }

  onPubrec(s: Session, packetId: number, reasonCode: number): void {
    const e = s.outgoing.get(packetId);
    if (e === undefined || e.qos !== 2 || e.state !== OutState.PUBLISH) {
      this.host.write(encodeAck(PacketType.PUBREL, this.host.level!, packetId, Reason.PACKET_IDENTIFIER_NOT_FOUND));
      return;
    }
    // The client owns the message now: it leaves the queue; only the PUBREL/PUBCOMP exchange remains.
    if (e.tag !== 0) this.host.ackDelivery(e.tag);
    e.tag = 0;
    if (reasonCode >= 0x80) {
      s.deleteOutgoing(packetId);
      this.releaseInflight(s);
      return;
    }
    e.state = OutState.PUBREL;
    this.host.persistSession(s);
    this.host.write(encodeAck(PacketType.PUBREL, this.host.level!, packetId, Reason.SUCCESS));
  }

  onPubcomp(s: Session, packetId: number): void {
    const e = s.outgoing.get(packetId);
    if (e === undefined || e.state !== OutState.PUBREL) return;
    s.deleteOutgoing(packetId);
    this.host.persistSession(s);
    this.releaseInflight(s);
  }

  /** One QoS >= 1 delivery completed: send waiting retained messages, then let the queues dispatch. */
  releaseInflight(s: Session): void {
    const wasFull = s.inflight >= this.window;
    s.inflight--;
    const backlog = this.retainedBacklog;
    while (backlog !== undefined && backlog.length > 0 && s.inflight < this.window) {
      const [m, qos] = backlog.shift()!;
      this.sendRetained(s, m, qos);
    }
    if (wasFull && s.inflight < this.window) this.host.resumeDeliveries();
  }

  sendRetained(s: Session, m: RetainedMessage, qos: QoS): void {
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

  /** Deliveries in flight become REQUEUED (the core puts them back) or RESEND (retained messages). */
  detachOutgoing(s: Session): void {
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
}
