import type { FieldTable } from '../types.js';
import type { RouteOut } from '../routing/route-set.js';
import { DestinationSet } from '../routing/topic-trie.js';
import type { Router } from './router.js';

/**
 * Direct exchange: a destination receives the messages whose routing key equals its binding key.
 * Bindings that differ only in their arguments are counted, so unbinding one keeps the route.
 */
export class DirectRouter<T> implements Router<T> {
  private readonly byKey = new Map<string, DestinationSet<T>>();
  private count = 0;

  add(routingKey: string, _args: FieldTable, dest: T): void {
    let set = this.byKey.get(routingKey);
    if (set === undefined) {
      set = new DestinationSet<T>();
      this.byKey.set(routingKey, set);
    }
    set.add(dest);
    this.count++;
  }

  remove(routingKey: string, _args: FieldTable, dest: T): void {
    const set = this.byKey.get(routingKey);
    if (set === undefined || !set.remove(dest)) return;
    this.count--;
    if (set.bindings === 0) this.byKey.delete(routingKey);
  }

  route(routingKey: string, _headers: FieldTable | undefined, out: RouteOut<T>): void {
    const set = this.byKey.get(routingKey);
    if (set !== undefined) set.addTo(out);
  }

  get size(): number {
    return this.count;
  }
}
