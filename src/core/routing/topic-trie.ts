/**
 * Topic matching with RabbitMQ's semantics (`rabbit_db_topic_exchange.erl`):
 * - keys and patterns are split on `.`; the empty key `""` is zero words (RabbitMQ's
 *   `split_topic_key(<<>>) -> []`), any other empty segment is a word (`a..b` = `a`, ``, `b`);
 * - `*` matches exactly one word, `#` zero or more; they are wildcards only as whole words
 *   (`a*.b` is literal).
 *
 * Literal patterns live in a Map and skip the trie (STYLE P7, LavinMQ `@non_wildcards`). Wildcard
 * patterns live in a trie with dedicated `*` and `#` children; every node counts the bindings at or
 * below it and is pruned when that count reaches zero, as RabbitMQ's trie is on unbind.
 */
import type { RouteOut } from './route-set.js';

/** A DestinationSet finds a destination by scanning up to this many, by a Map beyond. */
const INDEX_ABOVE = 8;

/**
 * A multiset of destinations: each add is one binding, `addTo` yields every distinct destination.
 * Items sit in a dense array so routing iterates without allocating; removal is swap-with-last.
 */
export class DestinationSet<T> {
  // Made at their exact size with the first destination (a pushed-to empty array reserves 17 slots).
  private items: T[] = [];
  private counts: number[] = [];
  /** Destination -> position, made once the set holds more than INDEX_ABOVE (most hold one). */
  private index: Map<T, number> | undefined;
  private total = 0;

  private indexOf(dest: T): number {
    const index = this.index;
    if (index !== undefined) return index.get(dest) ?? -1;
    return this.items.indexOf(dest);
  }

  /** Adds one binding to `dest`. */
  add(dest: T): void {
    const i = this.indexOf(dest);
    if (i < 0) {
      const items = this.items;
      if (items.length === 0) {
        this.items = [dest];
        this.counts = [1];
      } else {
        items.push(dest);
        this.counts.push(1);
      }
      const n = this.items.length;
      if (this.index !== undefined) this.index.set(dest, n - 1);
      else if (n > INDEX_ABOVE) this.index = new Map(this.items.map((d, k) => [d, k]));
    } else {
      this.counts[i] = (this.counts[i] ?? 0) + 1;
    }
    this.total++;
  }

  /** Removes one binding to `dest`; false when `dest` holds none. */
  remove(dest: T): boolean {
    const i = this.indexOf(dest);
    if (i < 0) return false;
    this.total--;
    const left = (this.counts[i] ?? 1) - 1;
    if (left > 0) {
      this.counts[i] = left;
      return true;
    }
    const last = this.items.length - 1;
    if (i !== last) {
      const moved = this.items[last] as T;
      this.items[i] = moved;
      this.counts[i] = this.counts[last] ?? 1;
      this.index?.set(moved, i);
    }
    this.items.pop();
    this.counts.pop();
    this.index?.delete(dest);
    return true;
  }

  has(dest: T): boolean {
    return this.indexOf(dest) >= 0;
  }

  /** The destination of the set's one binding; undefined unless it holds exactly one. */
  get only(): T | undefined {
    return this.total === 1 ? this.items[0] : undefined;
  }

  /** Adds every distinct destination to `out`. */
  addTo(out: RouteOut<T>): void {
    const items = this.items;
    for (let i = 0; i < items.length; i++) out.add(items[i] as T);
  }

  /** Number of bindings (a destination added twice counts twice). */
  get bindings(): number {
    return this.total;
  }

  /** Number of distinct destinations. */
  get size(): number {
    return this.items.length;
  }
}

class TrieNode<T> {
  children: Map<string, TrieNode<T>> | undefined = undefined;
  star: TrieNode<T> | undefined = undefined;
  hash: TrieNode<T> | undefined = undefined;
  dests: DestinationSet<T> | undefined = undefined;
  /** Bindings whose pattern ends at or below this node. */
  refs = 0;
  /**
   * Per-match memo of a `#` node: in match number `gen`, this node has already been entered at
   * every word index >= `low`, so those continuations are not walked again. Without it `#.#.#…`
   * patterns cost O(words^hashes); with it each (node, index) pair is visited at most once.
   */
  gen = 0;
  low = 0;
}

const NO_WORDS: string[] = [];

/** Splits with RabbitMQ's rule: `""` is zero words, otherwise every `.` separates two words. */
export function splitTopic(key: string): string[] {
  return key.length === 0 ? NO_WORDS : key.split('.');
}

/** Routing keys whose words a trie keeps at most, for keys that are routed again and again. */
const WORDS_CACHE_SIZE = 1024;
/** Longer keys are split each time: a client sending long unique topics cannot make the cache large. */
const WORDS_CACHE_MAX_KEY = 256;

/** True when `pattern` has no `*` or `#` word, i.e. matches only the identical routing key. */
export function isLiteralPattern(pattern: string): boolean {
  if (!pattern.includes('*') && !pattern.includes('#')) return true;
  const words = pattern.split('.');
  for (let i = 0; i < words.length; i++) {
    const w = words[i];
    if (w === '*' || w === '#') return false;
  }
  return true;
}

/** Bindings of topic patterns to destinations of type `T`. */
export class TopicTrie<T> {
  private readonly root = new TrieNode<T>();
  /**
   * Literal patterns: a pattern with one binding (a device's own command topic) holds its
   * destination as is, a DestinationSet from the second binding on.
   */
  private readonly literals = new Map<string, T | DestinationSet<T>>();
  private count = 0;
  private nodes = 0;
  private gen = 0;
  /**
   * The words of recently matched routing keys: a publisher usually sends to the same few keys,
   * and splitting each one anew costs an array and a string per word. Emptied when full.
   */
  private readonly words = new Map<string, readonly string[]>();

  /** Binds `pattern` to `dest`; binding the same pair twice needs two removes. */
  add(pattern: string, dest: T): void {
    this.count++;
    if (isLiteralPattern(pattern)) {
      const held = this.literals.get(pattern);
      if (held === undefined) this.literals.set(pattern, dest);
      else if (held instanceof DestinationSet) held.add(dest);
      else {
        const set = new DestinationSet<T>();
        set.add(held);
        set.add(dest);
        this.literals.set(pattern, set);
      }
      return;
    }
    const words = pattern.split('.');
    let node = this.root;
    node.refs++;
    for (let i = 0; i < words.length; i++) {
      const w = words[i] as string;
      let next: TrieNode<T> | undefined;
      if (w === '#') next = node.hash ??= this.newNode();
      else if (w === '*') next = node.star ??= this.newNode();
      else {
        const children = (node.children ??= new Map<string, TrieNode<T>>());
        next = children.get(w);
        if (next === undefined) {
          next = this.newNode();
          children.set(w, next);
        }
      }
      next.refs++;
      node = next;
    }
    (node.dests ??= new DestinationSet<T>()).add(dest);
  }

  /** Removes one binding of `pattern` to `dest`; a no-op when there is none. */
  remove(pattern: string, dest: T): void {
    if (isLiteralPattern(pattern)) {
      const held = this.literals.get(pattern);
      if (held === undefined) return;
      if (!(held instanceof DestinationSet)) {
        if (held !== dest) return;
        this.count--;
        this.literals.delete(pattern);
        return;
      }
      if (!held.remove(dest)) return;
      this.count--;
      const only = held.only;
      if (held.bindings === 0) this.literals.delete(pattern);
      else if (only !== undefined) this.literals.set(pattern, only);
      return;
    }
    const words = pattern.split('.');
    const path: TrieNode<T>[] = [this.root];
    let node: TrieNode<T> | undefined = this.root;
    for (let i = 0; i < words.length; i++) {
      node = child(node, words[i] as string);
      if (node === undefined) return;
      path.push(node);
    }
    const dests = node.dests;
    if (dests === undefined || !dests.remove(dest)) return;
    if (dests.bindings === 0) node.dests = undefined;
    this.count--;
    for (let d = 0; d < path.length; d++) (path[d] as TrieNode<T>).refs--;
    // The first node left with no bindings is cut off with everything below it: all of those
    // nodes are on this path, since any other node would still hold a binding.
    for (let d = 1; d < path.length; d++) {
      if ((path[d] as TrieNode<T>).refs !== 0) continue;
      detach(path[d - 1] as TrieNode<T>, words[d - 1] as string);
      this.nodes -= path.length - d;
      break;
    }
  }

  /** Adds to `out` every destination bound to a pattern that matches `routingKey`. */
  match(routingKey: string, out: RouteOut<T>): void {
    const literal = this.literals.get(routingKey);
    if (literal !== undefined) {
      if (literal instanceof DestinationSet) literal.addTo(out);
      else out.add(literal);
    }
    if (this.root.refs === 0) return;
    this.gen++;
    this.walk(this.root, this.wordsOf(routingKey), 0, out);
  }

  private wordsOf(routingKey: string): readonly string[] {
    if (routingKey.length > WORDS_CACHE_MAX_KEY) return splitTopic(routingKey);
    let words = this.words.get(routingKey);
    if (words === undefined) {
      words = splitTopic(routingKey);
      if (this.words.size >= WORDS_CACHE_SIZE) this.words.clear();
      this.words.set(routingKey, words);
    }
    return words;
  }

  /** Routing keys whose words are kept (at most 1,024, none longer than 256 characters). */
  get cachedKeys(): number {
    return this.words.size;
  }

  /** Number of bindings held (literal and wildcard). */
  get size(): number {
    return this.count;
  }

  /** Trie nodes besides the root: 0 once every wildcard binding is removed. */
  get nodeCount(): number {
    return this.nodes;
  }

  /** Distinct literal patterns held. */
  get literalCount(): number {
    return this.literals.size;
  }

  private newNode(): TrieNode<T> {
    this.nodes++;
    return new TrieNode<T>();
  }

  /** `node` has consumed words[0..i). */
  private walk(node: TrieNode<T>, words: readonly string[], i: number, out: RouteOut<T>): void {
    const hash = node.hash;
    if (hash !== undefined) {
      // '#' eats words[i..j) for every j; skip the indices this '#' node was already entered at.
      let end = words.length + 1;
      if (hash.gen === this.gen) end = hash.low;
      else hash.gen = this.gen;
      if (i < end) {
        hash.low = i;
        for (let j = i; j < end; j++) this.walk(hash, words, j, out);
      }
    }
    if (i === words.length) {
      if (node.dests !== undefined) node.dests.addTo(out);
      return;
    }
    if (node.children !== undefined) {
      const next = node.children.get(words[i] as string);
      if (next !== undefined) this.walk(next, words, i + 1, out);
    }
    if (node.star !== undefined) this.walk(node.star, words, i + 1, out);
  }
}

function child<T>(node: TrieNode<T>, word: string): TrieNode<T> | undefined {
  if (word === '#') return node.hash;
  if (word === '*') return node.star;
  return node.children?.get(word);
}

function detach<T>(parent: TrieNode<T>, word: string): void {
  if (word === '#') parent.hash = undefined;
  else if (word === '*') parent.star = undefined;
  else if (parent.children !== undefined) {
    parent.children.delete(word);
    if (parent.children.size === 0) parent.children = undefined;
  }
}
