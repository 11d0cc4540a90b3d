import { tableKey } from '../field-key.js';
import type { FieldTable } from '../types.js';
import { isExchange, type Binding, type Destination, type Exchange } from './exchange.js';

/** Bindings of one routing key to one destination name: usually one, a list when arguments differ. */
type ByName = Binding | Binding[];

/**
 * An exchange's bindings (where it is the source). A binding is identified by its destination
 * (kind and name), routing key and arguments, as RabbitMQ does. They are held by routing key: a key
 * bound once (a device's own topic, a queue's own key) holds its binding as is, under the
 * binding's own routing-key string, so an idle binding keeps no key string of its own; a key bound
 * to several destinations holds them by destination name.
 */
export class BindingTable {
  private readonly byKey = new Map<string, Binding | Map<string, ByName>>();
  private count = 0;

  /** Number of bindings. */
  get size(): number {
    return this.count;
  }

  /** The binding of `routingKey` to a destination of the kind and name of `destination` with equal arguments. */
  find(destination: Destination, routingKey: string, args: FieldTable): Binding | undefined {
    const held = this.byKey.get(routingKey);
    if (held === undefined) return undefined;
    if (!(held instanceof Map)) return sameBinding(held, destination, args) ? held : undefined;
    const named = held.get(destination.name);
    if (named === undefined) return undefined;
    if (!Array.isArray(named)) return sameBinding(named, destination, args) ? named : undefined;
    for (const b of named) if (sameBinding(b, destination, args)) return b;
    return undefined;
  }

  /** The binding whose {@link Binding.key} is `key` (a definition's key), if any. */
  get(key: string): Binding | undefined {
    const parts = key.split('\u0000');
    if (parts.length === 4) {
      const [kind, name, routingKey, args] = parts as [string, string, string, string];
      const held = this.byKey.get(routingKey);
      const named = held instanceof Map ? held.get(name) : held;
      if (named === undefined) return undefined;
      for (const b of Array.isArray(named) ? named : [named]) {
        if (b.destination.name === name && kindOf(b.destination) === kind && tableKey(b.args) === args) return b;
      }
      return undefined;
    }
    // A name or routing key with a NUL in it: compare whole keys.
    for (const b of this.values()) if (b.key === key) return b;
    return undefined;
  }

  /** Adds `b`; the caller has checked that no equal binding is held (see find). */
  add(b: Binding): void {
    this.count++;
    const rk = b.routingKey;
    const held = this.byKey.get(rk);
    if (held === undefined) {
      this.byKey.set(rk, b);
      return;
    }
    let byName: Map<string, ByName>;
    if (held instanceof Map) byName = held;
    else {
      byName = new Map<string, ByName>([[held.destination.name, held]]);
      this.byKey.set(rk, byName);
    }
    const name = b.destination.name;
    const named = byName.get(name);
    if (named === undefined) byName.set(name, b);
    else if (Array.isArray(named)) named.push(b);
    else byName.set(name, [named, b]);
  }

  /** Removes `b` itself; false when it is not held. */
  delete(b: Binding): boolean {
    const rk = b.routingKey;
    const held = this.byKey.get(rk);
    if (held === undefined) return false;
    if (!(held instanceof Map)) {
      if (held !== b) return false;
      this.byKey.delete(rk);
      this.count--;
      return true;
    }
    const name = b.destination.name;
    const named = held.get(name);
    if (named === undefined) return false;
    if (Array.isArray(named)) {
      const i = named.indexOf(b);
      if (i < 0) return false;
      named.splice(i, 1);
      if (named.length === 1) held.set(name, named[0]!);
    } else if (named === b) held.delete(name);
    else return false;
    this.count--;
    // Back to one binding for the key: held as is again.
    if (held.size === 1) {
      const only = held.values().next().value;
      if (only !== undefined && !Array.isArray(only)) this.byKey.set(rk, only);
    }
    if (held.size === 0) this.byKey.delete(rk);
    return true;
  }

  /** Every binding. */
  *values(): IterableIterator<Binding> {
    for (const held of this.byKey.values()) yield* each(held);
  }
}

function* each(held: Binding | Map<string, ByName>): IterableIterator<Binding> {
  if (!(held instanceof Map)) {
    yield held;
    return;
  }
  for (const named of held.values()) {
    if (Array.isArray(named)) yield* named;
    else yield named;
  }
}

function kindOf(d: Destination): string {
  return isExchange(d) ? 'e' : 'q';
}

function sameBinding(b: Binding, destination: Destination, args: FieldTable): boolean {
  const d = b.destination;
  return d.name === destination.name && isExchange(d) === isExchange(destination) && (b.args === args || tableKey(b.args) === tableKey(args));
}

/**
 * The identity of a binding within its source as one string: destination kind and name, routing
 * key and arguments. Durable bindings are stored under it.
 */
export function bindingKey(destination: Destination, routingKey: string, args: FieldTable): string {
  // Joined, the key is one flat string (a template literal makes a tree of string pieces).
  return [kindOf(destination), destination.name, routingKey, tableKey(args)].join('\u0000');
}

/** A binding as the core holds it: its key is made when asked for (durable bindings), not kept. */
export class BindingRecord implements Binding {
  constructor(
    readonly source: Exchange,
    readonly destination: Destination,
    readonly routingKey: string,
    readonly args: FieldTable,
  ) {}

  get key(): string {
    return bindingKey(this.destination, this.routingKey, this.args);
  }
}
