import { existsSync, readFileSync, renameSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BrokerOptions } from '../../src/config.js';
import { VERSION } from '../../src/management/package-info.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { makeTestPki, tlsOptions, type TestPki } from '../helpers/tls.js';
import { runWarren, spawnWarren } from '../helpers/warren-process.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-ops-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function occupy(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => resolve({ server, port: (server.address() as { port: number }).port }));
  });
}

describe('the warren command', () => {
  test('warren --version prints the version', async () => {
    const r = await runWarren(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
  });

  test('every busy port is reported at once, each with its listener, flag and environment variable', async () => {
    const a = await occupy();
    const b = await occupy();
    try {
      const r = await runWarren([
        'start', '--data-dir', join(dir, 'busy'), '--bind', '127.0.0.1', '--amqp-port', String(a.port), '--mqtt-port', String(b.port),
        '--stomp-port', '0', '--http-port', 'off', '--log-level', 'silent',
      ]);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain(`warren: cannot listen: amqp listener: port ${a.port} is already in use; set --amqp-port or WARREN_AMQP_PORT`);
      expect(r.stderr).toContain(`warren: cannot listen: mqtt listener: port ${b.port} is already in use; set --mqtt-port or WARREN_MQTT_PORT`);
      expect(r.stdout).not.toContain('warren ready');
    } finally {
      a.server.close();
      b.server.close();
    }
  });

  test('--log-format pretty writes one readable line per entry; json writes JSON lines', async () => {
    for (const format of ['pretty', 'json']) {
      const w = await spawnWarren(join(dir, `log-${format}`), ['--log-format', format], { logLevel: 'info' });
      w.child.kill('SIGTERM');
      await w.exited;
      const started = w.stderr.join('').split('\n').find((l) => l.includes('broker started'))!;
      if (format === 'pretty') expect(started).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO {2}broker started ports=\{"amqp":\d+\}/);
      else expect(JSON.parse(started)).toMatchObject({ level: 30, msg: 'broker started' });
    }
  }, 30_000);

  test('--log-file appends to a file, and SIGHUP opens it again after rotation', async () => {
    const file = join(dir, 'warren.log');
    const w = await spawnWarren(join(dir, 'logfile'), ['--log-file', file], { logLevel: 'info' });
    try {
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('broker started'));
      expect(w.stderr.join('')).toBe('');
      renameSync(file, `${file}.1`);
      w.child.kill('SIGHUP');
      await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('log file reopened'), 10_000, 'the reopened log');
      expect(readFileSync(`${file}.1`, 'utf8')).toContain('signal received');
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
    }
    expect(readFileSync(file, 'utf8')).toContain('broker stopped');
  }, 30_000);
});

describe('operator logs and health checks', () => {
  let pki: TestPki;
  let tb: TestBroker;
  const lines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    pki = makeTestPki();
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    tb = await startTestBroker({ ...(tlsOptions(pki) as Partial<BrokerOptions>), logger: pino({ level: 'info' }, sink) } as Partial<BrokerOptions>);
  }, 30_000);
  afterAll(async () => {
    await tb?.stop();
    pki?.cleanup();
  });

  const api = (method: string, path: string, auth: string, body?: unknown): Promise<{ status: number; body: string }> =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        {
          host: '127.0.0.1',
          port: tb.broker.ports.https,
          path,
          method,
          ca: pki.ca,
          headers: { authorization: `Basic ${Buffer.from(auth).toString('base64')}`, ...(payload ? { 'content-type': 'application/json' } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });

  test('a failed HTTP login is logged with the user and the peer', async () => {
    expect((await api('GET', '/api/overview', 'guest:wrong')).status).toBe(401);
    expect(lines.find((l) => l['msg'] === 'HTTP login failed')).toMatchObject({ user: 'guest', url: '/api/overview', peer: '127.0.0.1' });
  });

  test('every management change is logged: user, permission, policy, deletes', async () => {
    const guest = 'guest:guest';
    expect((await api('PUT', '/api/users/ops-1', guest, { password: 'pw', tags: '' })).status).toBeLessThan(300);
    expect((await api('PUT', '/api/permissions/%2F/ops-1', guest, { configure: '.*', write: '.*', read: '.*' })).status).toBeLessThan(300);
    expect((await api('PUT', '/api/policies/%2F/p1', guest, { pattern: '^x', definition: { 'max-length': 1 } })).status).toBeLessThan(300);
    expect((await api('DELETE', '/api/policies/%2F/p1', guest)).status).toBeLessThan(300);
    expect((await api('DELETE', '/api/users/ops-1', guest)).status).toBeLessThan(300);
    const changes = lines.filter((l) => l['msg'] === 'management change').map((l) => `${String(l['user'])} ${String(l['method'])} ${String(l['path'])}`);
    expect(changes).toEqual(
      expect.arrayContaining([
        'guest PUT /api/users/ops-1',
        'guest PUT /api/permissions/%2F/ops-1',
        'guest PUT /api/policies/%2F/p1',
        'guest DELETE /api/policies/%2F/p1',
        'guest DELETE /api/users/ops-1',
      ]),
    );
  });

  test('RabbitMQ health checks answer over HTTPS, TLS ports included', async () => {
    const guest = 'guest:guest';
    for (const path of [
      '/api/health/checks/alarms',
      '/api/health/checks/local-alarms',
      `/api/health/checks/port-listener/${tb.broker.ports.amqps}`,
      `/api/health/checks/port-listener/${tb.broker.ports.mqtts}`,
      '/api/health/checks/virtual-hosts',
      '/api/health/checks/node-is-quorum-critical',
      '/api/aliveness-test/%2F',
    ]) {
      const r = await api('GET', path, guest);
      expect([path, r.status, JSON.parse(r.body)]).toEqual([path, 200, expect.objectContaining({ status: 'ok' })]);
    }
    expect((await api('GET', '/api/health/checks/port-listener/1', guest)).status).toBe(503);
  });

  test('certificate-expiration looks at the configured certificates (the test ones last 3 days)', async () => {
    const guest = 'guest:guest';
    expect((await api('GET', '/api/health/checks/certificate-expiration/1/days', guest)).status).toBe(200);
    const soon = await api('GET', '/api/health/checks/certificate-expiration/1/weeks', guest);
    expect(soon.status).toBe(503);
    const body = JSON.parse(soon.body) as { status: string; expired: Array<{ subject: string }> };
    expect(body.status).toBe('failed');
    expect(body.expired.map((e) => e.subject)).toEqual(expect.arrayContaining([expect.stringContaining('CN=warren'), expect.stringContaining('CN=Warren Test CA')]));
    expect((await api('GET', '/api/health/checks/certificate-expiration/x/days', guest)).status).toBe(400);
  });
});
