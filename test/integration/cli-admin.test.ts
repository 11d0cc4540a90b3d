import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../../src/main.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt, type Row } from '../helpers/management.js';

/**
 * The `warren` admin subcommands against a broker's HTTP API: most run in-process through `main()`
 * (the same code the `warren` binary runs, with its output captured); exit codes, stderr, stdin and
 * `--help` are checked on the real binary.
 */

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'warren.js');
let tb: TestBroker;
let api: Mgmt;
let url: string;
let dir: string;

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

function warren(args: string[], opts: { env?: Record<string, string>; input?: string; noUrl?: boolean } = {}): Promise<Result> {
  const argv = opts.noUrl ? args : [...args, '--url', url];
  const env: Record<string, string | undefined> = { ...process.env, ...opts.env };
  for (const k of ['WARREN_URL', 'WARREN_USER', 'WARREN_PASSWORD', 'WARREN_VHOST']) if (opts.env?.[k] === undefined) delete env[k];
  const child = spawn(process.execPath, [BIN, ...argv], { env });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  child.stdin.end(opts.input ?? '');
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

/** Runs `main(argv)` in this process, capturing what it writes; one at a time (output is captured globally). */
let running: Promise<unknown> = Promise.resolve();
function inProcess(args: string[], opts: { env?: Record<string, string> } = {}): Promise<Result> {
  const run = async (): Promise<Result> => {
    const out: string[] = [];
    const err: string[] = [];
    const write = { out: process.stdout.write, err: process.stderr.write };
    const env = { user: process.env['WARREN_USER'], password: process.env['WARREN_PASSWORD'] };
    const exitCode = process.exitCode;
    process.exitCode = undefined;
    delete process.env['WARREN_USER'];
    delete process.env['WARREN_PASSWORD'];
    Object.assign(process.env, opts.env ?? {});
    process.stdout.write = ((c: string | Uint8Array) => out.push(String(c)) > 0) as typeof process.stdout.write;
    process.stderr.write = ((c: string | Uint8Array) => err.push(String(c)) > 0) as typeof process.stderr.write;
    try {
      const r = await main([...args, '--url', url]);
      return { code: r ?? (typeof process.exitCode === 'number' ? process.exitCode : 0), stdout: out.join(''), stderr: err.join('') };
    } finally {
      process.stdout.write = write.out;
      process.stderr.write = write.err;
      for (const k of Object.keys(opts.env ?? {})) delete process.env[k];
      if (env.user !== undefined) process.env['WARREN_USER'] = env.user;
      if (env.password !== undefined) process.env['WARREN_PASSWORD'] = env.password;
      process.exitCode = exitCode;
    }
  };
  const p = running.then(run, run);
  running = p.catch(() => undefined);
  return p;
}

async function ok(args: string[], opts?: { env?: Record<string, string>; input?: string }): Promise<string> {
  const r = opts?.input !== undefined ? await warren(args, opts) : await inProcess(args, opts);
  if (r.code !== 0) throw new Error(`warren ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** A port nothing listens on. */
function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

beforeAll(async () => {
  tb = await startTestBroker();
  url = `http://127.0.0.1:${tb.broker.ports.http}`;
  api = mgmt(tb.broker.ports.http!);
  dir = await mkdtemp(join(tmpdir(), 'warren-cli-admin-'));
});
afterAll(async () => {
  await tb.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('objects and messages', () => {
  test('declare, bind, publish, get, list, purge and delete', async () => {
    const [q1] = await Promise.all([
      ok(['declare', 'queue', 'cli.q']),
      ok(['declare', 'queue', 'cli.tmp', '--no-durable', '--arguments', '{"x-max-length": 10}']),
      ok(['declare', 'exchange', 'cli.x', '--type', 'topic']),
    ]);
    expect(q1).toBe('queue cli.q declared\n');
    await ok(['declare', 'binding', '--source', 'cli.x', '--destination', 'cli.q', '--routing-key', 'a.#']);
    expect((await api.get('/queues/%2F/cli.tmp')).body).toMatchObject({ durable: false, arguments: { 'x-max-length': 10 } });
    expect((await api.get('/exchanges/%2F/cli.x')).body).toMatchObject({ type: 'topic', durable: true });

    expect(await ok(['publish', '--exchange', 'cli.x', '--routing-key', 'a.b', '--payload', 'hello', '--properties', '{"content_type":"text/plain"}'])).toBe('message published\n');
    const [stdin, unrouted] = await Promise.all([
      ok(['publish', '--routing-key', 'cli.q', '--persistent'], { input: 'from stdin' }),
      inProcess(['publish', '--exchange', 'cli.x', '--routing-key', 'zzz', '--payload', 'x']),
    ]);
    expect(stdin).toBe('message published\n');
    expect(unrouted.stdout).toBe('message published but NOT routed\n');
    expect(unrouted.code).toBe(3);

    const [table, jsonText, bindingsTable] = await Promise.all([ok(['list', 'queues']), ok(['list', 'queues', '--json']), ok(['list', 'bindings'])]);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^vhost\s+name\s+messages\s+ready\s+unacked\s+consumers/);
    expect(lines.find((l) => /\scli\.q\s/.test(l))).toMatch(/^\/\s+cli\.q\s+2\s+2\s+0\s+0/);

    const json = JSON.parse(jsonText) as Row[];
    expect(json.find((q) => q['name'] === 'cli.q')).toMatchObject({ messages: 2, durable: true });

    const got = await ok(['get', 'cli.q', '--count', '2', '--ackmode', 'ack_requeue_true']);
    expect(got).toMatch(/a\.b\s+cli\.x\s+1\s+false\s+5\s+string\s+hello/);
    expect(got).toContain('from stdin');
    const gotJson = JSON.parse(await ok(['get', 'cli.q', '--json', '--ackmode', 'ack_requeue_false'])) as Row[];
    expect(gotJson[0]).toMatchObject({ payload: 'hello', redelivered: true, properties: { content_type: 'text/plain' } });

    expect(bindingsTable).toMatch(/cli\.x\s+cli\.q\s+queue\s+a\.#/);
    await ok(['purge', 'queue', 'cli.q']);
    expect((await api.get('/queues/%2F/cli.q')).body['messages']).toBe(0);
    await ok(['delete', 'binding', '--source', 'cli.x', '--destination', 'cli.q', '--routing-key', 'a.#']);
    expect((await api.list('/bindings/%2F/e/cli.x/q/cli.q')).body).toEqual([]);
    await Promise.all([ok(['delete', 'queue', 'cli.q', '--if-empty']), ok(['delete', 'queue', 'cli.tmp']), ok(['delete', 'exchange', 'cli.x'])]);
    expect((await api.get('/queues/%2F/cli.q')).status).toBe(404);
    expect((await api.get('/exchanges/%2F/cli.x')).status).toBe(404);
  });

  test('status, connections and closing one', async () => {
    const c = await connect(tb.amqpUrl, { clientProperties: { connection_name: 'cli-test' } });
    c.on('error', () => undefined);
    await c.createChannel();
    const [status, connsText, connTable, chanTable] = await Promise.all([
      ok(['status']),
      ok(['list', 'connections', '--json']),
      ok(['list', 'connections']),
      ok(['list', 'channels']),
    ]);
    expect(status).toMatch(/^Warren \S+ on warren@/);
    expect(status).toMatch(/connections: 1 \(AMQP 0-9-1: 1\)/);
    expect(status).toMatch(new RegExp(`amqp=${tb.broker.ports.amqp}`));
    expect(status).toMatch(/alarms:\s+none/);
    const conns = JSON.parse(connsText) as Row[];
    expect(conns).toHaveLength(1);
    expect(connTable).toMatch(/AMQP 0-9-1\s+guest\s+\//);
    expect(chanTable).toMatch(/\(1\)\s+guest\s+\/\s+0\s+0/);
    const name = String(conns[0]!['name']);
    const closed = new Promise<Error>((resolve) => c.once('close', resolve));
    expect(await ok(['close', 'connection', name, '--reason', 'bye'])).toBe(`connection ${name} closed\n`);
    expect(String(await closed)).toMatch(/CONNECTION_FORCED - bye/);
  });
});

describe('users, vhosts, permissions, policies, definitions', () => {
  test('add user, set permissions, change password, clear, delete', async () => {
    await ok(['add', 'user', 'carol', 'first', '--tags', 'management,policymaker']);
    await Promise.all([ok(['set', 'permissions', 'carol', '^carol\\.', '.*', '.*']), ok(['set', 'topic-permissions', 'carol', 'amq.topic', '^c\\.', '.*'])]);
    const [users, perms, topics] = await Promise.all([ok(['list', 'users']), ok(['list', 'permissions']), ok(['list', 'topic-permissions'])]);
    expect(users).toMatch(/carol\s+management,policymaker/);
    expect(perms).toMatch(/\/\s+carol\s+\^carol\\\.\s+\.\*\s+\.\*/);
    expect(topics).toMatch(/carol\s+amq\.topic/);
    await ok(['change', 'password', 'carol', 'second']);
    expect((await mgmt(tb.broker.ports.http!, ['carol', 'second']).get('/whoami')).body).toEqual({ name: 'carol', tags: ['management', 'policymaker'] });
    expect((await mgmt(tb.broker.ports.http!, ['carol', 'first']).get('/whoami')).status).toBe(401);
    // the user's own credentials, from the environment
    const own = await ok(['declare', 'queue', 'carol.q'], { env: { WARREN_USER: 'carol', WARREN_PASSWORD: 'second' } });
    expect(own).toBe('queue carol.q declared\n');
    const refused = await inProcess(['declare', 'queue', 'not-carol'], { env: { WARREN_USER: 'carol', WARREN_PASSWORD: 'second' } });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^warren: PUT \/queues\/%2F\/not-carol: 401 ACCESS_REFUSED - access to queue 'not-carol' in vhost '\/' refused for user 'carol'\n$/);
    await Promise.all([ok(['clear', 'permissions', 'carol']), ok(['delete', 'queue', 'carol.q'])]);
    expect((await api.get('/permissions/%2F/carol')).status).toBe(404);
    await ok(['delete', 'user', 'carol']);
    expect((await api.get('/users/carol')).status).toBe(404);
  });

  test('vhosts and policies', async () => {
    await ok(['add', 'vhost', 'cli.v', '--description', 'from the CLI']);
    const vhosts = JSON.parse(await ok(['list', 'vhosts', '--json'])) as Row[];
    expect(vhosts.find((v) => v['name'] === 'cli.v')).toMatchObject({ description: 'from the CLI' });
    await ok(['set', 'permissions', 'guest', '.*', '.*', '.*', '--vhost', 'cli.v']);
    await ok(['set', 'policy', 'cap', '^capped\\.', '{"max-length": 5}', '--apply-to', 'queues', '--priority', '3', '--vhost', 'cli.v']);
    expect(await ok(['list', 'policies', '--vhost', 'cli.v'])).toMatch(/cli\.v\s+cap\s+\^capped\\\.\s+queues\s+3\s+\{"max-length":5\}/);
    const bad = await inProcess(['set', 'policy', 'bad', '.*', '{"max-length": "x"}']);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^warren: PUT \/policies\/%2F\/bad: 400 .*max-length/);
    await ok(['clear', 'policy', 'cap', '--vhost', 'cli.v']);
    expect((await api.list('/policies')).body).toEqual([]);
    await ok(['delete', 'vhost', 'cli.v']);
    expect((await api.get('/vhosts/cli.v')).status).toBe(404);
  });

  test('export and import definitions', async () => {
    await ok(['declare', 'queue', 'exported.q']);
    const file = join(dir, 'defs.json');
    expect(await ok(['export', file])).toBe(`definitions exported to ${file}\n`);
    const defs = JSON.parse(await readFile(file, 'utf8')) as Row;
    expect((defs['queues'] as Row[]).map((q) => q['name'])).toContain('exported.q');
    const stdout = JSON.parse(await ok(['export', '-'])) as Row;
    expect(stdout['users']).toEqual(defs['users']);

    await ok(['delete', 'queue', 'exported.q']);
    (defs['queues'] as Row[]).push({ name: 'imported.q', vhost: '/', durable: true, auto_delete: false, arguments: {} });
    await writeFile(file, JSON.stringify(defs));
    expect(await ok(['import', file])).toBe(`definitions imported from ${file}\n`);
    expect((await api.get('/queues/%2F/exported.q')).status).toBe(200);
    expect((await api.get('/queues/%2F/imported.q')).status).toBe(200);
    await ok(['import', '-'], { input: JSON.stringify({ vhosts: [{ name: 'from-stdin' }] }) });
    expect((await api.get('/vhosts/from-stdin')).status).toBe(200);
    const notJson = await warren(['import', '-'], { input: 'nope' });
    expect(notJson.code).toBe(1);
    expect(notJson.stderr).toMatch(/^warren: - is not JSON/);
    for (const q of ['exported.q', 'imported.q']) await api.del(`/queues/%2F/${q}`);
    await api.del('/vhosts/from-stdin');
  });
});

describe('errors and help', () => {
  test('failures print one line and exit non-zero', async () => {
    const closedPort = await freePort();
    const [missing, badAuth, down, badJson, usage] = await Promise.all([
      warren(['get', 'no-such-queue']),
      warren(['list', 'queues', '--password', 'wrong']),
      warren(['status', '--url', `http://127.0.0.1:${closedPort}`], { noUrl: true }),
      warren(['declare', 'queue', 'x', '--arguments', '{oops']),
      warren(['declare', 'queue']),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('warren: POST /queues/%2F/no-such-queue/get: 404 Not Found\n');
    expect(badAuth.code).toBe(1);
    expect(badAuth.stderr).toBe('warren: GET /queues: 401 Login failed\n');
    expect(down.code).toBe(1);
    expect(down.stderr).toBe(`warren: cannot reach http://127.0.0.1:${closedPort}: connect ECONNREFUSED 127.0.0.1:${closedPort}\n`);
    expect(badJson.code).toBe(1);
    expect(badJson.stderr).toBe("warren: --arguments must be a JSON object, got '{oops'\n");
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/missing required argument 'name'/);
  });

  test('the environment supplies the URL and credentials', async () => {
    const r = await warren(['list', 'users', '--json'], { noUrl: true, env: { WARREN_URL: url, WARREN_USER: 'guest', WARREN_PASSWORD: 'guest' } });
    expect(r.code).toBe(0);
    expect((JSON.parse(r.stdout) as Row[]).map((u) => u['name'])).toContain('guest');
  });

  test('every subcommand has --help', async () => {
    const cmds = [['list', 'queues'], ['declare', 'binding'], ['set', 'policy'], ['publish']];
    const [list, ...helps] = await Promise.all([warren(['list', '--help'], { noUrl: true }), ...cmds.map((args) => warren([...args, '--help'], { noUrl: true }))]);
    helps.forEach((r, i) => {
      expect(r.code, cmds[i]!.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/^Usage: warren /);
      expect(r.stdout).toContain('--url <url>');
    });
    for (const kind of ['queues', 'exchanges', 'bindings', 'connections', 'consumers', 'users', 'vhosts', 'permissions', 'policies']) expect(list.stdout).toContain(kind);
  });
});

describe('list commands agree with the API', () => {
  test('consumers', async () => {
    const c = await connect(tb.amqpUrl);
    const ch = await c.createChannel();
    await ch.assertQueue('cons.q', { durable: false });
    const { consumerTag } = await ch.consume('cons.q', () => undefined);
    await waitFor(async () => (await api.list('/consumers')).body.length === 1, 3000, 'consumer listed');
    expect(await ok(['list', 'consumers'])).toMatch(new RegExp(`/\\s+cons\\.q\\s+${consumerTag}`));
    await c.close();
    await api.del('/queues/%2F/cons.q');
  });
});
