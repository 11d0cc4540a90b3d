import { hashPassword, isHashingAlgorithm, type HashingAlgorithm, type User } from './auth.js';
import type { Core } from './core.js';
import { BrokerError } from './errors.js';
import { Exchange, type Binding } from './exchanges/exchange.js';
import { getOwn, setOwn } from './own-keys.js';
import type { Policy, PolicyApplyTo, PolicyValue } from './policies.js';
import type { Queue } from './queues/queue.js';
import { Decimal, type FieldTable, type FieldValue } from './types.js';

/**
 * Durable topology, users and permissions in RabbitMQ's definitions JSON (what
 * `rabbitmqctl export_definitions` writes and `import_definitions` reads), so a RabbitMQ user
 * can bring their topology over and back.
 */

export const HASHING_ALGORITHM = 'rabbit_password_hashing_sha256';

export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export interface UserDefinition {
  name: string;
  password_hash: string;
  hashing_algorithm: string;
  tags: string[];
  limits: Record<string, never>;
}

export interface VhostDefinition {
  name: string;
  limits: never[];
  metadata: { description: string; tags: string[] };
}

export interface PermissionDefinition {
  user: string;
  vhost: string;
  configure: string;
  write: string;
  read: string;
}

export interface TopicPermissionDefinition {
  user: string;
  vhost: string;
  exchange: string;
  write: string;
  read: string;
}

export interface PolicyDefinition {
  vhost: string;
  name: string;
  pattern: string;
  'apply-to': PolicyApplyTo;
  definition: Record<string, PolicyValue>;
  priority: number;
}

export interface QueueDefinition {
  name: string;
  vhost: string;
  durable: boolean;
  auto_delete: boolean;
  arguments: Record<string, JsonValue>;
}

export interface ExchangeDefinition {
  name: string;
  vhost: string;
  type: string;
  durable: boolean;
  auto_delete: boolean;
  internal: boolean;
  arguments: Record<string, JsonValue>;
}

export interface BindingDefinition {
  source: string;
  vhost: string;
  destination: string;
  destination_type: 'queue' | 'exchange';
  routing_key: string;
  arguments: Record<string, JsonValue>;
}

export interface Definitions {
  product_name: string;
  product_version: string;
  users: UserDefinition[];
  vhosts: VhostDefinition[];
  permissions: PermissionDefinition[];
  topic_permissions: TopicPermissionDefinition[];
  parameters: never[];
  global_parameters: never[];
  policies: PolicyDefinition[];
  queues: QueueDefinition[];
  exchanges: ExchangeDefinition[];
  bindings: BindingDefinition[];
}

// ---- field values <-> JSON ---------------------------------------------------------------------

/** A field value as RabbitMQ's export shows it (numbers, strings, booleans, lists, objects). */
export function toJson(v: FieldValue): JsonValue {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') return Number.isFinite(v) ? v : String(v);
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (Buffer.isBuffer(v)) return v.toString('utf8');
  if (v instanceof Date) return Math.floor(v.getTime() / 1000);
  if (v instanceof Decimal) return v.value / 10 ** v.scale;
  if (Array.isArray(v)) return v.map(toJson);
  return tableToJson(v);
}

export function tableToJson(t: FieldTable): Record<string, JsonValue> {
  const out: Record<string, JsonValue> = {};
  for (const k of Object.keys(t).sort()) {
    const v = t[k];
    if (v !== undefined) setOwn(out, k, toJson(v));
  }
  return out;
}

export function fromJson(v: unknown): FieldValue {
  if (v === null || typeof v === 'string' || typeof v === 'boolean' || typeof v === 'number') return v;
  if (Array.isArray(v)) return v.map(fromJson);
  if (typeof v === 'object') return tableFromJson(v as Record<string, unknown>);
  return null;
}

export function tableFromJson(v: unknown): FieldTable {
  const out: FieldTable = {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return out;
  // own keys only, and a key '__proto__' stays a key (a plain assignment would set the prototype)
  for (const [k, x] of Object.entries(v)) setOwn(out, k, fromJson(x));
  return out;
}

// ---- export -------------------------------------------------------------------------------------

const byName = <T extends { name: string }>(a: T, b: T): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

function isDefaultExchange(name: string): boolean {
  return name === '' || name.startsWith('amq.');
}

/** A user as the definitions show it. */
export function userDefinition(u: User): UserDefinition {
  return { name: u.name, password_hash: u.passwordHash, hashing_algorithm: u.hashingAlgorithm, tags: [...u.tags], limits: {} };
}

export function vhostDefinition(name: string): VhostDefinition {
  return { name, limits: [], metadata: { description: '', tags: [] } };
}

export function policyDefinition(p: Policy): PolicyDefinition {
  return { vhost: p.vhost, name: p.name, pattern: p.pattern, 'apply-to': p.applyTo, definition: { ...p.definition }, priority: p.priority };
}

/** Whether an exchange is part of the definitions (durable, and not one every vhost has). */
export function isDefinedExchange(ex: Exchange): boolean {
  return ex.durable && !isDefaultExchange(ex.name);
}

export function exchangeDefinition(vhost: string, ex: Exchange): ExchangeDefinition {
  return {
    name: ex.name,
    vhost,
    type: ex.type,
    durable: true,
    auto_delete: ex.autoDelete,
    internal: ex.internal,
    arguments: tableToJson(ex.args),
  };
}

export function queueDefinition(vhost: string, q: Queue): QueueDefinition {
  return { name: q.name, vhost, durable: true, auto_delete: q.autoDelete, arguments: tableToJson(q.args) };
}

/** Whether a binding is part of the definitions: between durable objects, not from the default exchange. */
export function isDefinedBinding(b: Binding): boolean {
  return b.source.durable && b.source.name !== '' && b.destination.durable;
}

export function bindingDefinition(vhost: string, b: Binding): BindingDefinition {
  return {
    source: b.source.name,
    vhost,
    destination: b.destination.name,
    destination_type: b.destination instanceof Exchange ? 'exchange' : 'queue',
    routing_key: b.routingKey,
    arguments: tableToJson(b.args),
  };
}

/** The durable topology, users and permissions of `core`. */
export function exportDefinitions(core: Core, productVersion = '0.0.0'): Definitions {
  const users: UserDefinition[] = [...core.auth.users.values()].map(userDefinition).sort(byName);
  const vhosts: VhostDefinition[] = [...core.vhosts.keys()].sort().map(vhostDefinition);
  const permissions: PermissionDefinition[] = [];
  for (const vhost of [...core.auth.permissions.keys()].sort()) {
    if (!core.vhosts.has(vhost)) continue;
    const m = core.auth.permissions.get(vhost)!;
    for (const user of [...m.keys()].sort()) {
      const p = m.get(user)!;
      permissions.push({ user, vhost, configure: p.configure, write: p.write, read: p.read });
    }
  }
  const topicPermissions: TopicPermissionDefinition[] = [];
  for (const vhost of [...core.auth.topicPermissions.keys()].sort()) {
    if (!core.vhosts.has(vhost)) continue;
    const byUser = core.auth.topicPermissions.get(vhost)!;
    for (const user of [...byUser.keys()].sort()) {
      const byExchange = byUser.get(user)!;
      for (const exchange of [...byExchange.keys()].sort()) {
        const p = byExchange.get(exchange)!;
        topicPermissions.push({ user, vhost, exchange, write: p.write, read: p.read });
      }
    }
  }
  const policies: PolicyDefinition[] = core.policies
    .list()
    .filter((p) => core.vhosts.has(p.vhost))
    .sort((a, b) => (a.vhost !== b.vhost ? (a.vhost < b.vhost ? -1 : 1) : a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map(policyDefinition);
  const queues: QueueDefinition[] = [];
  const exchanges: ExchangeDefinition[] = [];
  const bindings: BindingDefinition[] = [];
  for (const vhostName of [...core.vhosts.keys()].sort()) {
    const v = core.vhosts.get(vhostName)!;
    for (const ex of [...v.exchanges.values()].sort(byName)) {
      if (isDefinedExchange(ex)) exchanges.push(exchangeDefinition(vhostName, ex));
      if (!ex.durable || ex.name === '') continue;
      // Keys are made once each (a binding does not keep its key).
      const bs = [...ex.bindings.values()].filter(isDefinedBinding).map((b) => ({ b, key: b.key }));
      bs.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
      for (const { b } of bs) bindings.push(bindingDefinition(vhostName, b));
    }
    for (const q of [...v.queues.values()].sort(byName)) {
      if (q.durable) queues.push(queueDefinition(vhostName, q));
    }
  }
  return {
    product_name: 'Warren',
    product_version: productVersion,
    users,
    vhosts,
    permissions,
    topic_permissions: topicPermissions,
    parameters: [],
    global_parameters: [],
    policies,
    queues,
    exchanges,
    bindings,
  };
}

// ---- import -------------------------------------------------------------------------------------

export interface ImportOptions {
  /**
   * The definitions are the whole truth about users and permissions (recovery from the data
   * directory): users and permissions not in them are removed. Otherwise the import only adds and
   * updates, as RabbitMQ's import does.
   */
  replaceUsers?: boolean;
}

export interface ImportReport {
  vhosts: number;
  users: number;
  permissions: number;
  topicPermissions: number;
  policies: number;
  exchanges: number;
  queues: number;
  bindings: number;
  /** What was skipped or not fully supported, one sentence each. */
  warnings: string[];
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function list(defs: Obj, key: string): Obj[] {
  const v = getOwn(defs, key);
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw BrokerError.precondition(`definitions: '${key}' must be a list`);
  return v.map((x, i) => {
    if (!isObj(x)) throw BrokerError.precondition(`definitions: ${key}[${i}] must be an object`);
    return x;
  });
}

function str(o: Obj, key: string, what: string, dflt?: string): string {
  const v = getOwn(o, key);
  if (typeof v === 'string') return v;
  if (v === undefined && dflt !== undefined) return dflt;
  throw BrokerError.precondition(`definitions: ${what} has no string '${key}'`);
}

function bool(o: Obj, key: string, dflt: boolean): boolean {
  const v = getOwn(o, key);
  return typeof v === 'boolean' ? v : dflt;
}

/** RabbitMQ writes tags as a list (3.10+) or a comma-separated string (older releases). */
function parseTags(v: unknown): string[] {
  if (Array.isArray(v)) return v.filter((t): t is string => typeof t === 'string' && t !== '');
  if (typeof v === 'string') return v.split(',').map((t) => t.trim()).filter((t) => t !== '');
  return [];
}

function errorText(e: unknown): string {
  return e instanceof BrokerError ? e.text : e instanceof Error ? e.message : String(e);
}

/**
 * Applies RabbitMQ-format definitions to the core: vhosts, users, permissions, topic permissions,
 * policies, exchanges, queues, bindings, in that order. An entry the core refuses (an unknown exchange type, an inequivalent
 * redeclaration, a binding to something missing) is skipped with a warning; a malformed file throws.
 */
export function importDefinitions(core: Core, input: unknown, opts: ImportOptions = {}): ImportReport {
  if (!isObj(input)) throw BrokerError.precondition('definitions must be a JSON object');
  const report: ImportReport = {
    vhosts: 0,
    users: 0,
    permissions: 0,
    topicPermissions: 0,
    policies: 0,
    exchanges: 0,
    queues: 0,
    bindings: 0,
    warnings: [],
  };
  const warn = (s: string): void => {
    report.warnings.push(s);
  };

  const vhostDefs = list(input, 'vhosts');
  const userDefs = list(input, 'users');
  const permDefs = list(input, 'permissions');
  const topicDefs = list(input, 'topic_permissions');
  const policyDefs = list(input, 'policies');
  const exchangeDefs = list(input, 'exchanges');
  const queueDefs = list(input, 'queues');
  const bindingDefs = list(input, 'bindings');

  for (const v of vhostDefs) {
    core.addVhost(str(v, 'name', 'a vhost'));
    report.vhosts++;
  }

  const auth = core.auth;
  if (opts.replaceUsers && (userDefs.length > 0 || permDefs.length > 0)) {
    for (const name of [...auth.users.keys()]) auth.deleteUser(name);
  }
  for (const u of userDefs) {
    const name = str(u, 'name', 'a user');
    const algoName = typeof u['hashing_algorithm'] === 'string' ? u['hashing_algorithm'] : HASHING_ALGORITHM;
    let algorithm: HashingAlgorithm = 'rabbit_password_hashing_sha256';
    let hash = '';
    if (typeof u['password_hash'] === 'string' && u['password_hash'] !== '') {
      if (isHashingAlgorithm(algoName)) {
        algorithm = algoName;
        hash = u['password_hash'];
      } else warn(`user '${name}' uses the unknown hashing algorithm '${algoName}': it cannot log in until a password is set`);
    } else if (typeof u['password'] === 'string') hash = hashPassword(u['password']);
    else warn(`user '${name}' has no password_hash: it cannot log in until a password is set`);
    try {
      auth.putUser(name, { passwordHash: hash, hashingAlgorithm: algorithm, tags: parseTags(u['tags']) });
      report.users++;
    } catch (e) {
      warn(`user '${name}' skipped: ${errorText(e)}`);
    }
  }
  for (const p of permDefs) {
    const user = str(p, 'user', 'a permission');
    const vhost = str(p, 'vhost', `the permission of '${user}'`);
    if (!core.vhosts.has(vhost)) {
      warn(`permission of user '${user}' skipped: no vhost '${vhost}'`);
      continue;
    }
    try {
      auth.setPermission(vhost, user, {
        configure: str(p, 'configure', 'a permission', ''),
        write: str(p, 'write', 'a permission', ''),
        read: str(p, 'read', 'a permission', ''),
      });
      report.permissions++;
    } catch (e) {
      warn(`permission of user '${user}' in vhost '${vhost}' skipped: ${errorText(e)}`);
    }
  }
  for (const p of topicDefs) {
    const user = str(p, 'user', 'a topic permission');
    const vhost = str(p, 'vhost', `the topic permission of '${user}'`);
    const exchange = str(p, 'exchange', `the topic permission of '${user}'`);
    if (!core.vhosts.has(vhost)) {
      warn(`topic permission of user '${user}' skipped: no vhost '${vhost}'`);
      continue;
    }
    try {
      auth.setTopicPermission(vhost, user, { exchange, write: str(p, 'write', 'a topic permission', ''), read: str(p, 'read', 'a topic permission', '') });
      report.topicPermissions++;
    } catch (e) {
      warn(`topic permission of user '${user}' in vhost '${vhost}' skipped: ${errorText(e)}`);
    }
  }
  for (const p of policyDefs) {
    const name = str(p, 'name', 'a policy');
    const vhost = str(p, 'vhost', `policy '${name}'`);
    if (!core.vhosts.has(vhost)) {
      warn(`policy '${name}' skipped: no vhost '${vhost}'`);
      continue;
    }
    const applyTo = str(p, 'apply-to', `policy '${name}'`, 'all');
    const definition = p['definition'];
    try {
      core.policies.set({
        vhost,
        name,
        pattern: str(p, 'pattern', `policy '${name}'`),
        applyTo: applyTo as PolicyApplyTo, // validated by Policies.set
        definition: isObj(definition) ? (definition as Record<string, PolicyValue>) : {},
        priority: typeof p['priority'] === 'number' ? p['priority'] : 0,
      });
      report.policies++;
    } catch (e) {
      warn(`policy '${name}' in vhost '${vhost}' skipped: ${errorText(e).replace(/\n+/g, ' ')}`);
    }
  }

  for (const x of exchangeDefs) {
    const name = str(x, 'name', 'an exchange');
    const vhostName = str(x, 'vhost', `exchange '${name}'`);
    if (isDefaultExchange(name)) continue;
    const vhost = core.vhosts.get(vhostName);
    if (!vhost) {
      warn(`exchange '${name}' skipped: no vhost '${vhostName}'`);
      continue;
    }
    try {
      vhost.declareExchange(
        name,
        str(x, 'type', `exchange '${name}'`),
        {
          durable: bool(x, 'durable', true),
          autoDelete: bool(x, 'auto_delete', false),
          internal: bool(x, 'internal', false),
          arguments: tableFromJson(x['arguments']),
        },
        false,
      );
      report.exchanges++;
    } catch (e) {
      warn(`exchange '${name}' in vhost '${vhostName}' skipped: ${errorText(e)}`);
    }
  }

  for (const q of queueDefs) {
    const name = str(q, 'name', 'a queue');
    const vhostName = str(q, 'vhost', `queue '${name}'`);
    const vhost = core.vhosts.get(vhostName);
    if (!vhost) {
      warn(`queue '${name}' skipped: no vhost '${vhostName}'`);
      continue;
    }
    if (name === '') {
      warn(`a queue with an empty name in vhost '${vhostName}' skipped`);
      continue;
    }
    try {
      vhost.declareQueue(
        name,
        { durable: bool(q, 'durable', true), autoDelete: bool(q, 'auto_delete', false), arguments: tableFromJson(q['arguments']) },
        false,
        0,
      );
      report.queues++;
    } catch (e) {
      warn(`queue '${name}' in vhost '${vhostName}' skipped: ${errorText(e)}`);
    }
  }

  for (const b of bindingDefs) {
    const source = str(b, 'source', 'a binding');
    const vhostName = str(b, 'vhost', `a binding from '${source}'`);
    const destination = str(b, 'destination', `a binding from '${source}'`);
    const kind = str(b, 'destination_type', `a binding from '${source}'`, 'queue');
    const what = `binding from '${source}' to ${kind} '${destination}' in vhost '${vhostName}'`;
    if (source === '') continue; // the default exchange's bindings are implicit
    const vhost = core.vhosts.get(vhostName);
    const src = vhost?.exchanges.get(source);
    const dest: Queue | Exchange | undefined =
      kind === 'exchange' ? vhost?.exchanges.get(destination) : vhost?.queues.get(destination);
    if (!vhost || !src || !dest) {
      warn(`${what} skipped: its source or destination does not exist`);
      continue;
    }
    try {
      vhost.bind(src, dest, str(b, 'routing_key', what, ''), tableFromJson(b['arguments']));
      report.bindings++;
    } catch (e) {
      warn(`${what} skipped: ${errorText(e)}`);
    }
  }

  // global_parameters hold cluster metadata (cluster_name, internal_cluster_id): nothing to do.
  const params = list(input, 'parameters').length;
  if (params > 0) warn(`${params} runtime parameters ignored: not supported`);
  return report;
}
