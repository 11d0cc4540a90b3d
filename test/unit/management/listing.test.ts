import { describe, expect, test } from 'vitest';
import { argsHash, propertiesKey } from '../../../src/management/format.js';
import { HttpError } from '../../../src/management/http-util.js';
import { applyListQuery } from '../../../src/management/listing.js';

const rows = [
  { vhost: '/', name: 'b', messages: 3, message_stats: { publish: 7 } },
  { vhost: '/', name: 'a', messages: 1, message_stats: { publish: 9 } },
  { vhost: 'v', name: 'c', messages: 2 },
];

describe('list queries', () => {
  test('default order is vhost then name; sort by a nested column, reversed', () => {
    expect((applyListQuery(rows, new URLSearchParams()) as typeof rows).map((r) => r.name)).toEqual(['a', 'b', 'c']);
    const q = new URLSearchParams('sort=message_stats.publish&sort_reverse=true&columns=name');
    expect(applyListQuery(rows, q)).toEqual([{ name: 'a' }, { name: 'b' }, { name: 'c' }]);
  });

  test('columns keep nested structure', () => {
    expect(applyListQuery(rows, new URLSearchParams('columns=name,message_stats.publish&name=a'))).toEqual([{ name: 'a', message_stats: { publish: 9 } }]);
  });

  test('paging wraps the result; out of range is a bad request', () => {
    expect(applyListQuery(rows, new URLSearchParams('page=2&page_size=2&columns=name'))).toEqual({
      filtered_count: 3,
      item_count: 1,
      items: [{ name: 'c' }],
      page: 2,
      page_count: 2,
      page_size: 2,
      total_count: 3,
    });
    expect(() => applyListQuery(rows, new URLSearchParams('page=3&page_size=2'))).toThrow(HttpError);
    expect(applyListQuery([], new URLSearchParams('page=1'))).toMatchObject({ items: [], page_count: 0 });
  });
});

describe('binding properties keys', () => {
  test("RabbitMQ's form: '~' for an empty key, URL quoting, '~' + hash with arguments", () => {
    expect(propertiesKey('', {})).toBe('~');
    expect(propertiesKey('orders.new', {})).toBe('orders.new');
    expect(propertiesKey('a b/#~', {})).toBe('a+b%2F%23%7E');
    const withArgs = propertiesKey('k', { 'x-match': 'any' });
    expect(withArgs).toMatch(/^k~[A-Za-z0-9_-]+$/);
    expect(withArgs).toBe(propertiesKey('k', { 'x-match': 'any' }));
    expect(argsHash({ a: 1, b: 2 })).toBe(argsHash({ b: 2, a: 1 }));
    expect(withArgs).not.toBe(propertiesKey('k', { 'x-match': 'all' }));
  });
});
