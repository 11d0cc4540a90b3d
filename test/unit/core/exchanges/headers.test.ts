import { describe, expect, test } from 'vitest';
import { BrokerError, ReplyCode } from '../../../../src/core/errors.js';
import { HeadersRouter, headerValueEquals, sameFieldValue } from '../../../../src/core/exchanges/headers.js';
import { Decimal } from '../../../../src/core/types.js';
import type { FieldTable } from '../../../../src/core/types.js';

function matches(args: FieldTable, headers: FieldTable | undefined): boolean {
  const r = new HeadersRouter<string>();
  r.add('', args, 'q');
  const out = new Set<string>();
  r.route('ignored', headers, out);
  return out.has('q');
}

describe('x-match all (the default)', () => {
  test('matches when every argument is present with an equal value', () => {
    expect(matches({ 'x-match': 'all', a: 1, b: 'x' }, { a: 1, b: 'x', c: true })).toBe(true);
    expect(matches({ a: 1, b: 'x' }, { a: 1, b: 'x' })).toBe(true);
  });

  test('fails when one argument is missing or differs', () => {
    expect(matches({ a: 1, b: 'x' }, { a: 1 })).toBe(false);
    expect(matches({ a: 1, b: 'x' }, { a: 1, b: 'y' })).toBe(false);
    expect(matches({ 'x-match': 'all', a: 1 }, {})).toBe(false);
  });

  test('without headers only a binding with no arguments matches', () => {
    expect(matches({ a: 1 }, undefined)).toBe(false);
    expect(matches({}, undefined)).toBe(true);
    expect(matches({ 'x-match': 'all' }, undefined)).toBe(true);
    expect(matches({ 'x-match': 'all' }, { z: 1 })).toBe(true);
  });

  test('ignores x- arguments', () => {
    expect(matches({ a: 1, 'x-foo': 'bar' }, { a: 1 })).toBe(true);
    expect(matches({ 'x-foo': 'bar' }, {})).toBe(true);
  });
});

describe('x-match any', () => {
  test('matches when one argument is present with an equal value', () => {
    expect(matches({ 'x-match': 'any', a: 1, b: 'x' }, { b: 'x' })).toBe(true);
    expect(matches({ 'x-match': 'any', a: 1, b: 'x' }, { a: 1, b: 'nope' })).toBe(true);
  });

  test('fails when no argument matches', () => {
    expect(matches({ 'x-match': 'any', a: 1, b: 'x' }, { a: 2, b: 'y' })).toBe(false);
    expect(matches({ 'x-match': 'any', a: 1 }, {})).toBe(false);
    expect(matches({ 'x-match': 'any', a: 1 }, undefined)).toBe(false);
  });

  test('with no arguments left it matches nothing', () => {
    expect(matches({ 'x-match': 'any' }, { a: 1 })).toBe(false);
    expect(matches({ 'x-match': 'any', 'x-foo': 1 }, { 'x-foo': 1 })).toBe(false);
  });

  test('ignores x- arguments', () => {
    expect(matches({ 'x-match': 'any', 'x-foo': 'bar', a: 1 }, { 'x-foo': 'bar' })).toBe(false);
  });
});

describe('x-match all-with-x and any-with-x', () => {
  test('all-with-x requires x- arguments too', () => {
    expect(matches({ 'x-match': 'all-with-x', a: 1, 'x-foo': 'bar' }, { a: 1 })).toBe(false);
    expect(matches({ 'x-match': 'all-with-x', a: 1, 'x-foo': 'bar' }, { a: 1, 'x-foo': 'bar' })).toBe(true);
  });

  test('any-with-x matches on an x- argument', () => {
    expect(matches({ 'x-match': 'any-with-x', a: 1, 'x-foo': 'bar' }, { 'x-foo': 'bar' })).toBe(true);
    expect(matches({ 'x-match': 'any-with-x', 'x-foo': 'bar' }, { 'x-foo': 'baz' })).toBe(false);
  });

  test('the x-match argument itself never takes part', () => {
    expect(matches({ 'x-match': 'all-with-x' }, {})).toBe(true);
    expect(matches({ 'x-match': 'all-with-x', a: 1 }, { a: 1 })).toBe(true);
    expect(matches({ 'x-match': 'any-with-x' }, { 'x-match': 'any-with-x' })).toBe(false);
  });
});

describe('void (null) arguments', () => {
  test('match a present header whatever its value', () => {
    expect(matches({ a: null }, { a: 'anything' })).toBe(true);
    expect(matches({ a: null }, { a: null })).toBe(true);
    expect(matches({ a: null }, { a: 0 })).toBe(true);
    expect(matches({ a: null }, { a: false })).toBe(true);
  });

  test('do not match an absent header', () => {
    expect(matches({ a: null }, { b: 1 })).toBe(false);
    expect(matches({ a: null }, undefined)).toBe(false);
    expect(matches({ 'x-match': 'any', a: null }, { b: 1 })).toBe(false);
  });

  test('count towards any', () => {
    expect(matches({ 'x-match': 'any', a: null, b: 2 }, { a: 'v', b: 3 })).toBe(true);
  });

  test('a void header does not equal a valued argument', () => {
    expect(matches({ a: 1 }, { a: null })).toBe(false);
  });
});

describe('value comparison', () => {
  test('types differ: 1 is not "1", true is not 1, "true" is not true', () => {
    expect(matches({ a: 1 }, { a: '1' })).toBe(false);
    expect(matches({ a: '1' }, { a: 1 })).toBe(false);
    expect(matches({ a: true }, { a: 1 })).toBe(false);
    expect(matches({ a: 'true' }, { a: true })).toBe(false);
    expect(matches({ a: 0 }, { a: false })).toBe(false);
    expect(matches({ a: '' }, { a: null })).toBe(false);
  });

  test('numbers compare by value, integers and bigints alike', () => {
    expect(matches({ a: 1 }, { a: 1.0 })).toBe(true);
    expect(matches({ a: 1 }, { a: 1n })).toBe(true);
    expect(matches({ a: 1n }, { a: 1 })).toBe(true);
    expect(matches({ a: 2n ** 62n }, { a: 2n ** 62n })).toBe(true);
    expect(matches({ a: 1.5 }, { a: 1n })).toBe(false);
    expect(matches({ a: 1 }, { a: 2 })).toBe(false);
  });

  test('strings compare exactly; a byte array equals the string with the same bytes', () => {
    expect(matches({ a: 'abc' }, { a: 'abc' })).toBe(true);
    expect(matches({ a: 'abc' }, { a: 'ABC' })).toBe(false);
    expect(matches({ a: 'héllo' }, { a: Buffer.from('héllo') })).toBe(true);
    expect(matches({ a: Buffer.from('abc') }, { a: 'abc' })).toBe(true);
    expect(matches({ a: 'abc' }, { a: Buffer.from('abd') })).toBe(false);
  });

  test('Buffers compare by bytes', () => {
    expect(matches({ a: Buffer.from([1, 2, 3]) }, { a: Buffer.from([1, 2, 3]) })).toBe(true);
    expect(matches({ a: Buffer.from([1, 2, 3]) }, { a: Buffer.from([1, 2]) })).toBe(false);
  });

  test('timestamps and decimals compare by value', () => {
    expect(matches({ a: new Date(1000) }, { a: new Date(1000) })).toBe(true);
    expect(matches({ a: new Date(1000) }, { a: new Date(2000) })).toBe(false);
    expect(matches({ a: new Decimal(2, 150) }, { a: new Decimal(2, 150) })).toBe(true);
    expect(matches({ a: new Decimal(2, 150) }, { a: new Decimal(1, 15) })).toBe(false);
  });

  test('arrays and tables compare deeply', () => {
    expect(matches({ a: [1, 'x', [true]] }, { a: [1, 'x', [true]] })).toBe(true);
    expect(matches({ a: [1, 'x'] }, { a: [1, 'y'] })).toBe(false);
    expect(matches({ a: [1, 'x'] }, { a: [1, 'x', 2] })).toBe(false);
    expect(matches({ a: { k: 1, j: [2] } }, { a: { j: [2], k: 1 } })).toBe(true);
    expect(matches({ a: { k: 1 } }, { a: { k: 1, extra: 2 } })).toBe(false);
    expect(matches({ a: { k: 1 } }, { a: [1] })).toBe(false);
    expect(matches({ a: [] }, { a: {} })).toBe(false);
  });

  test('header names that are also Object.prototype properties are not inherited', () => {
    expect(matches({ constructor: null }, {})).toBe(false);
    expect(matches({ toString: null }, { a: 1 })).toBe(false);
    expect(matches({ constructor: null }, { constructor: 'x' })).toBe(true);
    expect(matches({ ['__proto__']: null }, {})).toBe(false);
  });

  test('headerValueEquals is symmetric on mixed types', () => {
    const values = [1, 1n, '1', true, null, Buffer.from('1'), new Date(1), new Decimal(0, 1), [1], { a: 1 }];
    for (const a of values) for (const b of values) expect(headerValueEquals(a, b)).toBe(headerValueEquals(b, a));
  });
});

describe('binding identity and removal', () => {
  test('removes the binding whose args are equal by value, in any key order', () => {
    const r = new HeadersRouter<string>();
    r.add('', { 'x-match': 'any', a: 1, b: 2 }, 'q');
    r.remove('', { b: 2, a: 1, 'x-match': 'any' }, 'q');
    expect(r.size).toBe(0);
  });

  test('keeps bindings that differ in routing key, args or destination', () => {
    const r = new HeadersRouter<string>();
    r.add('k', { a: 1 }, 'q');
    r.remove('other', { a: 1 }, 'q');
    r.remove('k', { a: '1' }, 'q');
    r.remove('k', { a: 1, b: 2 }, 'q');
    r.remove('k', { a: 1 }, 'q2');
    expect(r.size).toBe(1);
  });

  test('one destination bound twice gets one copy; removing one binding keeps the other route', () => {
    const r = new HeadersRouter<string>();
    r.add('', { a: 1 }, 'q');
    r.add('', { b: 2 }, 'q');
    r.add('', { a: 1 }, 'q2');
    const out = new Set<string>();
    r.route('', { a: 1, b: 2 }, out);
    expect([...out].sort()).toEqual(['q', 'q2']);
    r.remove('', { a: 1 }, 'q');
    const out2 = new Set<string>();
    r.route('', { b: 2 }, out2);
    expect([...out2]).toEqual(['q']);
    const out3 = new Set<string>();
    r.route('', { a: 1 }, out3);
    expect([...out3]).toEqual(['q2']);
  });

  test('removal in any order keeps every remaining binding routable', () => {
    const r = new HeadersRouter<number>();
    for (let i = 0; i < 20; i++) r.add('', { n: i }, i);
    for (const i of [0, 19, 7, 8, 3, 15]) r.remove('', { n: i }, i);
    expect(r.size).toBe(14);
    for (let i = 0; i < 20; i++) {
      const out = new Set<number>();
      r.route('', { n: i }, out);
      expect([...out]).toEqual([0, 19, 7, 8, 3, 15].includes(i) ? [] : [i]);
    }
  });

  test('sameFieldValue is strict about types', () => {
    expect(sameFieldValue(1, 1n)).toBe(false);
    expect(sameFieldValue('a', Buffer.from('a'))).toBe(false);
    expect(sameFieldValue({ a: [1, { b: null }] }, { a: [1, { b: null }] })).toBe(true);
    expect(sameFieldValue(Number.NaN, Number.NaN)).toBe(true);
  });
});

describe('x-match validation', () => {
  const bind = (args: FieldTable): BrokerError => {
    try {
      new HeadersRouter<string>().add('', args, 'q');
    } catch (e) {
      if (e instanceof BrokerError) return e;
    }
    throw new Error('expected a BrokerError');
  };

  test('an unknown x-match value is refused with 406 and RabbitMQ\'s text', () => {
    const e = bind({ 'x-match': 'some' });
    expect(e.code).toBe(ReplyCode.PRECONDITION_FAILED);
    expect(e.text).toBe('Invalid x-match field value <<"some">>; expected all, any, all-with-x, or any-with-x');
  });

  test('a non-string x-match is refused with 406 naming its type', () => {
    const e = bind({ 'x-match': 1 });
    expect(e.code).toBe(ReplyCode.PRECONDITION_FAILED);
    expect(e.text).toBe('Invalid x-match field type long (value 1); expected longstr');
  });

  test('a refused binding is not added', () => {
    const r = new HeadersRouter<string>();
    expect(() => r.add('', { 'x-match': 'ALL' }, 'q')).toThrow(BrokerError);
    expect(r.size).toBe(0);
  });
});

describe('anchor index', () => {
  /** RabbitMQ's headers_match, written plainly: the index must never change a result. */
  function reference(args: FieldTable, headers: FieldTable | undefined): boolean {
    const mode = typeof args['x-match'] === 'string' ? args['x-match'] : 'all';
    const withX = mode.endsWith('-with-x');
    const any = mode.startsWith('any');
    const h = headers ?? {};
    let all = true;
    let some = false;
    for (const [k, want] of Object.entries(args)) {
      if (k === 'x-match' || (!withX && k.startsWith('x-'))) continue;
      const present = Object.hasOwn(h, k);
      const ok = present && (want === null || headerValueEquals(want, h[k]!));
      if (ok) some = true;
      else all = false;
    }
    return any ? some : all;
  }

  test('a value index keeps every result of a full scan on random bindings and headers', () => {
    let seed = 99;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return Math.floor((seed / 2147483648) * n);
    };
    const pool = [1, 2, 1n, 2n, 1.5, '1', 'a', 'b', 'é', true, false, null, Buffer.from('a'), Buffer.from('é'), [1], { k: 'a' }, new Date(1), 2 ** 60, 2n ** 60n];
    const names = ['a', 'b', 'c', 'x-d'];
    const modes = [undefined, 'all', 'any', 'all-with-x', 'any-with-x'];
    const r = new HeadersRouter<number>();
    const bindings: FieldTable[] = [];
    for (let i = 0; i < 400; i++) {
      const args: FieldTable = {};
      const mode = modes[rand(modes.length)];
      if (mode !== undefined) args['x-match'] = mode;
      for (const n of names) if (rand(2) === 0) args[n] = pool[rand(pool.length)]!;
      bindings.push(args);
      r.add('', args, i);
    }
    const DELETED: FieldTable = {};
    const check = (): void => {
      for (let m = 0; m < 300; m++) {
        const headers: FieldTable | undefined = rand(10) === 0 ? undefined : {};
        if (headers !== undefined) for (const n of names) if (rand(3) > 0) headers[n] = pool[rand(pool.length)]!;
        const out = new Set<number>();
        r.route('', headers, out);
        const expected = bindings.flatMap((args, i) => (args !== DELETED && reference(args, headers) ? [i] : []));
        expect([...out].sort((x, y) => x - y)).toEqual(expected);
      }
    };
    check();
    for (let i = 0; i < 400; i += 2) {
      r.remove('', { ...bindings[i]! }, i);
      bindings[i] = DELETED;
    }
    expect(r.size).toBe(200);
    check();
    for (let i = 1; i < 400; i += 2) r.remove('', bindings[i]!, i);
    expect(r.size).toBe(0);
    const out = new Set<number>();
    r.route('', { a: 1 }, out);
    expect(out.size).toBe(0);
  });

  test('an indexed string argument still matches a byte-array header', () => {
    expect(matches({ a: 'x', b: 1 }, { a: Buffer.from('x'), b: 1n })).toBe(true);
    expect(matches({ a: 2 ** 60 }, { a: 2n ** 60n })).toBe(true);
    expect(matches({ a: -0 }, { a: 0 })).toBe(true);
  });
});
