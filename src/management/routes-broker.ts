import { statfs } from 'node:fs/promises';
import type { ClusterView } from './cluster-view.js';
import { availableParallelism } from 'node:os';
import { dirname, resolve } from 'node:path';
import { ReplyCode, type CoreConnection, type User } from '../core/index.js';
import { addNumbers, findOnPeers, gather, gatherRows, peerError } from './cluster-wide.js';
import type { ManagementApi } from './api.js';
import { channelName, formatChannel, formatConnection, formatConsumer } from './format.js';
import { HttpError } from './http-util.js';
import { certificateExpiration } from './routes-tls.js';
import { applyListQuery, projectOne, type Row } from './listing.js';
import type { ApiRequest } from './router.js';
import { VERSION } from './package-info.js';
import { historyQuery, sampledDetails } from './history.js';
import { quorumCritical } from './replication.js';
import { G, globalDepths, globalTotals, type GlobalSample } from './sampler.js';

const EXCHANGE_TYPES = [
  { name: 'direct', description: 'AMQP direct exchange, as per the AMQP specification', enabled: true },
  { name: 'fanout', description: 'AMQP fanout exchange, as per the AMQP specification', enabled: true },
  { name: 'headers', description: 'AMQP headers exchange, as per the AMQP specification', enabled: true },
  { name: 'topic', description: 'AMQP topic exchange, as per the AMQP specification', enabled: true },
  { name: 'x-delayed-message', description: 'Delayed message exchange (x-delayed-type routes, x-delay holds)', enabled: true },
];

/** The management API speaks RabbitMQ's dialect of this version. */
export const RABBITMQ_COMPAT_VERSION = '3.12.0';

const details = (rate: number | undefined): { rate: number } => ({ rate: rate ?? 0 });

/** RabbitMQ's listener names for what the broker serves. */
export function listeners(api: ManagementApi): Row[] {
  const { ports, options } = api.ctx;
  const out: Row[] = [];
  const add = (protocol: string, port: number | undefined): void => {
    if (port !== undefined) out.push({ node: api.node, protocol, ip_address: options.bind, port, socket_opts: {} });
  };
  add('amqp', ports.amqp);
  add('mqtt', ports.mqtt);
  add('stomp', ports.stomp);
  add('http', ports.http);
  add('http/web-mqtt', ports.http);
  add('http/web-stomp', ports.http);
  add('amqp/ssl', ports.amqps);
  add('mqtt/ssl', ports.mqtts);
  add('stomp/ssl', ports.stomps);
  add('https', ports.https);
  add('https/web-mqtt', ports.https);
  add('https/web-stomp', ports.https);
  return out;
}

function localPort(api: ManagementApi, protocol: string): { host: string; port: number | null } {
  const p = api.ctx.ports;
  const port = protocol.startsWith('AMQP') ? p.amqp : protocol.startsWith('MQTT') ? p.mqtt : protocol.startsWith('STOMP') ? p.stomp : undefined;
  return { host: api.ctx.options.bind, port: port ?? null };
}

export function connectionRow(api: ManagementApi, c: CoreConnection): Row {
  return formatConnection(api, c, localPort(api, c.info.protocol));
}

function withSamples(detail: { rate: number }, samples: GlobalSample[] | undefined, pick: (s: GlobalSample) => number): Row {
  if (!samples) return detail;
  return sampledDetails(detail.rate, samples.map((s) => ({ sample: pick(s), timestamp: s.timestamp })));
}

function overview(api: ManagementApi, q: URLSearchParams, vhosts: Set<string> | undefined): Row {
  const core = api.core;
  const rates = api.sampler.globalRates();
  const hq = historyQuery(q, api.sampler.intervalMs);
  const samples = hq.rates ? api.sampler.samples(hq.rates.ageMs, hq.rates.incrMs) : undefined;
  const lengthSamples = hq.lengths ? api.sampler.samples(hq.lengths.ageMs, hq.lengths.incrMs) : undefined;
  const t = globalTotals(core);
  const d = globalDepths(core);
  let queues = 0;
  let exchanges = 0;
  let consumers = 0;
  let ready = 0;
  let unacked = 0;
  for (const v of core.vhosts.values()) {
    if (vhosts && !vhosts.has(v.name)) continue;
    queues += v.queues.size;
    exchanges += v.exchanges.size;
    for (const qu of v.queues.values()) {
      consumers += qu.consumerCount;
      ready += qu.readyCount;
      unacked += qu.unackedCount;
    }
  }
  let connections = 0;
  let channels = 0;
  const byProtocol: Record<string, number> = {};
  for (const c of core.connections) {
    if (vhosts && !vhosts.has(c.vhost.name)) continue;
    connections++;
    channels += c.channels.length;
    byProtocol[c.info.protocol] = (byProtocol[c.info.protocol] ?? 0) + 1;
  }
  if (!vhosts) {
    ready = d.ready;
    unacked = d.unacked;
  }
  let opened = 0;
  let closed = 0;
  let chOpened = 0;
  let chClosed = 0;
  for (const p of core.totals.byProtocol.values()) {
    opened += p.connectionsOpened;
    closed += p.connectionsClosed;
    chOpened += p.channelsOpened;
    chClosed += p.channelsClosed;
  }
  const dropped = Math.max(0, t.unroutable - t.returned);
  return {
    management_version: VERSION,
    rates_mode: 'basic',
    sample_retention_policies: { global: [600, 3600], basic: [600], detailed: [600] },
    exchange_types: EXCHANGE_TYPES,
    product_version: VERSION,
    product_name: 'Warren',
    rabbitmq_version: RABBITMQ_COMPAT_VERSION,
    cluster_name: api.ctx.cluster?.clusterName ?? api.node,
    erlang_version: 'none',
    erlang_full_version: `Node.js ${process.version}`,
    disable_stats: false,
    enable_queue_totals: true,
    statistics_db_event_queue: 0,
    node: api.node,
    message_stats: {
      publish: t.publish,
      publish_details: withSamples(details(rates[G.publish]), samples, (s) => s.publish),
      deliver: t.deliver,
      deliver_details: withSamples(details(rates[G.deliver]), samples, (s) => s.deliver),
      deliver_no_ack: 0,
      get: t.get,
      get_details: withSamples(details(rates[G.get]), samples, (s) => s.get),
      get_no_ack: 0,
      deliver_get: t.deliver + t.get,
      deliver_get_details: withSamples(details((rates[G.deliver] ?? 0) + (rates[G.get] ?? 0)), samples, (s) => s.deliver + s.get),
      ack: t.ack,
      ack_details: withSamples(details(rates[G.ack]), samples, (s) => s.ack),
      redeliver: t.redeliver,
      redeliver_details: withSamples(details(rates[G.redeliver]), samples, (s) => s.redeliver),
      return_unroutable: t.returned,
      return_unroutable_details: details(rates[G.returned]),
      drop_unroutable: dropped,
      drop_unroutable_details: details(Math.max(0, (rates[G.unroutable] ?? 0) - (rates[G.returned] ?? 0))),
    },
    churn_rates: {
      connection_created: opened,
      connection_closed: closed,
      channel_created: chOpened,
      channel_closed: chClosed,
    },
    queue_totals: {
      messages: ready + unacked,
      messages_details: withSamples(details(rates[G.messages]), lengthSamples, (s) => s.messages),
      messages_ready: ready,
      messages_ready_details: withSamples(details(rates[G.ready]), lengthSamples, (s) => s.ready),
      messages_unacknowledged: unacked,
      messages_unacknowledged_details: withSamples(details(rates[G.unacked]), lengthSamples, (s) => s.unacked),
    },
    object_totals: { channels, connections, consumers, exchanges, queues },
    connections_by_protocol: byProtocol,
    listeners: listeners(api),
    contexts: api.ctx.ports.http === undefined ? [] : [{ node: api.node, description: 'Warren Management', path: '/', port: String(api.ctx.ports.http) }],
  };
}

async function nodeInfo(api: ManagementApi): Promise<Row> {
  const { core, options } = api.ctx;
  const mem = process.memoryUsage();
  const used = core.alarms.memoryFigure();
  let diskFree = 0;
  // The data directory, or the nearest existing parent before it is created.
  for (let dir = resolve(options.dataDir); ; dir = dirname(dir)) {
    try {
      const s = await statfs(dir);
      diskFree = s.bavail * s.bsize;
      break;
    } catch {
      if (dirname(dir) === dir) break;
    }
  }
  const alarms = core.alarms.active;
  return {
    name: api.node,
    type: 'disc',
    running: true,
    being_drained: false,
    os_pid: String(process.pid),
    mem_used: used.total,
    mem_limit: core.alarms.memoryLimit,
    mem_alarm: alarms.includes('memory'),
    disk_free: diskFree,
    disk_free_limit: options.diskFreeLimit,
    disk_free_alarm: alarms.includes('disk'),
    fd_used: null,
    fd_total: null,
    sockets_used: core.connections.size,
    sockets_total: null,
    proc_used: 1,
    proc_total: 1,
    processors: availableParallelism(),
    run_queue: 0,
    uptime: Date.now() - api.ctx.startedAt,
    rates_mode: 'basic',
    exchange_types: EXCHANGE_TYPES,
    partitions: [],
    applications: [{ name: 'warren', description: 'Warren message broker', version: VERSION }],
    enabled_plugins: ['rabbitmq_management', 'rabbitmq_mqtt', 'rabbitmq_stomp', 'rabbitmq_web_mqtt', 'rabbitmq_web_stomp', 'rabbitmq_prometheus'],
    memory: {
      total: mem.rss,
      heap_used: mem.heapUsed,
      heap_total: mem.heapTotal,
      external: mem.external,
      array_buffers: mem.arrayBuffers,
      // The figure the memory alarm compares with mem_limit, and its parts.
      accounted: used.total,
      queued_messages: used.messages,
      buffered: used.buffered,
      other_external: used.otherExternal,
    },
  };
}

/** Another cluster node as the registry knows it, in `/api/nodes`'s fields. */
function remoteNodeInfo(n: ReturnType<ClusterView['nodes']>[number]): Row {
  return {
    name: n.name,
    type: 'disc',
    running: n.running,
    being_drained: false,
    os_pid: n.pid === 0 ? null : String(n.pid),
    mem_used: n.memUsed,
    mem_limit: n.memLimit,
    mem_alarm: n.alarms.includes('memory'),
    disk_free_alarm: n.alarms.includes('disk'),
    sockets_used: n.connections,
    uptime: n.uptime,
    host: n.host,
    product_version: n.version,
    listeners: n.listeners.map((l) => ({ protocol: l.protocol, port: l.port })),
  };
}

/**
 * Every node: each running one's own figures (asked over the cluster), the registry's for those
 * that are not running or do not answer (`answering: false`).
 */
async function allNodes(api: ManagementApi, user: User): Promise<Row[]> {
  const self = await nodeInfo(api);
  const cluster = api.ctx.cluster;
  if (cluster === undefined) return [self];
  const g = await gather<Row>(api, user, 'node', self);
  const own = new Map(g.parts.map((p) => [p.node, p.body]));
  return cluster.nodes().map((n) => {
    const answered = own.get(n.name);
    if (answered !== undefined) return { ...answered, host: n.host, listeners: n.listeners, answering: true };
    return { ...remoteNodeInfo(n), answering: false };
  });
}

/** The overview of every node: counts and rates added up, listeners of all. */
async function clusterOverview(api: ManagementApi, user: User, q: URLSearchParams): Promise<Row> {
  const vhosts = api.isMonitor(user) ? undefined : new Set(api.visibleVhosts(user).map((v) => v.name));
  const local = overview(api, q, vhosts);
  if (api.ctx.cluster?.peers === undefined) return local;
  const g = await gather<Row>(api, user, 'overview', local);
  const totals = local['object_totals'] as Row;
  for (const p of g.parts.slice(1)) {
    const o = p.body;
    const ot = o['object_totals'] as Row | undefined;
    // Exchanges and durable queues are replicated: every node has them all; the rest is per node.
    for (const k of ['connections', 'channels', 'consumers']) {
      if (typeof ot?.[k] === 'number') totals[k] = (totals[k] as number) + (ot[k] as number);
    }
    for (const k of ['message_stats', 'queue_totals', 'churn_rates', 'connections_by_protocol']) addNumbers(local[k] as Row, o[k]);
    for (const k of ['listeners', 'contexts']) if (Array.isArray(o[k])) (local[k] as unknown[]).push(...(o[k] as unknown[]));
  }
  local['nodes_not_answering'] = g.notAnswering;
  return local;
}

export function registerBrokerRoutes(api: ManagementApi): void {
  const r = api.router;

  r.on('GET', '/api/overview', async (req) => ({ status: 200, body: projectOne(await clusterOverview(api, req.user, req.query), req.query) }));
  api.peerOps.set('overview', (user) => overview(api, new URLSearchParams(), api.isMonitor(user) ? undefined : new Set(api.visibleVhosts(user).map((v) => v.name))));
  api.peerOps.set('node', () => nodeInfo(api));
  r.on('GET', '/api/cluster-name', () => ({ status: 200, body: { name: api.node } }));
  r.on('GET', '/api/whoami', (req) => ({ status: 200, body: { name: req.user.name, tags: req.user.tags } }));
  r.on('GET', '/api/extensions', () => ({ status: 200, body: [] }));
  r.on('GET', '/api/auth', () => ({ status: 200, body: { oauth_enabled: false } }));
  for (const path of ['/api/parameters', '/api/global-parameters', '/api/operator-policies', '/api/vhost-limits', '/api/feature-flags']) {
    r.on('GET', path, () => ({ status: 200, body: [] }));
  }

  r.on('GET', '/api/nodes', async (req) => {
    api.requireMonitor(req.user);
    return { status: 200, body: applyListQuery(await allNodes(api, req.user), req.query, ['name']) };
  });
  r.on('GET', '/api/nodes/:node', async (req) => {
    api.requireMonitor(req.user);
    const node = (await allNodes(api, req.user)).find((n) => n['name'] === req.params['node']);
    if (node === undefined) throw HttpError.notFound();
    return { status: 200, body: projectOne(node, req.query) };
  });

  // ---- connections, channels, consumers ----------------------------------------------------

  const listConnections = (user: User, vhost?: string): Row[] => {
    if (vhost !== undefined) api.vhost(user, vhost);
    return api.visibleConnections(user, vhost).map((c) => connectionRow(api, c));
  };
  const listChannels = (user: User, vhost?: string): Row[] => {
    if (vhost !== undefined) api.vhost(user, vhost);
    return api.visibleChannels(user, vhost).map((ch) => formatChannel(api, ch));
  };
  const consumers = (user: User, vhost?: string): Row[] => {
    const vhosts = new Set(api.vhostsFor(user, vhost).map((v) => v.name));
    const out: Row[] = [];
    for (const c of api.core.connections) {
      if (!vhosts.has(c.vhost.name)) continue;
      for (const ch of c.channels) for (const co of ch.consumers.values()) out.push(formatConsumer(api, ch, co));
    }
    return out;
  };
  const localConnection = (user: User, name: string): CoreConnection | undefined => {
    try {
      return api.findConnection(user, name);
    } catch (e) {
      if (e instanceof HttpError && e.status === 404) return undefined;
      throw e;
    }
  };
  const channelRow = (user: User, name: string): Row | undefined => {
    const ch = api.visibleChannels(user).find((x) => channelName(api, x) === name);
    if (!ch) return undefined;
    const row = formatChannel(api, ch);
    row['consumer_details'] = [...ch.consumers.values()].map((c) => formatConsumer(api, ch, c));
    return row;
  };
  const closeConnection = (user: User, c: CoreConnection, reason: unknown): void => {
    if (c.user !== user.name) api.requireAdmin(user);
    const text = typeof reason === 'string' && reason !== '' ? reason : 'Closed via management plugin';
    api.ctx.log.info({ connection: api.connectionName(c), by: user.name, reason: text }, 'closing connection on request');
    c.handle.forceClose(ReplyCode.CONNECTION_FORCED, text);
  };
  /** An object found here, else on the first node that has it (404 when none has). */
  const here = <T>(local: T | undefined, fromPeer: () => Promise<unknown>): Promise<unknown> => (local !== undefined ? Promise.resolve(local) : fromPeer());
  const onPeers = async (user: User, op: string, name: string, reason?: string): Promise<unknown> => {
    const reply = await findOnPeers(api, user, op, { name, reason });
    if (reply === undefined) throw HttpError.notFound();
    const err = peerError(reply);
    if (err !== undefined) throw err;
    return reply.ok ? reply.body : undefined;
  };

  api.peerOps.set('connections', (user, q) => listConnections(user, q.vhost));
  api.peerOps.set('channels', (user, q) => listChannels(user, q.vhost));
  api.peerOps.set('consumers', (user, q) => consumers(user, q.vhost));
  const mustFind = <T>(v: T | undefined): T => {
    if (v === undefined) throw HttpError.notFound();
    return v;
  };
  api.peerOps.set('connection', (user, q) => connectionRow(api, api.findConnection(user, q.name ?? '')));
  api.peerOps.set('connection-channels', (user, q) => [...api.findConnection(user, q.name ?? '').channels].map((ch) => formatChannel(api, ch)));
  api.peerOps.set('channel', (user, q) => mustFind(channelRow(user, q.name ?? '')));
  api.peerOps.set('close', (user, q) => {
    closeConnection(user, api.findConnection(user, q.name ?? ''), q.reason);
    return null;
  });

  const listed = async (req: ApiRequest, op: string, rows: Row[], sort: readonly string[], vhost?: string): Promise<{ status: number; body: unknown; headers?: Record<string, string> }> => {
    const g = await gatherRows(api, req.user, op, rows, vhost);
    return { status: 200, body: applyListQuery(g.rows, req.query, sort), ...(g.headers ? { headers: g.headers } : {}) };
  };
  r.on('GET', '/api/connections', (req) => listed(req, 'connections', listConnections(req.user), ['name']));
  r.on('GET', '/api/vhosts/:vhost/connections', (req) => listed(req, 'connections', listConnections(req.user, req.params['vhost']), ['name'], req.params['vhost']));
  r.on('GET', '/api/connections/:name', async (req) => {
    const name = req.params['name']!;
    const c = localConnection(req.user, name);
    const row = await here(c && connectionRow(api, c), () => onPeers(req.user, 'connection', name));
    return { status: 200, body: projectOne(row as Row, req.query) };
  });
  r.on('DELETE', '/api/connections/:name', async (req) => {
    const name = req.params['name']!;
    const reason = req.req.headers['x-reason'];
    const c = localConnection(req.user, name);
    if (c !== undefined) closeConnection(req.user, c, reason);
    else await onPeers(req.user, 'close', name, typeof reason === 'string' ? reason : undefined);
    return { status: 204 };
  });
  r.on('GET', '/api/connections/:name/channels', async (req) => {
    const name = req.params['name']!;
    const c = localConnection(req.user, name);
    const rows = await here(c && [...c.channels].map((ch) => formatChannel(api, ch)), () => onPeers(req.user, 'connection-channels', name));
    return { status: 200, body: applyListQuery(rows as Row[], req.query, ['name']) };
  });

  r.on('GET', '/api/channels', (req) => listed(req, 'channels', listChannels(req.user), ['name']));
  r.on('GET', '/api/vhosts/:vhost/channels', (req) => listed(req, 'channels', listChannels(req.user, req.params['vhost']), ['name'], req.params['vhost']));
  r.on('GET', '/api/channels/:name', async (req) => {
    const name = req.params['name']!;
    const row = await here(channelRow(req.user, name), () => onPeers(req.user, 'channel', name));
    return { status: 200, body: projectOne(row as Row, req.query) };
  });

  r.on('GET', '/api/consumers', (req) => listed(req, 'consumers', consumers(req.user), ['queue.vhost', 'queue.name', 'consumer_tag']));
  r.on('GET', '/api/consumers/:vhost', (req) => listed(req, 'consumers', consumers(req.user, req.params['vhost']), ['queue.name', 'consumer_tag'], req.params['vhost']));

  // ---- health checks -----------------------------------------------------------------------

  const alarms = (): { status: number; body: Row } => {
    const active = api.core.alarms.active;
    if (active.length === 0) return { status: 200, body: { status: 'ok' } };
    return {
      status: 503,
      body: { status: 'failed', reason: 'resource alarm(s) in effect in the cluster', alarms: active.map((a) => ({ node: api.node, resource: a })) },
    };
  };
  r.on('GET', '/api/health/checks/alarms', alarms);
  r.on('GET', '/api/health/checks/local-alarms', alarms);
  r.on('GET', '/api/health/checks/port-listener/:port', (req) => {
    const port = Number(req.params['port']);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw HttpError.badRequest(`invalid port '${req.params['port']}'`);
    const ports = [...new Set(listeners(api).map((l) => l.port as number))];
    if (ports.includes(port)) return { status: 200, body: { status: 'ok', port } };
    return { status: 503, body: { status: 'failed', reason: `No active listener on port ${port}`, missing: port, ports } };
  });
  r.on('GET', '/api/health/checks/protocol-listener/:protocol', (req) => {
    const want = req.params['protocol']!.toLowerCase().replace(/^amqp0?9?1?$|^amqp0-9-1$/, 'amqp');
    const ls = listeners(api);
    if (ls.some((l) => l.protocol === want)) return { status: 200, body: { status: 'ok', protocol: want } };
    return { status: 503, body: { status: 'failed', reason: `No active listener for protocol ${want}`, missing: want, protocols: ls.map((l) => l.protocol) } };
  });
  r.on('GET', '/api/health/checks/virtual-hosts', () => ({ status: 200, body: { status: 'ok' } }));
  r.on('GET', '/api/health/checks/node-is-quorum-critical', () => quorumCritical(api.ctx.cluster));
  r.on('GET', '/api/health/checks/node-is-mirror-sync-critical', () => ({ status: 200, body: { status: 'ok' } }));
  r.on('GET', '/api/health/checks/certificate-expiration/:within/:unit', (req) => certificateExpiration(api, req.params['within']!, req.params['unit']!));
  r.on('GET', '/api/aliveness-test/:vhost', async (req) => {
    const vhost = req.params['vhost']!;
    api.vhost(req.user, vhost);
    await api.withChannel(req.user, vhost, async (ch) => {
      ch.declareQueue('aliveness-test', { durable: false });
      await ch.publish({ exchange: '', routingKey: 'aliveness-test', properties: {}, body: Buffer.from('test_message') }).settled;
      const got = ch.get('aliveness-test', true);
      if (!got) throw new HttpError(503, 'failed', 'aliveness test message not received');
    });
    return { status: 200, body: { status: 'ok' } };
  });
}
