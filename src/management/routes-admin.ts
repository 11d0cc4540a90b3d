import {
  ReplyCode,
  hashPassword,
  isHashingAlgorithm,
  type HashingAlgorithm,
  type PolicyApplyTo,
  type PolicyValue,
  type User,
  type VHost,
} from '../core/index.js';
import type { ManagementApi } from './api.js';
import { formatPolicy, formatUser, formatVhost } from './format.js';
import { historyQuery, withVhostHistory } from './history.js';
import { HttpError, intField, objField, strField } from './http-util.js';
import { applyListQuery, projectOne, type Row } from './listing.js';

/** `tags` as RabbitMQ accepts them: a comma-separated string or a list. */
export function parseTags(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.filter((t): t is string => typeof t === 'string' && t !== '').map((t) => t.trim());
  if (typeof v === 'string') return v.split(',').map((t) => t.trim()).filter((t) => t !== '');
  throw HttpError.badRequest('tags must be a string or a list of strings');
}

function permissionRow(vhost: string, user: string, p: { configure: string; write: string; read: string }): Row {
  return { user, vhost, configure: p.configure, write: p.write, read: p.read };
}

function topicPermissionRow(vhost: string, user: string, p: { exchange: string; write: string; read: string }): Row {
  return { user, vhost, exchange: p.exchange, write: p.write, read: p.read };
}

/** Deletes a vhost: its connections are closed, its queues and messages dropped, its permissions and policies forgotten. */
export async function deleteVhost(api: ManagementApi, name: string, by: string): Promise<void> {
  const core = api.core;
  const v = core.vhosts.get(name);
  if (!v) throw HttpError.notFound();
  for (const c of [...core.connections]) {
    if (c.vhost === v) c.handle.forceClose(ReplyCode.CONNECTION_FORCED, `vhost '${name}' is deleted`);
  }
  for (const x of v.exchanges.values()) x.delayed?.destroy(); // held (delayed) messages go with it
  v.removeAll();
  core.vhosts.delete(name);
  core.auth.deleteVhost(name);
  core.policies.deleteVhost(name);
  api.forgetVhostMeta(name);
  const settled = core.persistence.definitionsChanged();
  api.ctx.log.info({ vhost: name, by }, 'vhost deleted');
  await api.durable(settled);
}

export function registerAdminRoutes(api: ManagementApi): void {
  const r = api.router;
  const core = api.core;
  const auth = core.auth;
  const changed = (): Promise<void> => api.durable(core.persistence.definitionsChanged());

  // ---- vhosts ------------------------------------------------------------------------------

  const vhostRow = (v: VHost, q: URLSearchParams): Row => withVhostHistory(formatVhost(api, v), api.sampler, v.name, historyQuery(q, api.sampler.intervalMs));
  r.on('GET', '/api/vhosts', (req) => ({ status: 200, body: applyListQuery(api.visibleVhosts(req.user).map((v) => vhostRow(v, req.query)), req.query, ['name']) }));
  r.on('GET', '/api/vhosts/:vhost', (req) => ({ status: 200, body: projectOne(vhostRow(api.vhost(req.user, req.params['vhost']!), req.query), req.query) }));
  r.on('PUT', '/api/vhosts/:vhost', async (req) => {
    api.requireAdmin(req.user);
    const name = req.params['vhost']!;
    if (name === '') throw HttpError.badRequest('vhost name must not be empty');
    const body = await req.body();
    const existed = core.vhosts.has(name);
    const prev = api.vhostMeta(name);
    const meta = objField(body, 'metadata');
    const description = strField(body, 'description', typeof meta['description'] === 'string' ? meta['description'] : prev.description);
    const tags = body['tags'] !== undefined ? parseTags(body['tags']) : meta['tags'] !== undefined ? parseTags(meta['tags']) : prev.tags;
    const dqt = strField(body, 'default_queue_type', prev.defaultQueueType);
    core.addVhost(name);
    api.setVhostMeta(name, { description, tags, defaultQueueType: dqt });
    if (!existed) {
      await changed();
      api.ctx.log.info({ vhost: name, by: req.user.name }, 'vhost created');
    }
    return { status: existed ? 204 : 201 };
  });
  r.on('DELETE', '/api/vhosts/:vhost', async (req) => {
    api.requireAdmin(req.user);
    await deleteVhost(api, req.params['vhost']!, req.user.name);
    return { status: 204 };
  });
  r.on('GET', '/api/vhosts/:vhost/permissions', (req) => {
    api.requireAdmin(req.user);
    const vhost = req.params['vhost']!;
    if (!core.vhosts.has(vhost)) throw HttpError.notFound();
    const rows = [...(auth.permissions.get(vhost) ?? new Map<string, never>()).entries()].map(([u, p]) => permissionRow(vhost, u, p));
    return { status: 200, body: applyListQuery(rows, req.query, ['user']) };
  });
  r.on('GET', '/api/vhosts/:vhost/topic-permissions', (req) => {
    api.requireAdmin(req.user);
    const vhost = req.params['vhost']!;
    if (!core.vhosts.has(vhost)) throw HttpError.notFound();
    const rows: Row[] = [];
    for (const [u, m] of auth.topicPermissions.get(vhost) ?? []) for (const p of m.values()) rows.push(topicPermissionRow(vhost, u, p));
    return { status: 200, body: applyListQuery(rows, req.query, ['user', 'exchange']) };
  });

  // ---- users -------------------------------------------------------------------------------

  const userOf = (name: string): User => {
    const u = auth.users.get(name);
    if (!u) throw HttpError.notFound();
    return u;
  };
  const withoutPermissions = (): User[] =>
    [...auth.users.values()].filter((u) => ![...auth.permissions.values()].some((m) => m.has(u.name)));

  r.on('GET', '/api/users', (req) => {
    api.requireAdmin(req.user);
    return { status: 200, body: applyListQuery([...auth.users.values()].map(formatUser), req.query, ['name']) };
  });
  r.on('GET', '/api/users/without-permissions', (req) => {
    api.requireAdmin(req.user);
    return { status: 200, body: applyListQuery(withoutPermissions().map(formatUser), req.query, ['name']) };
  });
  r.on('POST', '/api/users/bulk-delete', async (req) => {
    api.requireAdmin(req.user);
    const body = await req.body();
    const users = body['users'];
    if (!Array.isArray(users) || !users.every((u) => typeof u === 'string')) throw HttpError.badRequest('users must be a list of user names');
    for (const u of users as string[]) auth.deleteUser(u);
    await changed();
    return { status: 204 };
  });
  r.on('GET', '/api/users/:user', (req) => {
    api.requireAdmin(req.user);
    return { status: 200, body: projectOne(formatUser(userOf(req.params['user']!)), req.query) };
  });
  r.on('PUT', '/api/users/:user', async (req) => {
    api.requireAdmin(req.user);
    const name = req.params['user']!;
    if (name === '') throw HttpError.badRequest('user name must not be empty');
    const body = await req.body();
    const prev = auth.users.get(name);
    const tags = body['tags'] !== undefined ? parseTags(body['tags']) : (prev?.tags ?? []);
    const algo = strField(body, 'hashing_algorithm', prev?.hashingAlgorithm ?? 'rabbit_password_hashing_sha256');
    if (!isHashingAlgorithm(algo)) throw HttpError.badRequest(`unknown hashing_algorithm '${algo}'`);
    let passwordHash: string;
    let hashingAlgorithm: HashingAlgorithm = algo;
    if (typeof body['password'] === 'string') {
      hashingAlgorithm = 'rabbit_password_hashing_sha256';
      passwordHash = body['password'] === '' ? '' : hashPassword(body['password']);
    } else if (typeof body['password_hash'] === 'string') {
      passwordHash = body['password_hash'];
      if (passwordHash !== '' && !/^[A-Za-z0-9+/]+={0,2}$/.test(passwordHash)) throw HttpError.badRequest('password_hash must be base64');
    } else if (body['password'] !== undefined || body['password_hash'] !== undefined) {
      throw HttpError.badRequest('password and password_hash must be strings');
    } else {
      passwordHash = prev?.passwordHash ?? '';
      hashingAlgorithm = prev?.hashingAlgorithm ?? hashingAlgorithm;
    }
    auth.putUser(name, { passwordHash, hashingAlgorithm, tags });
    await changed();
    api.ctx.log.info({ user: name, tags, by: req.user.name }, prev ? 'user updated' : 'user created');
    return { status: prev ? 204 : 201 };
  });
  r.on('DELETE', '/api/users/:user', async (req) => {
    api.requireAdmin(req.user);
    const name = req.params['user']!;
    userOf(name);
    auth.deleteUser(name);
    await changed();
    api.ctx.log.info({ user: name, by: req.user.name }, 'user deleted');
    return { status: 204 };
  });
  r.on('GET', '/api/users/:user/permissions', (req) => {
    api.requireAdmin(req.user);
    const name = userOf(req.params['user']!).name;
    const rows: Row[] = [];
    for (const [vhost, m] of auth.permissions) {
      const p = m.get(name);
      if (p) rows.push(permissionRow(vhost, name, p));
    }
    return { status: 200, body: applyListQuery(rows, req.query, ['vhost']) };
  });
  r.on('GET', '/api/users/:user/topic-permissions', (req) => {
    api.requireAdmin(req.user);
    const name = userOf(req.params['user']!).name;
    const rows: Row[] = [];
    for (const [vhost, byUser] of auth.topicPermissions) for (const p of byUser.get(name)?.values() ?? []) rows.push(topicPermissionRow(vhost, name, p));
    return { status: 200, body: applyListQuery(rows, req.query, ['vhost', 'exchange']) };
  });

  // ---- permissions -------------------------------------------------------------------------

  const requireUserAndVhost = (user: string, vhost: string): void => {
    if (!core.vhosts.has(vhost)) throw HttpError.notFound(`vhost '${vhost}' not found`);
    if (!auth.users.has(user)) throw HttpError.badRequest(`user '${user}' not found`);
  };

  r.on('GET', '/api/permissions', (req) => {
    api.requireAdmin(req.user);
    const rows: Row[] = [];
    for (const [vhost, m] of auth.permissions) for (const [u, p] of m) rows.push(permissionRow(vhost, u, p));
    return { status: 200, body: applyListQuery(rows, req.query, ['vhost', 'user']) };
  });
  r.on('GET', '/api/permissions/:vhost/:user', (req) => {
    api.requireAdmin(req.user);
    const { vhost, user } = req.params as { vhost: string; user: string };
    const p = auth.getPermission(vhost, user);
    if (!p) throw HttpError.notFound();
    return { status: 200, body: projectOne(permissionRow(vhost, user, p), req.query) };
  });
  r.on('PUT', '/api/permissions/:vhost/:user', async (req) => {
    api.requireAdmin(req.user);
    const { vhost, user } = req.params as { vhost: string; user: string };
    const body = await req.body();
    requireUserAndVhost(user, vhost);
    const existed = auth.getPermission(vhost, user) !== undefined;
    auth.setPermission(vhost, user, { configure: strField(body, 'configure'), write: strField(body, 'write'), read: strField(body, 'read') });
    await changed();
    return { status: existed ? 204 : 201 };
  });
  r.on('DELETE', '/api/permissions/:vhost/:user', async (req) => {
    api.requireAdmin(req.user);
    const { vhost, user } = req.params as { vhost: string; user: string };
    if (!auth.clearPermission(vhost, user)) throw HttpError.notFound();
    await changed();
    return { status: 204 };
  });

  r.on('GET', '/api/topic-permissions', (req) => {
    api.requireAdmin(req.user);
    const rows: Row[] = [];
    for (const [vhost, byUser] of auth.topicPermissions) for (const [u, m] of byUser) for (const p of m.values()) rows.push(topicPermissionRow(vhost, u, p));
    return { status: 200, body: applyListQuery(rows, req.query, ['vhost', 'user', 'exchange']) };
  });
  r.on('GET', '/api/topic-permissions/:vhost/:user', (req) => {
    api.requireAdmin(req.user);
    const { vhost, user } = req.params as { vhost: string; user: string };
    const list = auth.topicPermissionsOf(vhost, user);
    if (list.length === 0) throw HttpError.notFound();
    return { status: 200, body: applyListQuery(list.map((p) => topicPermissionRow(vhost, user, p)), req.query, ['exchange']) };
  });
  r.on('PUT', '/api/topic-permissions/:vhost/:user', async (req) => {
    api.requireAdmin(req.user);
    const { vhost, user } = req.params as { vhost: string; user: string };
    const body = await req.body();
    requireUserAndVhost(user, vhost);
    const exchange = strField(body, 'exchange');
    const existed = auth.hasTopicPermission(user, vhost, exchange);
    auth.setTopicPermission(vhost, user, { exchange, write: strField(body, 'write', ''), read: strField(body, 'read', '') });
    await changed();
    return { status: existed ? 204 : 201 };
  });
  r.on('DELETE', '/api/topic-permissions/:vhost/:user', async (req) => {
    api.requireAdmin(req.user);
    const { vhost, user } = req.params as { vhost: string; user: string };
    const exchange = req.query.get('exchange') ?? undefined;
    if (!auth.clearTopicPermission(vhost, user, exchange)) throw HttpError.notFound();
    await changed();
    return { status: 204 };
  });

  // ---- policies ----------------------------------------------------------------------------

  r.on('GET', '/api/policies', (req) => {
    const vhosts = new Set(api.visibleVhosts(req.user).map((v) => v.name));
    const rows = core.policies.list().filter((p) => vhosts.has(p.vhost)).map(formatPolicy);
    return { status: 200, body: applyListQuery(rows, req.query, ['vhost', 'name']) };
  });
  r.on('GET', '/api/policies/:vhost', (req) => {
    const v = api.vhost(req.user, req.params['vhost']!);
    return { status: 200, body: applyListQuery(core.policies.list(v.name).map(formatPolicy), req.query, ['name']) };
  });
  r.on('GET', '/api/policies/:vhost/:name', (req) => {
    const v = api.vhost(req.user, req.params['vhost']!);
    const p = core.policies.get(v.name, req.params['name']!);
    if (!p) throw HttpError.notFound();
    return { status: 200, body: projectOne(formatPolicy(p), req.query) };
  });
  r.on('PUT', '/api/policies/:vhost/:name', async (req) => {
    if (!api.isPolicymaker(req.user)) throw HttpError.notAuthorised('Not policymaker user');
    const vhost = req.params['vhost']!;
    const name = req.params['name']!;
    const body = await req.body();
    api.vhost(req.user, vhost);
    if (!auth.canAccessVhost(req.user.name, vhost)) throw HttpError.notAuthorised('User not authorised to access virtual host');
    const existed = core.policies.get(vhost, name) !== undefined;
    const applyTo = strField(body, 'apply-to', 'all') as PolicyApplyTo;
    const definition = objField(body, 'definition') as Record<string, PolicyValue>;
    core.policies.set({ vhost, name, pattern: strField(body, 'pattern'), applyTo, definition, priority: intField(body, 'priority', 0) });
    await changed();
    api.ctx.log.info({ vhost, policy: name, by: req.user.name }, existed ? 'policy updated' : 'policy set');
    return { status: existed ? 204 : 201 };
  });
  r.on('DELETE', '/api/policies/:vhost/:name', async (req) => {
    if (!api.isPolicymaker(req.user)) throw HttpError.notAuthorised('Not policymaker user');
    const vhost = req.params['vhost']!;
    api.vhost(req.user, vhost);
    if (!core.policies.delete(vhost, req.params['name']!)) throw HttpError.notFound();
    await changed();
    return { status: 204 };
  });
}
