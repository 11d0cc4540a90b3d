import { Decimal, type FieldTable, type FieldValue } from './types.js';

/** A canonical string for a field value: equal values (keys in any order) give equal strings. */
export function fieldKey(v: FieldValue | undefined): string {
  if (v === undefined || v === null) return 'V';
  if (typeof v === 'string') return `S${JSON.stringify(v)}`;
  if (typeof v === 'number') return `N${v}`;
  if (typeof v === 'bigint') return `N${v.toString()}`;
  if (typeof v === 'boolean') return v ? 'T' : 'F';
  if (Buffer.isBuffer(v)) return `x${v.toString('hex')}`;
  if (v instanceof Date) return `D${v.getTime()}`;
  if (v instanceof Decimal) return `M${v.scale}:${v.value}`;
  if (Array.isArray(v)) return `[${v.map(fieldKey).join(',')}]`;
  return tableKey(v);
}

export function tableKey(t: FieldTable | undefined): string {
  if (t === undefined) return '{}';
  // A frozen table cannot change: its key is made once and shared (e.g. by every binding made
  // with the same shared arguments).
  const frozen = Object.isFrozen(t);
  if (frozen) {
    const known = FROZEN_KEYS.get(t);
    if (known !== undefined) return known;
  }
  const keys = Object.keys(t).sort();
  const key = `{${keys.map((k) => `${JSON.stringify(k)}:${fieldKey(t[k])}`).join(',')}}`;
  if (frozen) FROZEN_KEYS.set(t, key);
  return key;
}

/** Keys of frozen tables (see tableKey). */
const FROZEN_KEYS = new WeakMap<FieldTable, string>();

/** A readable rendering for error texts, RabbitMQ style. */
export function describeValue(v: FieldValue | undefined): string {
  if (v === undefined) return 'none';
  if (typeof v === 'string') return v;
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (typeof v === 'object' && v !== null && !(v instanceof Date) && !(v instanceof Decimal)) return tableKey(v as FieldTable);
  return String(v);
}

/**
 * A string, number or boolean header value as text (what MQTT user properties and STOMP headers
 * can carry); undefined for values that have no textual form (tables, byte arrays, ...).
 */
export function scalarText(v: FieldValue | undefined): string | undefined {
  switch (typeof v) {
    case 'string':
      return v;
    case 'number':
    case 'bigint':
      return String(v);
    case 'boolean':
      return v ? 'true' : 'false';
    default:
      return undefined;
  }
}

