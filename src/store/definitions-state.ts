import type { Core } from '../core/core.js';
import {
  bindingDefinition,
  exchangeDefinition,
  isDefinedBinding,
  isDefinedExchange,
  policyDefinition,
  queueDefinition,
  userDefinition,
  vhostDefinition,
} from '../core/index.js';
import type { DefinitionChange } from '../core/persistence.js';
import { definitionKey, type DefinitionEntry, type DefinitionKind } from './definitions-log.js';

/**
 * The core's current definitions as keyed entries for the definitions log: the same JSON
 * entries `exportDefinitions` writes, one per key.
 */

function entry(kind: DefinitionKind, vhost: string, value: unknown): DefinitionEntry {
  return { kind, vhost, json: JSON.stringify(value) };
}

/** The key an exchange, queue or binding change is written under. */
export function changeKey(c: DefinitionChange): string {
  return c.kind === 'binding' ? definitionKey('b', c.vhost, c.source, c.key) : definitionKey(c.kind === 'queue' ? 'q' : 'x', c.vhost, c.name);
}

/** What an exchange, queue or binding is now: its entry, or null when it is gone or not durable. */
export function currentEntry(core: Core, c: DefinitionChange): DefinitionEntry | null {
  const v = core.vhosts.get(c.vhost);
  if (v === undefined) return null;
  if (c.kind === 'binding') {
    const b = v.exchanges.get(c.source)?.bindings.get(c.key);
    return b !== undefined && isDefinedBinding(b) ? entry('b', c.vhost, bindingDefinition(c.vhost, b)) : null;
  }
  if (c.kind === 'queue') {
    const q = v.queues.get(c.name);
    return q !== undefined && q.durable ? entry('q', c.vhost, queueDefinition(c.vhost, q)) : null;
  }
  const ex = v.exchanges.get(c.name);
  return ex !== undefined && isDefinedExchange(ex) ? entry('x', c.vhost, exchangeDefinition(c.vhost, ex)) : null;
}

/** Vhosts, users, permissions, topic permissions and policies. */
export function metaEntries(core: Core): Map<string, DefinitionEntry> {
  const out = new Map<string, DefinitionEntry>();
  for (const name of core.vhosts.keys()) out.set(definitionKey('v', name), entry('v', name, vhostDefinition(name)));
  for (const u of core.auth.users.values()) out.set(definitionKey('u', u.name), entry('u', '', userDefinition(u)));
  for (const [vhost, m] of core.auth.permissions) {
    if (!core.vhosts.has(vhost)) continue;
    for (const [user, p] of m) {
      out.set(definitionKey('p', vhost, user), entry('p', vhost, { user, vhost, configure: p.configure, write: p.write, read: p.read }));
    }
  }
  for (const [vhost, byUser] of core.auth.topicPermissions) {
    if (!core.vhosts.has(vhost)) continue;
    for (const [user, byExchange] of byUser) {
      for (const [exchange, p] of byExchange) {
        out.set(definitionKey('t', vhost, user, exchange), entry('t', vhost, { user, vhost, exchange, write: p.write, read: p.read }));
      }
    }
  }
  for (const p of core.policies.list()) {
    if (core.vhosts.has(p.vhost)) out.set(definitionKey('P', p.vhost, p.name), entry('P', p.vhost, policyDefinition(p)));
  }
  return out;
}

/** Every durable definition of the core. */
export function allEntries(core: Core): Map<string, DefinitionEntry> {
  const out = metaEntries(core);
  for (const [vhost, v] of core.vhosts) {
    for (const ex of v.exchanges.values()) {
      if (isDefinedExchange(ex)) out.set(definitionKey('x', vhost, ex.name), entry('x', vhost, exchangeDefinition(vhost, ex)));
      if (!ex.durable || ex.name === '') continue;
      for (const b of ex.bindings.values()) {
        if (isDefinedBinding(b)) out.set(definitionKey('b', vhost, ex.name, b.key), entry('b', vhost, bindingDefinition(vhost, b)));
      }
    }
    for (const q of v.queues.values()) {
      if (q.durable) out.set(definitionKey('q', vhost, q.name), entry('q', vhost, queueDefinition(vhost, q)));
    }
  }
  return out;
}
