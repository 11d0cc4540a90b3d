import type { IncomingMessage } from 'node:http';
import type { User } from '../core/index.js';
import { HttpError } from './http-util.js';

export type Method = 'GET' | 'PUT' | 'POST' | 'DELETE';

/** A request as a route handler sees it: authenticated user, decoded path parameters, query. */
export interface ApiRequest {
  readonly method: Method;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly user: User;
  readonly req: IncomingMessage;
  /** The parsed JSON object body ({} when empty); 400 on bad JSON. */
  body(): Promise<Record<string, unknown>>;
}

/** What a handler returns: a status and an optional JSON body. */
export interface ApiReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export type Handler = (r: ApiRequest) => ApiReply | Promise<ApiReply>;

interface Route {
  readonly segments: readonly string[];
  readonly handlers: Partial<Record<Method, Handler>>;
}

/**
 * Routes `/api/...` paths by segment. Segments are split on the raw path and then percent-decoded,
 * so `%2F` (the vhost `/`) stays inside one segment, as RabbitMQ's API requires.
 */
export class Router {
  private readonly routes: Route[] = [];

  /** `pattern` like `/api/queues/:vhost/:name`. */
  on(method: Method, pattern: string, handler: Handler): this {
    const segments = pattern.split('/').filter((s) => s !== '');
    let route = this.routes.find((r) => r.segments.join('/') === segments.join('/'));
    if (!route) {
      route = { segments, handlers: {} };
      this.routes.push(route);
    }
    route.handlers[method] = handler;
    return this;
  }

  /** Finds the handler; 404 for an unknown path, 405 for a known path with another method. */
  match(method: string, rawPath: string): { handler: Handler; params: Record<string, string> } {
    const parts = rawPath.split('/').filter((s, i, a) => s !== '' || (i > 0 && i < a.length - 1));
    const decoded: string[] = [];
    for (const p of parts) {
      try {
        decoded.push(decodeURIComponent(p));
      } catch {
        throw HttpError.badRequest(`malformed path segment '${p}'`);
      }
    }
    let pathMatched = false;
    for (const r of this.routes) {
      const params = matchSegments(r.segments, decoded);
      if (!params) continue;
      pathMatched = true;
      const h = r.handlers[method as Method];
      if (h) return { handler: h, params };
    }
    if (pathMatched) throw HttpError.methodNotAllowed();
    throw HttpError.notFound();
  }
}

function matchSegments(pattern: readonly string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const v = parts[i]!;
    if (p.startsWith(':')) params[p.slice(1)] = v;
    else if (p !== v) return undefined;
  }
  return params;
}
