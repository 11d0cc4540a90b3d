import { describe, expect, test } from 'vitest';
import { Core } from '../../../src/core/core.js';
import { exportDefinitions, importDefinitions } from '../../../src/core/definitions.js';

/** What `rabbitmqctl export_definitions` writes (RabbitMQ 3.10), trimmed to one of each thing. */
const RABBITMQ_EXPORT = {
  rabbit_version: '3.10.8',
  rabbitmq_version: '3.10.8',
  product_name: 'RabbitMQ',
  product_version: '3.10.8',
  users: [
    {
      name: 'app',
      // salt 01020304, password 's3cret'
      password_hash: 'AQIDBLq/hWyT4GNQ5SjFtltSvLoQIZIQIckdYAqRUvj04Npv',
      hashing_algorithm: 'rabbit_password_hashing_sha256',
      tags: ['monitoring'],
      limits: {},
    },
    { name: 'old', password_hash: 'AQIDBLq/hWyT4GNQ5SjFtltSvLoQIZIQIckdYAqRUvj04Npv', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: 'administrator,management' },
  ],
  vhosts: [{ name: '/', limits: [], metadata: { description: 'Default virtual host', tags: [] } }, { name: 'orders' }],
  permissions: [{ user: 'app', vhost: 'orders', configure: '^app\\.', write: '.*', read: '.*' }],
  topic_permissions: [{ user: 'app', vhost: 'orders', exchange: 'events', write: '^order\\.', read: '.*' }],
  parameters: [],
  global_parameters: [{ name: 'cluster_name', value: 'rabbit@host' }],
  policies: [{ vhost: 'orders', name: 'ttl', pattern: '^work$', 'apply-to': 'queues', definition: { 'message-ttl': 60000 }, priority: 1 }],
  queues: [
    { name: 'work', vhost: 'orders', durable: true, auto_delete: false, arguments: { 'x-queue-type': 'classic', 'x-max-length': 1000 } },
    { name: 'audit', vhost: 'orders', durable: true, auto_delete: false, arguments: {} },
  ],
  exchanges: [
    { name: 'events', vhost: 'orders', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: { 'alternate-exchange': 'lost' } },
    { name: 'lost', vhost: 'orders', type: 'fanout', durable: true, auto_delete: false, internal: false, arguments: {} },
  ],
  bindings: [
    { source: 'events', vhost: 'orders', destination: 'work', destination_type: 'queue', routing_key: 'order.*', arguments: {} },
    { source: 'lost', vhost: 'orders', destination: 'audit', destination_type: 'queue', routing_key: '', arguments: {} },
    { source: 'events', vhost: 'orders', destination: 'lost', destination_type: 'exchange', routing_key: 'audit.#', arguments: { 'x-note': 1 } },
  ],
};

describe('importing RabbitMQ definitions', () => {
  test('users, vhosts, permissions, topic permissions, policies, exchanges, queues and bindings arrive', () => {
    const core = new Core();
    const r = importDefinitions(core, RABBITMQ_EXPORT);
    expect(r).toMatchObject({ vhosts: 2, users: 2, permissions: 1, topicPermissions: 1, policies: 1, exchanges: 2, queues: 2, bindings: 3, warnings: [] });
    expect(core.auth.authenticate('app', 's3cret', '10.0.0.1').tags).toEqual(['monitoring']);
    expect(core.auth.users.get('old')!.tags).toEqual(['administrator', 'management']);
    expect(core.auth.getPermission('orders', 'app')).toEqual({ configure: '^app\\.', write: '.*', read: '.*' });
    expect(core.auth.topicPermissionsOf('orders', 'app')).toEqual([{ exchange: 'events', write: '^order\\.', read: '.*' }]);
    expect(core.policies.get('orders', 'ttl')!.definition).toEqual({ 'message-ttl': 60000 });
    const v = core.vhosts.get('orders')!;
    expect(v.queues.get('work')!.args['x-max-length']).toBe(1000);
    expect(v.exchanges.get('events')!.alternate).toBe('lost');
    expect([...v.exchanges.get('events')!.bindings.values()].map((b) => b.routingKey).sort()).toEqual(['audit.#', 'order.*']);
  });

  test('what Warren exports imports into RabbitMQ form and back unchanged', () => {
    const a = new Core();
    importDefinitions(a, RABBITMQ_EXPORT);
    const exported = exportDefinitions(a, '1.2.3');
    expect(exported.product_name).toBe('Warren');
    expect(exported.users.find((u) => u.name === 'app')).toEqual({
      name: 'app',
      password_hash: 'AQIDBLq/hWyT4GNQ5SjFtltSvLoQIZIQIckdYAqRUvj04Npv',
      hashing_algorithm: 'rabbit_password_hashing_sha256',
      tags: ['monitoring'],
      limits: {},
    });
    expect(exported.bindings).toContainEqual({
      source: 'events',
      vhost: 'orders',
      destination: 'lost',
      destination_type: 'exchange',
      routing_key: 'audit.#',
      arguments: { 'x-note': 1 },
    });
    const b = new Core();
    importDefinitions(b, JSON.parse(JSON.stringify(exported)), { replaceUsers: true });
    expect(exportDefinitions(b, '1.2.3')).toEqual(exported);
  });

  test('transient, exclusive and default objects are not exported', () => {
    const core = new Core();
    const v = core.vhosts.get('/')!;
    v.declareQueue('kept', { durable: true }, false, 0);
    v.declareQueue('mem', { durable: false }, false, 0);
    v.declareQueue('mine', { durable: true, exclusive: true }, false, 7);
    v.declareExchange('tmp', 'direct', { durable: false }, false);
    v.bind(v.getExchange('amq.direct'), v.getQueue('kept'), 'k', {});
    v.bind(v.getExchange('amq.direct'), v.getQueue('mem'), 'k', {});
    const d = exportDefinitions(core);
    expect(d.queues.map((q) => q.name)).toEqual(['kept']);
    expect(d.exchanges).toEqual([]);
    expect(d.bindings.map((b) => `${b.source}->${b.destination}`)).toEqual(['amq.direct->kept']);
  });

  test('what cannot be applied is skipped with a warning, a malformed file is refused', () => {
    const core = new Core();
    const r = importDefinitions(core, {
      exchanges: [{ name: 'hashed', vhost: '/', type: 'x-consistent-hash', durable: true }],
      queues: [{ name: 'q', vhost: 'nowhere', durable: true }],
      bindings: [{ source: 'missing', vhost: '/', destination: 'q', destination_type: 'queue', routing_key: '' }],
      users: [{ name: 'legacy', password_hash: 'abc', hashing_algorithm: 'rabbit_password_hashing_bcrypt' }],
    });
    expect(r.warnings).toHaveLength(4);
    expect(r.warnings[0]).toMatch(/legacy/);
    expect(r.warnings.join('\n')).toMatch(/invalid exchange type 'x-consistent-hash'/);
    expect(() => importDefinitions(core, { queues: 'nope' })).toThrow(/'queues' must be a list/);
    expect(() => importDefinitions(core, [])).toThrow(/JSON object/);
  });

  test('importing on recovery replaces the users; a plain import only adds', () => {
    const core = new Core();
    importDefinitions(core, { users: [{ name: 'app', password: 'pw', tags: [] }] });
    expect([...core.auth.users.keys()].sort()).toEqual(['app', 'guest']);
    const again = new Core();
    importDefinitions(again, { users: [{ name: 'app', password: 'pw', tags: [] }] }, { replaceUsers: true });
    expect([...again.auth.users.keys()]).toEqual(['app']);
    expect(again.auth.authenticate('app', 'pw', '127.0.0.1').name).toBe('app');
  });
});
