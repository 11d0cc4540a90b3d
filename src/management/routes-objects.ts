import { assess, flagReplicated, replicaDetails } from './replication.js';
import { TextDecoder } from 'node:util';
import { CoreChannel, StreamQueue, type CoreConnection, type Exchange, type Queue, type User, type VHost } from '../core/index.js';
import { exchangeParam, type ManagementApi } from './api.js';
import {
  defaultBinding,
  formatBinding,
  formatConsumer,
  formatExchange,
  formatQueue,
  jsonToFieldTable,
  jsonToProperties,
  propertiesKey,
  propertiesToJson,
  type BindingRow,
} from './format.js';
import { historyQuery, withExchangeHistory, withQueueHistory, type HistoryQuery } from './history.js';
import { HttpError, boolField, intField, objField, strField } from './http-util.js';
import { applyListQuery, projectOne, type Row } from './listing.js';
import type { ApiReply, ApiRequest } from './router.js';
import { gatherQueues } from './cluster-wide.js';

const BINDING_SORT = ['vhost', 'source', 'destination', 'destination_type', 'routing_key'] as const;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function exchangeOf(v: VHost, name: string): Exchange {
  const x = v.exchanges.get(name);
  if (!x) throw HttpError.notFound();
  return x;
}

function queueOf(v: VHost, name: string): Queue {
  const q = v.queues.get(name);
  if (!q) throw HttpError.notFound();
  return q;
}

/** Every binding of a vhost, with the default exchange's implicit ones first for each queue. */
function vhostBindings(v: VHost): BindingRow[] {
  const out: BindingRow[] = [];
  for (const q of v.queues.values()) out.push(defaultBinding(q, v.name));
  for (const x of v.exchanges.values()) for (const b of x.bindings.values()) out.push(formatBinding(b, v.name));
  return out;
}

function decodePayload(body: Record<string, unknown>): Buffer {
  const payload = strField(body, 'payload', '');
  const enc = strField(body, 'payload_encoding', 'string');
  if (enc === 'string') return Buffer.from(payload, 'utf8');
  if (enc === 'base64') {
    if (!/^[A-Za-z0-9+/=\s]*$/.test(payload)) throw HttpError.badRequest('payload is not valid base64');
    return Buffer.from(payload, 'base64');
  }
  throw HttpError.badRequest(`payload_encoding must be 'string' or 'base64', got '${enc}'`);
}

function encodePayload(body: Buffer, encoding: string, truncate: number | undefined): { payload: string; payload_encoding: string } {
  const b = truncate !== undefined && body.length > truncate ? body.subarray(0, truncate) : body;
  if (encoding === 'auto') {
    try {
      return { payload: utf8.decode(b), payload_encoding: 'string' };
    } catch {
      return { payload: b.toString('base64'), payload_encoding: 'base64' };
    }
  }
  return { payload: b.toString('base64'), payload_encoding: 'base64' };
}

const ACK_MODES = new Set(['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'reject_requeue_false']);

export function registerObjectRoutes(api: ManagementApi): void {
  const r = api.router;
  const ownerOf = (q: Queue): CoreConnection | undefined => {
    if (!q.exclusive) return undefined;
    for (const c of api.core.connections) if (c.id === q.owner) return c;
    return undefined;
  };
  const queueRow = (q: Queue, v: VHost, hq?: HistoryQuery): Row => {
    const row = formatQueue(api, q, v.name, ownerOf(q));
    return hq ? withQueueHistory(row, api.sampler, q, hq) : row;
  };
  const historyOf = (req: ApiRequest): HistoryQuery => historyQuery(req.query, api.sampler.intervalMs);

  // ---- exchanges ---------------------------------------------------------------------------

  const listExchanges = (req: ApiRequest): Row[] => {
    const out: Row[] = [];
    const hq = historyOf(req);
    for (const v of api.vhostsFor(req.user, req.params['vhost'])) for (const x of v.exchanges.values()) out.push(withExchangeHistory(formatExchange(api, x), api.sampler, x, hq));
    return out;
  };
  r.on('GET', '/api/exchanges', (req) => ({ status: 200, body: applyListQuery(listExchanges(req), req.query) }));
  r.on('GET', '/api/exchanges/:vhost', (req) => ({ status: 200, body: applyListQuery(listExchanges(req), req.query) }));
  r.on('GET', '/api/exchanges/:vhost/:name', (req) => {
    const v = api.vhost(req.user, req.params['vhost']!);
    const x = exchangeOf(v, exchangeParam(req.params['name']!));
    return { status: 200, body: projectOne(withExchangeHistory(formatExchange(api, x), api.sampler, x, historyOf(req)), req.query) };
  });
  r.on('PUT', '/api/exchanges/:vhost/:name', async (req) => {
    const vhost = req.params['vhost']!;
    const name = exchangeParam(req.params['name']!);
    const body = await req.body();
    const v = api.vhost(req.user, vhost);
    const existed = v.exchanges.has(name);
    const type = strField(body, 'type', existed ? v.exchanges.get(name)!.type : undefined);
    if (!['direct', 'fanout', 'topic', 'headers'].includes(type)) throw HttpError.badRequest(`invalid exchange type '${type}'`);
    const opts = {
      durable: boolField(body, 'durable', true),
      autoDelete: boolField(body, 'auto_delete', false),
      internal: boolField(body, 'internal', false),
      arguments: jsonToFieldTable(objField(body, 'arguments')),
    };
    await api.withChannel(req.user, vhost, (ch) => ch.declareExchange(name, type, opts));
    return { status: existed ? 204 : 201 };
  });
  r.on('DELETE', '/api/exchanges/:vhost/:name', async (req) => {
    const vhost = req.params['vhost']!;
    const name = exchangeParam(req.params['name']!);
    exchangeOf(api.vhost(req.user, vhost), name);
    const ifUnused = req.query.get('if-unused') === 'true';
    await api.withChannel(req.user, vhost, (ch) => ch.deleteExchange(name, ifUnused));
    return { status: 204 };
  });
  r.on('GET', '/api/exchanges/:vhost/:name/bindings/source', (req) => {
    const v = api.vhost(req.user, req.params['vhost']!);
    const x = exchangeOf(v, exchangeParam(req.params['name']!));
    const rows = x.name === '' ? [...v.queues.values()].map((q) => defaultBinding(q, v.name)) : [...x.bindings.values()].map((b) => formatBinding(b, v.name));
    return { status: 200, body: applyListQuery(rows, req.query, BINDING_SORT) };
  });
  r.on('GET', '/api/exchanges/:vhost/:name/bindings/destination', (req) => {
    const v = api.vhost(req.user, req.params['vhost']!);
    const x = exchangeOf(v, exchangeParam(req.params['name']!));
    return { status: 200, body: applyListQuery([...x.inbound].map((b) => formatBinding(b, v.name)), req.query, BINDING_SORT) };
  });
  r.on('POST', '/api/exchanges/:vhost/:name/publish', async (req) => {
    const vhost = req.params['vhost']!;
    const name = exchangeParam(req.params['name']!);
    const body = await req.body();
    exchangeOf(api.vhost(req.user, vhost), name);
    const routingKey = strField(body, 'routing_key');
    const properties = jsonToProperties(objField(body, 'properties'));
    const payload = decodePayload(body);
    const routed = await api.withChannel(req.user, vhost, async (ch) => {
      const res = ch.publish({ exchange: name, routingKey, properties, body: payload }, { mandatory: true });
      await res.settled;
      return res.routed > 0;
    });
    return { status: 200, body: { routed } };
  });

  // ---- queues ------------------------------------------------------------------------------

  const listQueues = (user: User, vhost: string | undefined, hq?: HistoryQuery): Row[] => {
    const out: Row[] = [];
    for (const v of api.vhostsFor(user, vhost)) for (const q of v.queues.values()) out.push(queueRow(q, v, hq));
    return out;
  };
  // Every node's queues: the figures of each from its own node.
  api.peerOps.set('queues', (user, q) => listQueues(user, q.vhost));
  const allQueues = async (req: ApiRequest): Promise<ApiReply> => {
    const vhost = req.params['vhost'];
    const g = await gatherQueues(api, req.user, listQueues(req.user, vhost, historyOf(req)), vhost);
    const rows = await flagReplicated(api.ctx.cluster, g.rows);
    return { status: 200, body: applyListQuery(rows, req.query), ...(g.headers ? { headers: g.headers } : {}) };
  };
  r.on('GET', '/api/queues', allQueues);
  r.on('GET', '/api/queues/:vhost', allQueues);
  const oneQueue = (user: User, vhost: string, name: string, hq?: HistoryQuery): Row => {
    const v = api.vhost(user, vhost);
    const q = queueOf(v, name);
    const row = queueRow(q, v, hq);
    const consumers: Row[] = [];
    // A consumer attached on another node of a cluster counts here but is detailed by its own node.
    for (const c of q.consumers) if (c.owner instanceof CoreChannel) consumers.push(formatConsumer(api, c.owner, c));
    row['consumer_details'] = consumers;
    return row;
  };
  api.peerOps.set('queue', (user, q) => oneQueue(user, q.vhost ?? '', q.name ?? ''));
  r.on('GET', '/api/queues/:vhost/:name', async (req) => {
    const vhost = req.params['vhost']!;
    const name = req.params['name']!;
    let row = oneQueue(req.user, vhost, name, historyOf(req));
    // A queue of another node: its figures from there (this node's copy has its definition only).
    const home = row['node'];
    const peers = api.ctx.cluster?.peers;
    if (peers !== undefined && typeof home === 'string' && home !== api.node) {
      const reply = await peers.ask(home, { op: 'queue', user: { name: req.user.name, tags: req.user.tags }, vhost, name });
      if (reply?.ok === true) row = reply.body as Row;
    }
    // A replicated queue: its copies as RabbitMQ shows a quorum queue's members.
    const replication = await api.ctx.cluster?.replicationOf?.(vhost, name).catch(() => undefined);
    if (replication !== undefined) {
      const h = assess({ vhost, name, replicas: replication.members.length, status: replication });
      const stream = replication.type === 'stream';
      row = {
        ...row,
        type: replication.type ?? 'quorum',
        leader: replication.leader ?? '',
        members: replication.members,
        online: replication.online,
        replica_details: replicaDetails(replication),
        // A stream's figures are its local copy's, as its offsets are.
        ...(stream ? {} : { messages: replication.messages }),
        under_replicated: h.underReplicated,
        below_majority: h.belowMajority,
      };
    }
    return { status: 200, body: projectOne(row, req.query) };
  });
  r.on('PUT', '/api/queues/:vhost/:name', async (req) => {
    const vhost = req.params['vhost']!;
    const name = req.params['name']!;
    const body = await req.body();
    const v = api.vhost(req.user, vhost);
    if (name === '') throw HttpError.badRequest('queue name must not be empty');
    const existed = v.queues.has(name);
    const opts = {
      durable: boolField(body, 'durable', true),
      autoDelete: boolField(body, 'auto_delete', false),
      exclusive: false,
      arguments: jsonToFieldTable(objField(body, 'arguments')),
    };
    await api.withChannel(req.user, vhost, (ch) => ch.declareQueue(name, opts));
    return { status: existed ? 204 : 201 };
  });
  r.on('DELETE', '/api/queues/:vhost/:name', async (req) => {
    const vhost = req.params['vhost']!;
    const name = req.params['name']!;
    queueOf(api.vhost(req.user, vhost), name);
    const ifUnused = req.query.get('if-unused') === 'true';
    const ifEmpty = req.query.get('if-empty') === 'true';
    await api.withChannel(req.user, vhost, (ch) => ch.deleteQueue(name, ifUnused, ifEmpty));
    return { status: 204 };
  });
  r.on('DELETE', '/api/queues/:vhost/:name/contents', async (req) => {
    const vhost = req.params['vhost']!;
    const name = req.params['name']!;
    queueOf(api.vhost(req.user, vhost), name);
    await api.withChannel(req.user, vhost, (ch) => ch.purgeQueue(name));
    return { status: 204 };
  });
  r.on('GET', '/api/queues/:vhost/:name/bindings', (req) => {
    const v = api.vhost(req.user, req.params['vhost']!);
    const q = queueOf(v, req.params['name']!);
    const rows = [defaultBinding(q, v.name), ...v.bindingsTo(q).map((b) => formatBinding(b, v.name))];
    return { status: 200, body: applyListQuery(rows, req.query, BINDING_SORT) };
  });
  r.on('POST', '/api/queues/:vhost/:name/get', async (req) => {
    const vhost = req.params['vhost']!;
    const name = req.params['name']!;
    const body = await req.body();
    queueOf(api.vhost(req.user, vhost), name);
    const count = intField(body, 'count', 1);
    if (count < 1) throw HttpError.badRequest('count must be at least 1');
    const ackmode = strField(body, 'ackmode', 'ack_requeue_true');
    if (!ACK_MODES.has(ackmode)) throw HttpError.badRequest(`invalid ackmode '${ackmode}'`);
    const encoding = strField(body, 'encoding', 'auto');
    if (encoding !== 'auto' && encoding !== 'base64') throw HttpError.badRequest(`invalid encoding '${encoding}'`);
    const truncate = body['truncate'] === undefined || body['truncate'] === null || body['truncate'] === '' ? undefined : intField(body, 'truncate', 0);
    const out = await api.withChannel(req.user, vhost, async (ch) => {
      const rows: Row[] = [];
      const tags: number[] = [];
      for (let i = 0; i < count; i++) {
        // A queue that lives on another node of a cluster is read at its home, as basic.get is.
        const remote = ch.getRemote(name, false);
        const got = remote !== undefined ? await remote : ch.get(name, false);
        if (!got) break;
        const d = got.delivery;
        tags.push(d.deliveryTag);
        const m = d.message;
        rows.push({
          payload_bytes: m.body.length,
          redelivered: d.redelivered,
          exchange: m.exchange,
          routing_key: m.routingKey,
          message_count: got.messageCount,
          properties: propertiesToJson(m.properties),
          ...encodePayload(m.body, encoding, truncate),
        });
      }
      // Settle only after taking them all, so a requeued message is not got twice.
      for (const tag of tags) {
        if (ackmode === 'ack_requeue_false') ch.ack(tag);
        else ch.nack(tag, false, ackmode !== 'reject_requeue_false');
      }
      return rows;
    });
    return { status: 200, body: out };
  });

  // Reads a stream from an offset without consuming it (nothing is acked, no cursor is kept).
  r.on('GET', '/api/streams/:vhost/:name/messages', (req) => {
    const q = queueOf(api.vhost(req.user, req.params['vhost']!), req.params['name']!);
    if (!(q instanceof StreamQueue)) throw HttpError.badRequest(`queue '${q.name}' is not a stream`);
    const offset = Number(req.query.get('offset') ?? q.log.first);
    const count = Number(req.query.get('count') ?? 20);
    if (!Number.isInteger(offset) || offset < 0) throw HttpError.badRequest('offset must be a non-negative integer');
    if (!Number.isInteger(count) || count < 1 || count > 1000) throw HttpError.badRequest('count must be an integer from 1 to 1000');
    const encoding = req.query.get('encoding') ?? 'auto';
    if (encoding !== 'auto' && encoding !== 'base64') throw HttpError.badRequest(`invalid encoding '${encoding}'`);
    const rows: Row[] = q.peek(offset, count).map((rec) => ({
      offset: rec.offset,
      filter_value: rec.filter ?? null,
      payload_bytes: rec.msg.body.length,
      exchange: rec.msg.exchange,
      routing_key: rec.msg.routingKey,
      properties: propertiesToJson(rec.msg.properties),
      ...encodePayload(rec.msg.body, encoding, undefined),
    }));
    return { status: 200, body: { first_offset: q.log.first, committed_offset: q.log.end, messages: rows } };
  });

  // ---- bindings ----------------------------------------------------------------------------

  r.on('GET', '/api/bindings', (req) => {
    const rows: Row[] = [];
    for (const v of api.visibleVhosts(req.user)) rows.push(...vhostBindings(v));
    return { status: 200, body: applyListQuery(rows, req.query, BINDING_SORT) };
  });
  r.on('GET', '/api/bindings/:vhost', (req) => ({
    status: 200,
    body: applyListQuery(vhostBindings(api.vhost(req.user, req.params['vhost']!)), req.query, BINDING_SORT),
  }));

  for (const [kind, destType] of [['q', 'queue'], ['e', 'exchange']] as const) {
    const between = (user: User, p: Readonly<Record<string, string>>): { v: VHost; source: Exchange; dest: string; rows: BindingRow[] } => {
      const v = api.vhost(user, p['vhost']!);
      const source = exchangeOf(v, exchangeParam(p['source']!));
      const dest = kind === 'e' ? exchangeParam(p['dest']!) : p['dest']!;
      if (kind === 'q') queueOf(v, dest);
      else exchangeOf(v, dest);
      let rows: BindingRow[];
      if (source.name === '') {
        rows = kind === 'q' ? [defaultBinding(queueOf(v, dest), v.name)] : [];
      } else {
        rows = [...source.bindings.values()]
          .map((b) => formatBinding(b, v.name))
          .filter((b) => b.destination === dest && b.destination_type === destType);
      }
      return { v, source, dest, rows };
    };
    const base = `/api/bindings/:vhost/e/:source/${kind}/:dest`;
    r.on('GET', base, (req) => ({ status: 200, body: applyListQuery(between(req.user, req.params).rows, req.query, BINDING_SORT) }));
    r.on('POST', base, async (req) => {
      const body = await req.body();
      const { v, source, dest } = between(req.user, req.params);
      const routingKey = strField(body, 'routing_key', '');
      const args = jsonToFieldTable(objField(body, 'arguments'));
      await api.withChannel(req.user, v.name, (ch) => {
        if (kind === 'q') ch.bindQueue(dest, source.name, routingKey, args);
        else ch.bindExchange(dest, source.name, routingKey, args);
      });
      const key = propertiesKey(routingKey, args);
      return { status: 201, headers: { location: encodeURIComponent(key) } };
    });
    r.on('GET', `${base}/:props`, (req) => {
      const found = between(req.user, req.params).rows.find((b) => b.properties_key === req.params['props']);
      if (!found) throw HttpError.notFound();
      return { status: 200, body: projectOne(found, req.query) };
    });
    r.on('DELETE', `${base}/:props`, async (req) => {
      const { v, source, dest, rows } = between(req.user, req.params);
      const found = rows.find((b) => b.properties_key === req.params['props']);
      if (!found) throw HttpError.notFound();
      const b = [...source.bindings.values()].find((x) => propertiesKey(x.routingKey, x.args) === found.properties_key && x.destination.name === dest);
      await api.withChannel(req.user, v.name, (ch) => {
        const args = b?.args ?? jsonToFieldTable(found.arguments);
        if (kind === 'q') ch.unbindQueue(dest, source.name, found.routing_key, args);
        else ch.unbindExchange(dest, source.name, found.routing_key, args);
      });
      return { status: 204 };
    });
  }
}

