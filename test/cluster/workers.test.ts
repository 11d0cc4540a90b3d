import { AMQPClient } from '@cloudamqp/amqp-client';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startNatsServers, type NatsServers } from '../../src/cluster/dev-cluster.js';
import { waitFor } from '../helpers/broker.js';
import { http } from '../helpers/management.js';
import { runWarren, WARREN_BIN } from '../helpers/warren-process.js';

type Row = Record<string, unknown>;

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('warren start --workers 2 (one nats-server, workers as cluster nodes)', { timeout: 60_000 }, () => {
  let dir: string;
  let nats: NatsServers;
  let primary: ChildProcessWithoutNullStreams;
  let exited: Promise<number | null>;
  let amqpPort = 0;
  let httpPort = 0;
  const stderr: string[] = [];
  const clients: AMQPClient[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-workers-'));
    nats = await startNatsServers({ count: 1, dir: join(dir, 'nats') });
    primary = spawn(
      process.execPath,
      [WARREN_BIN, 'start', '--workers', '2', '--cluster', 'w', '--cluster-url', nats.url, '--node-name', 'box', '--data-dir', join(dir, 'data'),
        '--bind', '127.0.0.1', '--amqp-port', '0', '--http-port', '0', '--mqtt-port', 'off', '--stomp-port', 'off', '--log-level', 'warn'],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    primary.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
    exited = new Promise((resolve) => primary.on('exit', (code) => resolve(code)));
    let out = '';
    primary.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    const m = await waitFor(() => /warren ready amqp=(\d+) http=(\d+) workers=2/.exec(out), 40_000, `the ready line (${stderr.join('')})`);
    amqpPort = Number(m[1]);
    httpPort = Number(m[2]);
  }, 60_000);

  afterAll(async () => {
    for (const c of clients) if (!c.closed) await c.close().catch(() => undefined);
    if (primary !== undefined && primary.exitCode === null) {
      primary.kill('SIGTERM');
      await exited;
    }
    await nats?.stop();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  test('connections on the one port land on both workers; a queue declared through one is there through the other', async () => {
    for (let i = 0; i < 6; i++) clients.push(await new AMQPClient(`amqp://guest:guest@127.0.0.1:${amqpPort}`).connect());
    const rows = await waitFor(async () => {
      const r = await http<Row[]>(httpPort, 'GET', '/api/connections');
      return r.body.length >= 6 ? r.body : undefined;
    }, 10_000, 'six connections listed');
    const nodeOf = new Map(rows.map((r) => [r['name'], r['node'] as string]));
    const nodes = clients.map((c) => nodeOf.get(`127.0.0.1:${c.socket!.localPort!}`));
    expect(new Set(nodes)).toEqual(new Set(['box-1', 'box-2']));

    const i1 = nodes.indexOf('box-1');
    const i2 = nodes.indexOf('box-2');
    const ch1 = await clients[i1]!.channel();
    await ch1.queueDeclare('shared-q', { durable: true });
    // A passive declare through box-2, once its copy of the definitions has it (the visibility
    // window); a failed passive declare closes its channel, so each try opens one.
    const ok = await waitFor(async () => {
      const ch = await clients[i2]!.channel();
      try {
        return await ch.queueDeclare('shared-q', { passive: true });
      } catch {
        return undefined;
      }
    }, 5000, 'shared-q through box-2');
    expect(ok.name).toBe('shared-q');
    // Each worker has a data directory of its own.
    expect((await readdir(join(dir, 'data'))).sort()).toEqual(['worker-1', 'worker-2']);
  });

  test('a worker that dies is started again by the primary', async () => {
    const nodes = (await http<Row[]>(httpPort, 'GET', '/api/nodes')).body;
    const w2 = nodes.find((n) => n['name'] === 'box-2')!;
    const pid = Number(w2['os_pid']);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid, 'SIGKILL');
    await waitFor(async () => {
      const r = await http<Row[]>(httpPort, 'GET', '/api/nodes').catch(() => undefined);
      const n = r?.body.find((x) => x['name'] === 'box-2');
      return n !== undefined && n['running'] === true && n['answering'] === true && Number(n['os_pid']) !== pid;
    }, 30_000, 'box-2 running again with a new pid');
  });

  test('SIGTERM on the primary stops every worker', async () => {
    const pids = (await http<Row[]>(httpPort, 'GET', '/api/nodes')).body.map((n) => Number(n['os_pid']));
    expect(pids).toHaveLength(2);
    primary.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const p of pids) expect(alive(p)).toBe(false);
  });

  test('--workers without --cluster-url is refused with a clear message', async () => {
    const r = await runWarren(['start', '--workers', '2', '--data-dir', join(dir, 'refused'), '--amqp-port', '0', '--http-port', 'off']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--workers.*needs --cluster-url/);
  });
});
