import { describe, expect, test } from 'vitest';
import { DirectRouter } from '../../../../src/core/exchanges/direct.js';

function route(r: DirectRouter<string>, key: string): string[] {
  const out = new Set<string>();
  r.route(key, undefined, out);
  return [...out].sort();
}

describe('DirectRouter', () => {
  test('routes to the destinations bound with exactly the routing key', () => {
    const r = new DirectRouter<string>();
    r.add('a', {}, 'q1');
    r.add('a', {}, 'q2');
    r.add('b', {}, 'q3');
    expect(route(r, 'a')).toEqual(['q1', 'q2']);
    expect(route(r, 'b')).toEqual(['q3']);
    expect(route(r, 'c')).toEqual([]);
    expect(r.size).toBe(3);
  });

  test('keys are compared exactly: no wildcards, case-sensitive, "" is a key', () => {
    const r = new DirectRouter<string>();
    r.add('a.*', {}, 'q1');
    r.add('', {}, 'q2');
    r.add('Key', {}, 'q3');
    expect(route(r, 'a.b')).toEqual([]);
    expect(route(r, 'a.*')).toEqual(['q1']);
    expect(route(r, '')).toEqual(['q2']);
    expect(route(r, 'key')).toEqual([]);
  });

  test('a destination bound with one key and different args is routed once and kept until both go', () => {
    const r = new DirectRouter<string>();
    r.add('a', { x: 1 }, 'q');
    r.add('a', { x: 2 }, 'q');
    expect(route(r, 'a')).toEqual(['q']);
    expect(r.size).toBe(2);
    r.remove('a', { x: 1 }, 'q');
    expect(route(r, 'a')).toEqual(['q']);
    r.remove('a', { x: 2 }, 'q');
    expect(route(r, 'a')).toEqual([]);
    expect(r.size).toBe(0);
  });

  test('removing one destination leaves the others on that key', () => {
    const r = new DirectRouter<string>();
    r.add('a', {}, 'q1');
    r.add('a', {}, 'q2');
    r.add('a', {}, 'q3');
    r.remove('a', {}, 'q1');
    expect(route(r, 'a')).toEqual(['q2', 'q3']);
  });

  test('removing an unknown binding changes nothing', () => {
    const r = new DirectRouter<string>();
    r.add('a', {}, 'q');
    r.remove('a', {}, 'other');
    r.remove('b', {}, 'q');
    expect(r.size).toBe(1);
    expect(route(r, 'a')).toEqual(['q']);
  });

  test('a destination already in the output set is not duplicated', () => {
    const r = new DirectRouter<string>();
    r.add('a', {}, 'q');
    const out = new Set(['q']);
    r.route('a', undefined, out);
    expect([...out]).toEqual(['q']);
  });
});
