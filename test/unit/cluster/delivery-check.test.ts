import { describe, expect, test } from 'vitest';
import { checkDeliveries, describeVerdict, type Delivery } from '../../helpers/delivery-check.js';

const d = (id: string, redelivered = false): Delivery => ({ id, redelivered });

describe('checkDeliveries', () => {
  test('every confirmed message delivered once: ok', () => {
    const v = checkDeliveries(['a', 'b', 'c'], ['a', 'b', 'c'], [d('b'), d('a'), d('c')]);
    expect(v).toMatchObject({ ok: true, lost: [], unknown: [], unflaggedRepeats: [], delivered: 3, repeats: 0 });
  });

  test('a confirmed message never delivered is lost', () => {
    const v = checkDeliveries(['a', 'b'], ['a', 'b'], [d('a')]);
    expect(v.ok).toBe(false);
    expect(v.lost).toEqual(['b']);
  });

  test('an unconfirmed message may be delivered or not', () => {
    expect(checkDeliveries(['a', 'b', 'c'], ['a'], [d('a'), d('c')]).ok).toBe(true);
    expect(checkDeliveries(['a', 'b', 'c'], ['a'], [d('a')]).ok).toBe(true);
  });

  test('a delivery of an id nobody published is unknown, even when flagged redelivered', () => {
    const v = checkDeliveries(['a'], ['a'], [d('a'), d('x', true), d('x', true)]);
    expect(v.ok).toBe(false);
    expect(v.unknown).toEqual(['x']);
  });

  test('a repeat is fine with redelivered, wrong without it; the first delivery may carry it', () => {
    expect(checkDeliveries(['a'], ['a'], [d('a'), d('a', true), d('a', true)])).toMatchObject({ ok: true, repeats: 2, delivered: 1 });
    expect(checkDeliveries(['a'], ['a'], [d('a', true)]).ok).toBe(true);
    const v = checkDeliveries(['a', 'b'], ['a', 'b'], [d('a'), d('b'), d('a', true), d('b'), d('b')]);
    expect(v.ok).toBe(false);
    expect(v.unflaggedRepeats).toEqual(['b']);
    expect(v.repeats).toBe(3);
  });

  test('the account names what failed', () => {
    const v = checkDeliveries(['a', 'b'], ['a', 'b'], [d('a'), d('a'), d('z')]);
    expect(describeVerdict(v)).toBe('delivered 2 (1 repeats); lost 1 (b); unknown 1 (z); repeats without redelivered 1 (a)');
  });
});
