import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt, type Row } from '../helpers/management.js';

/**
 * Compatibility proof: RabbitMQ's own `rabbitmqadmin` (Debian's rabbitmq-server package ships it
 * as /usr/bin/rabbitmqadmin) lists, declares, publishes and gets against Warren unchanged.
 */

const RABBITMQADMIN = '/usr/bin/rabbitmqadmin';
const have = existsSync(RABBITMQADMIN);
if (!have) console.warn(`skipping the rabbitmqadmin test: ${RABBITMQADMIN} is missing (apt-get install rabbitmq-server)`);

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'warren.js');

let tb: TestBroker;
let api: Mgmt;
let dir: string;

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr });
    });
  });
}

async function admin(...args: string[]): Promise<string> {
  const r = await run(RABBITMQADMIN, ['-H', '127.0.0.1', '-P', String(tb.broker.ports.http), '-u', 'guest', '-p', 'guest', ...args]);
  if (r.code !== 0) throw new Error(`rabbitmqadmin ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

async function adminJson(...args: string[]): Promise<Row[]> {
  return JSON.parse(await admin('-f', 'raw_json', ...args)) as Row[];
}

describe.skipIf(!have)("RabbitMQ's rabbitmqadmin against Warren", () => {
  beforeAll(async () => {
    tb = await startTestBroker();
    api = mgmt(tb.broker.ports.http!);
    dir = await mkdtemp(join(tmpdir(), 'warren-rabbitmqadmin-'));
  });
  afterAll(async () => {
    await tb?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('declare, bind, publish, get, purge and delete', async () => {
    expect(await admin('declare', 'queue', 'name=ra.q', 'durable=true')).toBe('queue declared\n');
    await admin('declare', 'queue', 'name=ra.lazy', 'durable=false', 'arguments={"x-max-length": 3}');
    await admin('declare', 'exchange', 'name=ra.x', 'type=topic');
    expect(await admin('declare', 'binding', 'source=ra.x', 'destination=ra.q', 'routing_key=orders.#')).toBe('binding declared\n');
    expect(await admin('publish', 'exchange=ra.x', 'routing_key=orders.new', 'payload=first order', 'properties={"content_type":"text/plain","headers":{"n":1}}')).toBe('Message published\n');
    await admin('publish', 'routing_key=ra.q', 'payload=second');
    expect(await admin('publish', 'exchange=ra.x', 'routing_key=nobody', 'payload=x')).toBe('Message published but NOT routed\n');

    expect((await api.get('/queues/%2F/ra.q')).body['messages']).toBe(2);
    expect((await api.get('/queues/%2F/ra.lazy')).body).toMatchObject({ durable: false, arguments: { 'x-max-length': 3 } });
    expect((await api.get('/exchanges/%2F/ra.x')).body['type']).toBe('topic');

    const peek = await adminJson('get', 'queue=ra.q', 'count=2');
    expect(peek.map((m) => m['payload'])).toEqual(['first order', 'second']);
    expect(peek[0]).toMatchObject({ routing_key: 'orders.new', exchange: 'ra.x', properties: { content_type: 'text/plain', headers: { n: 1 } } });
    const table = await admin('get', 'queue=ra.q', 'ackmode=ack_requeue_false');
    expect(table).toMatch(/\|\s+orders\.new\s+\|\s+ra\.x\s+\|\s+1\s+\|\s+first order\s+\|\s+11\s+\|\s+string\s+\|\s+True\s+\|/);
    expect((await api.get('/queues/%2F/ra.q')).body['messages']).toBe(1);

    const bindings = await adminJson('list', 'bindings');
    const b = bindings.find((x) => x['source'] === 'ra.x');
    expect(b).toMatchObject({ destination: 'ra.q', destination_type: 'queue', routing_key: 'orders.#' });
    expect(await admin('delete', 'binding', 'source=ra.x', 'destination_type=queue', 'destination=ra.q', `properties_key=${String(b!['properties_key'])}`)).toBe('binding deleted\n');
    expect((await api.list('/bindings/%2F/e/ra.x/q/ra.q')).body).toEqual([]);

    expect(await admin('purge', 'queue', 'name=ra.q')).toBe('queue purged\n');
    expect((await api.get('/queues/%2F/ra.q')).body['messages']).toBe(0);
    for (const q of ['ra.q', 'ra.lazy']) expect(await admin('delete', 'queue', `name=${q}`)).toBe('queue deleted\n');
    expect(await admin('delete', 'exchange', 'name=ra.x')).toBe('exchange deleted\n');
    expect((await api.get('/queues/%2F/ra.q')).status).toBe(404);
  });

  test('`rabbitmqadmin list queues` and `warren list queues` agree', async () => {
    const c = await connect(tb.amqpUrl);
    const ch = await c.createChannel();
    for (const [q, n] of [['agree.a', 3], ['agree.b', 0], ['agree.c', 1]] as const) {
      await ch.assertQueue(q, { durable: false });
      for (let i = 0; i < n; i++) ch.sendToQueue(q, Buffer.from(String(i)));
    }
    await waitFor(async () => (await api.get('/queues/%2F/agree.a')).body['messages'] === 3, 3000, 'messages counted');
    const fromAdmin = (await adminJson('list', 'queues', 'name', 'messages')).map((r) => [r['name'], r['messages']]);
    const table = await admin('list', 'queues');
    expect(table).toMatch(/\|\s+agree\.a\s+\|\s+3\s+\|/);
    const cli = await run(process.execPath, [BIN, 'list', 'queues', '--json', '--url', `http://127.0.0.1:${tb.broker.ports.http}`]);
    expect(cli.code).toBe(0);
    const fromWarren = (JSON.parse(cli.stdout) as Row[]).map((r) => [r['name'], r['messages']]);
    expect(fromWarren).toEqual(fromAdmin);
    expect(fromAdmin).toEqual([
      ['agree.a', 3],
      ['agree.b', 0],
      ['agree.c', 1],
    ]);
    await c.close();
    for (const q of ['agree.a', 'agree.b', 'agree.c']) await api.del(`/queues/%2F/${q}`);
  });

  test('every list, show overview, and closing a connection', async () => {
    const c = await connect(tb.amqpUrl, { clientProperties: { connection_name: 'seen-by-rabbitmqadmin' } });
    c.on('error', () => undefined);
    const ch = await c.createChannel();
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.consume(q, () => undefined);
    const overview = await admin('show', 'overview');
    expect(overview).toMatch(/rabbitmq_version\s+\|\s+cluster_name\s+\|\s+queue_totals\.messages\s+\|\s+object_totals\.queues/);
    const conns = await adminJson('list', 'connections');
    expect(conns).toHaveLength(1);
    expect(conns[0]).toMatchObject({ user: 'guest', protocol: 'AMQP 0-9-1', channels: 1 });
    expect(await adminJson('list', 'channels')).toHaveLength(1);
    expect((await adminJson('list', 'consumers')).map((x) => at2(x, 'queue', 'name'))).toEqual([q]);
    expect((await adminJson('list', 'exchanges')).map((x) => x['name'])).toEqual(expect.arrayContaining(['', 'amq.direct', 'amq.fanout', 'amq.headers', 'amq.match', 'amq.topic']));
    expect((await adminJson('list', 'users')).map((x) => x['name'])).toEqual(['guest']);
    expect((await adminJson('list', 'vhosts')).map((x) => x['name'])).toEqual(['/']);
    expect(await adminJson('list', 'permissions')).toEqual([{ user: 'guest', vhost: '/', configure: '.*', write: '.*', read: '.*' }]);
    expect((await adminJson('list', 'nodes'))[0]).toMatchObject({ type: 'disc', running: true });
    expect(await adminJson('list', 'parameters')).toEqual([]);
    const closed = new Promise<Error>((resolve) => c.once('close', resolve));
    expect(await admin('close', 'connection', `name=${String(conns[0]!['name'])}`)).toBe('connection closed\n');
    expect(String(await closed)).toMatch(/CONNECTION_FORCED/);
  });

  test('users, vhosts, permissions, policies and definitions', async () => {
    expect(await admin('declare', 'vhost', 'name=ra.v')).toBe('vhost declared\n');
    expect(await admin('declare', 'user', 'name=ra.user', 'password=secret', 'tags=monitoring')).toBe('user declared\n');
    expect(await admin('declare', 'permission', 'vhost=ra.v', 'user=ra.user', 'configure=.*', 'write=.*', 'read=^ra')).toBe('permission declared\n');
    // as in RabbitMQ, setting a policy needs access to the vhost, even for an administrator
    expect(await run(RABBITMQADMIN, ['-H', '127.0.0.1', '-P', String(tb.broker.ports.http), '--vhost=ra.v', 'declare', 'policy', 'name=cap', 'pattern=x', 'definition={"max-length": 1}'])).toMatchObject({ code: 1 });
    await admin('declare', 'permission', 'vhost=ra.v', 'user=guest', 'configure=.*', 'write=.*', 'read=.*');
    expect(await admin('--vhost=ra.v', 'declare', 'policy', 'name=cap', 'pattern=^capped', 'definition={"max-length": 10}', 'priority=2', 'apply-to=queues')).toBe('policy declared\n');
    expect(await adminJson('list', 'policies')).toEqual([{ vhost: 'ra.v', name: 'cap', pattern: '^capped', 'apply-to': 'queues', definition: { 'max-length': 10 }, priority: 2 }]);
    expect((await mgmt(tb.broker.ports.http!, ['ra.user', 'secret']).get('/whoami')).body).toEqual({ name: 'ra.user', tags: ['monitoring'] });
    expect((await api.get('/permissions/ra.v/ra.user')).body).toMatchObject({ read: '^ra' });

    const file = join(dir, 'defs.json');
    await admin('export', file);
    const defs = JSON.parse(await readFile(file, 'utf8')) as Row;
    expect((defs['users'] as Row[]).map((u) => u['name']).sort()).toEqual(['guest', 'ra.user']);
    expect(await admin('--vhost=ra.v', 'delete', 'policy', 'name=cap')).toBe('policy deleted\n');
    expect(await admin('delete', 'permission', 'vhost=ra.v', 'user=ra.user')).toBe('permission deleted\n');
    expect(await admin('delete', 'user', 'name=ra.user')).toBe('user deleted\n');
    expect((await api.get('/users/ra.user')).status).toBe(404);
    await admin('import', file);
    expect((await api.get('/users/ra.user')).status).toBe(200);
    expect((await api.get('/policies/ra.v/cap')).status).toBe(200);
    expect(await admin('delete', 'vhost', 'name=ra.v')).toBe('vhost deleted\n');
    await admin('delete', 'user', 'name=ra.user');
  });

  test('errors come back the way rabbitmqadmin reports them', async () => {
    const missing = await run(RABBITMQADMIN, ['-H', '127.0.0.1', '-P', String(tb.broker.ports.http), 'get', 'queue=not-there']);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr + missing.stdout).toMatch(/Not found: \/api\/queues\/%2F\/not-there\/get/);
    const denied = await run(RABBITMQADMIN, ['-H', '127.0.0.1', '-P', String(tb.broker.ports.http), '-u', 'guest', '-p', 'wrong', 'list', 'queues']);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr + denied.stdout).toMatch(/Access refused: \/api\/queues/);
    const bad = await run(RABBITMQADMIN, ['-H', '127.0.0.1', '-P', String(tb.broker.ports.http), 'declare', 'policy', 'name=p', 'pattern=.*', 'definition={"nonsense": 1}']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr + bad.stdout).toMatch(/not a recognised policy setting/);
  });
});

function at2(row: Row, a: string, b: string): unknown {
  const inner = row[a];
  return typeof inner === 'object' && inner !== null ? (inner as Row)[b] : undefined;
}
