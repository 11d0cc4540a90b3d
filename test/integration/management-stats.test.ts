import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker, type Broker } from '../../src/broker.js';
import { startTestBroker, waitFor } from '../helpers/broker.js';
import { at, http, mgmt, type Mgmt, type Row } from '../helpers/management.js';

/** Message counters, sampled rates and Prometheus metrics, on a broker that samples every 100 ms. */

let broker: Broker;
let dataDir: string;
let api: Mgmt;
let port: number;

async function start(management: { statsIntervalMs?: number; metricsAuth?: boolean }): Promise<{ broker: Broker; dir: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'warren-mgmt-'));
  const b = await startBroker({ amqpPort: 0, mqttPort: null, stompPort: null, httpPort: 0, bind: '127.0.0.1', logLevel: 'silent', dataDir: dir, management });
  return { broker: b, dir };
}

beforeAll(async () => {
  ({ broker, dir: dataDir } = await start({ statsIntervalMs: 100 }));
  port = broker.ports.http!;
  api = mgmt(port);
});
afterAll(async () => {
  await broker.stop();
  await rm(dataDir, { recursive: true, force: true });
});

const N = 200;

describe('message counters and rates', () => {
  let conn: ChannelModel;

  test('publish, deliver and ack are counted per queue, per channel, per exchange and broker-wide', async () => {
    conn = await connect(`amqp://guest:guest@127.0.0.1:${broker.ports.amqp}`);
    const ch = await conn.createChannel();
    await ch.assertQueue('m.q', { durable: false });
    let acked = 0;
    await ch.consume('m.q', (m) => {
      if (m) {
        ch.ack(m);
        acked++;
      }
    });
    for (let i = 0; i < N; i++) ch.sendToQueue('m.q', Buffer.from(`m${i}`));
    await waitFor(() => acked === N, 5000, 'all acked');
    await waitFor(async () => at((await api.get('/queues/%2F/m.q')).body, 'message_stats.ack') === N, 3000, 'acks counted');

    const q = (await api.get('/queues/%2F/m.q')).body;
    expect(q['message_stats']).toMatchObject({ publish: N, deliver: N, deliver_get: N, ack: N, redeliver: 0, get: 0 });
    expect(q).toMatchObject({ messages: 0, consumers: 1 });

    const chans = (await api.list('/channels')).body;
    expect(chans).toHaveLength(1);
    expect(chans[0]!['message_stats']).toMatchObject({ publish: N, deliver: N, ack: N });

    expect(at((await api.get('/exchanges/%2F/amq.default')).body, 'message_stats.publish_in')).toBe(N);

    const o = (await api.get('/overview')).body;
    expect(o['message_stats']).toMatchObject({ publish: N, deliver: N, deliver_get: N, ack: N, redeliver: 0, return_unroutable: 0, drop_unroutable: 0 });
    expect(at((await api.get('/vhosts/%2F')).body, 'message_stats.publish')).toBe(N);

    const c = (await api.list('/connections')).body[0]!;
    expect(c['recv_oct']).toBeGreaterThan(N * 10);
    expect(c['recv_cnt']).toBeGreaterThan(N);
  });

  test('rates are sampled on a timer and show a steady flow', async () => {
    const ch = await conn.createChannel();
    let stop = false;
    const flow = (async () => {
      while (!stop) {
        for (let i = 0; i < 20; i++) ch.sendToQueue('m.q', Buffer.from('r'));
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    try {
      const rated = await waitFor(
        async () => {
          const q = (await api.get('/queues/%2F/m.q')).body;
          const pub = at(q, 'message_stats.publish_details.rate') as number;
          const ack = at(q, 'message_stats.ack_details.rate') as number;
          return pub > 100 && ack > 100 ? q : undefined;
        },
        5000,
        'non-zero rates',
      );
      expect(at(rated, 'message_stats.deliver_get_details.rate')).toBeGreaterThan(100);
      const o = (await api.get('/overview')).body;
      expect(at(o, 'message_stats.publish_details.rate')).toBeGreaterThan(0);
      const conns = (await api.list('/connections')).body;
      expect(at(conns[0], 'recv_oct_details.rate')).toBeGreaterThan(0);
    } finally {
      stop = true;
      await flow;
      await ch.close();
    }
    // Once the flow stops, a sample later the connection shows as idle again.
    const idle = await waitFor(
      async () => {
        const c = (await api.list('/connections')).body[0];
        return at(c, 'recv_oct_details.rate') === 0 && at(c, 'send_oct_details.rate') === 0 ? c : undefined;
      },
      5000,
      'idle connection rates back to 0',
    );
    expect(idle['recv_oct']).toBeGreaterThan(0);
  });

  test('the overview keeps a history of samples for charts', async () => {
    const query = '/overview?msg_rates_age=60&msg_rates_incr=0.1&lengths_age=60&lengths_incr=0.1';
    const o = await waitFor(
      async () => {
        const b = (await api.get(query)).body;
        return (at(b, 'message_stats.publish_details.samples') as Row[]).length > 2 ? b : undefined;
      },
      3000,
      'three samples',
    );
    const samples = at(o, 'message_stats.publish_details.samples') as Row[];
    const ts = samples.map((s) => s['timestamp'] as number);
    expect(ts).toEqual([...ts].sort((a, b) => b - a)); // newest first, as RabbitMQ
    const counts = samples.map((s) => s['sample'] as number);
    expect(counts[0]).toBeGreaterThanOrEqual(counts[counts.length - 1]!);
    expect(Array.isArray(at(o, 'queue_totals.messages_ready_details.samples'))).toBe(true);
    expect(at((await api.get('/overview')).body, 'message_stats.publish_details.samples')).toBeUndefined();
  });

  test('totals survive closed channels and connections', async () => {
    const before = at((await api.get('/overview')).body, 'message_stats.publish') as number;
    expect(before).toBeGreaterThan(N);
    await conn.close();
    await waitFor(async () => (await api.list('/connections')).body.length === 0, 3000, 'connection gone');
    const o = (await api.get('/overview')).body;
    expect(at(o, 'message_stats.publish')).toBe(before);
    expect(o['churn_rates']).toMatchObject({ connection_created: 1, connection_closed: 1 });
  });
});

describe('Prometheus metrics', () => {
  test('text format, per protocol without auth by default, per queue with credentials', async () => {
    const c = await connect(`amqp://guest:guest@127.0.0.1:${broker.ports.amqp}`);
    const ch = await c.createChannel();
    await ch.assertQueue('odd "name"\\q', { durable: false });
    for (let i = 0; i < 3; i++) ch.sendToQueue('odd "name"\\q', Buffer.from('x'));
    await ch.get('odd "name"\\q', { noAck: false });
    await waitFor(async () => (await api.get(`/queues/%2F/${encodeURIComponent('odd "name"\\q')}`)).body['messages_unacknowledged'] === 1, 3000, 'one unacked');

    const r = await http(port, 'GET', '/metrics', { auth: null });
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/plain; version=0.0.4; charset=utf-8');
    const lines = r.text.trimEnd().split('\n');
    for (const l of lines) {
      if (l.startsWith('#')) expect(l).toMatch(/^# (HELP|TYPE) warren_\w+ /);
      else expect(l).toMatch(/^warren_\w+(\{([a-z_]+="([^"\\]|\\.)*",?)*\})? -?[\d.e+]+$/);
    }
    const value = (series: string): number | undefined => {
      const line = lines.find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    expect(value('warren_connections{protocol="amqp",version="0-9-1"}')).toBe(1);
    expect(value('warren_channels{protocol="amqp",version="0-9-1"}')).toBe(1);
    expect(value('warren_messages_published_total{protocol="amqp",version="0-9-1"}')).toBeGreaterThan(N);
    expect(value('warren_messages_acked_total{protocol="amqp",version="0-9-1"}')).toBeGreaterThanOrEqual(N);
    expect(value('warren_messages_got_total{protocol="amqp",version="0-9-1"}')).toBe(1);
    expect(value('warren_received_bytes_total{protocol="amqp",version="0-9-1"}')).toBeGreaterThan(0);
    expect(value('warren_connections_opened_total{protocol="amqp",version="0-9-1"}')).toBe(2);
    expect(value('warren_alarms{alarm="memory"}')).toBe(0);
    expect(value('warren_process_resident_memory_bytes')).toBeGreaterThan(0);
    expect(value('warren_queues')).toBe(2);
    expect(value('warren_messages_unroutable_total')).toBe(0);

    // Per queue and per vhost only on /metrics/per-object, with credentials.
    const po = await http(port, 'GET', '/metrics/per-object');
    expect(po.status).toBe(200);
    const poLines = po.text.trimEnd().split('\n');
    const poValue = (series: string): number | undefined => {
      const line = poLines.find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    expect(poValue('warren_queue_messages_ready{vhost="/",queue="odd \\"name\\"\\\\q"}')).toBe(2);
    expect(poValue('warren_queue_messages_unacked{vhost="/",queue="odd \\"name\\"\\\\q"}')).toBe(1);
    expect(poValue('warren_queues{vhost="/"}')).toBe(2);

    ch.publish('amq.direct', 'nowhere', Buffer.from('lost'));
    await waitFor(async () => (await http(port, 'GET', '/metrics', { auth: null })).text.includes('warren_messages_dropped_total 1'), 3000, 'dropped counted');
    await c.close();
  });

  test('metrics can require authentication', async () => {
    const { broker: b, dir } = await start({ metricsAuth: true });
    try {
      const p = b.ports.http!;
      expect((await http(p, 'GET', '/metrics', { auth: null })).status).toBe(401);
      expect((await http(p, 'GET', '/metrics', { auth: ['guest', 'wrong'] })).status).toBe(401);
      const ok = await http(p, 'GET', '/metrics');
      expect(ok.status).toBe(200);
      expect(ok.text).toContain('warren_uptime_seconds');
    } finally {
      await b.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the metricsAuth option (--metrics-auth) turns authentication on', async () => {
    const tb = await startTestBroker({ metricsAuth: true });
    try {
      const p = tb.broker.ports.http!;
      expect((await http(p, 'GET', '/metrics', { auth: null })).status).toBe(401);
      expect((await http(p, 'GET', '/metrics')).status).toBe(200);
    } finally {
      await tb.stop();
    }
  });
});
