import { describe, expect, test } from 'vitest';
import { tableKey } from '../../../src/core/field-key.js';
import type { FieldTable } from '../../../src/core/index.js';

describe('tableKey', () => {
  test('a frozen table gets the same key as an equal unfrozen one, made once and shared', () => {
    const plain: FieldTable = { b: 1, a: { x: true, y: 'z' } };
    const frozen = Object.freeze({ a: Object.freeze({ y: 'z', x: true }), b: 1 });
    expect(tableKey(frozen)).toBe(tableKey(plain));
    expect(tableKey(frozen)).toBe(tableKey(frozen));
    expect(tableKey({})).toBe('{}');
    expect(tableKey(undefined)).toBe('{}');
  });

  test('an unfrozen table that changes gets a new key', () => {
    const t: FieldTable = { a: 1 };
    const before = tableKey(t);
    t['b'] = 2;
    expect(tableKey(t)).not.toBe(before);
  });
});
