/**
 * MQTT publish attributes <-> AMQP message properties (DESIGN.md, MQTT mapping):
 * QoS 0 -> delivery_mode 1, QoS >= 1 -> delivery_mode 2 (the QoS itself in header
 * `x-mqtt-publish-qos`, as RabbitMQ does); message expiry (s) <-> expiration (ms); content type <->
 * content_type (header `x-content-type` when longer than a short string: the core moves it);
 * correlation data <-> correlation_id (header `x-correlation-id` when it is not a UTF-8 short
 * string); response topic <-> header `x-reply-to-topic` (in AMQP form); user properties
 * <-> headers.
 */
import { isUtf8 } from 'node:buffer';
import type { IPublishPacket, UserProperties } from 'mqtt-packet';
import { OVERFLOW_HEADERS, REPLY_TO_PREFIX, scalarText, setHeader, setOwn, type FieldTable, type FieldValue, type MessageProperties } from '../../src/core/index.js';
import { Header, type QoS } from './constants.js';
import { routingKeyToTopic, topicToRoutingKey } from './topic.js';

export type PublishProperties = NonNullable<IPublishPacket['properties']>;

function frozenProps(qos: QoS): MessageProperties {
  return Object.freeze({
    deliveryMode: qos === 0 ? 1 : 2,
    headers: Object.freeze({ [Header.PUBLISH_QOS]: qos }) as FieldTable,
  });
}

/** Shared by every publish without v5 properties or retain flag: no allocation per message. */
const PLAIN: readonly MessageProperties[] = [frozenProps(0), frozenProps(1), frozenProps(2)];

/** The AMQP properties of an MQTT publish. */
export function toAmqpProperties(qos: QoS, retain: boolean, props: PublishProperties | undefined): MessageProperties {
  if (props === undefined && !retain) return PLAIN[qos]!;
  const headers: FieldTable = {};
  const out: MessageProperties = { deliveryMode: qos === 0 ? 1 : 2, headers };
  if (props !== undefined) {
    const user = props.userProperties;
    if (user !== undefined) {
      for (const k of Object.keys(user)) {
        const v = user[k]!;
        setHeader(headers, k, Array.isArray(v) ? v.slice() : v);
      }
    }
    if (props.contentType !== undefined) out.contentType = props.contentType;
    if (props.messageExpiryInterval !== undefined) out.expiration = String(Math.min(props.messageExpiryInterval * 1000, 9_999_999_999));
    const cd = props.correlationData;
    if (cd !== undefined) {
      if (cd.length <= 255 && isUtf8(cd)) out.correlationId = cd.toString('utf8');
      else headers[Header.CORRELATION_ID] = Buffer.from(cd);
    }
    if (props.responseTopic !== undefined) headers[Header.REPLY_TO_TOPIC] = topicToRoutingKey(props.responseTopic);
    if (props.payloadFormatIndicator === true) headers[Header.PAYLOAD_FORMAT] = 1;
  }
  if (retain) headers[Header.RETAIN] = true;
  headers[Header.PUBLISH_QOS] = qos;
  return out;
}

/** The QoS a message was published with: MQTT's header, else delivery_mode 2 -> 1, otherwise 0. */
export function publishQosOf(p: MessageProperties): QoS {
  const h = p.headers?.[Header.PUBLISH_QOS];
  if (typeof h === 'number' && (h === 0 || h === 1 || h === 2)) return h;
  return p.deliveryMode === 2 ? 1 : 0;
}

/** Whether the message was published with RETAIN (for v5 retain-as-published subscriptions). */
export function wasRetained(p: MessageProperties): boolean {
  return p.headers?.[Header.RETAIN] === true;
}

const OWN_HEADERS: ReadonlySet<string> = new Set(Object.values(Header));
/** Where the core keeps a content type too long for AMQP's content_type (MQTT allows 65535 bytes). */
const CONTENT_TYPE_HEADER = OVERFLOW_HEADERS.contentType;

/** MQTT 5 strings must not contain U+0000 [MQTT-1.5.4-2]: a client may drop the connection. */
function hasNul(s: string): boolean {
  return s.indexOf('\u0000') !== -1;
}

function userValue(v: FieldValue): string | string[] | undefined {
  if (Array.isArray(v)) return v.every((x) => typeof x === 'string' && !hasNul(x)) ? (v as string[]) : undefined;
  const s = scalarText(v);
  return s === undefined || hasNul(s) ? undefined : s;
}

/**
 * The v5 PUBLISH properties of a message; undefined when it has none. `expiresAt` is the absolute
 * expiry in the queue (0 = none): the client gets the time left [MQTT-3.3.2-6].
 */
export function toMqttProperties(p: MessageProperties, expiresAt: number, now: number): PublishProperties | undefined {
  let out: PublishProperties | undefined;
  if (p.contentType !== undefined && !hasNul(p.contentType)) (out ??= {}).contentType = p.contentType;
  if (p.correlationId !== undefined) (out ??= {}).correlationData = Buffer.from(p.correlationId, 'utf8');
  if (expiresAt > 0) (out ??= {}).messageExpiryInterval = Math.max(1, Math.ceil((expiresAt - now) / 1000));
  else if (p.expiration !== undefined) {
    const ms = Number(p.expiration);
    if (Number.isFinite(ms)) (out ??= {}).messageExpiryInterval = Math.max(1, Math.ceil(ms / 1000));
  }
  const h = p.headers;
  if (h !== undefined) {
    let user: UserProperties | undefined;
    for (const k of Object.keys(h)) {
      const v = h[k]!;
      if (k === CONTENT_TYPE_HEADER && p.contentType === undefined && typeof v === 'string') {
        if (!hasNul(v)) (out ??= {}).contentType = v;
        continue;
      }
      if (OWN_HEADERS.has(k)) {
        if (k === Header.REPLY_TO_TOPIC && typeof v === 'string' && v.length > 0 && !hasNul(v)) (out ??= {}).responseTopic = routingKeyToTopic(v);
        else if (k === Header.CORRELATION_ID && p.correlationId === undefined) {
          if (Buffer.isBuffer(v)) (out ??= {}).correlationData = v;
          else if (typeof v === 'string') (out ??= {}).correlationData = Buffer.from(v, 'utf8');
        } else if (k === Header.PAYLOAD_FORMAT && v === 1) (out ??= {}).payloadFormatIndicator = true;
        continue;
      }
      const s = userValue(v);
      if (s === undefined || hasNul(k)) continue;
      user ??= {};
      setOwn(user, k, s);
    }
    if (user !== undefined) (out ??= {}).userProperties = user;
  }
  // A direct reply-to requester's address: the responder publishes its reply to this topic.
  const rt = p.replyTo;
  if (rt !== undefined && rt.startsWith(REPLY_TO_PREFIX) && out?.responseTopic === undefined) (out ??= {}).responseTopic = routingKeyToTopic(rt);
  return out;
}
