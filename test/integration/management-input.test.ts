import { connect, type ChannelModel } from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { http, mgmt, type Mgmt, type Row } from '../helpers/management.js';

/**
 * Management API input never reaches object internals or a backtracking regex: `columns` and
 * `sort` paths, JSON bodies, definitions, policy definitions and AMQP field tables keep a key
 * `__proto__` as data, refuse `__proto__` / `constructor` / `prototype` as path segments, and the
 * `name` filter is bounded and linear-time. The broker runs in this process, so Object.prototype
 * is checked directly after each request.
 */

let tb: TestBroker;
let api: Mgmt;
let port: number;
let amqp: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.http!;
  api = mgmt(port);
  amqp = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await amqp.close();
  await tb.stop();
});

const pristine = (): void => {
  const probe = {} as Record<string, unknown>;
  expect(probe['length']).toBeUndefined();
  expect(probe['polluted']).toBeUndefined();
  expect(probe['x-max-length']).toBeUndefined();
  expect(probe['tags']).toBeUndefined();
  expect(Object.getPrototypeOf(probe)).toBe(Object.prototype);
};
afterEach(pristine);

/** The broker still answers a normal request. */
async function alive(): Promise<void> {
  expect((await api.get('/overview')).status).toBe(200);
}

describe('columns and sort', () => {
  test.each([
    'tags.__proto__.length',
    '__proto__.polluted',
    'constructor.prototype.polluted',
    'name,tags.constructor',
    'message_stats.prototype',
  ])('columns=%s is a bad request and changes nothing', async (columns) => {
    const r = await api.get(`/users?columns=${encodeURIComponent(columns)}`);
    expect(r.status).toBe(400);
    expect(r.body).toMatchObject({ error: 'bad_request' });
    expect(String(r.body['reason'])).toMatch(/is not allowed in a column path/);
    const one = await api.get(`/users/guest?columns=${encodeURIComponent(columns)}`);
    expect(one.status).toBe(400);
    pristine();
    await alive();
  });

  test.each(['__proto__', 'constructor', 'name.__proto__.x'])('sort=%s is a bad request', async (sort) => {
    const r = await api.get(`/queues?sort=${encodeURIComponent(sort)}`);
    expect(r.status).toBe(400);
    await alive();
  });

  test('ordinary nested columns and sorting still work', async () => {
    const ch = await amqp.createChannel();
    await ch.assertQueue('cols.b', { durable: false });
    await ch.assertQueue('cols.a', { durable: false });
    const r = await api.list('/queues?columns=name,message_stats.publish&sort=name&name=cols.');
    expect(r.status).toBe(200);
    expect(r.body.map((x) => x['name'])).toEqual(['cols.a', 'cols.b']);
    expect(Object.keys(r.body[0]!)).toEqual(['name', 'message_stats']);
    const users = await api.list('/users?columns=name,tags.length');
    expect(users.body.find((u) => u['name'] === 'guest')).toEqual({ name: 'guest', tags: { length: 1 } });
    await ch.close();
  });
});

describe('the name filter', () => {
  test('a backtracking regex filter answers quickly', async () => {
    const ch = await amqp.createChannel();
    for (let i = 0; i < 20; i++) await ch.assertQueue(`${'a'.repeat(40 + i)}`, { durable: false, autoDelete: true, exclusive: true });
    const t0 = performance.now();
    const r = await api.list(`/queues?use_regex=true&name=${encodeURIComponent('^(a+)+$|(.*.*.*)*X')}`);
    const ms = performance.now() - t0;
    expect(r.status).toBe(200);
    expect(r.body.length).toBeGreaterThanOrEqual(20);
    expect(ms).toBeLessThan(500);
    await ch.close();
  });

  test('a filter the engine cannot run is a bad request with a reason', async () => {
    const r = await api.get(`/queues?use_regex=true&name=${encodeURIComponent('^(?!amq)')}`);
    expect(r.status).toBe(400);
    expect(String(r.body['reason'])).toMatch(/invalid regular expression '\^\(\?!amq\)': .*lookarounds are not supported/);
    const big = await api.get(`/queues?use_regex=true&name=${encodeURIComponent('(a|b){1,1000}'.repeat(10))}`);
    expect(big.status).toBe(400);
    expect(String(big.body['reason'])).toMatch(/too complex/);
  });

  test('a filter longer than 1 KiB is a bad request, with or without use_regex', async () => {
    for (const q of ['', '&use_regex=true']) {
      const r = await api.get(`/queues?name=${'x'.repeat(1025)}${q}`);
      expect(r.status).toBe(400);
      expect(String(r.body['reason'])).toMatch(/parameter name longer than 1024 bytes/);
    }
    expect((await api.get(`/queues?name=${'x'.repeat(1024)}`)).status).toBe(200);
  });
});

describe('user names', () => {
  test('credentials with a user name longer than 255 bytes get 401, and such a user cannot be created', async () => {
    const long = 'u'.repeat(300);
    const r = await http(port, 'GET', '/api/overview', { auth: [long, 'pw'] });
    expect(r.status).toBe(401);
    const put = await api.put(`/users/${long}`, { password: 'pw', tags: '' });
    expect(put.status).toBe(400);
    expect(String(put.body['reason'])).toMatch(/user name longer than 255 bytes/);
  });
});

describe('JSON bodies', () => {
  test('queue arguments with a __proto__ key keep it as an ordinary key, and it sets nothing', async () => {
    const body = '{"durable": false, "arguments": {"__proto__": {"x-max-length": 1, "polluted": true}}}';
    const r = await http(port, 'PUT', '/api/queues/%2F/proto.q', { body });
    expect(r.status).toBe(201);
    const q = tb.broker.core.vhosts.get('/')!.queues.get('proto.q')!;
    expect(Object.getPrototypeOf(q.args)).toBe(Object.prototype);
    expect(Object.hasOwn(q.args, '__proto__')).toBe(true);
    expect((q.args as Record<string, unknown>)['x-max-length']).toBeUndefined();
    // no hidden max-length: three messages stay
    const ch = await amqp.createConfirmChannel();
    for (let i = 0; i < 3; i++) ch.sendToQueue('proto.q', Buffer.from(String(i)));
    await ch.waitForConfirms();
    await waitFor(async () => (await ch.checkQueue('proto.q')).messageCount === 3, 3000, 'three messages');
    const row = await api.get('/queues/%2F/proto.q');
    expect(row.text).toContain('"arguments":{"__proto__":{"x-max-length":1,"polluted":true}}');
    await ch.close();
  });

  test('a publish with a __proto__ header delivers it as a header', async () => {
    await api.put('/queues/%2F/proto.h', { durable: false });
    const body = '{"routing_key": "proto.h", "payload": "p", "payload_encoding": "string", "properties": {"headers": {"__proto__": {"polluted": 1}, "ok": 2}}}';
    const r = await http(port, 'POST', '/api/exchanges/%2F/amq.default/publish', { body });
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ routed: true });
    const got = await api.post<Row[]>('/queues/%2F/proto.h/get', { count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' });
    expect(got.text).toContain('"headers":{"__proto__":{"polluted":1},"ok":2}');
  });

  test('a __proto__ member of a user body does not lend its fields', async () => {
    const body = '{"password": "pw", "__proto__": {"tags": "administrator"}}';
    expect((await http(port, 'PUT', '/api/users/proto-user', { body })).status).toBe(201);
    expect(tb.broker.core.auth.users.get('proto-user')!.tags).toEqual([]);
  });

  test.each(['constructor', '__proto__', 'toString'])('a policy definition key %s is refused as an unknown setting', async (key) => {
    const body = `{"pattern": ".*", "definition": {"${key}": 1}}`;
    const r = await http(port, 'PUT', '/api/policies/%2F/proto-policy', { body });
    expect(r.status).toBe(400);
    expect(String(r.body && (r.body as Row)['reason'])).toMatch(/not a recognised policy setting/);
    expect(tb.broker.core.policies.get('/', 'proto-policy')).toBeUndefined();
  });

  test('definitions import keeps a __proto__ argument key as data', async () => {
    const defs =
      '{"queues": [{"name": "proto.def", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {"__proto__": {"x-max-length": 1}}}],' +
      ' "exchanges": [{"name": "proto.x", "vhost": "/", "type": "topic", "durable": true, "auto_delete": false, "internal": false, "arguments": {"__proto__": {"alternate-exchange": "amq.direct"}}}]}';
    const r = await http(port, 'POST', '/api/definitions', { body: defs });
    expect(r.status).toBe(204);
    const v = tb.broker.core.vhosts.get('/')!;
    const q = v.queues.get('proto.def')!;
    expect(Object.hasOwn(q.args, '__proto__')).toBe(true);
    expect(q.limits.maxLength).toBeUndefined();
    const x = v.exchanges.get('proto.x')!;
    expect((x.args as Record<string, unknown>)['alternate-exchange']).toBeUndefined();
    const exported = await http(port, 'GET', '/api/definitions');
    expect(exported.text).toContain('"arguments":{"__proto__":{"x-max-length":1}}');
  });
});

describe('AMQP field tables', () => {
  test('a __proto__ key in queue arguments and headers is an own key, never a prototype', async () => {
    const args = JSON.parse('{"__proto__": {"x-max-length": 1, "polluted": true}}') as Record<string, unknown>;
    const ch = await amqp.createConfirmChannel();
    await ch.assertQueue('proto.amqp', { durable: false, arguments: args });
    const q = tb.broker.core.vhosts.get('/')!.queues.get('proto.amqp')!;
    expect(Object.getPrototypeOf(q.args)).toBe(Object.prototype);
    expect(Object.hasOwn(q.args, '__proto__')).toBe(true);
    expect(q.limits.maxLength).toBeUndefined();
    const headers = JSON.parse('{"__proto__": {"polluted": 1}, "plain": "yes"}') as Record<string, unknown>;
    for (let i = 0; i < 2; i++) ch.sendToQueue('proto.amqp', Buffer.from('m'), { headers });
    await ch.waitForConfirms();
    const msg = await waitFor(async () => (await ch.get('proto.amqp', { noAck: true })) || undefined, 3000, 'message');
    const h = msg.properties.headers as Record<string, unknown>;
    expect(h['plain']).toBe('yes');
    expect((await ch.checkQueue('proto.amqp')).messageCount).toBe(1);
    const row = await api.post<Row[]>('/queues/%2F/proto.amqp/get', { count: 1, ackmode: 'ack_requeue_false', encoding: 'auto' });
    expect(row.text).toContain('"__proto__":{"polluted":1}');
    await ch.close();
  });
});
