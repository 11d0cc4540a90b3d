import { AMQPClient } from '@cloudamqp/amqp-client';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { http } from '../helpers/management.js';

/** /metrics without credentials names no vhost or queue; per-object series need a monitoring user. */
let tb: TestBroker;
let port: number;
const SECRET_VHOST = 'tenant-secret-vhost';
const SECRET_QUEUE = 'payroll-secret-queue';

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.http!;
  expect((await http(port, 'PUT', `/api/vhosts/${SECRET_VHOST}`)).status).toBeLessThan(300);
  expect((await http(port, 'PUT', `/api/permissions/${SECRET_VHOST}/guest`, { body: { configure: '.*', write: '.*', read: '.*' } })).status).toBeLessThan(300);
  const c = new AMQPClient(`amqp://guest:guest@127.0.0.1:${tb.broker.ports.amqp}/${SECRET_VHOST}`);
  await c.connect();
  const ch = await c.channel();
  await ch.queueDeclare(SECRET_QUEUE, { durable: false });
  for (let i = 0; i < 3; i++) await ch.basicPublish('', SECRET_QUEUE, `m${i}`);
  await c.close();
  // a user who may log in to the management API but is not a monitor
  expect((await http(port, 'PUT', '/api/users/viewer', { body: { password: 'pw', tags: 'management' } })).status).toBeLessThan(300);
  expect((await http(port, 'PUT', '/api/users/watcher', { body: { password: 'pw', tags: 'monitoring' } })).status).toBeLessThan(300);
});
afterAll(async () => {
  await tb.stop();
});

describe('/metrics exposure', () => {
  test('unauthenticated /metrics shows aggregates only: totals, no vhost or queue names', async () => {
    const r = await http(port, 'GET', '/metrics', { auth: null });
    expect(r.status).toBe(200);
    expect(r.text).not.toContain(SECRET_QUEUE);
    expect(r.text).not.toContain(SECRET_VHOST);
    expect(r.text).not.toMatch(/vhost="|queue="/);
    const total = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(r.text)?.[1]);
    expect(total('warren_queue_messages_ready')).toBeGreaterThanOrEqual(3);
    expect(total('warren_queues')).toBeGreaterThanOrEqual(1);
    expect(total('warren_vhosts')).toBeGreaterThanOrEqual(2);
  });

  test('/metrics/per-object lists each queue for a monitoring user', async () => {
    for (const auth of [['guest', 'guest'], ['watcher', 'pw']] as Array<[string, string]>) {
      const r = await http(port, 'GET', '/metrics/per-object', { auth });
      expect(r.status, auth[0]).toBe(200);
      expect(r.text).toContain(`warren_queue_messages_ready{vhost="${SECRET_VHOST}",queue="${SECRET_QUEUE}"} 3`);
    }
  });

  test('/metrics/per-object refuses no credentials, wrong ones, and users that are not monitors', async () => {
    expect((await http(port, 'GET', '/metrics/per-object', { auth: null })).status).toBe(401);
    expect((await http(port, 'GET', '/metrics/per-object', { auth: ['guest', 'wrong'] })).status).toBe(401);
    const viewer = await http(port, 'GET', '/metrics/per-object', { auth: ['viewer', 'pw'] });
    expect(viewer.status).toBe(401);
    expect(viewer.text).not.toContain(SECRET_QUEUE);
  });
});
