import type { IncomingMessage, ServerResponse } from 'node:http';
import { BrokerError, getOwn, ReplyCode } from '../core/index.js';

/** A management API error: RabbitMQ's `{error, reason}` body with an HTTP status. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    readonly error: string,
    readonly reason: string,
  ) {
    super(`${status} ${error}: ${reason}`);
  }

  static badRequest(reason: string): HttpError {
    return new HttpError(400, 'bad_request', reason);
  }
  static notFound(reason = 'Not Found'): HttpError {
    return new HttpError(404, 'Object Not Found', reason);
  }
  static notAuthorised(reason: string): HttpError {
    return new HttpError(401, 'not_authorised', reason);
  }
  static methodNotAllowed(): HttpError {
    return new HttpError(405, 'method_not_allowed', 'Method Not Allowed');
  }

  /** Maps a core error the way RabbitMQ's management plugin reports AMQP errors. */
  static fromBroker(e: BrokerError): HttpError {
    switch (e.code) {
      case ReplyCode.ACCESS_REFUSED:
        return HttpError.notAuthorised(e.replyText);
      case ReplyCode.NOT_FOUND:
        return HttpError.notFound(e.replyText);
      case ReplyCode.NOT_ALLOWED:
        return HttpError.notAuthorised(e.replyText);
      default:
        return HttpError.badRequest(e.replyText);
    }
  }
}

/** Largest request body accepted (definitions imports can be big). */
export const MAX_BODY = 32 << 20;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body, jsonReplacer);
  res.writeHead(status, {
    'content-type': 'application/json',
    'cache-control': 'no-cache',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

export function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-length': 0, ...headers });
  res.end();
}

/** JSON.stringify cannot write bigint; RabbitMQ writes numbers. */
function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === 'bigint' ? Number(value) : value;
}

/** Reads the request body, refusing more than `limit` bytes before buffering them. */
export function readBody(req: IncomingMessage, limit = MAX_BODY): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      reject(new HttpError(413, 'payload_too_large', `request body larger than ${limit} bytes`));
      req.resume();
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, 'payload_too_large', `request body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * A request body must be declared JSON, as RabbitMQ requires (415 otherwise). This also keeps
 * cross-site HTML forms, which cannot send `application/json`, from changing anything.
 */
export function checkJsonType(req: IncomingMessage, body: Buffer): void {
  if (body.length === 0) return;
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') {
    throw new HttpError(415, 'unsupported_media_type', `request body must be application/json, got '${type || 'none'}'`);
  }
}

/** A JSON object body; `{}` for an empty body. 400 for anything else. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const raw = await readBody(req);
  checkJsonType(req, raw);
  if (raw.length === 0) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw HttpError.badRequest(`failed to decode JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw HttpError.badRequest('JSON body must be an object');
  }
  return parsed as Record<string, unknown>;
}

/** `Authorization: Basic ...` -> [user, password], or undefined. */
export function basicCredentials(req: IncomingMessage): [string, string] | undefined {
  const h = req.headers.authorization;
  if (h === undefined) return undefined;
  const m = /^Basic\s+(\S+)\s*$/i.exec(h);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return [decoded.slice(0, colon), decoded.slice(colon + 1)];
}

// ---- reading fields of a JSON body --------------------------------------------------------------
// rabbitmqadmin sends booleans and numbers as strings ("durable": "true", "count": "1"). Only own
// properties are read: a body never reaches Object.prototype's members ('constructor', ...).

export function boolField(body: Record<string, unknown>, key: string, dflt: boolean): boolean {
  const v = getOwn(body, key);
  if (v === undefined || v === null || v === '') return dflt;
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw HttpError.badRequest(`${key} must be true or false, got ${JSON.stringify(v)}`);
}

export function intField(body: Record<string, unknown>, key: string, dflt: number): number {
  const v = getOwn(body, key);
  if (v === undefined || v === null || v === '') return dflt;
  const n = typeof v === 'string' ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n)) throw HttpError.badRequest(`${key} must be an integer, got ${JSON.stringify(v)}`);
  return n;
}

export function strField(body: Record<string, unknown>, key: string, dflt?: string): string {
  const v = getOwn(body, key);
  if (v === undefined || v === null) {
    if (dflt === undefined) throw HttpError.badRequest(`${key} is missing`);
    return dflt;
  }
  if (typeof v !== 'string') throw HttpError.badRequest(`${key} must be a string, got ${JSON.stringify(v)}`);
  return v;
}

export function objField(body: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = getOwn(body, key);
  if (v === undefined || v === null || v === '') return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw HttpError.badRequest(`${key} must be a JSON object`);
  return v as Record<string, unknown>;
}
