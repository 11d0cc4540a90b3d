import { request } from 'node:http';

export interface HttpResult<T = unknown> {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: T;
  text: string;
}

/** One HTTP request to the broker's HTTP port; the body is parsed as JSON when it is JSON. */
export function http<T = unknown>(
  port: number,
  method: string,
  path: string,
  opts: { auth?: [string, string] | null; body?: unknown; headers?: Record<string, string>; host?: string } = {},
): Promise<HttpResult<T>> {
  const headers: Record<string, string> = { ...opts.headers };
  const auth = opts.auth === undefined ? ['guest', 'guest'] : opts.auth;
  if (auth) headers['authorization'] = `Basic ${Buffer.from(`${auth[0]}:${auth[1]}`).toString('base64')}`;
  let payload: Buffer | undefined;
  if (opts.body !== undefined) {
    payload = Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
    headers['content-type'] ??= 'application/json';
    headers['content-length'] = String(payload.length);
  }
  return new Promise((resolve, reject) => {
    const req = request({ host: opts.host ?? '127.0.0.1', port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        if ((res.headers['content-type'] ?? '').includes('json') && text !== '') body = JSON.parse(text);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: body as T, text });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

/** A JSON object as the API returns it. */
export type Row = Record<string, unknown>;

/** A management API client bound to a port and a user. */
export function mgmt(port: number, auth: [string, string] | null = ['guest', 'guest']) {
  return {
    get: <T = Row>(path: string) => http<T>(port, 'GET', `/api${path}`, { auth }),
    list: (path: string) => http<Row[]>(port, 'GET', `/api${path}`, { auth }),
    put: <T = Row>(path: string, body: unknown = {}) => http<T>(port, 'PUT', `/api${path}`, { auth, body }),
    post: <T = Row>(path: string, body: unknown = {}) => http<T>(port, 'POST', `/api${path}`, { auth, body }),
    del: <T = Row>(path: string, headers: Record<string, string> = {}) => http<T>(port, 'DELETE', `/api${path}`, { auth, headers }),
  };
}

export type Mgmt = ReturnType<typeof mgmt>;

/** Reads a dotted path (`message_stats.publish`) from a JSON value. */
export function at(v: unknown, path: string): unknown {
  let cur = v;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Row)[p];
  }
  return cur;
}
