import { HttpError } from './http-util.js';

export type Row = Record<string, unknown>;

const MAX_PAGE_SIZE = 500;

/** Reads a dotted path (`message_stats.publish_details.rate`) from a row. */
export function getPath(row: unknown, path: string): unknown {
  let cur: unknown = row;
  for (const part of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Row)[part];
  }
  return cur;
}

function setPath(out: Row, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = out;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i]!;
    const next = cur[p];
    if (next === undefined || next === null || typeof next !== 'object') cur[p] = {};
    cur = cur[p] as Row;
  }
  cur[parts[parts.length - 1]!] = value;
}

function compare(a: unknown, b: unknown): number {
  if (a === b) return 0;
  if (a === undefined || a === null) return -1;
  if (b === undefined || b === null) return 1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'boolean' && typeof b === 'boolean') return Number(a) - Number(b);
  const sa = typeof a === 'string' ? a : JSON.stringify(a);
  const sb = typeof b === 'string' ? b : JSON.stringify(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

/**
 * RabbitMQ's list query parameters: `sort` (a dotted column), `sort_reverse`, `columns`,
 * `name` + `use_regex` filtering, and paging (`page`, `page_size`) which wraps the result in
 * `{filtered_count, item_count, items, page, page_count, page_size, total_count}`.
 */
export function applyListQuery(rows: Row[], q: URLSearchParams, defaultSort: readonly string[] = ['vhost', 'name']): unknown {
  const sort = q.get('sort');
  const reverse = q.get('sort_reverse') === 'true';
  const keys = sort !== null && sort !== '' ? [sort] : defaultSort;
  const sorted = rows.slice().sort((a, b) => {
    for (const k of keys) {
      const c = compare(getPath(a, k), getPath(b, k));
      if (c !== 0) return c;
    }
    return 0;
  });
  if (reverse) sorted.reverse();

  const total = sorted.length;
  let filtered = sorted;
  const name = q.get('name');
  if (name !== null && name !== '') {
    let match: (s: string) => boolean;
    if (q.get('use_regex') === 'true') {
      let re: RegExp;
      try {
        re = new RegExp(name);
      } catch {
        throw HttpError.badRequest(`invalid regular expression '${name}'`);
      }
      match = (s) => re.test(s);
    } else {
      const needle = name.toLowerCase();
      match = (s) => s.toLowerCase().includes(needle);
    }
    filtered = sorted.filter((r) => typeof r['name'] === 'string' && match(r['name']));
  }

  const columns = q.get('columns');
  const project = (r: Row): Row => {
    if (columns === null || columns === '') return r;
    const out: Row = {};
    for (const c of columns.split(',')) {
      const v = getPath(r, c);
      if (v !== undefined) setPath(out, c, v);
    }
    return out;
  };

  const pageParam = q.get('page');
  if (pageParam === null) return filtered.map(project);
  const page = Number(pageParam);
  const pageSize = q.get('page_size') === null ? 100 : Number(q.get('page_size'));
  if (!Number.isInteger(page) || page < 1) throw HttpError.badRequest(`parameter page must be a positive integer, got '${pageParam}'`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw HttpError.badRequest(`parameter page_size must be between 1 and ${MAX_PAGE_SIZE}`);
  }
  const pageCount = Math.ceil(filtered.length / pageSize);
  if (page > Math.max(pageCount, 1)) throw HttpError.badRequest('page out of range');
  const items = filtered.slice((page - 1) * pageSize, page * pageSize).map(project);
  return {
    filtered_count: filtered.length,
    item_count: items.length,
    items,
    page,
    page_count: pageCount,
    page_size: pageSize,
    total_count: total,
  };
}

/** `columns` for a single object (GET /api/queues/{vhost}/{name}?columns=...). */
export function projectOne(row: Row, q: URLSearchParams): Row {
  const columns = q.get('columns');
  if (columns === null || columns === '') return row;
  const out: Row = {};
  for (const c of columns.split(',')) {
    const v = getPath(row, c);
    if (v !== undefined) setPath(out, c, v);
  }
  return out;
}
