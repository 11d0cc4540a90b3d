import { BrokerError } from '../errors.js';
import { Decimal } from '../types.js';
import type { FieldTable, FieldValue } from '../types.js';
import type { RouteOut } from '../routing/route-set.js';
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
  /** Entries tried on every message: bindings none of whose arguments can be indexed. */
  private readonly scan: Entry<T>[] = [];
  /**
   * Entries indexed by an argument name and a string, number or boolean value: a message only
   * tries the entries whose (name, value) it carries. An `all` binding has one entry, on one of its
   * arguments; an `any` binding has one per argument. RabbitMQ scans every binding; the index finds
   * the same destinations, since each candidate is still compared in full.
   */
  private readonly anchors = new Map<string, AnchorSlot<T>>();
  private readonly slots: AnchorSlot<T>[] = [];
  private readonly byDest = new Map<T, HeadersBinding<T>[]>();
  private count = 0;

  add(routingKey: string, args: FieldTable, dest: T): void {
    const b = compileBinding<T>(routingKey, args, dest);
    if (b.any && b.names.length > 0 && b.values.every(isAnchorValue)) {
      for (let i = 0; i < b.names.length; i++) this.index(b, i);
    } else {
      const anchor = b.any ? -1 : b.values.findIndex(isAnchorValue);
      if (anchor < 0) push(this.scan, { binding: b, arg: -1, list: this.scan, index: 0 }, b);
      else this.index(b, anchor);
    }
    const mine = this.byDest.get(dest);
    if (mine === undefined) this.byDest.set(dest, [b]);
    else mine.push(b);
    this.count++;
  }

  remove(routingKey: string, args: FieldTable, dest: T): void {
    const mine = this.byDest.get(dest);
    if (mine === undefined) return;
    let k = -1;
    for (let i = 0; i < mine.length; i++) {
      const b = mine[i] as HeadersBinding<T>;
      if (b.routingKey === routingKey && sameTable(b.args, args)) {
        k = i;
        break;
      }
    }
    if (k < 0) return;
    const b = mine[k] as HeadersBinding<T>;
    mine.splice(k, 1);
    if (mine.length === 0) this.byDest.delete(dest);
    this.count--;
    for (const e of b.entries) {
      const list = e.list;
      const last = list.pop() as Entry<T>;
      if (last !== e) {
        list[e.index] = last;
        last.index = e.index;
      }
      if (list.length === 0 && e.arg >= 0) this.dropKey(b.names[e.arg] as string, b.values[e.arg] as AnchorKey);
    }
  }

  route(_routingKey: string, headers: FieldTable | undefined, out: RouteOut<T>): void {
    const scan = this.scan;
    for (let i = 0; i < scan.length; i++) {
      const b = (scan[i] as Entry<T>).binding;
      if (matches(b, headers)) out.add(b.dest);
    }
    if (headers === undefined) return;
    const slots = this.slots;
    for (let i = 0; i < slots.length; i++) {
      const slot = slots[i] as AnchorSlot<T>;
      const v = header(headers, slot.name, slot.inherited);
      if (v === undefined || v === null) continue;
      const key = headerAnchorKey(v);
      if (key === undefined) continue;
      const list = slot.byValue.get(key);
      if (list === undefined) continue;
      for (let j = 0; j < list.length; j++) {
        const e = list[j] as Entry<T>;
        const b = e.binding;
        // an `any` entry stands for its one argument; an `all` entry for the whole binding
        if (b.any ? headerValueEquals(b.values[e.arg] as FieldValue, v) : matches(b, headers)) out.add(b.dest);
      }
    }
  }

  get size(): number {
    return this.count;
  }

  private index(b: HeadersBinding<T>, arg: number): void {
    const name = b.names[arg] as string;
    let slot = this.anchors.get(name);
    if (slot === undefined) {
      slot = { name, inherited: b.inherited[arg] === true, byValue: new Map(), index: this.slots.length };
      this.anchors.set(name, slot);
      this.slots.push(slot);
    }
    const key = b.values[arg] as AnchorKey;
    let list = slot.byValue.get(key);
    if (list === undefined) {
      list = [];
      slot.byValue.set(key, list);
    }
    push(list, { binding: b, arg, list, index: 0 }, b);
  }

  private dropKey(name: string, key: AnchorKey): void {
    const slot = this.anchors.get(name);
    if (slot === undefined) return;
    slot.byValue.delete(key);
    if (slot.byValue.size > 0) return;
    this.anchors.delete(name);
    const last = this.slots.pop() as AnchorSlot<T>;
    if (last !== slot) {
      this.slots[slot.index] = last;
      last.index = slot.index;
    }
  }
}

function push<T>(list: Entry<T>[], e: Entry<T>, b: HeadersBinding<T>): void {
  e.index = list.length;
  list.push(e);
  b.entries.push(e);
}

type AnchorKey = string | number | boolean;

interface AnchorSlot<T> {
  readonly name: string;
  readonly inherited: boolean;
  readonly byValue: Map<AnchorKey, Entry<T>[]>;
  index: number;
}

/** A binding's place in the scan list or under one (name, value) of the index. */
interface Entry<T> {
  readonly binding: HeadersBinding<T>;
  /** The argument indexed, or -1 in the scan list. */
  readonly arg: number;
  readonly list: Entry<T>[];
  /** Position in `list`, kept up to date on swap-removal. */
  index: number;
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
  readonly entries: Entry<T>[];
}

/**
 * Whether a required value can index a binding: every header value equal to it (by
 * `headerValueEquals`) must map to it through `headerAnchorKey`.
 */
function isAnchorValue(v: FieldValue): boolean {
  switch (typeof v) {
    case 'boolean':
      return true;
    case 'number': // unsafe integers may equal bigints that headerAnchorKey cannot map
      return !Number.isNaN(v) && (!Number.isInteger(v) || Number.isSafeInteger(v));
    case 'string': // a byte-array header equal to it must decode back to it
      return Buffer.from(v, 'utf8').toString('utf8') === v;
    default:
      return false;
  }
}

/** The index key a header value could be equal to, if any. */
function headerAnchorKey(v: FieldValue): AnchorKey | undefined {
  switch (typeof v) {
    case 'string':
    case 'number':
    case 'boolean':
      return v;
    case 'bigint':
      return v >= MIN_SAFE && v <= MAX_SAFE ? Number(v) : undefined;
    default:
      return Buffer.isBuffer(v) ? v.toString('utf8') : undefined;
  }
}

const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

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

function compileBinding<T>(routingKey: string, args: FieldTable, dest: T): HeadersBinding<T> {
  validateHeadersBindingArgs(args);
  const mode = Object.hasOwn(args, 'x-match') ? args['x-match'] : undefined;
  const withX = mode === 'all-with-x' || mode === 'any-with-x';
  const any = mode === 'any' || mode === 'any-with-x';
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
  return { routingKey, args, dest, any, names, values, inherited, entries: [] };
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
      return typeof b === 'object' && Buffer.isBuffer(b) && b.equals(Buffer.from(a, 'utf8'));
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
