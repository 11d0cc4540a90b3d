import { createHash } from 'node:crypto';
import {
  Decimal,
  getOwn,
  setOwn,
  oldestUnackedAge,
  StreamQueue,
  type Binding,
  type CoreChannel,
  type CoreConnection,
  type Exchange,
  type FieldTable,
  type FieldValue,
  type MessageProperties,
  type Policy,
  type Queue,
  type User,
  type VHost,
} from '../core/index.js';
import { HttpError } from './http-util.js';
import type { Row } from './listing.js';
import { C, CH, G, Q, X, type Sampler } from './sampler.js';

type Consumer = CoreChannel['consumers'] extends ReadonlyMap<string, infer T> ? T : never;

/** What the formatters need besides the object itself. */
export interface FormatContext {
  readonly node: string;
  /** The node a queue lives on (its home in a cluster; this node otherwise). */
  queueNode?(vhost: string, queue: string): string;
  readonly sampler: Sampler;
  readonly core: { readonly policies: { match(vhost: string, kind: 'queue' | 'exchange', name: string): Policy | undefined } };
  /** Vhost metadata kept by management (description, tags, default queue type). */
  vhostMeta(name: string): VhostMeta;
  connectionName(c: CoreConnection): string;
}

export interface VhostMeta {
  description: string;
  tags: string[];
  defaultQueueType: string;
}

const details = (rate: number | undefined): { rate: number } => ({ rate: rate ?? 0 });

// ---- field tables ---------------------------------------------------------------------------------

export function fieldValueToJson(v: FieldValue): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Date) return Math.floor(v.getTime() / 1000);
  if (v instanceof Decimal) return v.value / 10 ** v.scale;
  if (Array.isArray(v)) return v.map(fieldValueToJson);
  return fieldTableToJson(v);
}

export function fieldTableToJson(t: FieldTable | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!t) return out;
  for (const [k, v] of Object.entries(t)) setOwn(out, k, fieldValueToJson(v));
  return out;
}

export function jsonToFieldValue(v: unknown, path: string): FieldValue {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw HttpError.badRequest(`${path}: not a finite number`);
    return v;
  }
  if (Array.isArray(v)) return v.map((x, i) => jsonToFieldValue(x, `${path}[${i}]`));
  if (typeof v === 'object') return jsonToFieldTable(v as Record<string, unknown>, path);
  throw HttpError.badRequest(`${path}: unsupported value`);
}

export function jsonToFieldTable(o: Record<string, unknown>, path = 'arguments'): FieldTable {
  const out: FieldTable = {};
  // own keys only; a key '__proto__' becomes an ordinary key of the table
  for (const [k, v] of Object.entries(o)) setOwn(out, k, jsonToFieldValue(v, `${path}.${k}`));
  return out;
}

// ---- message properties ---------------------------------------------------------------------------

/** `octet` and `int` are the AMQP octet and timestamp (a safe integer here): values outside cannot be delivered. */
const PROPS: ReadonlyArray<[keyof MessageProperties, string, 'string' | 'octet' | 'int']> = [
  ['contentType', 'content_type', 'string'],
  ['contentEncoding', 'content_encoding', 'string'],
  ['deliveryMode', 'delivery_mode', 'octet'],
  ['priority', 'priority', 'octet'],
  ['correlationId', 'correlation_id', 'string'],
  ['replyTo', 'reply_to', 'string'],
  ['expiration', 'expiration', 'string'],
  ['messageId', 'message_id', 'string'],
  ['timestamp', 'timestamp', 'int'],
  ['type', 'type', 'string'],
  ['userId', 'user_id', 'string'],
  ['appId', 'app_id', 'string'],
  ['clusterId', 'cluster_id', 'string'],
];

export function propertiesToJson(p: MessageProperties): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, json] of PROPS) {
    const v = p[key];
    if (v !== undefined) out[json] = v;
  }
  if (p.headers !== undefined) out['headers'] = fieldTableToJson(p.headers);
  return out;
}

export function jsonToProperties(o: Record<string, unknown>): MessageProperties {
  const p: MessageProperties = {};
  const w = p as Record<string, unknown>;
  for (const [key, json] of PROPS) {
    const v = getOwn(o, json);
    if (v === undefined || v === null || v === '') continue;
    const kind = kindOf(json);
    if (kind !== 'string') {
      const n = typeof v === 'string' ? Number(v) : v;
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw HttpError.badRequest(`properties.${json} must be a non-negative integer`);
      if (kind === 'octet' && n > 255) throw HttpError.badRequest(`properties.${json} must be at most 255`);
      w[key] = n;
    } else {
      if (typeof v !== 'string' && typeof v !== 'number') throw HttpError.badRequest(`properties.${json} must be a string`);
      w[key] = String(v);
    }
  }
  const h = getOwn(o, 'headers');
  if (h !== undefined && h !== null) {
    if (typeof h !== 'object' || Array.isArray(h)) throw HttpError.badRequest('properties.headers must be a JSON object');
    p.headers = jsonToFieldTable(h as Record<string, unknown>, 'properties.headers');
  }
  return p;
}

function kindOf(json: string): 'string' | 'octet' | 'int' {
  return PROPS.find(([, j]) => j === json)?.[2] ?? 'string';
}

// ---- objects --------------------------------------------------------------------------------------

function policyFields(ctx: FormatContext, vhost: string, kind: 'queue' | 'exchange', name: string): Row {
  const p = ctx.core.policies.match(vhost, kind, name);
  return p ? { policy: p.name, effective_policy_definition: p.definition } : { policy: null, effective_policy_definition: {} };
}

export function formatQueue(ctx: FormatContext, q: Queue, vhost: string, owner?: CoreConnection): Row {
  const r = ctx.sampler.rates(q);
  const s = q.stats;
  const row: Row = {
    name: q.name,
    vhost,
    durable: q.durable,
    auto_delete: q.autoDelete,
    exclusive: q.exclusive,
    arguments: fieldTableToJson(q.args),
    node: ctx.queueNode?.(vhost, q.name) ?? ctx.node,
    state: 'running',
    type: q.type.name,
    consumers: q.consumerCount,
    oldest_unacked_age: oldestUnackedAge(q),
    messages_delayed: q.delayedCount,
    consumer_capacity: q.consumerCount > 0 ? 1 : 0,
    consumer_utilisation: q.consumerCount > 0 ? 1 : null,
    exclusive_consumer_tag: q.consumers.find((c) => c.exclusive)?.tag ?? null,
    messages: q.readyCount + q.unackedCount,
    messages_details: details(r[Q.messages]),
    messages_ready: q.readyCount,
    messages_ready_details: details(r[Q.ready]),
    messages_unacknowledged: q.unackedCount,
    messages_unacknowledged_details: details(r[Q.unacked]),
    message_bytes: q.readyBytes,
    message_bytes_ready: q.readyBytes,
    message_bytes_unacknowledged: 0,
    messages_paged_out: q.pagedOutCount,
    messages_ready_ram: q.readyCount - q.pagedCount,
    messages_off_heap: q.offHeapCount,
    ...policyFields(ctx, vhost, 'queue', q.name),
    operator_policy: null,
    message_stats: {
      publish: s.published,
      publish_details: details(r[Q.publish]),
      deliver: s.delivered,
      deliver_details: details(r[Q.deliver]),
      deliver_no_ack: 0,
      deliver_no_ack_details: details(0),
      get: s.got,
      get_details: details(r[Q.get]),
      get_no_ack: 0,
      get_no_ack_details: details(0),
      deliver_get: s.delivered + s.got,
      deliver_get_details: details((r[Q.deliver] ?? 0) + (r[Q.get] ?? 0)),
      ack: s.acked,
      ack_details: details(r[Q.ack]),
      redeliver: s.redelivered,
      redeliver_details: details(r[Q.redeliver]),
    },
  };
  if (owner) row['owner_pid_details'] = { name: ctx.connectionName(owner), peer_host: owner.info.peer.address, peer_port: owner.info.peer.port };
  if (q instanceof StreamQueue) Object.assign(row, streamFields(q));
  return row;
}

/** A stream's log: its offsets (last = -1 while empty), bytes on disk and segment files. */
function streamFields(q: StreamQueue): Row {
  const log = q.log;
  return { first_offset: log.first, last_offset: log.end - 1, committed_offset: log.end, disk_size: log.bytes, segments: log.segments };
}

export function formatExchange(ctx: FormatContext, x: Exchange): Row {
  const r = ctx.sampler.rates(x);
  return {
    name: x.name,
    vhost: x.vhost,
    type: x.type,
    durable: x.durable,
    auto_delete: x.autoDelete,
    internal: x.internal,
    arguments: fieldTableToJson(x.args),
    user_who_performed_action: '',
    ...policyFields(ctx, x.vhost, 'exchange', x.name),
    messages_delayed: x.delayed?.count ?? 0,
    message_stats: {
      publish_in: x.stats.publishIn,
      publish_in_details: details(r[X.publishIn]),
      publish_out: x.stats.publishOut,
      publish_out_details: details(r[X.publishOut]),
    },
  };
}

/** RabbitMQ's URL-form quoting used in binding property keys: `~` separates key and arguments hash. */
function quoteBinding(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const ch = String.fromCharCode(b);
    if (/[A-Za-z0-9_.\-]/.test(ch)) out += ch;
    else if (ch === ' ') out += '+';
    else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** JSON with object keys sorted at every level, so equal tables give equal text. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

export function argsHash(args: Record<string, unknown>): string {
  return createHash('sha1').update(canonical(args)).digest().subarray(0, 4).toString('base64url');
}

export function propertiesKey(routingKey: string, args: FieldTable): string {
  const json = fieldTableToJson(args);
  if (Object.keys(json).length === 0) return routingKey === '' ? '~' : quoteBinding(routingKey);
  return `${quoteBinding(routingKey)}~${quoteBinding(argsHash(json))}`;
}

export interface BindingRow extends Row {
  source: string;
  vhost: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments: Record<string, unknown>;
  properties_key: string;
}

export function formatBinding(b: Binding, vhost: string): BindingRow {
  const isQueue = !('router' in b.destination);
  return {
    source: b.source.name,
    vhost,
    destination: b.destination.name,
    destination_type: isQueue ? 'queue' : 'exchange',
    routing_key: b.routingKey,
    arguments: fieldTableToJson(b.args),
    properties_key: propertiesKey(b.routingKey, b.args),
  };
}

/** The default exchange's implicit binding to every queue, as RabbitMQ lists it. */
export function defaultBinding(q: Queue, vhost: string): BindingRow {
  return {
    source: '',
    vhost,
    destination: q.name,
    destination_type: 'queue',
    routing_key: q.name,
    arguments: {},
    properties_key: quoteBinding(q.name),
  };
}

export function formatConnection(ctx: FormatContext, c: CoreConnection, ports: { host: string; port: number | null }): Row {
  const r = ctx.sampler.connectionRates(c);
  const props = fieldTableToJson(c.info.clientProperties);
  const row: Row = {
    name: ctx.connectionName(c),
    node: ctx.node,
    type: 'network',
    protocol: c.info.protocol,
    user: c.user,
    user_who_performed_action: c.user,
    vhost: c.vhost.name,
    host: ports.host,
    port: ports.port,
    peer_host: c.info.peer.address,
    peer_port: c.info.peer.port,
    ssl: false,
    auth_mechanism: 'PLAIN',
    channels: c.channels.length,
    client_properties: props,
    connected_at: c.connectedAt,
    state: 'running',
    recv_oct: c.traffic.recvOct,
    recv_oct_details: details(r[C.recvOct]),
    send_oct: c.traffic.sendOct,
    send_oct_details: details(r[C.sendOct]),
    recv_cnt: c.traffic.recvCnt,
    send_cnt: c.traffic.sendCnt,
    messages_dropped: c.traffic.dropped,
  };
  if (typeof props['connection_name'] === 'string') row['user_provided_name'] = props['connection_name'];
  if (c.info.clientId !== undefined) row['client_id'] = c.info.clientId;
  return row;
}

export function channelName(ctx: FormatContext, ch: CoreChannel): string {
  return `${ctx.connectionName(ch.connection)} (${ch.number})`;
}

export function formatChannel(ctx: FormatContext, ch: CoreChannel): Row {
  const r = ctx.sampler.rates(ch);
  const c = ch.connection;
  const s = ch.stats;
  return {
    name: channelName(ctx, ch),
    node: ctx.node,
    number: ch.number,
    user: c.user,
    user_who_performed_action: c.user,
    vhost: c.vhost.name,
    connection_details: { name: ctx.connectionName(c), peer_host: c.info.peer.address, peer_port: c.info.peer.port },
    consumer_count: ch.consumers.size,
    messages_unacknowledged: ch.unackedCount,
    messages_unconfirmed: 0,
    messages_uncommitted: 0,
    acks_uncommitted: 0,
    prefetch_count: ch.prefetchCount,
    global_prefetch_count: 0,
    confirm: false,
    transactional: false,
    state: 'running',
    message_stats: {
      publish: s.published,
      publish_details: details(r[CH.publish]),
      deliver: s.delivered,
      deliver_details: details(r[CH.deliver]),
      get: s.got,
      get_details: details(r[CH.get]),
      deliver_get: s.delivered + s.got,
      deliver_get_details: details((r[CH.deliver] ?? 0) + (r[CH.get] ?? 0)),
      ack: s.acked,
      ack_details: details(r[CH.ack]),
      redeliver: s.redelivered,
      redeliver_details: details(r[CH.redeliver]),
      return_unroutable: s.returned,
      return_unroutable_details: details(r[CH.returned]),
    },
  };
}

export function formatConsumer(ctx: FormatContext, ch: CoreChannel, c: Consumer): Row {
  const conn = ch.connection;
  return {
    consumer_tag: c.tag,
    channel_details: {
      name: channelName(ctx, ch),
      number: ch.number,
      connection_name: ctx.connectionName(conn),
      peer_host: conn.info.peer.address,
      peer_port: conn.info.peer.port,
      user: conn.user,
      node: ctx.node,
    },
    queue: { name: c.queue.name, vhost: conn.vhost.name },
    ack_required: !c.noAck,
    exclusive: c.exclusive,
    prefetch_count: c.prefetch,
    priority: c.priority,
    active: true,
    activity_status: 'up',
    arguments: fieldTableToJson(c.args),
    ...streamConsumerFields(c),
  };
}

/** A stream consumer's place: the next offset it reads and the last one it was sent (-1: none). */
function streamConsumerFields(c: Consumer): Row {
  const q = c.queue;
  if (!(q instanceof StreamQueue)) return {};
  const at = q.consumerOffset(c);
  return at === undefined ? {} : { stream_offset: at.next, last_delivered_offset: at.last, offset_lag: Math.max(0, q.log.end - at.next) };
}

export function formatVhost(ctx: FormatContext, v: VHost): Row {
  const r = ctx.sampler.vhostRates(v.name);
  const meta = ctx.vhostMeta(v.name);
  let ready = 0;
  let unacked = 0;
  let publish = 0;
  let deliver = 0;
  let got = 0;
  let ack = 0;
  let redeliver = 0;
  for (const q of v.queues.values()) {
    ready += q.readyCount;
    unacked += q.unackedCount;
    deliver += q.stats.delivered;
    got += q.stats.got;
    ack += q.stats.acked;
    redeliver += q.stats.redelivered;
  }
  for (const x of v.exchanges.values()) publish += x.stats.publishIn;
  return {
    name: v.name,
    description: meta.description,
    tags: meta.tags,
    default_queue_type: meta.defaultQueueType,
    metadata: { description: meta.description, tags: meta.tags, default_queue_type: meta.defaultQueueType },
    tracing: false,
    cluster_state: { [ctx.node]: 'running' },
    messages: ready + unacked,
    messages_details: details(r[G.messages]),
    messages_ready: ready,
    messages_ready_details: details(r[G.ready]),
    messages_unacknowledged: unacked,
    messages_unacknowledged_details: details(r[G.unacked]),
    message_stats: {
      publish,
      publish_details: details(r[G.publish]),
      deliver_get: deliver + got,
      deliver_get_details: details((r[G.deliver] ?? 0) + (r[G.get] ?? 0)),
      ack,
      ack_details: details(r[G.ack]),
      redeliver,
      redeliver_details: details(r[G.redeliver]),
    },
    recv_oct_details: details(r[G.recvOct]),
    send_oct_details: details(r[G.sendOct]),
  };
}

export function formatUser(u: User): Row {
  return { name: u.name, password_hash: u.passwordHash, hashing_algorithm: u.hashingAlgorithm, tags: u.tags, limits: {} };
}

export function formatPolicy(p: Policy): Row {
  return { vhost: p.vhost, name: p.name, pattern: p.pattern, 'apply-to': p.applyTo, definition: p.definition, priority: p.priority };
}
