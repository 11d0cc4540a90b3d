import type { FieldTable } from '../types.js';
import type { RouteOut } from '../routing/route-set.js';
import { TopicTrie } from '../routing/topic-trie.js';
import type { Router } from './router.js';

/** Topic exchange: binding keys are patterns of `.`-separated words with `*` and `#` wildcards. */
export class TopicRouter<T> implements Router<T> {
  private readonly trie = new TopicTrie<T>();

  add(routingKey: string, _args: FieldTable, dest: T): void {
    this.trie.add(routingKey, dest);
  }

  remove(routingKey: string, _args: FieldTable, dest: T): void {
    this.trie.remove(routingKey, dest);
  }

  route(routingKey: string, _headers: FieldTable | undefined, out: RouteOut<T>): void {
    this.trie.match(routingKey, out);
  }

  get size(): number {
    return this.trie.size;
  }
}
