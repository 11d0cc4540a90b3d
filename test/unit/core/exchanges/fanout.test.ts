import { describe, expect, test } from 'vitest';
import { FanoutRouter } from '../../../../src/core/exchanges/fanout.js';

function route(r: FanoutRouter<string>, key: string): string[] {
  const out = new Set<string>();
  r.route(key, { h: 1 }, out);
  return [...out].sort();
}

describe('FanoutRouter', () => {
  test('routes every message to every destination whatever the routing key', () => {
    const r = new FanoutRouter<string>();
    r.add('', {}, 'q1');
    r.add('ignored', {}, 'q2');
    expect(route(r, 'anything')).toEqual(['q1', 'q2']);
    expect(route(r, '')).toEqual(['q1', 'q2']);
  });

  test('a destination bound twice gets one copy and stays until both bindings go', () => {
    const r = new FanoutRouter<string>();
    r.add('k1', {}, 'q');
    r.add('k2', {}, 'q');
    expect(r.size).toBe(2);
    expect(route(r, 'x')).toEqual(['q']);
    r.remove('k1', {}, 'q');
    expect(route(r, 'x')).toEqual(['q']);
    r.remove('k2', {}, 'q');
    expect(route(r, 'x')).toEqual([]);
    expect(r.size).toBe(0);
  });

  test('removing an unknown destination changes nothing', () => {
    const r = new FanoutRouter<string>();
    r.add('', {}, 'q');
    r.remove('', {}, 'other');
    expect(r.size).toBe(1);
  });

  test('with no bindings nothing is routed', () => {
    expect(route(new FanoutRouter<string>(), 'x')).toEqual([]);
  });
});
