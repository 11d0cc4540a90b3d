import { describe, expect, test } from 'vitest';
import { Auth, MAX_USER_NAME_BYTES, substituteTopicVariables, validateRegex } from '../../../src/core/auth.js';
import { BrokerError } from '../../../src/core/errors.js';
import { compilePattern, escapePattern, expandedSize, MAX_PATTERN_SIZE, PatternCache, PatternError, patternProblem } from '../../../src/core/pattern.js';
import { Policies, validatePolicy } from '../../../src/core/policies.js';

/** Runs `fn` and returns how long it took, in milliseconds. */
function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

describe('patterns: RE2 semantics, linear time', () => {
  test.each([
    // [pattern, input, expected]
    ['.*', 'anything', true],
    ['', 'anything', true],
    ['^$', '', true],
    ['^$', 'x', false],
    ['^amq\\.gen-', 'amq.gen-abc', true],
    ['^amq\\.gen-', 'xamq.gen-abc', false],
    ['^amq\\.gen-', 'amqXgen-abc', false],
    ['^app\\..*', 'app.q', true],
    ['orders$', 'new.orders', true],
    ['orders$', 'orders.new', false],
    ['^exact$', 'exact', true],
    ['^exact$', 'exactly', false],
    ['mid', 'a-mid-b', true],
    ['^mqtt-subscription-|^amq\\.topic$', 'amq.topic', true],
    ['^mqtt-subscription-|^amq\\.topic$', 'mqtt-subscription-x', true],
    ['^mqtt-subscription-|^amq\\.topic$', 'amq.topics', false],
    ['a|', 'zzz', true],
    ['\\$', 'cost$5', true],
    ['^a\\.*$', 'a...', true],
    ['^a\\.*$', 'ab', false],
    ['^(foo|bar)\\.', 'bar.x', true],
    ['^[a-z]+-[0-9]{2}$', 'dev-42', true],
    ['^[a-z]+-[0-9]{2}$', 'dev-421', false],
    ['(?i)^ABC', 'abcdef', true],
    ['^a.c$', 'a\nc', false],
  ])('%j against %j is %s', (pattern, input, expected) => {
    expect(compilePattern(pattern).test(input)).toBe(expected);
  });

  test('the literal fast path and RE2 agree on every pattern it takes', () => {
    const patterns = ['.*', '^$', '^amq\\.gen-', 'x$', '^a|b$|c', '\\.\\*', '^\\^\\$$', 'a.*', '^.*', '$', '^'];
    const inputs = ['', 'a', 'b', 'c', 'amq.gen-1', 'xamq.gen-', 'x', 'ax', '.*', '^$', 'a\nb', 'cba'];
    for (const p of patterns) {
      const fast = compilePattern(p);
      // a group around the whole pattern keeps the meaning and forces the RE2 path
      const slow = compilePattern(`(?:${p})`);
      expect(fast.constructor.name).toBe('LiteralPattern');
      expect(slow.constructor.name).toBe('Re2Pattern');
      for (const s of inputs) expect([p, s, fast.test(s)]).toEqual([p, s, slow.test(s)]);
    }
  });

  test('random literal-looking patterns: the fast path always agrees with RE2', () => {
    // a small seeded generator (xorshift), so a failure is reproducible
    let seed = 0x9e3779b9;
    const rnd = (n: number): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) % n;
    };
    const tokens = ['a', 'b', '.', '\\.', '^', '$', '|', '.*', '\\|', '\\$', '\\^', '\\*', '-', '\\\\', '\n'];
    const chars = ['a', 'b', '.', '|', '$', '^', '*', '-', '\\', '\n'];
    let fastOnes = 0;
    for (let i = 0; i < 3000; i++) {
      let p = '';
      for (let k = rnd(6); k >= 0; k--) p += tokens[rnd(tokens.length)];
      let fast;
      let slow;
      try {
        fast = compilePattern(p);
        slow = compilePattern(`(?:${p})`);
      } catch {
        continue; // invalid in RE2 either way (e.g. a misplaced quantifier)
      }
      if (fast.constructor.name !== 'LiteralPattern') continue;
      fastOnes++;
      for (let j = 0; j < 20; j++) {
        let s = '';
        for (let k = rnd(7); k > 0; k--) s += chars[rnd(chars.length)];
        expect([p, s, fast.test(s)]).toEqual([p, s, slow.test(s)]);
      }
    }
    expect(fastOnes).toBeGreaterThan(500);
  });

  test('a catastrophic-backtracking pattern answers in linear time', () => {
    const p = compilePattern('^(a+)+$');
    const q = compilePattern('dave(.*.*.*)*X');
    const input = `${'a'.repeat(5000)}!`;
    const ms = timed(() => {
      expect(p.test(input)).toBe(false);
      expect(q.test(`dave${'a'.repeat(5000)}`)).toBe(false);
    });
    expect(ms).toBeLessThan(500);
  });

  test('lookarounds and backreferences are refused with a reason', () => {
    expect(patternProblem('(?=a)b')).toMatch(/lookarounds are not supported/);
    expect(patternProblem('(?!a)b')).toMatch(/lookarounds are not supported/);
    expect(patternProblem('(a)\\1')).toMatch(/backreferences are not supported/);
    expect(patternProblem('(')).toMatch(/missing closing \)/);
    expect(patternProblem('a\\')).toMatch(/trailing backslash/);
    expect(patternProblem('^ok.*')).toBeUndefined();
    expect(() => compilePattern('(?<=x)y')).toThrow(PatternError);
  });

  test('repetitions that expand past the bound are refused before RE2 compiles them', () => {
    expect(expandedSize('a{10}')).toBe(10);
    expect(expandedSize('(ab){3}')).toBe(9);
    expect(expandedSize('((a{10}){10}){10}')).toBeGreaterThanOrEqual(1000);
    expect(expandedSize('[a-z]{1000}')).toBe(1000);
    expect(expandedSize('\\x{41}\\p{Greek}[[:alpha:]]')).toBe(3);
    const huge = '(a|b){1,1000}'.repeat(78); // about 300 000 RE2 instructions
    const ms = timed(() => expect(patternProblem(huge)).toMatch(/too complex/));
    expect(ms).toBeLessThan(100);
    expect(patternProblem('[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}')).toBeUndefined();
    expect(patternProblem(`x{${MAX_PATTERN_SIZE}}`)).toBeDefined();
  });

  test('escaped text matches only itself', () => {
    for (const s of ['dave|.*', 'a.b', '(x)*', '[^]', '{1,2}', '^$', 'back\\slash', 'plain-id_1', 'ünï']) {
      const p = compilePattern(`^${escapePattern(s)}$`);
      expect(p.test(s)).toBe(true);
      expect(p.test(`${s}x`)).toBe(false);
      expect(p.test('zzz')).toBe(false);
    }
  });

  test('the cache is bounded and evicts the oldest entry', () => {
    const c = new PatternCache(3);
    const first = c.get('^a(b)');
    c.get('^b(c)');
    c.get('^c(d)');
    expect(c.get('^a(b)')).toBe(first);
    c.get('^d(e)');
    expect(c.size).toBe(3);
    expect(c.get('^a(b)')).not.toBe(first);
  });

  test('RE2 answers are cached per pattern, and the cache stays bounded', () => {
    const p = compilePattern('^s\\.(x|y)\\.[0-9]+$');
    for (let i = 0; i < 1000; i++) expect(p.test(`s.x.${i}`)).toBe(true);
    expect(p.test('s.z.1')).toBe(false);
    expect(p.test('s.z.1')).toBe(false);
    expect(p.test(`s.y.${'9'.repeat(300)}`)).toBe(true); // longer than cached keys
  });
});

describe('permissions use the same engine to validate and to evaluate', () => {
  test('validateRegex refuses what RE2 cannot run, with a clear message', () => {
    expect(() => validateRegex('(?=x)', 'write')).toThrow(BrokerError);
    expect(() => validateRegex('(?=x)', 'write')).toThrow(/invalid regular expression for write '\(\?=x\)'.*lookarounds are not supported/);
    expect(() => validateRegex('^ok$', 'read')).not.toThrow();
    const a = new Auth();
    expect(() => a.setPermission('/', 'u', { configure: '.*', write: '(a)\\1', read: '.*' })).toThrow(/backreferences/);
    expect(() => a.setTopicPermission('/', 'u', { exchange: 'amq.topic', write: '^{client_id}(?!x)', read: '' })).toThrow(/lookarounds/);
  });

  test('policy patterns are validated with RE2 too', () => {
    const base = { vhost: '/', name: 'p', applyTo: 'queues' as const, definition: { 'max-length': 1 }, priority: 0 };
    expect(() => validatePolicy({ ...base, pattern: '^(?!tmp)' })).toThrow(/not a valid regular expression.*lookarounds/s);
    const ps = new Policies();
    ps.set({ ...base, pattern: '^(a+)+$' });
    const name = `${'a'.repeat(200)}!`;
    const ms = timed(() => expect(ps.match('/', 'queue', name)).toBeUndefined());
    expect(ms).toBeLessThan(200);
    expect(ps.match('/', 'queue', 'aaa')?.name).toBe('p');
  });

  test('policy definition keys that name Object.prototype members are unknown settings', () => {
    const base = { vhost: '/', name: 'p', pattern: '.*', applyTo: 'queues' as const, priority: 0 };
    for (const key of ['constructor', 'toString', 'hasOwnProperty', '__proto__']) {
      const definition = JSON.parse(`{"${key}": 1}`) as Record<string, number>;
      expect(() => validatePolicy({ ...base, definition })).toThrow(/not a recognised policy setting/);
    }
    expect(({} as Record<string, unknown>)['length']).toBeUndefined();
  });
});

describe('topic permission variables are substituted as literal text', () => {
  const vars = (client_id: string) => ({ username: 'dev', vhost: '/', client_id });

  test('a client id with regex operators does not widen the permission', () => {
    const a = new Auth();
    a.setTopicPermission('/', 'dev', { exchange: 'amq.topic', write: '^sensors\\.{client_id}\\.', read: '' });
    const hostile = vars('dave|.*');
    expect(a.topicPermitted('dev', '/', 'amq.topic', 'write', 'other.x', hostile)).toBe(false);
    expect(a.topicPermitted('dev', '/', 'amq.topic', 'write', 'sensors.dave.x', hostile)).toBe(false);
    expect(a.topicPermitted('dev', '/', 'amq.topic', 'write', 'sensors.dave|.*.x', hostile)).toBe(true);
    expect(a.topicPermitted('dev', '/', 'amq.topic', 'write', 'sensors.dave.x', vars('dave'))).toBe(true);
  });

  test('{username} and {vhost} are escaped too', () => {
    expect(substituteTopicVariables('^{username}/{vhost}/{client_id}$', { username: 'a.b', vhost: 'v|w', client_id: 'c*' })).toBe('^a\\.b/v\\|w/c\\*$');
    expect(substituteTopicVariables('^{client_id}$', { username: 'u', vhost: '/' })).toBe('^{client_id}$');
  });

  test('a backtracking client id cannot stall a topic check', () => {
    const a = new Auth();
    a.setTopicPermission('/', 'dev', { exchange: 'amq.topic', write: '^sensors\\.{client_id}\\.', read: '' });
    const evil = vars('dave(.*.*.*)*X');
    const ms = timed(() => {
      for (let i = 0; i < 100; i++) expect(a.topicPermitted('dev', '/', 'amq.topic', 'write', `sensors.dave${'a'.repeat(200 + i)}`, evil)).toBe(false);
    });
    expect(ms).toBeLessThan(500);
  });

  test('topicPattern is undefined without a topic permission, and otherwise the compiled pattern', () => {
    const a = new Auth();
    expect(a.topicPattern('dev', '/', 'amq.topic', 'write', vars('x'))).toBeUndefined();
    a.setTopicPermission('/', 'dev', { exchange: 'amq.topic', write: '', read: '.*' });
    const p = a.topicPattern('dev', '/', 'amq.topic', 'write', vars('x'))!;
    expect([p.test(''), p.test('a')]).toEqual([true, false]); // empty write regex: only the empty key
  });
});

describe('user names are bounded', () => {
  test(`names longer than ${MAX_USER_NAME_BYTES} bytes cannot be created or log in`, () => {
    const a = new Auth();
    const long = 'u'.repeat(MAX_USER_NAME_BYTES + 1);
    expect(() => a.addUser(long, 'pw')).toThrow(/longer than 255 bytes/);
    expect(() => a.addUser('é'.repeat(128), 'pw')).toThrow(/longer than 255 bytes/); // 256 bytes in UTF-8
    a.addUser('u'.repeat(MAX_USER_NAME_BYTES), 'pw');
    expect(a.authenticate('u'.repeat(MAX_USER_NAME_BYTES), 'pw', '127.0.0.1').name).toHaveLength(MAX_USER_NAME_BYTES);
    expect(() => a.authenticate(long.repeat(1000), 'pw', '127.0.0.1')).toThrow(/user name longer than 255 bytes/);
  });
});
