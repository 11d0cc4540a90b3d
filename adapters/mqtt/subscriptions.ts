import type { ISubscribePacket, IUnsubscribePacket, Packet } from 'mqtt-packet';
import { BrokerError, SETTLED, type CoreChannel, type CoreConnection, type FieldTable } from '../../src/core/index.js';
import type { Logger } from '../../src/logger.js';
import { MqttError, checkDecodedString } from './codec.js';
import { MAX_SUBSCRIPTIONS, Reason, SUBACK_FAILURE, TOPIC_EXCHANGE, type ProtocolLevel, type QoS } from './constants.js';
import { mqttReasonFor } from './errors.js';
import type { MqttAdapter } from './index.js';
import type { OutboundFlow } from './outbound.js';
import type { RetainedMessage } from './retained.js';
import { NO_ARGS, subscriptionArgs, type Session, type Subscription } from './session.js';
import { parseFilter, printable, type ParsedFilter } from './topic.js';

/** What SUBSCRIBE and UNSUBSCRIBE handling needs from the connection. */
export interface SubscribeHost {
  readonly session: Session | undefined;
  readonly level: ProtocolLevel | undefined;
  readonly clientId: string;
  readonly user: string;
  readonly vhost: string;
  readonly adapter: MqttAdapter;
  readonly core: CoreConnection | undefined;
  readonly isRunning: boolean;
  readonly log: Logger;
  readonly out: OutboundFlow;
  channel(): CoreChannel;
  send(p: Packet): void;
  /** Consumes the session queue (again, when the acknowledgement mode changes). */
  ensureOwnConsumer(): void;
  ensureSharedConsumer(queue: string): void;
  /** Consumes a stream for a `$stream/` subscription (again, from the new offset, when replaced). */
  ensureStreamConsumer(stream: string, args: FieldTable): void;
  /** Stops consuming a shared group's queue; true if it was consumed. */
  stopShared(queue: string): boolean;
  /** A definition could not be written: the connection ends. */
  definitionsFailed(e: unknown): void;
}

/*
 * SUBSCRIBE and UNSUBSCRIBE: each filter of a session is one binding of its queue to amq.topic
 * (its options in the binding arguments), or membership of a shared group's queue; retained
 * messages matching a new subscription are replayed after SUBACK; a persistent session's
 * SUBACK/UNSUBACK waits until its queue and bindings are on disk.
 */

export function onSubscribe(h: SubscribeHost, p: ISubscribePacket, raw: Buffer): void {
  const s = h.session!;
  const v5 = h.level === 5;
  let subId = 0;
  if (v5 && p.properties?.subscriptionIdentifier !== undefined) {
    const id = p.properties.subscriptionIdentifier as unknown;
    if (typeof id !== 'number' || id < 1) throw new MqttError(Reason.PROTOCOL_ERROR, 'invalid subscription identifier');
    subId = id;
  }
  if (p.subscriptions.length === 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'SUBSCRIBE without topic filters'); // [MQTT-3.8.3-3]
  const granted: number[] = [];
  const replay: [RetainedMessage, QoS][] = [];
  let defs = SETTLED;
  for (const req of p.subscriptions) {
    checkDecodedString(req.topic, raw, 'topic filter');
    const stream = req.topic.startsWith(STREAM_PREFIX) ? parseStreamFilter(req.topic) : undefined;
    const parsed = stream === undefined ? parseFilter(req.topic) : stream.parsed;
    if (typeof parsed === 'string') {
      h.log.warn({ clientId: h.clientId, filter: printable(req.topic) }, `subscription refused: ${parsed}`);
      granted.push(v5 ? Reason.TOPIC_FILTER_INVALID : SUBACK_FAILURE);
      continue;
    }
    const noLocal = req.nl ?? false;
    if (parsed.group !== undefined && noLocal) throw new MqttError(Reason.PROTOCOL_ERROR, 'no local on a shared subscription'); // [MQTT-3.8.3-4]
    const existing = s.subscriptions.get(req.topic);
    if (existing === undefined && s.subscriptions.size >= MAX_SUBSCRIPTIONS) {
      h.log.warn({ clientId: h.clientId }, `subscription refused: more than ${MAX_SUBSCRIPTIONS} subscriptions`);
      granted.push(v5 ? Reason.QUOTA_EXCEEDED : SUBACK_FAILURE);
      continue;
    }
    const qos = req.qos;
    const rap = req.rap ?? false;
    const rh = req.rh ?? 0;
    try {
      const sub =
        stream !== undefined
          ? subscribeStream(h, s, parsed, stream.name, qos, subId, p.properties?.userProperties?.['stream-offset'])
          : parsed.group === undefined
            ? subscribeOwn(h, s, parsed, qos, noLocal, rap, rh, subId, existing)
            : subscribeShared(h, s, parsed, qos, rap, rh, subId, existing);
      defs = definitionsTouched(h, defs);
      granted.push(sub.qos);
      if (parsed.group === undefined && (rh === 0 || (rh === 1 && existing === undefined))) {
        for (const m of h.adapter.retained.match(h.vhost, parsed.filter)) replay.push([m, Math.min(m.qos, qos) as QoS]);
      }
    } catch (e) {
      if (!(e instanceof BrokerError)) throw e;
      defs = definitionsTouched(h, defs);
      h.log.warn({ user: h.user, vhost: h.vhost, clientId: h.clientId, filter: printable(req.topic) }, `subscription refused: ${e.message}`);
      granted.push(v5 ? mqttReasonFor(e) : SUBACK_FAILURE);
    }
  }
  const messageId = p.messageId ?? 0;
  if (defs === SETTLED) {
    h.send({ cmd: 'suback', messageId, granted });
    for (const [m, qos] of replay) h.out.sendRetained(s, m, qos);
    return;
  }
  // A persistent session's queue and bindings are confirmed once they are on disk.
  defs.then(
    () => {
      if (!h.isRunning) return;
      h.send({ cmd: 'suback', messageId, granted });
      for (const [m, qos] of replay) h.out.sendRetained(s, m, qos);
    },
    (e: unknown) => h.definitionsFailed(e),
  );
}

/**
 * The promise to wait for before confirming, given the one so far and the last definition call
 * on the channel: SETTLED as long as only transient objects were touched.
 */
function definitionsTouched(h: SubscribeHost, prev: Promise<void>): Promise<void> {
  const d = h.channel().definitionsSettled();
  return d === SETTLED ? prev : d;
}

function ensureQueue(h: SubscribeHost, s: Session): void {
  if (s.hasQueue && h.adapter.queueExists(s.vhost, s.queue)) return;
  const ch = h.channel();
  if (h.adapter.queueExists(s.vhost, s.queue)) ch.declareQueue(s.queue, {}, true);
  else if (s.expiryInterval > 0) ch.declareQueue(s.queue, { durable: true, arguments: NO_ARGS });
  else ch.declareQueue(s.queue, { exclusive: true, arguments: NO_ARGS });
  s.hasQueue = true;
}

function subscribeOwn(h: SubscribeHost, s: Session, parsed: ParsedFilter, qos: QoS, noLocal: boolean, rap: boolean, rh: number, id: number, existing: Subscription | undefined): Subscription {
  ensureQueue(h, s);
  const ch = h.channel();
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
    args,
  };
  s.setSubscription(sub);
  if (existing !== undefined) unbindIfUnused(h, s, existing);
  h.ensureOwnConsumer();
  return sub;
}

/** Removes a replaced or unsubscribed binding unless another subscription still uses it. */
function unbindIfUnused(h: SubscribeHost, s: Session, old: Subscription): void {
  for (const o of s.subscriptions.values()) {
    if (o.parsed.group === undefined && o.parsed.bindingKey === old.parsed.bindingKey && sameArgs(o, old)) return;
  }
  h.channel().unbindQueue(s.queue, TOPIC_EXCHANGE, old.parsed.bindingKey, old.args);
}

/** `$stream/<name>/<filter>`: replays stream `<name>` from an offset, then follows it live. */
const STREAM_PREFIX = '$stream/';
/** The group of a stream subscription: it delivers from its own queue, as a shared one does. */
const STREAM_GROUP = '$stream';

function parseStreamFilter(raw: string): { name: string; parsed: ParsedFilter | string } {
  const slash = raw.indexOf('/', STREAM_PREFIX.length);
  const name = slash < 0 ? '' : raw.slice(STREAM_PREFIX.length, slash);
  if (name.length === 0 || /[+#]/.test(name)) return { name, parsed: `invalid stream name in '${printable(raw)}'` };
  const inner = parseFilter(raw.slice(slash + 1));
  if (typeof inner === 'string' || inner.group !== undefined) return { name, parsed: typeof inner === 'string' ? inner : `a shared filter in '${printable(raw)}'` };
  return { name, parsed: { ...inner, raw, group: STREAM_GROUP } };
}

/**
 * A stream subscription: the stream is consumed from the v5 user property `stream-offset`
 * (first, last, next, an offset, a timestamp in seconds as `timestamp=<s>`, an interval such as
 * 1h; default next); messages whose topic matches the filter are delivered. One per stream and session.
 */
function subscribeStream(h: SubscribeHost, s: Session, parsed: ParsedFilter, name: string, qos: QoS, id: number, offset: string | string[] | undefined): Subscription {
  const q = h.core?.vhost.queues.get(name);
  if (q === undefined || q.type.name !== 'stream') throw BrokerError.notFound(`no stream '${name}' in vhost '${h.vhost}'`);
  const sub: Subscription = {
    parsed,
    qos,
    noLocal: false,
    retainAsPublished: false,
    retainHandling: 0,
    id,
    queue: name,
    args: NO_ARGS,
  };
  const spec = Array.isArray(offset) ? offset[0] : offset;
  s.setSubscription(sub);
  h.ensureStreamConsumer(name, { 'x-stream-offset': spec ?? 'next' });
  return sub;
}

function subscribeShared(h: SubscribeHost, s: Session, parsed: ParsedFilter, qos: QoS, rap: boolean, rh: number, id: number, existing: Subscription | undefined): Subscription {
  const queue = existing?.queue ?? h.adapter.joinShared(s, parsed, h.channel());
  const sub: Subscription = {
    parsed,
    qos,
    noLocal: false,
    retainAsPublished: rap,
    retainHandling: rh,
    id,
    queue,
    args: NO_ARGS,
  };
  s.setSubscription(sub);
  h.ensureSharedConsumer(queue);
  return sub;
}

export function onUnsubscribe(h: SubscribeHost, p: IUnsubscribePacket, raw: Buffer): void {
  const s = h.session!;
  if (p.unsubscriptions.length === 0) throw new MqttError(Reason.PROTOCOL_ERROR, 'UNSUBSCRIBE without topic filters'); // [MQTT-3.10.3-2]
  const codes: number[] = [];
  let defs = SETTLED;
  for (const f of p.unsubscriptions) {
    checkDecodedString(f, raw, 'topic filter');
    const sub = s.subscriptions.get(f);
    if (sub === undefined) {
      codes.push(typeof parseFilter(f) === 'string' ? Reason.TOPIC_FILTER_INVALID : Reason.NO_SUBSCRIPTION_EXISTED);
      continue;
    }
    try {
      s.deleteSubscription(f);
      if (sub.parsed.group === undefined) {
        unbindIfUnused(h, s, sub);
        defs = definitionsTouched(h, defs);
      } else {
        h.stopShared(sub.queue);
        h.adapter.leaveShared(s, sub.parsed);
        // The last member out deletes the group's durable queue.
        defs = h.core!.core.persistence.definitionsSettled();
      }
      codes.push(Reason.SUCCESS);
    } catch (e) {
      if (!(e instanceof BrokerError)) throw e;
      h.log.warn({ clientId: h.clientId, filter: printable(f) }, `unsubscribe failed: ${e.message}`);
      codes.push(mqttReasonFor(e));
    }
  }
  const unsuback = { cmd: 'unsuback', messageId: p.messageId ?? 0, granted: h.level === 5 ? codes : [] } as const;
  if (defs === SETTLED) h.send(unsuback);
  else {
    defs.then(
      () => {
        if (h.isRunning) h.send(unsuback);
      },
      (e: unknown) => h.definitionsFailed(e),
    );
  }
}

function sameArgs(a: Subscription, b: Subscription): boolean {
  return a.qos === b.qos && a.noLocal === b.noLocal && a.retainAsPublished === b.retainAsPublished && a.retainHandling === b.retainHandling && a.id === b.id;
}
