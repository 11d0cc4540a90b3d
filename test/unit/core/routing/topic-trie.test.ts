import { describe, expect, test } from 'vitest';
import { TopicTrie, isLiteralPattern, splitTopic } from '../../../../src/core/routing/topic-trie.js';

// RabbitMQ's topic exchange vectors (rabbit_tests.erl `test_topic_matching`, also ported by
// qlobber's test/rabbitmq.js): binding key -> queue, then key -> expected queues.
const BINDINGS: [string, string][] = [
  ['a.b.c', 't1'], ['a.*.c', 't2'], ['a.#.b', 't3'], ['a.b.b.c', 't4'], ['#', 't5'],
  ['#.#', 't6'], ['#.b', 't7'], ['*.*', 't8'], ['a.*', 't9'], ['*.b.c', 't10'],
  ['a.#', 't11'], ['a.#.#', 't12'], ['b.b.c', 't13'], ['a.b.b', 't14'], ['a.b', 't15'],
  ['b.c', 't16'], ['', 't17'], ['*.*.*', 't18'], ['vodka.martini', 't19'], ['a.b.c', 't20'],
  ['*.#', 't21'], ['#.*.#', 't22'], ['*.#.#', 't23'], ['#.#.#', 't24'], ['*', 't25'],
  ['#.b.#', 't26'],
];

const BEFORE_REMOVE: [string, string[]][] = [
  ['a.b.c', ['t1', 't2', 't5', 't6', 't10', 't11', 't12', 't18', 't20', 't21', 't22', 't23', 't24', 't26']],
  ['a.b', ['t3', 't5', 't6', 't7', 't8', 't9', 't11', 't12', 't15', 't21', 't22', 't23', 't24', 't26']],
  ['a.b.b', ['t3', 't5', 't6', 't7', 't11', 't12', 't14', 't18', 't21', 't22', 't23', 't24', 't26']],
  ['', ['t5', 't6', 't17', 't24']],
  ['b.c.c', ['t5', 't6', 't18', 't21', 't22', 't23', 't24', 't26']],
  ['a.a.a.a.a', ['t5', 't6', 't11', 't12', 't21', 't22', 't23', 't24']],
  ['vodka.gin', ['t5', 't6', 't8', 't21', 't22', 't23', 't24']],
  ['vodka.martini', ['t5', 't6', 't8', 't19', 't21', 't22', 't23', 't24']],
  ['b.b.c', ['t5', 't6', 't10', 't13', 't18', 't21', 't22', 't23', 't24', 't26']],
  ['nothing.here.at.all', ['t5', 't6', 't21', 't22', 't23', 't24']],
  ['oneword', ['t5', 't6', 't21', 't22', 't23', 't24', 't25']],
];

// RabbitMQ removes bindings 1, 5, 11, 19 and 21 (1-based): t1, t5, t11, t19, t21.
const REMOVED = [1, 5, 11, 19, 21];

const AFTER_REMOVE: [string, string[]][] = [
  ['a.b.c', ['t2', 't6', 't10', 't12', 't18', 't20', 't22', 't23', 't24', 't26']],
  ['a.b', ['t3', 't6', 't7', 't8', 't9', 't12', 't15', 't22', 't23', 't24', 't26']],
  ['a.b.b', ['t3', 't6', 't7', 't12', 't14', 't18', 't22', 't23', 't24', 't26']],
  ['', ['t6', 't17', 't24']],
  ['b.c.c', ['t6', 't18', 't22', 't23', 't24', 't26']],
  ['a.a.a.a.a', ['t6', 't12', 't22', 't23', 't24']],
  ['vodka.gin', ['t6', 't8', 't22', 't23', 't24']],
  ['vodka.martini', ['t6', 't8', 't22', 't23', 't24']],
  ['b.b.c', ['t6', 't10', 't13', 't18', 't22', 't23', 't24', 't26']],
  ['nothing.here.at.all', ['t6', 't22', 't23', 't24']],
  ['oneword', ['t6', 't22', 't23', 't24', 't25']],
];

function match<T>(trie: TopicTrie<T>, key: string): T[] {
  const out = new Set<T>();
  trie.match(key, out);
  return [...out];
}

function sorted(xs: string[]): string[] {
  return [...xs].sort();
}

function loaded(): TopicTrie<string> {
  const trie = new TopicTrie<string>();
  for (const [key, q] of BINDINGS) trie.add(key, q);
  return trie;
}

/** Reference matcher straight from the definition, to cross-check the trie. */
function naiveMatches(pattern: string, key: string): boolean {
  const p = splitTopic(pattern);
  const k = splitTopic(key);
  const go = (i: number, j: number): boolean => {
    if (i === p.length) return j === k.length;
    if (p[i] === '#') {
      for (let n = j; n <= k.length; n++) if (go(i + 1, n)) return true;
      return false;
    }
    if (j === k.length) return false;
    return (p[i] === '*' || p[i] === k[j]) && go(i + 1, j + 1);
  };
  return go(0, 0);
}

describe('RabbitMQ topic vectors', () => {
  test.each(BEFORE_REMOVE)('key %j routes to RabbitMQ\'s expected queues', (key, expected) => {
    expect(sorted(match(loaded(), key))).toEqual(sorted(expected));
  });

  test.each(AFTER_REMOVE)('after removing t1 t5 t11 t19 t21, key %j routes as RabbitMQ', (key, expected) => {
    const trie = loaded();
    for (const n of REMOVED) {
      const [pattern, q] = BINDINGS[n - 1]!;
      trie.remove(pattern, q);
    }
    expect(trie.size).toBe(BINDINGS.length - REMOVED.length);
    expect(sorted(match(trie, key))).toEqual(sorted(expected));
  });

  test('after removing every binding nothing matches and the trie is empty', () => {
    const trie = loaded();
    for (const [pattern, q] of BINDINGS) trie.remove(pattern, q);
    for (const key of ['a.b.c', 'b.b.c', '']) expect(match(trie, key)).toEqual([]);
    expect(trie.size).toBe(0);
    expect(trie.nodeCount).toBe(0);
    expect(trie.literalCount).toBe(0);
  });

  test('the trie agrees with a reference matcher on every vector key and more', () => {
    const trie = loaded();
    const keys = [...BEFORE_REMOVE.map(([k]) => k), 'a', 'b', '.', '..', 'a.', '.a', 'a..b', 'a.b.b.c', 'x.b.y'];
    for (const key of keys) {
      const expected = BINDINGS.filter(([p]) => naiveMatches(p, key)).map(([, q]) => q);
      expect(sorted(match(trie, key)), key).toEqual(sorted(expected));
    }
  });
});

describe('word semantics', () => {
  const cases: [string, string, boolean][] = [
    // the empty key is zero words: split_topic_key(<<>>) -> []
    ['#', '', true],
    ['#.#', '', true],
    ['', '', true],
    ['*', '', false],
    ['a', '', false],
    ['', 'a', false],
    // every other empty segment is a word
    ['*', '.', false],
    ['*.*', '.', true],
    ['a.*', 'a.', true],
    ['*.a', '.a', true],
    ['a.*.b', 'a..b', true],
    ['a..b', 'a..b', true],
    ['a.b', 'a..b', false],
    ['a.#.b', 'a..b', true],
    ['#', '.', true],
    // '#' matches zero words, '*' exactly one
    ['a.#', 'a', true],
    ['#.a', 'a', true],
    ['a.#.b', 'a.b', true],
    ['a.#.b', 'a.x.y.b', true],
    ['a.#.b', 'a.x.y', false],
    ['a.*.#', 'a', false],
    ['a.*.#', 'a.b', true],
    ['#.*', '', false],
    ['#.*', 'a', true],
    ['#.*', 'a.b.c', true],
    ['*.#', 'a', true],
    ['*.*', 'a', false],
    ['a.*', 'a.b.c', false],
    // wildcards only as whole words
    ['a*', 'ab', false],
    ['a*', 'a*', true],
    ['a#.b', 'a#.b', true],
    ['#a', 'xa', false],
    // case-sensitive
    ['exact.key', 'Exact.key', false],
  ];
  test.each(cases)('pattern %j against key %j is %s', (pattern, key, expected) => {
    const trie = new TopicTrie<string>();
    trie.add(pattern, 'q');
    expect(match(trie, key)).toEqual(expected ? ['q'] : []);
    expect(naiveMatches(pattern, key)).toBe(expected);
  });

  test('splitTopic follows RabbitMQ: "" is zero words, "." is two empty words', () => {
    expect(splitTopic('')).toEqual([]);
    expect(splitTopic('.')).toEqual(['', '']);
    expect(splitTopic('a..b')).toEqual(['a', '', 'b']);
  });

  test('isLiteralPattern treats * and # as wildcards only as whole words', () => {
    expect(isLiteralPattern('a.b')).toBe(true);
    expect(isLiteralPattern('a*.b#')).toBe(true);
    expect(isLiteralPattern('')).toBe(true);
    expect(isLiteralPattern('a.*')).toBe(false);
    expect(isLiteralPattern('#')).toBe(false);
  });
});

describe('destinations', () => {
  test('a destination matched by several patterns is added once', () => {
    const trie = new TopicTrie<string>();
    for (const p of ['a.b', 'a.*', '#', '*.b', 'a.#']) trie.add(p, 'q');
    expect(match(trie, 'a.b')).toEqual(['q']);
  });

  test('the same pattern bound twice to one destination needs two removes', () => {
    const trie = new TopicTrie<string>();
    trie.add('a.*', 'q');
    trie.add('a.*', 'q');
    trie.add('lit', 'q');
    trie.add('lit', 'q');
    expect(trie.size).toBe(4);
    trie.remove('a.*', 'q');
    trie.remove('lit', 'q');
    expect(match(trie, 'a.x')).toEqual(['q']);
    expect(match(trie, 'lit')).toEqual(['q']);
    trie.remove('a.*', 'q');
    trie.remove('lit', 'q');
    expect(match(trie, 'a.x')).toEqual([]);
    expect(match(trie, 'lit')).toEqual([]);
    expect(trie.size).toBe(0);
    expect(trie.nodeCount).toBe(0);
  });

  test('one pattern routes to every destination bound with it', () => {
    const trie = new TopicTrie<string>();
    trie.add('a.#', 'q1');
    trie.add('a.#', 'q2');
    trie.add('a.#', 'q3');
    trie.remove('a.#', 'q1');
    expect(sorted(match(trie, 'a.b'))).toEqual(['q2', 'q3']);
  });

  test('many destinations on one pattern (past the small-set scan) bind, unbind and route like few', () => {
    const trie = new TopicTrie<string>();
    const model = new Map<string, number>();
    let seed = 3;
    const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    for (let i = 0; i < 3000; i++) {
      const q = `q${rnd(30)}`;
      const pattern = rnd(2) === 0 ? 'fan.out' : 'fan.*';
      const key = `${pattern} ${q}`;
      if (rnd(3) === 0) {
        trie.remove(pattern, q);
        const n = model.get(key) ?? 0;
        if (n > 1) model.set(key, n - 1);
        else model.delete(key);
      } else {
        trie.add(pattern, q);
        model.set(key, (model.get(key) ?? 0) + 1);
      }
      if (i % 100 === 0) {
        const want = new Set([...model.keys()].map((k) => k.split(' ')[1]!));
        expect(sorted(match(trie, 'fan.out'))).toEqual(sorted([...want]));
      }
    }
    expect(trie.size).toBe([...model.values()].reduce((a, b) => a + b, 0));
  });

  test('destinations are compared by identity, so objects work', () => {
    const q1 = { name: 'q1' };
    const q2 = { name: 'q1' };
    const trie = new TopicTrie<{ name: string }>();
    trie.add('*', q1);
    trie.add('*', q2);
    expect(match(trie, 'x')).toHaveLength(2);
  });

  test('removing an unknown binding changes nothing', () => {
    const trie = new TopicTrie<string>();
    trie.add('a.*.c', 'q');
    trie.remove('a.*.c', 'other');
    trie.remove('a.*.d', 'q');
    trie.remove('a.*', 'q');
    trie.remove('a.*.c.#', 'q');
    trie.remove('nope', 'q');
    expect(trie.size).toBe(1);
    expect(match(trie, 'a.b.c')).toEqual(['q']);
  });

  test('matching adds to what the caller already put in the set', () => {
    const trie = new TopicTrie<string>();
    trie.add('#', 'q');
    const out = new Set(['earlier']);
    trie.match('a', out);
    expect([...out]).toEqual(['earlier', 'q']);
  });
});

describe('pruning', () => {
  test('removing a binding prunes the nodes only it used and keeps shared ones', () => {
    const trie = new TopicTrie<string>();
    trie.add('a.b.*', 'q1');
    const base = trie.nodeCount;
    trie.add('a.b.*.#.x', 'q2');
    expect(trie.nodeCount).toBe(base + 2);
    trie.remove('a.b.*.#.x', 'q2');
    expect(trie.nodeCount).toBe(base);
    expect(match(trie, 'a.b.c')).toEqual(['q1']);
    trie.remove('a.b.*', 'q1');
    expect(trie.nodeCount).toBe(0);
  });

  test('a node holding a binding is kept while a longer pattern below it goes', () => {
    const trie = new TopicTrie<string>();
    trie.add('a.#', 'q1');
    trie.add('a.#.b', 'q2');
    trie.remove('a.#.b', 'q2');
    expect(trie.nodeCount).toBe(2);
    expect(match(trie, 'a.x.b')).toEqual(['q1']);
  });

  test('adding and removing many patterns in random order leaves the trie empty', () => {
    // The pattern list of RabbitMQ's rabbit_db_topic_exchange_SUITE topic_trie_cleanup.
    const patterns = [
      'a.b.c', 'a.b.d', 'a.b.e', 'a.c.d', 'a.c.e', 'b.c.d', 'a.*.c', 'a.*.d', '*.b.c', '*.b.d',
      'a.b.*', 'a.c.*', '*.*', 'a.*', '*.b', '*', 'a.#', 'a.b.#', 'a.c.#', '#.c', '#.b.c', '#.b.d',
      '#', '#.#', 'a.*.#', '*.b.#', '*.#', '#.*', '#.*.#', 'orders.created.#', 'orders.updated.#',
      'orders.*.confirmed', 'orders.#', 'events.user.#', 'events.system.#', 'events.#',
    ];
    let seed = 42;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed / 2147483648;
    };
    const shuffle = <X>(xs: X[]): X[] => xs.map((x) => [rand(), x] as const).sort((p, q) => p[0] - q[0]).map(([, x]) => x);
    for (let round = 0; round < 20; round++) {
      const trie = new TopicTrie<string>();
      const bindings = shuffle(patterns.map((p, i) => [p, `queue-${i % 7}`] as const));
      for (const [p, q] of bindings) trie.add(p, q);
      expect(trie.size).toBe(patterns.length);
      for (const [p, q] of shuffle(bindings)) trie.remove(p, q);
      expect(trie.size).toBe(0);
      expect(trie.nodeCount).toBe(0);
      expect(trie.literalCount).toBe(0);
      expect(match(trie, 'a.b.c')).toEqual([]);
    }
  });
});

describe('many #', () => {
  test('a pattern of 30 # against a 200-word key matches quickly', () => {
    const trie = new TopicTrie<string>();
    const pattern = Array.from({ length: 30 }, () => '#').join('.');
    trie.add(pattern, 'q');
    trie.add(`${pattern}.z`, 'never');
    const key = Array.from({ length: 200 }, () => 'a').join('.');
    const start = performance.now();
    expect(match(trie, key)).toEqual(['q']);
    expect(performance.now() - start).toBeLessThan(200);
  });

  test('interleaved # and literals over a long key match as the reference does', () => {
    const trie = new TopicTrie<string>();
    const patterns = ['#.a.#.a.#.a.#.a.#.a.#.b', '#.a.#.a.#.a.#.a.#.a.#', '#.*.#.*.#.*.#.*.#', 'a.#.#.#.#.#.#.a'];
    patterns.forEach((p, i) => trie.add(p, `q${i}`));
    const key = Array.from({ length: 120 }, () => 'a').join('.');
    const start = performance.now();
    const got = sorted(match(trie, key));
    expect(performance.now() - start).toBeLessThan(200);
    expect(got).toEqual(['q1', 'q2', 'q3']);
    expect(match(trie, `${key}.b`).sort()).toEqual(['q0', 'q1', 'q2']);
  });

  test('repeated matches reuse the memo correctly', () => {
    const trie = new TopicTrie<string>();
    trie.add('#.x.#', 'q');
    for (let i = 0; i < 5; i++) {
      expect(match(trie, 'a.b.x.c')).toEqual(['q']);
      expect(match(trie, 'a.b.c')).toEqual([]);
      expect(match(trie, 'x')).toEqual(['q']);
    }
  });

  test('random patterns agree with the reference matcher', () => {
    let seed = 7;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabet = ['a', 'b', '', '*', '#'];
    const keyAlphabet = ['a', 'b', ''];
    const patterns: string[] = [];
    for (let i = 0; i < 300; i++) {
      const len = rand(6);
      const p = Array.from({ length: len }, () => alphabet[rand(alphabet.length)]!).join('.');
      patterns.push(p);
    }
    const trie = new TopicTrie<number>();
    patterns.forEach((p, i) => trie.add(p, i));
    for (let k = 0; k < 300; k++) {
      const key = Array.from({ length: rand(7) }, () => keyAlphabet[rand(keyAlphabet.length)]!).join('.');
      const expected = patterns.flatMap((p, i) => (naiveMatches(p, key) ? [i] : []));
      const got = [...(() => { const o = new Set<number>(); trie.match(key, o); return o; })()];
      expect(got.sort((x, y) => x - y), `key ${JSON.stringify(key)}`).toEqual(expected);
    }
    patterns.forEach((p, i) => trie.remove(p, i));
    expect(trie.nodeCount).toBe(0);
    expect(trie.size).toBe(0);
  });

  test('a key matched again, and keys beyond those the trie remembers, route as on first sight', () => {
    const trie = new TopicTrie<string>();
    trie.add('dev.*.temp', 'q1');
    const matched = (key: string): string[] => {
      const o = new Set<string>();
      trie.match(key, o);
      return [...o].sort();
    };
    expect(matched('dev.7.temp')).toEqual(['q1']);
    trie.add('dev.#', 'q2');
    expect(matched('dev.7.temp')).toEqual(['q1', 'q2']);
    for (let i = 0; i < 3000; i++) expect(matched(`dev.${i}.temp`)).toEqual(['q1', 'q2']);
    trie.remove('dev.*.temp', 'q1');
    expect(matched('dev.7.temp')).toEqual(['q2']);
    expect(matched('dev.2999.temp')).toEqual(['q2']);
    expect(trie.cachedKeys).toBeLessThanOrEqual(1024);
    // Long keys are not kept: unique long topics cannot fill the cache with large strings.
    const before = trie.cachedKeys;
    for (let i = 0; i < 100; i++) expect(matched(`dev.${'x'.repeat(300)}.${i}`)).toEqual(['q2']);
    expect(trie.cachedKeys).toBe(before);
  });
});

describe('a literal pattern bound once, twice and to several destinations', () => {
  test('bindings of one literal pattern add and remove one at a time, whatever their number', () => {
    const trie = new TopicTrie<string>();
    trie.add('dev.1.cmd', 'q1');
    expect(match(trie, 'dev.1.cmd')).toEqual(['q1']);
    trie.add('dev.1.cmd', 'q1');
    trie.add('dev.1.cmd', 'q2');
    expect(sorted(match(trie, 'dev.1.cmd'))).toEqual(['q1', 'q2']);
    expect(trie.size).toBe(3);
    trie.remove('dev.1.cmd', 'q1');
    expect(sorted(match(trie, 'dev.1.cmd'))).toEqual(['q1', 'q2']);
    trie.remove('dev.1.cmd', 'q2');
    expect(match(trie, 'dev.1.cmd')).toEqual(['q1']);
    trie.remove('dev.1.cmd', 'q2');
    expect(trie.size).toBe(1);
    trie.remove('dev.1.cmd', 'q1');
    expect(match(trie, 'dev.1.cmd')).toEqual([]);
    expect(trie.size).toBe(0);
    expect(trie.literalCount).toBe(0);
  });

  test('removing a destination a literal pattern is not bound to changes nothing', () => {
    const trie = new TopicTrie<string>();
    trie.add('dev.2.cmd', 'q1');
    trie.remove('dev.2.cmd', 'q9');
    trie.remove('dev.3.cmd', 'q1');
    expect(match(trie, 'dev.2.cmd')).toEqual(['q1']);
    expect(trie.size).toBe(1);
    expect(trie.literalCount).toBe(1);
  });
});
