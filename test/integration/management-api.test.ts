import { connect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { at, http, mgmt, type Mgmt, type Row } from '../helpers/management.js';

let tb: TestBroker;
let api: Mgmt;
let port: number;
let conn: ChannelModel;
let ch: Channel;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.http!;
  api = mgmt(port);
  conn = await connect(`${tb.amqpUrl}?frameMax=0`, { clientProperties: { connection_name: 'api-test' } });
  ch = await conn.createChannel();
});
afterAll(async () => {
  await conn.close().catch(() => undefined);
  await tb.stop();
});

const names = (rows: Row[]): unknown[] => rows.map((r) => r['name']);

describe('authentication and authorisation', () => {
  test('no credentials: 401 not_authorised with a basic challenge', async () => {
    const r = await http(port, 'GET', '/api/overview', { auth: null });
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: 'not_authorised', reason: 'Login failed' });
    expect(r.headers['www-authenticate']).toMatch(/^Basic realm=/);
  });

  test('the UI (X-Requested-With) gets no challenge, so browsers show no login dialog', async () => {
    const r = await http(port, 'GET', '/api/overview', { auth: null, headers: { 'x-requested-with': 'XMLHttpRequest' } });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toBeUndefined();
  });

  test('a wrong password is refused', async () => {
    const r = await mgmt(port, ['guest', 'nope']).get('/overview');
    expect(r.status).toBe(401);
    expect(r.body).toEqual({ error: 'not_authorised', reason: 'Login failed' });
  });

  test('a user without a management tag may not use the API', async () => {
    expect((await api.put('/users/plain', { password: 'p', tags: '' })).status).toBe(201);
    const r = await mgmt(port, ['plain', 'p']).get('/overview');
    expect(r.status).toBe(401);
    expect(r.body).toMatchObject({ reason: 'Not management user' });
  });

  test('a management user sees only its vhosts and may not administer users', async () => {
    await api.put('/vhosts/hidden', {});
    await api.put('/users/mgr', { password: 'p', tags: 'management' });
    await api.put('/permissions/%2F/mgr', { configure: '.*', write: '.*', read: '.*' });
    const m = mgmt(port, ['mgr', 'p']);
    expect((await m.get('/whoami')).body).toEqual({ name: 'mgr', tags: ['management'] });
    expect(names((await m.list('/vhosts')).body)).toEqual(['/']);
    expect((await m.get('/vhosts/hidden')).status).toBe(401);
    const users = await m.get('/users');
    expect(users.status).toBe(401);
    expect(users.body).toMatchObject({ error: 'not_authorised', reason: 'Not administrator user' });
    expect((await m.put('/vhosts/x', {})).status).toBe(401);
    expect((await m.get('/nodes')).status).toBe(401);
    // Operations go through the same permission checks as a client's.
    await api.put('/permissions/%2F/mgr', { configure: '^mgr-', write: '.*', read: '.*' });
    expect((await m.put('/queues/%2F/mgr-q', {})).status).toBe(201);
    const refused = await m.put('/queues/%2F/other-q', {});
    expect(refused.status).toBe(401);
    expect(String(refused.body['reason'])).toMatch(/ACCESS_REFUSED - access to queue 'other-q' in vhost '\/' refused for user 'mgr'/);
    await api.del('/queues/%2F/mgr-q');
    await api.del('/users/mgr');
    await api.del('/vhosts/hidden');
  });

  test('a monitoring user sees every vhost but may not change them', async () => {
    await api.put('/users/mon', { password: 'p', tags: ['monitoring'] });
    const m = mgmt(port, ['mon', 'p']);
    expect((await m.get('/nodes')).status).toBe(200);
    expect(names((await m.list('/vhosts')).body)).toContain('/');
    expect((await m.put('/users/x', { password: 'x', tags: '' })).status).toBe(401);
    expect((await m.put('/queues/%2F/mon-q', {})).status).toBe(401); // no permissions in '/'
    await api.del('/users/mon');
  });
});

describe('errors', () => {
  test('unknown paths are 404 with RabbitMQ error JSON', async () => {
    const r = await api.get('/nope');
    expect(r.status).toBe(404);
    expect(r.body).toEqual({ error: 'Object Not Found', reason: 'Not Found' });
    expect((await api.get('/queues/%2F/no-such-queue')).status).toBe(404);
    expect((await api.get('/queues/no-such-vhost')).status).toBe(404);
    expect((await http(port, 'GET', '/no-such-file.js')).status).toBe(404);
  });

  test('a known path with another method is 405', async () => {
    const r = await api.post('/overview', {});
    expect(r.status).toBe(405);
    expect(r.body).toMatchObject({ error: 'method_not_allowed' });
  });

  test('bad JSON is 400 bad_request', async () => {
    const r = await http(port, 'PUT', '/api/queues/%2F/badjson', { body: '{"durable": tru' });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: 'bad_request' });
    expect(String((r.body as Row)['reason'])).toMatch(/JSON/);
    const arr = await http(port, 'PUT', '/api/queues/%2F/badjson', { body: '[1,2]' });
    expect(arr.status).toBe(400);
    const wrongType = await api.put('/queues/%2F/badjson', { durable: 'maybe' });
    expect(wrongType.status).toBe(400);
    expect((await api.get('/queues/%2F/badjson')).status).toBe(404);
  });

  test('a body that is not declared JSON is 415, so cross-site forms cannot change anything', async () => {
    const form = await http(port, 'POST', '/api/exchanges/%2F/amq.default/publish', {
      body: 'routing_key=x&payload=y',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(form.status).toBe(415);
    expect(form.body).toMatchObject({ error: 'unsupported_media_type' });
    const text = await http(port, 'PUT', '/api/queues/%2F/from-a-form', { body: '{}', headers: { 'content-type': 'text/plain' } });
    expect(text.status).toBe(415);
    expect((await http(port, 'POST', '/api/definitions', { body: '{}', headers: { 'content-type': 'text/plain' } })).status).toBe(415);
    expect((await api.get('/queues/%2F/from-a-form')).status).toBe(404);
  });

  test('an inequivalent redeclaration is 400 with the AMQP reason', async () => {
    expect((await api.put('/queues/%2F/ineq', { durable: true })).status).toBe(201);
    const r = await api.put('/queues/%2F/ineq', { durable: false });
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: 'bad_request' });
    expect(String(r.body['reason'])).toMatch(/PRECONDITION_FAILED - inequivalent arg 'durable'/);
    await api.del('/queues/%2F/ineq');
  });
});

describe('overview, whoami, nodes, health', () => {
  test('overview has RabbitMQ fields, totals and listeners', async () => {
    const r = await api.get('/overview');
    expect(r.status).toBe(200);
    const o = r.body;
    expect(o).toMatchObject({ product_name: 'Warren', rates_mode: 'basic' });
    expect(typeof o['rabbitmq_version']).toBe('string');
    expect(typeof o['management_version']).toBe('string');
    expect(at(o, 'object_totals.connections')).toBeGreaterThanOrEqual(1);
    expect(at(o, 'object_totals.exchanges')).toBeGreaterThanOrEqual(6);
    expect(typeof at(o, 'queue_totals.messages')).toBe('number');
    expect(typeof at(o, 'message_stats.publish_details.rate')).toBe('number');
    const listeners = o['listeners'] as Row[];
    expect(listeners.map((l) => l['protocol'])).toEqual(expect.arrayContaining(['amqp', 'mqtt', 'stomp', 'http']));
    expect(listeners.find((l) => l['protocol'] === 'amqp')?.['port']).toBe(tb.broker.ports.amqp);
    expect((o['exchange_types'] as Row[]).map((t) => t['name']).sort()).toEqual(['direct', 'fanout', 'headers', 'topic', 'x-delayed-message']);
    expect(o['connections_by_protocol']).toMatchObject({ 'AMQP 0-9-1': 1 });
  });

  test('whoami and nodes', async () => {
    expect((await api.get('/whoami')).body).toEqual({ name: 'guest', tags: ['administrator'] });
    const nodes = await api.list('/nodes');
    expect(nodes.body).toHaveLength(1);
    const node = nodes.body[0]!;
    expect(node).toMatchObject({ type: 'disc', running: true, mem_alarm: false, disk_free_alarm: false });
    expect(node['mem_used']).toBeGreaterThan(0);
    expect(node['disk_free']).toBeGreaterThan(0);
    const one = await api.get(`/nodes/${encodeURIComponent(String(node['name']))}`);
    expect(one.body['name']).toBe(node['name']);
    expect((await api.get('/nodes/nobody@nowhere')).status).toBe(404);
  });

  test('health checks: alarms, port listeners, virtual hosts, aliveness', async () => {
    expect(await api.get('/health/checks/alarms')).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await api.get(`/health/checks/port-listener/${tb.broker.ports.amqp}`)).toMatchObject({ status: 200, body: { status: 'ok' } });
    const missing = await api.get('/health/checks/port-listener/1');
    expect(missing.status).toBe(503);
    expect(missing.body).toMatchObject({ status: 'failed', missing: 1 });
    expect((await api.get('/health/checks/port-listener/nope')).status).toBe(400);
    expect(await api.get('/health/checks/virtual-hosts')).toMatchObject({ status: 200, body: { status: 'ok' } });
    expect(await api.get('/health/checks/protocol-listener/mqtt')).toMatchObject({ status: 200 });
    expect(await api.get('/aliveness-test/%2F')).toMatchObject({ status: 200, body: { status: 'ok' } });
    tb.broker.core.alarms.set('memory', true);
    try {
      const r = await api.get('/health/checks/alarms');
      expect(r.status).toBe(503);
      expect(r.body).toMatchObject({ status: 'failed', alarms: [{ resource: 'memory' }] });
    } finally {
      tb.broker.core.alarms.set('memory', false);
    }
  });
});

describe('connections, channels, consumers', () => {
  test('a client connection is listed with its protocol and client properties, and can be closed', async () => {
    const c = await connect(tb.amqpUrl, { clientProperties: { connection_name: 'closable' } });
    const cch = await c.createChannel();
    const q = (await cch.assertQueue('', { exclusive: true })).queue;
    const tag = (await cch.consume(q, () => undefined, { noAck: false })).consumerTag;
    await cch.prefetch(7);

    const all = await api.list('/connections');
    const row = all.body.find((r) => r['user_provided_name'] === 'closable');
    expect(row).toMatchObject({ protocol: 'AMQP 0-9-1', user: 'guest', vhost: '/', type: 'network', peer_host: '127.0.0.1', channels: 1, state: 'running' });
    expect(at(row, 'client_properties.product')).toBe('amqplib');
    const name = String(row!['name']);
    expect((await api.get(`/connections/${encodeURIComponent(name)}`)).body['name']).toBe(name);
    expect(names((await api.list('/vhosts/%2F/connections')).body)).toContain(name);

    const chans = await api.list(`/connections/${encodeURIComponent(name)}/channels`);
    expect(chans.body).toHaveLength(1);
    const chName = String(chans.body[0]!['name']);
    expect(chName).toBe(`${name} (1)`);
    const chan = await api.get(`/channels/${encodeURIComponent(chName)}`);
    expect(chan.body).toMatchObject({ number: 1, user: 'guest', vhost: '/', consumer_count: 1, connection_details: { name } });
    expect((chan.body['consumer_details'] as Row[])[0]).toMatchObject({ consumer_tag: tag });
    expect(names((await api.list('/channels')).body)).toContain(chName);
    expect(names((await api.list('/vhosts/%2F/channels')).body)).toContain(chName);

    const consumers = await api.list('/consumers/%2F');
    const co = consumers.body.find((x) => x['consumer_tag'] === tag);
    expect(co).toMatchObject({ queue: { name: q, vhost: '/' }, ack_required: true, exclusive: false, channel_details: { name: chName, connection_name: name } });
    expect((await api.list('/consumers')).body.some((x) => x['consumer_tag'] === tag)).toBe(true);

    const exclusive = await api.get(`/queues/%2F/${encodeURIComponent(q)}`);
    expect(exclusive.body).toMatchObject({ exclusive: true, owner_pid_details: { name } });

    const closed = new Promise<Error>((resolve) => c.once('close', resolve));
    c.on('error', () => undefined);
    const del = await api.del(`/connections/${encodeURIComponent(name)}`, { 'x-reason': 'maintenance' });
    expect(del.status).toBe(204);
    const err = await closed;
    expect(String(err)).toMatch(/CONNECTION_FORCED - maintenance/);
    await waitFor(async () => !names((await api.list('/connections')).body).includes(name), 3000, 'connection gone');
    expect((await api.del(`/connections/${encodeURIComponent(name)}`)).status).toBe(404);
  });

  test('a management user sees and closes only its own connections', async () => {
    await api.put('/users/owner', { password: 'p', tags: 'management' });
    await api.put('/permissions/%2F/owner', { configure: '.*', write: '.*', read: '.*' });
    const c = await connect(`amqp://owner:p@127.0.0.1:${tb.broker.ports.amqp}`);
    c.on('error', () => undefined);
    const m = mgmt(port, ['owner', 'p']);
    const mine = (await m.list('/connections')).body;
    expect(mine.map((r) => r['user'])).toEqual(['owner']);
    const guestConn = (await api.list('/connections')).body.find((r) => r['user'] === 'guest');
    expect((await m.del(`/connections/${encodeURIComponent(String(guestConn!['name']))}`)).status).toBe(404);
    const closed = new Promise((resolve) => c.once('close', resolve));
    expect((await m.del(`/connections/${encodeURIComponent(String(mine[0]!['name']))}`)).status).toBe(204);
    await closed;
    await api.del('/users/owner');
  });
});

describe('exchanges', () => {
  test('declare (201 then 204), show, list, delete', async () => {
    expect((await api.put('/exchanges/%2F/x.api', { type: 'topic', durable: true, arguments: { 'alternate-exchange': 'amq.fanout' } })).status).toBe(201);
    expect((await api.put('/exchanges/%2F/x.api', { type: 'topic', durable: true, arguments: { 'alternate-exchange': 'amq.fanout' } })).status).toBe(204);
    const x = await api.get('/exchanges/%2F/x.api');
    expect(x.body).toMatchObject({ name: 'x.api', vhost: '/', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: { 'alternate-exchange': 'amq.fanout' } });
    expect(at(x.body, 'message_stats.publish_in')).toBe(0);
    expect(names((await api.list('/exchanges/%2F')).body)).toEqual(expect.arrayContaining(['', 'amq.direct', 'amq.topic', 'x.api']));
    expect(names((await api.list('/exchanges')).body)).toContain('x.api');
    expect((await api.get('/exchanges/%2F/amq.default')).body).toMatchObject({ name: '', type: 'direct' });
    expect((await api.put('/exchanges/%2F/x.bad', { type: 'nonsense' })).status).toBe(400);
    expect((await api.put('/exchanges/%2F/amq.custom', { type: 'direct' })).status).toBe(401);
    expect((await api.del('/exchanges/%2F/x.api')).status).toBe(204);
    expect((await api.get('/exchanges/%2F/x.api')).status).toBe(404);
    expect((await api.del('/exchanges/%2F/x.api')).status).toBe(404);
  });

  test('publish reports whether the message was routed; bindings by source and destination', async () => {
    await api.put('/exchanges/%2F/x.src', { type: 'direct' });
    await api.put('/exchanges/%2F/x.dst', { type: 'fanout' });
    await api.put('/queues/%2F/q.pub', { durable: false });
    expect((await api.post('/bindings/%2F/e/x.src/e/x.dst', { routing_key: 'k' })).status).toBe(201);
    expect((await api.post('/bindings/%2F/e/x.dst/q/q.pub', { routing_key: '' })).status).toBe(201);
    const routed = await api.post('/exchanges/%2F/x.src/publish', { routing_key: 'k', payload: 'via e2e', payload_encoding: 'string', properties: { delivery_mode: 2, headers: { a: 1 } } });
    expect(routed.body).toEqual({ routed: true });
    const lost = await api.post('/exchanges/%2F/x.src/publish', { routing_key: 'other', payload: 'x', payload_encoding: 'string', properties: {} });
    expect(lost.body).toEqual({ routed: false });
    expect((await api.post('/exchanges/%2F/amq.default/publish', { routing_key: 'q.pub', payload: 'aGk=', payload_encoding: 'base64', properties: {} })).body).toEqual({ routed: true });
    expect((await api.post('/exchanges/%2F/x.src/publish', { routing_key: 'k', payload: 'x', payload_encoding: 'rot13', properties: {} })).status).toBe(400);
    expect((await api.post('/exchanges/%2F/x.src/publish', { payload: 'x' })).status).toBe(400);

    const src = await api.list('/exchanges/%2F/x.src/bindings/source');
    expect(src.body).toEqual([expect.objectContaining({ source: 'x.src', destination: 'x.dst', destination_type: 'exchange', routing_key: 'k', properties_key: 'k' })]);
    const dst = await api.list('/exchanges/%2F/x.dst/bindings/destination');
    expect(dst.body.map((b) => b['source'])).toEqual(['x.src']);

    const msgs = await api.post<Row[]>('/queues/%2F/q.pub/get', { count: 5, ackmode: 'ack_requeue_false', encoding: 'auto' });
    expect(msgs.body.map((m) => m['payload'])).toEqual(['via e2e', 'hi']);
    expect(msgs.body[0]).toMatchObject({ exchange: 'x.src', routing_key: 'k', redelivered: false, payload_bytes: 7, payload_encoding: 'string', properties: { delivery_mode: 2, headers: { a: 1 } } });
    expect(at(msgs.body[1], 'message_count')).toBe(0);
    expect((await api.del('/exchanges/%2F/x.src?if-unused=true')).status).toBe(400);
    for (const x of ['x.src', 'x.dst']) await api.del(`/exchanges/%2F/${x}`);
    await api.del('/queues/%2F/q.pub');
  });
});

describe('queues', () => {
  test('declare, show counts, list, bindings, purge, delete', async () => {
    expect((await api.put('/queues/%2F/q.api', { durable: true, auto_delete: false, arguments: { 'x-max-length': 100 } })).status).toBe(201);
    expect((await api.put('/queues/%2F/q.api', { durable: true, arguments: { 'x-max-length': 100 } })).status).toBe(204);
    for (let i = 0; i < 3; i++) ch.sendToQueue('q.api', Buffer.from(`m${i}`));
    await waitFor(async () => (await api.get('/queues/%2F/q.api')).body['messages'] === 3, 3000, 'three messages');
    const q = (await api.get('/queues/%2F/q.api')).body;
    expect(q).toMatchObject({
      name: 'q.api',
      vhost: '/',
      durable: true,
      auto_delete: false,
      exclusive: false,
      arguments: { 'x-max-length': 100 },
      type: 'classic',
      state: 'running',
      consumers: 0,
      messages: 3,
      messages_ready: 3,
      messages_unacknowledged: 0,
      message_stats: { publish: 3 },
      consumer_details: [],
    });
    expect(q['message_bytes']).toBeGreaterThan(0);
    expect(names((await api.list('/queues/%2F')).body)).toContain('q.api');
    expect(names((await api.list('/queues')).body)).toContain('q.api');
    const bindings = await api.list('/queues/%2F/q.api/bindings');
    expect(bindings.body).toEqual([{ source: '', vhost: '/', destination: 'q.api', destination_type: 'queue', routing_key: 'q.api', arguments: {}, properties_key: 'q.api' }]);
    expect((await api.del('/queues/%2F/q.api?if-empty=true')).status).toBe(400);
    expect((await api.del('/queues/%2F/q.api/contents')).status).toBe(204);
    expect((await api.get('/queues/%2F/q.api')).body['messages']).toBe(0);
    expect((await api.del('/queues/%2F/q.api?if-empty=true')).status).toBe(204);
    expect((await api.get('/queues/%2F/q.api')).status).toBe(404);
  });

  test('get with each ack mode and encoding', async () => {
    await ch.assertExchange('dlx.api', 'fanout', { durable: false });
    await ch.assertQueue('q.dead', { durable: false });
    await ch.bindQueue('q.dead', 'dlx.api', '');
    await api.put('/queues/%2F/q.get', { durable: false, arguments: { 'x-dead-letter-exchange': 'dlx.api' } });
    ch.sendToQueue('q.get', Buffer.from('first'), { messageId: 'id-1', contentType: 'text/plain' });
    ch.sendToQueue('q.get', Buffer.from([0xff, 0xfe, 0x00, 0x01]));
    await waitFor(async () => (await api.get('/queues/%2F/q.get')).body['messages'] === 2, 3000, 'two messages');

    const peek = await api.post<Row[]>('/queues/%2F/q.get/get', { count: 10, ackmode: 'ack_requeue_true', encoding: 'auto' });
    expect(peek.body).toHaveLength(2);
    expect(peek.body[0]).toMatchObject({ payload: 'first', payload_encoding: 'string', redelivered: false, message_count: 1, properties: { message_id: 'id-1', content_type: 'text/plain' } });
    expect(peek.body[1]).toMatchObject({ payload: Buffer.from([0xff, 0xfe, 0x00, 0x01]).toString('base64'), payload_encoding: 'base64', payload_bytes: 4 });
    // requeued, now flagged redelivered
    const again = await api.post<Row[]>('/queues/%2F/q.get/get', { count: '1', ackmode: 'reject_requeue_true', encoding: 'base64', truncate: 2 });
    expect(again.body[0]).toMatchObject({ redelivered: true, payload: Buffer.from('fi').toString('base64'), payload_encoding: 'base64', payload_bytes: 5 });
    expect((await api.get('/queues/%2F/q.get')).body['messages']).toBe(2);
    // reject without requeue dead-letters
    const rejected = await api.post<Row[]>('/queues/%2F/q.get/get', { count: 1, ackmode: 'reject_requeue_false', encoding: 'auto' });
    expect(rejected.body[0]!['payload']).toBe('first');
    await waitFor(async () => (await api.get('/queues/%2F/q.dead')).body['messages'] === 1, 3000, 'dead-lettered');
    // ack without requeue removes
    await api.post('/queues/%2F/q.get/get', { count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' });
    expect((await api.get('/queues/%2F/q.get')).body['messages']).toBe(0);
    expect((await api.post<Row[]>('/queues/%2F/q.get/get', { count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' })).body).toEqual([]);
    expect((await api.post('/queues/%2F/q.get/get', { count: 1, ackmode: 'sometimes', encoding: 'auto' })).status).toBe(400);
    expect((await api.post('/queues/%2F/q.get/get', { count: 1, ackmode: 'ack_requeue_true', encoding: 'hex' })).status).toBe(400);
    expect((await api.post('/queues/%2F/nope/get', { count: 1, ackmode: 'ack_requeue_true', encoding: 'auto' })).status).toBe(404);
    await api.del('/queues/%2F/q.get');
    await api.del('/queues/%2F/q.dead');
    await api.del('/exchanges/%2F/dlx.api');
  });
});

describe('bindings', () => {
  test('queue and exchange bindings: create, list, show and delete by properties key', async () => {
    await api.put('/exchanges/%2F/b.x', { type: 'headers' });
    await api.put('/exchanges/%2F/b.y', { type: 'topic' });
    await api.put('/queues/%2F/b.q', { durable: false });
    const created = await api.post('/bindings/%2F/e/b.x/q/b.q', { routing_key: '', arguments: { 'x-match': 'any', kind: 'order' } });
    expect(created.status).toBe(201);
    const key = decodeURIComponent(String(created.headers['location']));
    expect(key).toMatch(/^~.+/);
    expect((await api.post('/bindings/%2F/e/b.y/q/b.q', { routing_key: 'a.b c/#' })).status).toBe(201);
    expect((await api.post('/bindings/%2F/e/b.y/e/b.x', { routing_key: '#' })).status).toBe(201);

    const between = await api.list('/bindings/%2F/e/b.x/q/b.q');
    expect(between.body).toEqual([expect.objectContaining({ source: 'b.x', destination: 'b.q', arguments: { 'x-match': 'any', kind: 'order' }, properties_key: key })]);
    const topicKey = String((await api.list('/bindings/%2F/e/b.y/q/b.q')).body[0]!['properties_key']);
    expect(topicKey).toBe('a.b+c%2F%23');
    expect((await api.get(`/bindings/%2F/e/b.x/q/b.q/${encodeURIComponent(key)}`)).body).toMatchObject({ source: 'b.x' });
    expect((await api.get('/bindings/%2F/e/b.x/q/b.q/nope')).status).toBe(404);
    const all = (await api.list('/bindings/%2F')).body;
    expect(all).toEqual(expect.arrayContaining([expect.objectContaining({ source: '', destination: 'b.q', routing_key: 'b.q' }), expect.objectContaining({ source: 'b.y', destination: 'b.x', destination_type: 'exchange' })]));
    expect((await api.list('/bindings')).body.length).toBe((await api.list('/bindings/%2F')).body.length);
    expect(at((await api.list('/bindings/%2F/e/b.y/e/b.x')).body[0], 'routing_key')).toBe('#');

    expect((await api.del(`/bindings/%2F/e/b.x/q/b.q/${encodeURIComponent(key)}`)).status).toBe(204);
    expect((await api.del(`/bindings/%2F/e/b.y/q/b.q/${encodeURIComponent(topicKey)}`)).status).toBe(204);
    // the properties key of '#' is '%23', which is '%2523' in a URL (as in RabbitMQ)
    expect((await api.del('/bindings/%2F/e/b.y/e/b.x/%23')).status).toBe(404);
    expect((await api.del(`/bindings/%2F/e/b.y/e/b.x/${encodeURIComponent('%23')}`)).status).toBe(204);
    expect((await api.list('/queues/%2F/b.q/bindings')).body).toHaveLength(1);
    expect((await api.post('/bindings/%2F/e/amq.default/q/b.q', { routing_key: 'x' })).status).toBe(401);
    expect((await api.post('/bindings/%2F/e/b.x/q/missing', { routing_key: 'x' })).status).toBe(404);
    for (const x of ['b.x', 'b.y']) await api.del(`/exchanges/%2F/${x}`);
    await api.del('/queues/%2F/b.q');
  });
});

describe('vhosts, users, permissions', () => {
  test('vhost lifecycle; deleting one closes its connections and drops its queues', async () => {
    expect((await api.put('/vhosts/v.api', { description: 'for tests', tags: 'a,b' })).status).toBe(201);
    expect((await api.put('/vhosts/v.api', { description: 'still for tests' })).status).toBe(204);
    const v = (await api.get('/vhosts/v.api')).body;
    expect(v).toMatchObject({ name: 'v.api', description: 'still for tests', tags: ['a', 'b'], messages: 0 });
    expect(names((await api.list('/vhosts')).body)).toEqual(['/', 'v.api']);
    await api.put('/permissions/v.api/guest', { configure: '.*', write: '.*', read: '.*' });
    expect((await api.put('/queues/v.api/q.in.v', {})).status).toBe(201);
    const c = await connect(`${tb.amqpUrl}/v.api`);
    c.on('error', () => undefined);
    const closed = new Promise<Error>((resolve) => c.once('close', resolve));
    expect((await api.del('/vhosts/v.api')).status).toBe(204);
    expect(String(await closed)).toMatch(/CONNECTION_FORCED/);
    expect((await api.get('/vhosts/v.api')).status).toBe(404);
    expect((await api.get('/permissions/v.api/guest')).status).toBe(404);
    expect(tb.broker.core.vhosts.has('v.api')).toBe(false);
    expect((await api.del('/vhosts/v.api')).status).toBe(404);
  });

  test('users with passwords or RabbitMQ hashes; tags as a string or a list', async () => {
    expect((await api.put('/users/alice', { password: 'wonder', tags: 'monitoring,policymaker' })).status).toBe(201);
    expect((await api.get('/users/alice')).body).toMatchObject({ name: 'alice', tags: ['monitoring', 'policymaker'], hashing_algorithm: 'rabbit_password_hashing_sha256' });
    expect((await mgmt(port, ['alice', 'wonder']).get('/whoami')).body).toEqual({ name: 'alice', tags: ['monitoring', 'policymaker'] });
    // a hash exported by RabbitMQ for the password s3cret
    const hash = 'BZe+6siUC+ZC9/A+VY1oX0vSV28f4WKd7oIi2aGU8wt2bVuA';
    expect((await api.put('/users/alice', { password_hash: hash, tags: ['management'] })).status).toBe(204);
    expect((await mgmt(port, ['alice', 's3cret']).get('/whoami')).status).toBe(200);
    expect((await mgmt(port, ['alice', 'wonder']).get('/whoami')).status).toBe(401);
    // tags change alone keeps the password
    await api.put('/users/alice', { tags: 'administrator' });
    expect((await mgmt(port, ['alice', 's3cret']).get('/users')).status).toBe(200);
    expect((await api.put('/users/alice', { password_hash: 'not base64!', tags: '' })).status).toBe(400);
    expect((await api.put('/users/alice', { password: 'x', hashing_algorithm: 'rot13' })).status).toBe(400);
    expect(names((await api.list('/users')).body)).toEqual(expect.arrayContaining(['guest', 'alice']));
    expect(names((await api.list('/users/without-permissions')).body)).toContain('alice');
    await api.put('/users/bob', { password: 'b', tags: '' });
    await api.put('/users/carol', { password: 'c', tags: '' });
    expect((await api.post('/users/bulk-delete', { users: ['bob', 'carol'] })).status).toBe(204);
    expect((await api.get('/users/bob')).status).toBe(404);
    expect((await api.del('/users/alice')).status).toBe(204);
    expect((await api.get('/users/alice')).status).toBe(404);
    expect((await api.del('/users/alice')).status).toBe(404);
  });

  test('permissions and topic permissions', async () => {
    await api.put('/users/dave', { password: 'd', tags: '' });
    expect((await api.put('/permissions/%2F/dave', { configure: '^dave-', write: '.*', read: '.*' })).status).toBe(201);
    expect((await api.put('/permissions/%2F/dave', { configure: '^dave\\.', write: '.*', read: '.*' })).status).toBe(204);
    expect((await api.get('/permissions/%2F/dave')).body).toEqual({ user: 'dave', vhost: '/', configure: '^dave\\.', write: '.*', read: '.*' });
    expect((await api.list('/permissions')).body).toEqual(expect.arrayContaining([expect.objectContaining({ user: 'dave' }), expect.objectContaining({ user: 'guest' })]));
    expect((await api.list('/users/dave/permissions')).body).toHaveLength(1);
    expect((await api.list('/vhosts/%2F/permissions')).body.map((p) => p['user'])).toEqual(expect.arrayContaining(['dave', 'guest']));
    expect((await api.put('/permissions/%2F/dave', { configure: '(', write: '.*', read: '.*' })).status).toBe(400);
    expect((await api.put('/permissions/%2F/nobody', { configure: '.*', write: '.*', read: '.*' })).status).toBe(400);
    expect((await api.put('/permissions/no-vhost/dave', { configure: '.*', write: '.*', read: '.*' })).status).toBe(404);
    expect((await api.put('/permissions/%2F/dave', { configure: '.*' })).status).toBe(400);

    expect((await api.put('/topic-permissions/%2F/dave', { exchange: 'amq.topic', write: '^sensors\\.{username}\\.', read: '.*' })).status).toBe(201);
    expect((await api.list('/topic-permissions/%2F/dave')).body).toEqual([{ user: 'dave', vhost: '/', exchange: 'amq.topic', write: '^sensors\\.{username}\\.', read: '.*' }]);
    expect((await api.list('/topic-permissions')).body).toHaveLength(1);
    expect((await api.list('/users/dave/topic-permissions')).body).toHaveLength(1);
    expect((await api.list('/vhosts/%2F/topic-permissions')).body).toHaveLength(1);
    expect((await api.del('/topic-permissions/%2F/dave')).status).toBe(204);
    expect((await api.get('/topic-permissions/%2F/dave')).status).toBe(404);

    expect((await api.del('/permissions/%2F/dave')).status).toBe(204);
    expect((await api.get('/permissions/%2F/dave')).status).toBe(404);
    await api.del('/users/dave');
  });
});

describe('policies', () => {
  test('set, list, match queues, clear; invalid ones are 400', async () => {
    expect((await api.put('/policies/%2F/limit', { pattern: '^pol\\.', definition: { 'max-length': 5, 'message-ttl': 1000 }, priority: 1, 'apply-to': 'queues' })).status).toBe(201);
    expect((await api.get('/policies/%2F/limit')).body).toEqual({ vhost: '/', name: 'limit', pattern: '^pol\\.', 'apply-to': 'queues', definition: { 'max-length': 5, 'message-ttl': 1000 }, priority: 1 });
    expect(names((await api.list('/policies')).body)).toEqual(['limit']);
    expect(names((await api.list('/policies/%2F')).body)).toEqual(['limit']);
    await api.put('/queues/%2F/pol.q', { durable: false });
    expect((await api.get('/queues/%2F/pol.q')).body).toMatchObject({ policy: 'limit', effective_policy_definition: { 'max-length': 5 } });
    expect((await api.get('/exchanges/%2F/amq.direct')).body['policy']).toBeNull();
    expect((await api.put('/policies/%2F/bad', { pattern: '.*', definition: { 'max-length': 'lots' } })).status).toBe(400);
    expect((await api.put('/policies/%2F/bad', { pattern: '.*', definition: { 'no-such-key': 1 } })).status).toBe(400);
    expect((await api.put('/policies/%2F/bad', { pattern: '(', definition: { 'max-length': 1 } })).status).toBe(400);
    expect((await api.put('/policies/%2F/bad', { pattern: '.*', definition: { 'max-length': 1 }, 'apply-to': 'everything' })).status).toBe(400);
    expect((await api.del('/policies/%2F/limit')).status).toBe(204);
    expect((await api.del('/policies/%2F/limit')).status).toBe(404);
    await api.del('/queues/%2F/pol.q');
  });
});

describe('definitions', () => {
  test('export has RabbitMQ keys; import from a RabbitMQ export creates users, vhosts and topology', async () => {
    await api.put('/queues/%2F/def.kept', { durable: true });
    const exp = await api.get('/definitions');
    expect(exp.status).toBe(200);
    for (const k of ['rabbit_version', 'users', 'vhosts', 'permissions', 'topic_permissions', 'policies', 'queues', 'exchanges', 'bindings']) expect(exp.body).toHaveProperty(k);
    expect((exp.body['queues'] as Row[]).map((q) => q['name'])).toContain('def.kept');
    expect((exp.body['vhosts'] as Row[])[0]).toMatchObject({ name: '/', metadata: { description: 'Default virtual host' } });

    const rabbit = {
      rabbit_version: '3.12.4',
      users: [{ name: 'imported', password_hash: 'BZe+6siUC+ZC9/A+VY1oX0vSV28f4WKd7oIi2aGU8wt2bVuA', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: ['management'], limits: {} }],
      vhosts: [{ name: 'v.def', metadata: { description: 'imported vhost', tags: ['x'] } }],
      permissions: [{ user: 'imported', vhost: 'v.def', configure: '.*', write: '.*', read: '.*' }],
      topic_permissions: [],
      parameters: [],
      global_parameters: [],
      policies: [{ vhost: 'v.def', name: 'p', pattern: '.*', 'apply-to': 'queues', definition: { 'max-length': 9 }, priority: 0 }],
      queues: [{ name: 'orders', vhost: 'v.def', durable: true, auto_delete: false, arguments: { 'x-queue-type': 'classic' } }],
      exchanges: [{ name: 'shop', vhost: 'v.def', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} }],
      bindings: [{ source: 'shop', vhost: 'v.def', destination: 'orders', destination_type: 'queue', routing_key: 'order.#', arguments: {} }],
    };
    expect((await api.post('/definitions', rabbit)).status).toBe(204);
    expect((await mgmt(port, ['imported', 's3cret']).get('/whoami')).status).toBe(200);
    expect((await api.get('/vhosts/v.def')).body).toMatchObject({ description: 'imported vhost', tags: ['x'] });
    expect((await api.get('/queues/v.def/orders')).body).toMatchObject({ durable: true, policy: 'p' });
    expect((await api.list('/bindings/v.def/e/shop/q/orders')).body[0]).toMatchObject({ routing_key: 'order.#' });

    const scoped = await api.get('/definitions/v.def');
    expect(scoped.body).toMatchObject({ queues: [{ name: 'orders', durable: true }], exchanges: [{ name: 'shop' }], bindings: [{ source: 'shop' }], policies: [{ name: 'p' }] });
    expect(scoped.body).not.toHaveProperty('users');
    await api.put('/vhosts/v.copy', {});
    expect((await api.post('/definitions/v.copy', scoped.body)).status).toBe(204);
    expect((await api.get('/queues/v.copy/orders')).status).toBe(200);

    expect((await http(port, 'POST', '/api/definitions', { body: '{"users": [' })).status).toBe(400);
    expect((await api.post('/definitions', { queues: 'not a list' })).status).toBe(400);
    expect((await mgmt(port, ['imported', 's3cret']).get('/definitions')).status).toBe(401);
    await api.del('/vhosts/v.def');
    await api.del('/vhosts/v.copy');
    await api.del('/users/imported');
    await api.del('/queues/%2F/def.kept');
  });
});

describe('list queries', () => {
  test('sort, sort_reverse, columns (nested), name filter and paging', async () => {
    for (const n of ['lq.b', 'lq.a', 'lq.c']) await api.put(`/queues/%2F/${n}`, { durable: false });
    ch.sendToQueue('lq.c', Buffer.from('x'));
    ch.sendToQueue('lq.c', Buffer.from('y'));
    ch.sendToQueue('lq.a', Buffer.from('z'));
    await waitFor(async () => (await api.get('/queues/%2F/lq.c')).body['messages'] === 2, 3000, 'messages');
    const sorted = await api.list('/queues/%2F?name=lq.&sort=name&columns=name,messages,message_stats.publish');
    expect(sorted.body).toEqual([
      { name: 'lq.a', messages: 1, message_stats: { publish: 1 } },
      { name: 'lq.b', messages: 0, message_stats: { publish: 0 } },
      { name: 'lq.c', messages: 2, message_stats: { publish: 2 } },
    ]);
    const byDepth = await api.list('/queues/%2F?name=lq.&sort=messages&sort_reverse=true&columns=name');
    expect(names(byDepth.body)).toEqual(['lq.c', 'lq.a', 'lq.b']);
    const regex = await api.list('/queues/%2F?name=%5Elq%5C.%5Bab%5D%24&use_regex=true&columns=name');
    expect(names(regex.body).sort()).toEqual(['lq.a', 'lq.b']);
    const page = await api.get('/queues/%2F?name=lq.&sort=name&page=2&page_size=2&columns=name');
    expect(page.body).toMatchObject({ page: 2, page_size: 2, page_count: 2, filtered_count: 3, item_count: 1, items: [{ name: 'lq.c' }] });
    expect(page.body['total_count']).toBeGreaterThanOrEqual(3);
    expect((await api.get('/queues/%2F?page=9&page_size=2')).status).toBe(400);
    expect((await api.get('/queues/%2F?page=1&page_size=100000')).status).toBe(400);
    expect((await api.get('/queues/%2F/lq.c?columns=name,messages')).body).toEqual({ name: 'lq.c', messages: 2 });
    for (const n of ['lq.a', 'lq.b', 'lq.c']) await api.del(`/queues/%2F/${n}`);
  });
});

describe('the web UI and vendor files are served', () => {
  test('index, app and the chart library from node_modules', async () => {
    const index = await http(port, 'GET', '/', { auth: null });
    expect(index.status).toBe(200);
    expect(index.headers['content-type']).toMatch(/text\/html/);
    expect(index.text).toContain('<title>Warren Management</title>');
    const app = await http(port, 'GET', '/app.js', { auth: null });
    expect(app.headers['content-type']).toMatch(/javascript/);
    const uplot = await http(port, 'GET', '/vendor/uPlot.iife.min.js', { auth: null });
    expect(uplot.status).toBe(200);
    expect(uplot.text).toContain('uPlot');
    expect((await http(port, 'GET', '/../package.json', { auth: null })).status).toBe(404);
  });
});
