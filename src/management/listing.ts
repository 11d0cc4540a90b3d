import { compilePattern, FORBIDDEN_SEGMENTS, getOwn, PatternError, setOwn, type Pattern } from '../core/index.js';
import { HttpError } from './http-util.js';

export type Row = Record<string, unknown>;

const MAX_PAGE_SIZE = 500;

/** Longest `name` filter accepted, in UTF-8 bytes. */
export const MAX_FILTER_BYTES = 1024;
/** Longest `columns` / `sort` parameter accepted, in characters. */
const MAX_COLUMNS_LENGTH = 4096;

/**
 * Splits a dotted path from a query parameter (`message_stats.publish_details.rate`). Segments
 * that name object internals (`__proto__`, `constructor`, `prototype`) are a bad request.
 */
export function parsePath(path: string, param: string): string[] {
  const parts = path.split('.');
  for (const p of parts) {
    if (FORBIDDEN_SEGMENTS.has(p)) throw HttpError.badRequest(`parameter ${param}: '${p}' is not allowed in a column path`);
  }
  return parts;
}

/** Reads a path from a row, through own properties only. */
export function getPath(row: unknown, parts: readonly string[]): unknown {
  let cur: unknown = row;
  for (const part of parts) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = getOwn(cur, part);
  }
  return cur;
}

/** Writes a path into a projection, through own properties only (missing levels become plain objects). */
function setPath(out: Row, parts: readonly string[], value: unknown): void {
  let cur = out;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i]!;
    let next = getOwn(cur, p);
    if (next === undefined || next === null || typeof next !== 'object') {
      next = {};
      setOwn(cur, p, next);
    }
    cur = next as Row;
  }
  setOwn(cur, parts[parts.length - 1]!, value);
}

/** The `columns` parameter as parsed paths, or undefined when absent. */
function parseColumns(q: URLSearchParams): string[][] | undefined {
  const columns = q.get('columns');
  if (columns === null || columns === '') return undefined;
  if (columns.length > MAX_COLUMNS_LENGTH) throw HttpError.badRequest(`parameter columns longer than ${MAX_COLUMNS_LENGTH} characters`);
  return columns.split(',').map((c) => parsePath(c, 'columns'));
}

function project(r: Row, columns: readonly string[][] | undefined): Row {
  if (columns === undefined) return r;
  const out: Row = {};
  for (const c of columns) {
    const v = getPath(r, c);
    if (v !== undefined) setPath(out, c, v);
  }
  return out;
}

/** The `name` filter: a substring (case-insensitive), or with `use_regex=true` an RE2 pattern. */
function nameFilter(name: string, useRegex: boolean): (s: string) => boolean {
  if (name.length * 3 > MAX_FILTER_BYTES && Buffer.byteLength(name) > MAX_FILTER_BYTES) {
    throw HttpError.badRequest(`parameter name longer than ${MAX_FILTER_BYTES} bytes`);
  }
  if (!useRegex) {
    const needle = name.toLowerCase();
    return (s) => s.toLowerCase().includes(needle);
  }
  let re: Pattern;
  try {
    re = compilePattern(name);
  } catch (e) {
    if (e instanceof PatternError) throw HttpError.badRequest(`invalid regular expression '${name}': ${e.message}`);
    throw e;
  }
  return (s) => re.test(s);
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
  if (sort !== null && sort.length > MAX_COLUMNS_LENGTH) throw HttpError.badRequest(`parameter sort longer than ${MAX_COLUMNS_LENGTH} characters`);
  const keys = sort !== null && sort !== '' ? [parsePath(sort, 'sort')] : defaultSort.map((k) => k.split('.'));
  const columns = parseColumns(q);
  const name = q.get('name');
  const match = name !== null && name !== '' ? nameFilter(name, q.get('use_regex') === 'true') : undefined;

  const sorted = rows.slice().sort((a, b) => {
    for (const k of keys) {
      const c = compare(getPath(a, k), getPath(b, k));
      if (c !== 0) return c;
    }
    return 0;
  });
  if (reverse) sorted.reverse();

  const total = sorted.length;
  const filtered = match === undefined ? sorted : sorted.filter((r) => typeof r['name'] === 'string' && match(r['name']));

  const pageParam = q.get('page');
  if (pageParam === null) return filtered.map((r) => project(r, columns));
  const page = Number(pageParam);
  const pageSize = q.get('page_size') === null ? 100 : Number(q.get('page_size'));
  if (!Number.isInteger(page) || page < 1) throw HttpError.badRequest(`parameter page must be a positive integer, got '${pageParam}'`);
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE_SIZE) {
    throw HttpError.badRequest(`parameter page_size must be between 1 and ${MAX_PAGE_SIZE}`);
  }
  const pageCount = Math.ceil(filtered.length / pageSize);
  if (page > Math.max(pageCount, 1)) throw HttpError.badRequest('page out of range');
  const items = filtered.slice((page - 1) * pageSize, page * pageSize).map((r) => project(r, columns));
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
  return project(row, parseColumns(q));
}
