import { BrokerError } from '../errors.js';
import { Decimal } from '../types.js';
import type { FieldTable, FieldValue } from '../types.js';
import type { Router } from './router.js';

/**
 * Headers exchange, as RabbitMQ's `rabbit_exchange_type_headers.erl`:
 * - `x-match` is `all` (the default when absent), `any`, `all-with-x` or `any-with-x`; any other
 *   value is refused at bind time with 406 PRECONDITION_FAILED (`validate_binding`);
 * - the `x-match` argument itself never takes part; other arguments whose names start with `x-`
 *   take part only in the `-with-x` modes;
 * - an argument with a void (null) value matches when the header is present, whatever its value;
 * - `all` with no argument left matches every message, `any` with none matches nothing;
 * - values compare as Erlang's `==` does on the decoded values: numbers by value (1 equals 1.0),
 *   strings and byte arrays by their bytes (RabbitMQ holds both as binaries), booleans, timestamps,
 *   decimals, arrays and tables by deep equality. 1 never equals "1".
 * The routing key is ignored, though it is part of a binding's identity.
 */
export class HeadersRouter<T> implements Router<T> {
  private readonly bindings: HeadersBinding<T>[] = [];
  private readonly byDest = new Map<T, HeadersBinding<T>[]>();

  add(routingKey: string, args: FieldTable, dest: T): void {
    const b = compileBinding(routingKey, args, dest, this.bindings.length);
    this.bindings.push(b);
    const list = this.byDest.get(dest);
    if (list === undefined) this.byDest.set(dest, [b]);
    else list.push(b);
  }

  remove(routingKey: string, args: FieldTable, dest: T): void {
    const list = this.byDest.get(dest);
    if (list === undefined) return;
    let k = -1;
    for (let i = 0; i < list.length; i++) {
      const b = list[i] as HeadersBinding<T>;
      if (b.routingKey === routingKey && sameTable(b.args, args)) {
        k = i;
        break;
      }
    }
    if (k < 0) return;
    const b = list[k] as HeadersBinding<T>;
    list.splice(k, 1);
    if (list.length === 0) this.byDest.delete(dest);
    const last = this.bindings.pop() as HeadersBinding<T>;
    if (last !== b) {
      this.bindings[b.index] = last;
      last.index = b.index;
    }
  }

  route(_routingKey: string, headers: FieldTable | undefined, out: Set<T>): void {
    const bindings = this.bindings;
    for (let i = 0; i < bindings.length; i++) {
      const b = bindings[i] as HeadersBinding<T>;
      if (!out.has(b.dest) && matches(b, headers)) out.add(b.dest);
    }
  }

  get size(): number {
    return this.bindings.length;
  }
}

/** What a binding's arguments mean, worked out once at bind time. */
interface HeadersBinding<T> {
  readonly routingKey: string;
  readonly args: FieldTable;
  readonly dest: T;
  readonly any: boolean;
  /** The header names that take part, and the value each must have (null: present with any value). */
  readonly names: string[];
  readonly values: FieldValue[];
  /** Per name: it is also an Object.prototype property, so `headers[name]` may be inherited. */
  readonly inherited: boolean[];
  /** Position in the router's array, kept up to date on swap-removal. */
  index: number;
}

const X_MATCH_MODES: ReadonlySet<string> = new Set(['all', 'any', 'all-with-x', 'any-with-x']);

/**
 * Refuses an `x-match` RabbitMQ would refuse, with its `binding_invalid` text (406 on the wire).
 */
export function validateHeadersBindingArgs(args: FieldTable): void {
  if (!Object.hasOwn(args, 'x-match')) return;
  const m = args['x-match'];
  if (m === undefined) return;
  if (typeof m === 'string') {
    if (X_MATCH_MODES.has(m)) return;
    throw BrokerError.precondition(
      `Invalid x-match field value ${erlangBinary(m)}; expected all, any, all-with-x, or any-with-x`,
    );
  }
  throw BrokerError.precondition(
    `Invalid x-match field type ${amqpTypeName(m)} (value ${erlangTerm(m)}); expected longstr`,
  );
}

function compileBinding<T>(routingKey: string, args: FieldTable, dest: T, index: number): HeadersBinding<T> {
  validateHeadersBindingArgs(args);
  const mode = Object.hasOwn(args, 'x-match') ? args['x-match'] : undefined;
  const withX = mode === 'all-with-x' || mode === 'any-with-x';
  const names: string[] = [];
  const values: FieldValue[] = [];
  const inherited: boolean[] = [];
  for (const name of Object.keys(args)) {
    if (name === 'x-match') continue;
    if (!withX && name.startsWith('x-')) continue;
    const v = args[name];
    if (v === undefined) continue;
    names.push(name);
    values.push(v);
    inherited.push(name in Object.prototype);
  }
  return { routingKey, args, dest, any: mode === 'any' || mode === 'any-with-x', names, values, inherited, index };
}

function matches<T>(b: HeadersBinding<T>, headers: FieldTable | undefined): boolean {
  const names = b.names;
  if (b.any) {
    if (headers === undefined) return false;
    for (let i = 0; i < names.length; i++) {
      const v = header(headers, names[i] as string, b.inherited[i] === true);
      if (v === undefined) continue;
      const want = b.values[i] as FieldValue;
      if (want === null || headerValueEquals(want, v)) return true;
    }
    return false;
  }
  if (names.length === 0) return true;
  if (headers === undefined) return false;
  for (let i = 0; i < names.length; i++) {
    const v = header(headers, names[i] as string, b.inherited[i] === true);
    if (v === undefined) return false;
    const want = b.values[i] as FieldValue;
    if (want !== null && !headerValueEquals(want, v)) return false;
  }
  return true;
}

function header(headers: FieldTable, name: string, inherited: boolean): FieldValue | undefined {
  if (inherited && !Object.hasOwn(headers, name)) return undefined;
  return headers[name];
}

/** Erlang `==` on decoded field values (see the class comment). */
export function headerValueEquals(a: FieldValue, b: FieldValue): boolean {
  if (a === b) return true;
  switch (typeof a) {
    case 'number':
      if (typeof b === 'bigint') return Number.isInteger(a) && BigInt(a) === b;
      return false; // equal numbers were caught by ===
    case 'bigint':
      return typeof b === 'number' && Number.isInteger(b) && BigInt(b) === a;
    case 'string':
      return Buffer.isBuffer(b) && b.equals(Buffer.from(a, 'utf8'));
    case 'boolean':
      return false;
    default:
      break;
  }
  if (a === null || b === null) return false;
  if (Buffer.isBuffer(a)) {
    if (Buffer.isBuffer(b)) return a.equals(b);
    return typeof b === 'string' && a.equals(Buffer.from(b, 'utf8'));
  }
  if (typeof b !== 'object') return false;
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Decimal) return b instanceof Decimal && a.scale === b.scale && a.value === b.value;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!headerValueEquals(a[i] as FieldValue, b[i] as FieldValue)) return false;
    return true;
  }
  if (Array.isArray(b) || Buffer.isBuffer(b) || b instanceof Date || b instanceof Decimal) return false;
  return tableEquals(a, b, headerValueEquals);
}

/** Identity of binding arguments: equal JS types and values, tables in any key order. */
export function sameFieldValue(a: FieldValue, b: FieldValue): boolean {
  if (a === b) return true;
  if (typeof a === 'number') return typeof b === 'number' && Number.isNaN(a) && Number.isNaN(b);
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Buffer.isBuffer(a)) return Buffer.isBuffer(b) && a.equals(b);
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Decimal) return b instanceof Decimal && a.scale === b.scale && a.value === b.value;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameFieldValue(a[i] as FieldValue, b[i] as FieldValue)) return false;
    return true;
  }
  if (Array.isArray(b) || Buffer.isBuffer(b) || b instanceof Date || b instanceof Decimal) return false;
  return tableEquals(a, b, sameFieldValue);
}

function sameTable(a: FieldTable, b: FieldTable): boolean {
  return a === b || tableEquals(a, b, sameFieldValue);
}

function tableEquals(a: FieldTable, b: FieldTable, eq: (x: FieldValue, y: FieldValue) => boolean): boolean {
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) {
    if (!Object.hasOwn(b, k)) return false;
    const x = a[k];
    const y = b[k];
    if (x === undefined || y === undefined) {
      if (x !== y) return false;
      continue;
    }
    if (!eq(x, y)) return false;
  }
  return true;
}

/** The AMQP field type RabbitMQ would report for a decoded value. */
function amqpTypeName(v: FieldValue): string {
  if (v === null) return 'void';
  switch (typeof v) {
    case 'number':
      return Number.isInteger(v) ? 'long' : 'double';
    case 'bigint':
      return 'long';
    case 'boolean':
      return 'bool';
    case 'string':
      return 'longstr';
    default:
      break;
  }
  if (Buffer.isBuffer(v)) return 'binary';
  if (v instanceof Date) return 'timestamp';
  if (v instanceof Decimal) return 'decimal';
  if (Array.isArray(v)) return 'array';
  return 'table';
}

function erlangBinary(s: string): string {
  return `<<${JSON.stringify(s)}>>`;
}

function erlangTerm(v: FieldValue): string {
  if (v === null) return 'undefined';
  if (typeof v === 'string') return erlangBinary(v);
  if (Buffer.isBuffer(v)) return erlangBinary(v.toString('latin1'));
  if (v instanceof Date) return String(Math.floor(v.getTime() / 1000));
  if (v instanceof Decimal) return `{${v.scale},${v.value}}`;
  if (typeof v === 'object') return '[...]';
  return String(v);
}
