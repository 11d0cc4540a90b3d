import { readFileSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, test } from 'vitest';
import { client, startOn, tempDataDir } from '../helpers/durability.js';
import { runWarren, spawnWarren } from '../helpers/warren-process.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function fresh(): Promise<string> {
  const d = await tempDataDir('warren-defs-');
  dirs.push(d);
  return d;
}

/** A RabbitMQ export (3.10 format) with a user whose password is 's3cret'. */
const RABBITMQ_FILE = {
  rabbit_version: '3.10.8',
  users: [
    { name: 'app', password_hash: 'AQIDBLq/hWyT4GNQ5SjFtltSvLoQIZIQIckdYAqRUvj04Npv', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: [], limits: {} },
  ],
  vhosts: [{ name: '/', limits: [], metadata: { description: '', tags: [] } }],
  permissions: [
    { user: 'guest', vhost: '/', configure: '.*', write: '.*', read: '.*' },
    { user: 'app', vhost: '/', configure: '', write: '^orders$', read: '^work$' },
  ],
  topic_permissions: [],
  parameters: [],
  global_parameters: [{ name: 'cluster_name', value: 'rabbit@old-host' }],
  policies: [],
  queues: [{ name: 'work', vhost: '/', durable: true, auto_delete: false, arguments: { 'x-max-length': 500 } }],
  exchanges: [{ name: 'orders', vhost: '/', type: 'direct', durable: true, auto_delete: false, internal: false, arguments: {} }],
  bindings: [{ source: 'orders', vhost: '/', destination: 'work', destination_type: 'queue', routing_key: 'new', arguments: {} }],
};

describe('warren definitions export / import', () => {
  test('import into a stopped data directory, start on it, export it again', async () => {
    const dir = await fresh();
    const file = join(dir, '..', `${dir.split('/').pop()}-in.json`);
    dirs.push(file);
    writeFileSync(file, JSON.stringify(RABBITMQ_FILE));
    const imp = await runWarren(['definitions', 'import', file, '--data-dir', dir]);
    expect(imp.stderr).toBe('');
    expect(imp.code).toBe(0);
    expect(imp.stdout).toMatch(/imported 1 vhosts, 1 users, 2 permissions, 0 policies, 1 exchanges, 1 queues, 1 bindings/);

    const b = await startOn(dir);
    try {
      expect(b.core.auth.authenticate('app', 's3cret', '127.0.0.1').name).toBe('app');
      const c = await client(b);
      await c.ch.publish('orders', 'new', Buffer.from('o1'), { persistent: true });
      expect((await c.ch.checkQueue('work')).messageCount).toBe(1);
      await c.close();
    } finally {
      await b.stop();
    }

    const out = join(dir, '..', `${dir.split('/').pop()}-out.json`);
    dirs.push(out);
    const exp = await runWarren(['definitions', 'export', out, '--data-dir', dir]);
    expect(exp.code).toBe(0);
    const d = JSON.parse(readFileSync(out, 'utf8')) as typeof RABBITMQ_FILE;
    expect(d.queues).toEqual([{ name: 'work', vhost: '/', durable: true, auto_delete: false, arguments: { 'x-max-length': 500 } }]);
    expect(d.bindings).toEqual(RABBITMQ_FILE.bindings);
    expect(d.users.map((u) => u.name)).toEqual(['app', 'guest']);
    expect(d.permissions).toContainEqual(RABBITMQ_FILE.permissions[1]);
  });

  test('export works while a broker runs on the directory; import is refused then', async () => {
    const dir = await fresh();
    const proc = await spawnWarren(dir);
    try {
      const exp = await runWarren(['definitions', 'export', '-', '--data-dir', dir]);
      expect(exp.code).toBe(0);
      expect(JSON.parse(exp.stdout)).toMatchObject({ product_name: 'Warren', vhosts: [{ name: '/' }] });
      const file = join(dir, 'in.json');
      writeFileSync(file, JSON.stringify(RABBITMQ_FILE));
      const imp = await runWarren(['definitions', 'import', file, '--data-dir', dir]);
      expect(imp.code).toBe(1);
      expect(imp.stderr).toMatch(/in use by another Warren/);
    } finally {
      proc.child.kill('SIGTERM');
      await proc.exited;
    }
  });

  test('a file that is not RabbitMQ definitions is refused with a clear error', async () => {
    const dir = await fresh();
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"queues": {"not": "a list"}}');
    const imp = await runWarren(['definitions', 'import', file, '--data-dir', dir]);
    expect(imp.code).toBe(1);
    expect(imp.stderr).toMatch(/warren: definitions file '.*bad.json': .*'queues' must be a list/);
  });
});

describe('--definitions at start', () => {
  test('the file is imported before the listeners open, and persisted', async () => {
    const dir = await fresh();
    const file = join(dir, 'boot.json');
    writeFileSync(file, JSON.stringify(RABBITMQ_FILE));
    let b = await startOn(dir, { definitions: file });
    try {
      expect(b.core.vhosts.get('/')!.exchanges.get('orders')?.durable).toBe(true);
    } finally {
      await b.stop();
    }
    // Without the option, the imported topology is still there: it is part of the data directory.
    b = await startOn(dir);
    try {
      expect(b.core.vhosts.get('/')!.queues.get('work')?.args['x-max-length']).toBe(500);
      expect(b.core.auth.users.has('app')).toBe(true);
    } finally {
      await b.stop();
    }
  });

  test('a missing definitions file stops the start with a clear error', async () => {
    const dir = await fresh();
    await expect(startOn(dir, { definitions: join(dir, 'nope.json') })).rejects.toThrow(/cannot read definitions file '.*nope.json'/);
  });
});
