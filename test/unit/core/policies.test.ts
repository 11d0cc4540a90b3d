import { describe, expect, test } from 'vitest';
import { Policies, type Policy } from '../../../src/core/policies.js';

const policy = (p: Partial<Policy>): Policy => ({ vhost: '/', name: 'p', pattern: '.*', applyTo: 'all', definition: { 'max-length': 1 }, priority: 0, ...p });

describe('policies', () => {
  test('the highest-priority matching policy applies, by kind', () => {
    const ps = new Policies();
    ps.set(policy({ name: 'all', pattern: '.*', priority: 0 }));
    ps.set(policy({ name: 'orders', pattern: '^orders\\.', priority: 5, applyTo: 'queues' }));
    ps.set(policy({ name: 'ae', pattern: '^orders\\.', priority: 9, applyTo: 'exchanges', definition: { 'alternate-exchange': 'unrouted' } }));
    expect(ps.match('/', 'queue', 'orders.new')?.name).toBe('orders');
    expect(ps.match('/', 'queue', 'billing')?.name).toBe('all');
    expect(ps.match('/', 'exchange', 'orders.x')?.name).toBe('ae');
    expect(ps.match('/other', 'queue', 'orders.new')).toBeUndefined();
  });

  test('effective queue arguments: the smaller limit wins, a declared DLX wins', () => {
    const ps = new Policies();
    ps.set(policy({ definition: { 'max-length': 100, 'message-ttl': 5000, 'dead-letter-exchange': 'pol-dlx' } }));
    expect(ps.effectiveQueueArguments('/', 'q', {})).toEqual({ 'x-max-length': 100, 'x-message-ttl': 5000, 'x-dead-letter-exchange': 'pol-dlx' });
    expect(ps.effectiveQueueArguments('/', 'q', { 'x-max-length': 10, 'x-message-ttl': 60000, 'x-dead-letter-exchange': 'mine' })).toEqual({
      'x-max-length': 10,
      'x-message-ttl': 5000,
      'x-dead-letter-exchange': 'mine',
    });
    const ae = new Policies();
    ae.set(policy({ definition: { 'alternate-exchange': 'ae' } }));
    expect(ae.effectiveExchangeArguments('/', 'x', {})).toEqual({ 'alternate-exchange': 'ae' });
    expect(ae.effectiveExchangeArguments('/', 'x', { 'alternate-exchange': 'own' })).toEqual({ 'alternate-exchange': 'own' });
  });

  test('invalid policies are refused with a reason', () => {
    const ps = new Policies();
    expect(() => ps.set(policy({ definition: { 'max-length': -1 } }))).toThrow(/not a valid value for 'max-length'/);
    expect(() => ps.set(policy({ definition: { nonsense: 1 } }))).toThrow(/'nonsense' is not a recognised policy setting/);
    expect(() => ps.set(policy({ definition: {} }))).toThrow(/no policy provided/);
    expect(() => ps.set(policy({ pattern: '(' }))).toThrow(/not a valid regular expression/);
    expect(() => ps.set(policy({ applyTo: 'everything' as Policy['applyTo'] }))).toThrow(/apply-to/);
    expect(ps.list()).toEqual([]);
  });

  test('delete and list per vhost', () => {
    const ps = new Policies();
    ps.set(policy({ name: 'a' }));
    ps.set(policy({ name: 'b', vhost: 'v' }));
    expect(ps.list('/').map((p) => p.name)).toEqual(['a']);
    expect(ps.list().map((p) => p.name).sort()).toEqual(['a', 'b']);
    expect(ps.delete('/', 'a')).toBe(true);
    expect(ps.delete('/', 'a')).toBe(false);
    ps.deleteVhost('v');
    expect(ps.list()).toEqual([]);
  });
});
