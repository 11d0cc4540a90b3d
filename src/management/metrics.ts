import { oldestUnackedAge, type Core, type ProtocolTotals } from '../core/index.js';
import { DIRECT_PROTOCOL } from './api.js';
import { VERSION } from './package-info.js';

const NEEDS_ESCAPE = /[\\\n"]/;

/** Escapes a Prometheus label value. */
function esc(v: string): string {
  if (!NEEDS_ESCAPE.test(v)) return v;
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(l: Record<string, string>): string {
  const parts = Object.entries(l).map(([k, v]) => `${k}="${esc(v)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Builds one exposition in the Prometheus text format (version 0.0.4). */
class Exposition {
  private readonly out: string[] = [];

  family(name: string, type: 'gauge' | 'counter', help: string): (value: number, l?: Record<string, string>) => void {
    this.header(name, type, help);
    return (value, l = {}) => this.sample(name, labels(l), value);
  }

  header(name: string, type: 'gauge' | 'counter', help: string): void {
    this.out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  }

  /** One sample with a pre-rendered label set (`{a="b"}` or ''). */
  sample(name: string, renderedLabels: string, value: number): void {
    this.out.push(`${name}${renderedLabels} ${Number.isFinite(value) ? value : 0}`);
  }

  text(): string {
    return `${this.out.join('\n')}\n`;
  }
}

/**
 * Stable label values for a connection's protocol name as the management API shows it
 * (`MQTT 3.1.1`): `protocol` is the protocol alone, lower case (`mqtt`), `version` its version
 * (`3.1.1`), so a query by protocol does not change when clients move to another version. The
 * management API's own connection (RabbitMQ's `Direct 0-9-1`: publish and get over HTTP) is
 * `protocol="management"`.
 */
export function protocolLabels(name: string): { protocol: string; version: string } {
  if (name === DIRECT_PROTOCOL) return { protocol: 'management', version: '0-9-1' };
  const space = name.indexOf(' ');
  if (space < 0) return { protocol: name.toLowerCase(), version: '' };
  return { protocol: name.slice(0, space).toLowerCase(), version: name.slice(space + 1) };
}

type Live = Pick<ProtocolTotals, 'published' | 'delivered' | 'acked' | 'redelivered' | 'got' | 'returned' | 'recvOct' | 'sendOct' | 'dropped'> & {
  connections: number;
  channels: number;
  consumers: number;
  opened: number;
  closed: number;
};

/**
 * The broker's metrics, gathered at scrape time by walking connections, channels and queues once:
 * the hot path only increments counters it keeps anyway.
 *
 * `perObject` false (`/metrics`, RabbitMQ's default): aggregates only. The vhost and queue
 * families carry no labels and hold totals over every queue, so no vhost or queue name is
 * exposed. `perObject` true (`/metrics/per-object`, for authenticated monitoring users): one
 * series per vhost and per queue.
 */
export function renderMetrics(core: Core, startedAt: number, perObject = false): string {
  const x = new Exposition();
  const byProtocol = new Map<string, Live>();
  const of = (p: string): Live => {
    let l = byProtocol.get(p);
    if (!l) {
      l = { published: 0, delivered: 0, acked: 0, redelivered: 0, got: 0, returned: 0, recvOct: 0, sendOct: 0, dropped: 0, connections: 0, channels: 0, consumers: 0, opened: 0, closed: 0 };
      byProtocol.set(p, l);
    }
    return l;
  };
  for (const [p, t] of core.totals.byProtocol) {
    const l = of(p);
    l.published += t.published;
    l.delivered += t.delivered;
    l.acked += t.acked;
    l.redelivered += t.redelivered;
    l.got += t.got;
    l.returned += t.returned;
    l.recvOct += t.recvOct;
    l.sendOct += t.sendOct;
    l.dropped += t.dropped;
    l.opened += t.connectionsOpened;
    l.closed += t.connectionsClosed;
  }
  for (const c of core.connections) {
    const l = of(c.info.protocol);
    l.connections++;
    l.recvOct += c.traffic.recvOct;
    l.sendOct += c.traffic.sendOct;
    l.dropped += c.traffic.dropped;
    for (const ch of c.channels) {
      l.channels++;
      l.consumers += ch.consumers.size;
      const s = ch.stats;
      l.published += s.published;
      l.delivered += s.delivered;
      l.acked += s.acked;
      l.redelivered += s.redelivered;
      l.got += s.got;
      l.returned += s.returned;
    }
  }
  const protocols = [...byProtocol.entries()].sort(([a], [b]) => (a < b ? -1 : 1));

  x.family('warren_build_info', 'gauge', 'Warren version')(1, { version: VERSION, node_version: process.version });
  x.family('warren_uptime_seconds', 'gauge', 'Seconds since the broker started')(Math.round((Date.now() - startedAt) / 1000));

  const perProtocol = (name: string, type: 'gauge' | 'counter', help: string, pick: (l: Live) => number): void => {
    const f = x.family(name, type, help);
    for (const [protocol, l] of protocols) f(pick(l), protocolLabels(protocol));
  };
  perProtocol('warren_connections', 'gauge', 'Open client connections', (l) => l.connections);
  perProtocol('warren_connections_opened_total', 'counter', 'Client connections opened', (l) => l.opened);
  perProtocol('warren_connections_closed_total', 'counter', 'Client connections closed', (l) => l.closed);
  perProtocol('warren_channels', 'gauge', 'Open channels (AMQP channels, MQTT and STOMP sessions)', (l) => l.channels);
  perProtocol('warren_consumers', 'gauge', 'Consumers', (l) => l.consumers);
  perProtocol('warren_messages_published_total', 'counter', 'Messages published by clients', (l) => l.published);
  perProtocol('warren_messages_delivered_total', 'counter', 'Messages delivered to consumers', (l) => l.delivered);
  perProtocol('warren_messages_got_total', 'counter', 'Messages fetched with basic.get', (l) => l.got);
  perProtocol('warren_messages_acked_total', 'counter', 'Messages acknowledged by clients', (l) => l.acked);
  perProtocol('warren_messages_redelivered_total', 'counter', 'Messages delivered again', (l) => l.redelivered);
  perProtocol('warren_messages_returned_total', 'counter', 'Unroutable mandatory messages returned to publishers', (l) => l.returned);
  perProtocol('warren_received_bytes_total', 'counter', 'Bytes received from clients', (l) => l.recvOct);
  perProtocol('warren_sent_bytes_total', 'counter', 'Bytes sent to clients', (l) => l.sendOct);
  perProtocol('warren_slow_client_dropped_total', 'counter', 'Messages dropped for clients that did not keep up (MQTT QoS 0 beyond the session bound)', (l) => l.dropped);

  let returned = 0;
  for (const [, l] of protocols) returned += l.returned;
  x.family('warren_messages_routed_total', 'counter', 'Messages that entered an exchange (client publishes and dead-lettering)')(core.counters.published);
  x.family('warren_messages_unroutable_total', 'counter', 'Messages no queue was bound to receive')(core.counters.unroutable);
  x.family('warren_messages_dropped_total', 'counter', 'Unroutable messages dropped (not returned)')(Math.max(0, core.counters.unroutable - returned));
  x.family('warren_messages_dead_lettered_total', 'counter', 'Messages dead-lettered')(core.counters.deadLettered);

  const mem = process.memoryUsage();
  x.family('warren_process_resident_memory_bytes', 'gauge', 'Resident set size')(mem.rss);
  x.family('warren_process_heap_used_bytes', 'gauge', 'V8 heap in use')(mem.heapUsed);
  const used = core.alarms.memoryFigure();
  x.family('warren_memory_used_bytes', 'gauge', 'Memory the alarm counts: queued messages, socket and decoder buffers, V8 heap, other external memory')(used.total);
  x.family('warren_memory_queued_messages_bytes', 'gauge', 'Messages held in memory by queues, each once')(used.messages);
  x.family('warren_memory_buffered_bytes', 'gauge', 'Bytes waiting in socket write buffers and decoders')(used.buffered);
  x.family('warren_memory_high_watermark_bytes', 'gauge', 'Memory figure (warren_memory_used_bytes) above which publishers are blocked')(core.alarms.memoryLimit);
  const alarm = x.family('warren_alarms', 'gauge', 'Resource alarms in effect (1 = raised)');
  const active = new Set(core.alarms.active);
  for (const a of new Set(['memory', 'disk', ...active])) alarm(active.has(a) ? 1 : 0, { alarm: a });

  if (perObject) {
    const vhostQueues = x.family('warren_queues', 'gauge', 'Queues per vhost');
    const vhostExchanges = x.family('warren_exchanges', 'gauge', 'Exchanges per vhost');
    for (const v of core.vhosts.values()) {
      vhostQueues(v.queues.size, { vhost: v.name });
      vhostExchanges(v.exchanges.size, { vhost: v.name });
    }
  } else {
    let queueCount = 0;
    let exchangeCount = 0;
    for (const v of core.vhosts.values()) {
      queueCount += v.queues.size;
      exchangeCount += v.exchanges.size;
    }
    x.family('warren_vhosts', 'gauge', 'Virtual hosts')(core.vhosts.size);
    x.family('warren_queues', 'gauge', 'Queues (all vhosts)')(queueCount);
    x.family('warren_exchanges', 'gauge', 'Exchanges (all vhosts)')(exchangeCount);
  }

  const families: Array<[string, 'gauge' | 'counter', string, (q: QueueLike) => number]> = [
    ['warren_queue_messages_ready', 'gauge', 'Messages ready for delivery', (q) => q.readyCount],
    ['warren_queue_messages_unacked', 'gauge', 'Messages delivered and not yet acknowledged', (q) => q.unackedCount],
    ['warren_queue_messages_ready_bytes', 'gauge', 'Bytes of ready messages', (q) => q.readyBytes],
    ['warren_queue_consumers', 'gauge', 'Consumers of the queue', (q) => q.consumerCount],
    ['warren_queue_messages_published_total', 'counter', 'Messages enqueued', (q) => q.stats.published],
    ['warren_queue_messages_delivered_total', 'counter', 'Messages delivered to consumers', (q) => q.stats.delivered],
    ['warren_queue_messages_got_total', 'counter', 'Messages fetched with basic.get', (q) => q.stats.got],
    ['warren_queue_messages_acked_total', 'counter', 'Messages acknowledged', (q) => q.stats.acked],
    ['warren_queue_messages_redelivered_total', 'counter', 'Messages delivered again', (q) => q.stats.redelivered],
    ['warren_queue_oldest_unacked_age_seconds', 'gauge', 'Age of the oldest delivery its consumers have not acknowledged', (q) => oldestUnackedAge(q) / 1000],
  ];
  if (!perObject) {
    // One unlabelled total per family, over every queue of every vhost.
    for (const [name, type, help, pick] of families) {
      let total = 0;
      // An age is not summed: the broker-wide value is the oldest.
      const max = name === 'warren_queue_oldest_unacked_age_seconds';
      for (const v of core.vhosts.values()) for (const q of v.queues.values()) total = max ? Math.max(total, pick(q)) : total + pick(q);
      x.header(name, type, `${help} (all queues)`);
      x.sample(name, '', total);
    }
    return x.text();
  }
  // Label sets rendered once per queue, shared by every per-queue family.
  const queues: Array<[string, QueueLike]> = [];
  for (const v of core.vhosts.values()) {
    const vh = esc(v.name);
    for (const q of v.queues.values()) queues.push([`{vhost="${vh}",queue="${esc(q.name)}"}`, q]);
  }
  for (const [name, type, help, pick] of families) {
    x.header(name, type, help);
    for (const [l, q] of queues) x.sample(name, l, pick(q));
  }
  return x.text();
}

interface QueueLike {
  readyCount: number;
  unackedCount: number;
  readyBytes: number;
  consumerCount: number;
  consumers: readonly { readonly owner: unknown }[];
  stats: { published: number; delivered: number; got: number; acked: number; redelivered: number };
}
