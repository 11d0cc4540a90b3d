import type { FieldTable } from '../types.js';
import type { RouteOut } from '../routing/route-set.js';
import { DestinationSet } from '../routing/topic-trie.js';
import type { Router } from './router.js';

/** Fanout exchange: every bound destination receives every message; keys and args are ignored. */
export class FanoutRouter<T> implements Router<T> {
  private readonly dests = new DestinationSet<T>();

  add(_routingKey: string, _args: FieldTable, dest: T): void {
    this.dests.add(dest);
  }

  remove(_routingKey: string, _args: FieldTable, dest: T): void {
    this.dests.remove(dest);
  }

  route(_routingKey: string, _headers: FieldTable | undefined, out: RouteOut<T>): void {
    this.dests.addTo(out);
  }

  get size(): number {
    return this.dests.bindings;
  }
}
