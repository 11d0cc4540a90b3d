import { describe, expect, test } from 'vitest';
import { tableFromJson, tableToJson } from '../../../src/core/definitions.js';
import { FORBIDDEN_SEGMENTS, getOwn, setOwn } from '../../../src/core/own-keys.js';
import type { FieldTable } from '../../../src/core/types.js';
import { fieldTableToJson, jsonToFieldTable, jsonToProperties } from '../../../src/management/format.js';
import { HttpError } from '../../../src/management/http-util.js';
import { applyListQuery, projectOne } from '../../../src/management/listing.js';
import { decodeMessage, encodeMessage } from '../../../src/store/codec.js';

/** A table with an own `__proto__` key, as JSON.parse and the AMQP decoder make it. */
const hostile = (): Record<string, unknown> => JSON.parse('{"__proto__": {"x-max-length": 1, "polluted": true}, "plain": 2}') as Record<string, unknown>;

function expectOwnProto(t: object): void {
  expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
  expect(Object.keys(t)).toContain('__proto__');
  expect((t as Record<string, unknown>)['x-max-length']).toBeUndefined();
  expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
}

describe('own keys', () => {
  test('setOwn adds __proto__ as a key; getOwn ignores inherited members', () => {
    const o: Record<string, unknown> = {};
    setOwn(o, '__proto__', { polluted: true });
    setOwn(o, 'a', 1);
    expectOwnProto(o);
    expect(getOwn(o, 'a')).toBe(1);
    expect(getOwn({}, 'constructor')).toBeUndefined();
    expect(getOwn({}, 'toString')).toBeUndefined();
    expect([...FORBIDDEN_SEGMENTS].sort()).toEqual(['__proto__', 'constructor', 'prototype']);
  });

  test('definitions JSON <-> tables keep a __proto__ key as data, both ways', () => {
    const t = tableFromJson(hostile());
    expectOwnProto(t);
    const back = tableToJson(t);
    expectOwnProto(back);
    expect(JSON.stringify(back)).toBe('{"__proto__":{"polluted":true,"x-max-length":1},"plain":2}');
  });

  test('management JSON <-> tables and message headers keep a __proto__ key as data', () => {
    const t = jsonToFieldTable(hostile());
    expectOwnProto(t);
    expectOwnProto(fieldTableToJson(t));
    const p = jsonToProperties(JSON.parse('{"headers": {"__proto__": {"polluted": 1}}, "constructor": "x"}') as Record<string, unknown>);
    expectOwnProto(p.headers!);
  });

  test('the message store reads a stored __proto__ header back as a key', () => {
    const headers = jsonToFieldTable(hostile()) as FieldTable;
    const m = decodeMessage(encodeMessage({ exchange: 'x', routingKey: 'k', properties: { headers }, body: Buffer.from('b') }));
    expectOwnProto(m.properties.headers!);
    expect(JSON.stringify(m.properties.headers)).toBe('{"__proto__":{"x-max-length":1,"polluted":true},"plain":2}');
  });

  test('list queries refuse internal path segments and read own properties only', () => {
    const rows = [{ name: 'a', tags: ['administrator'] }];
    for (const columns of ['tags.__proto__.length', 'constructor', 'name.prototype']) {
      expect(() => applyListQuery(rows, new URLSearchParams({ columns }))).toThrow(HttpError);
      expect(() => projectOne(rows[0]!, new URLSearchParams({ columns }))).toThrow(/is not allowed in a column path/);
    }
    expect(() => applyListQuery(rows, new URLSearchParams({ sort: '__proto__' }))).toThrow(HttpError);
    expect(applyListQuery(rows, new URLSearchParams({ columns: 'name,toString,tags.length' }))).toEqual([{ name: 'a', tags: { length: 1 } }]);
    expect(({} as Record<string, unknown>)['length']).toBeUndefined();
  });
});
