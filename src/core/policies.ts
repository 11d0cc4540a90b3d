import { BrokerError } from './errors.js';
import { PatternCache, PatternError, patternProblem, type Pattern } from './pattern.js';
import type { FieldTable, FieldValue } from './types.js';

export type PolicyApplyTo = 'all' | 'queues' | 'exchanges' | 'classic_queues' | 'quorum_queues' | 'streams';

export const POLICY_APPLY_TO: readonly PolicyApplyTo[] = ['all', 'queues', 'exchanges', 'classic_queues', 'quorum_queues', 'streams'];

/** A value in a policy definition (JSON). */
export type PolicyValue = string | number | boolean | null | PolicyValue[] | { [k: string]: PolicyValue };

export interface Policy {
  vhost: string;
  name: string;
  /** Regular expression over queue / exchange names (unanchored, as RabbitMQ; RE2 syntax). */
  pattern: string;
  applyTo: PolicyApplyTo;
  definition: Record<string, PolicyValue>;
  priority: number;
}

type Check = (v: PolicyValue) => boolean;
const nonNegInt: Check = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 0;
const posInt: Check = (v) => typeof v === 'number' && Number.isInteger(v) && v >= 1;
const str: Check = (v) => typeof v === 'string';
const any: Check = () => true;

/** Policy keys RabbitMQ accepts, with their value checks. `ha-*` and friends are accepted and kept. */
const KEYS: Record<string, Check> = {
  'message-ttl': nonNegInt,
  expires: posInt,
  'max-length': nonNegInt,
  'max-length-bytes': nonNegInt,
  overflow: (v) => v === 'drop-head' || v === 'reject-publish' || v === 'reject-publish-dlx',
  'dead-letter-exchange': str,
  'dead-letter-routing-key': str,
  'dead-letter-strategy': str,
  'alternate-exchange': str,
  'delivery-limit': nonNegInt,
  'queue-mode': (v) => v === 'default' || v === 'lazy',
  'queue-version': nonNegInt,
  'queue-master-locator': str,
  'queue-leader-locator': str,
  'consumer-timeout': nonNegInt,
  'requeue-delay': nonNegInt,
  'requeue-delay-max': nonNegInt,
  'max-age': str,
  'stream-max-segment-size-bytes': nonNegInt,
  'initial-cluster-size': posInt,
  'ha-mode': str,
  'ha-params': any,
  'ha-sync-mode': str,
  'ha-sync-batch-size': posInt,
  'ha-promote-on-shutdown': str,
  'ha-promote-on-failure': str,
  'federation-upstream': str,
  'federation-upstream-set': str,
};

/** Keys that become queue arguments; numeric limits combine with a declared argument by taking the smaller. */
const QUEUE_ARGS: Record<string, 'min' | 'arg-wins'> = {
  'message-ttl': 'min',
  expires: 'min',
  'max-length': 'min',
  'max-length-bytes': 'min',
  'delivery-limit': 'min',
  'consumer-timeout': 'min',
  'requeue-delay': 'arg-wins',
  'requeue-delay-max': 'arg-wins',
  overflow: 'arg-wins',
  'dead-letter-exchange': 'arg-wins',
  'dead-letter-routing-key': 'arg-wins',
};

/**
 * Policies per vhost: named (pattern, definition, priority) entries. The highest-priority policy
 * whose pattern matches a queue or exchange name applies to it.
 */
export class Policies {
  /** vhost -> name -> policy */
  readonly byVhost = new Map<string, Map<string, Policy>>();
  /** Bumped on every change, so holders of effective values know to recompute. */
  generation = 0;
  /** Called after every change (the core re-applies effective arguments). */
  onChange: (() => void) | undefined;
  private readonly patterns = new PatternCache(1024);

  /** Validates and stores a policy (PRECONDITION_FAILED describes what is wrong). */
  set(p: Policy): void {
    validatePolicy(p);
    let m = this.byVhost.get(p.vhost);
    if (!m) this.byVhost.set(p.vhost, (m = new Map()));
    m.set(p.name, { ...p, definition: { ...p.definition } });
    this.changed();
  }

  private changed(): void {
    this.generation++;
    this.onChange?.();
  }

  get(vhost: string, name: string): Policy | undefined {
    return this.byVhost.get(vhost)?.get(name);
  }

  delete(vhost: string, name: string): boolean {
    const m = this.byVhost.get(vhost);
    const had = m?.delete(name) ?? false;
    if (m && m.size === 0) this.byVhost.delete(vhost);
    if (had) this.changed();
    return had;
  }

  deleteVhost(vhost: string): void {
    if (this.byVhost.delete(vhost)) this.changed();
  }

  list(vhost?: string): Policy[] {
    if (vhost !== undefined) return [...(this.byVhost.get(vhost)?.values() ?? [])];
    const out: Policy[] = [];
    for (const m of this.byVhost.values()) out.push(...m.values());
    return out;
  }

  /** The policy that applies to a queue or exchange, if any. */
  match(vhost: string, kind: 'queue' | 'exchange', name: string): Policy | undefined {
    const m = this.byVhost.get(vhost);
    if (!m) return undefined;
    let best: Policy | undefined;
    for (const p of m.values()) {
      if (!appliesTo(p.applyTo, kind)) continue;
      if (!this.pattern(p.pattern).test(name)) continue;
      if (best === undefined || p.priority > best.priority || (p.priority === best.priority && p.name < best.name)) best = p;
    }
    return best;
  }

  /**
   * A queue's arguments with the matching policy folded in, as RabbitMQ combines them: for numeric
   * limits the smaller value wins, otherwise the declared argument wins.
   */
  effectiveQueueArguments(vhost: string, name: string, args: FieldTable): FieldTable {
    const p = this.match(vhost, 'queue', name);
    if (!p) return args;
    const out: FieldTable = { ...args };
    for (const [key, how] of Object.entries(QUEUE_ARGS)) {
      const v = p.definition[key];
      if (v === undefined || v === null || typeof v === 'object' || typeof v === 'boolean') continue;
      const arg = `x-${key}`;
      const declared: FieldValue | undefined = out[arg];
      if (declared === undefined || declared === null) out[arg] = v;
      else if (how === 'min' && typeof v === 'number') {
        const d = typeof declared === 'bigint' ? Number(declared) : declared;
        if (typeof d === 'number' && v < d) out[arg] = v;
      }
    }
    return out;
  }

  /** An exchange's arguments with the matching policy's alternate exchange (the declared one wins). */
  effectiveExchangeArguments(vhost: string, name: string, args: FieldTable): FieldTable {
    const p = this.match(vhost, 'exchange', name);
    const ae = p?.definition['alternate-exchange'];
    if (typeof ae !== 'string' || args['alternate-exchange'] !== undefined) return args;
    return { ...args, 'alternate-exchange': ae };
  }

  /** Policy patterns are validated when set; one that fails here matches nothing. */
  private pattern(source: string): Pattern {
    try {
      return this.patterns.get(source);
    } catch (e) {
      if (e instanceof PatternError) return MATCH_NOTHING;
      throw e;
    }
  }
}

const MATCH_NOTHING: Pattern = { source: '', test: () => false };

function appliesTo(applyTo: PolicyApplyTo, kind: 'queue' | 'exchange'): boolean {
  if (applyTo === 'all') return true;
  if (applyTo === 'exchanges') return kind === 'exchange';
  return kind === 'queue';
}

/** Throws PRECONDITION_FAILED with RabbitMQ-like text when a policy is invalid. */
export function validatePolicy(p: Policy): void {
  if (p.name === '') throw BrokerError.precondition('policy name must not be empty');
  const problem = patternProblem(p.pattern);
  if (problem !== undefined) {
    throw BrokerError.precondition(`Validation failed\n\n<<"${p.pattern}">> is not a valid regular expression: ${problem}`);
  }
  if (!POLICY_APPLY_TO.includes(p.applyTo)) {
    throw BrokerError.precondition(`Validation failed\n\n'${String(p.applyTo)}' is not a valid apply-to value`);
  }
  if (!Number.isInteger(p.priority)) throw BrokerError.precondition(`Validation failed\n\npriority must be an integer`);
  const keys = Object.keys(p.definition);
  if (keys.length === 0) throw BrokerError.precondition('Validation failed\n\nno policy provided');
  // own keys only: 'constructor' or '__proto__' must not find Object.prototype's members
  const unknown = keys.filter((k) => !Object.hasOwn(KEYS, k));
  if (unknown.length > 0) {
    throw BrokerError.precondition(`Validation failed\n\n${unknown.map((k) => `'${k}'`).join(', ')} ${unknown.length === 1 ? 'is' : 'are'} not a recognised policy setting`);
  }
  for (const k of keys) {
    const check = KEYS[k]!;
    const v = p.definition[k]!;
    if (!check(v)) throw BrokerError.precondition(`Validation failed\n\n${JSON.stringify(v)} is not a valid value for '${k}'`);
  }
}
