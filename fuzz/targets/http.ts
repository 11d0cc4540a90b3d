import type { FuzzCase, Target, TargetContext } from '../case.js';
import type { Rng } from '../prng.js';
import { INVALID_UTF8, Session, mutate, type LengthField } from '../session.js';

/**
 * The management API: methods, paths from the route table with hostile parameters, query strings,
 * JSON bodies with hostile shapes, over raw HTTP/1.1 (so the framing can lie too), as guest.
 *
 * Requests never touch what the bystanders depend on: the user guest, the vhost "/", the amq.*
 * exchanges (deletes only), and policies apply only to the target's own names.
 */

const ROUTES: readonly [string, string][] = [
  ['GET', '/api/overview'], ['GET', '/api/cluster-name'], ['GET', '/api/whoami'], ['GET', '/api/extensions'], ['GET', '/api/auth'],
  ['GET', '/api/nodes'], ['GET', '/api/nodes/:node'], ['GET', '/api/connections'], ['GET', '/api/connections/:name'],
  ['GET', '/api/connections/:name/channels'], ['DELETE', '/api/connections/:name'], ['GET', '/api/channels'], ['GET', '/api/channels/:name'],
  ['GET', '/api/consumers'], ['GET', '/api/consumers/:vhost'], ['GET', '/api/vhosts/:vhost/connections'], ['GET', '/api/vhosts/:vhost/channels'],
  ['GET', '/api/exchanges'], ['GET', '/api/exchanges/:vhost'], ['GET', '/api/exchanges/:vhost/:name'], ['PUT', '/api/exchanges/:vhost/:name'],
  ['DELETE', '/api/exchanges/:vhost/:name'], ['GET', '/api/exchanges/:vhost/:name/bindings/source'], ['GET', '/api/exchanges/:vhost/:name/bindings/destination'],
  ['POST', '/api/exchanges/:vhost/:name/publish'], ['POST', '/api/exchanges/:vhost/:name/publish'], ['POST', '/api/exchanges/:vhost/:name/publish'],
  ['GET', '/api/queues'], ['GET', '/api/queues/:vhost'], ['GET', '/api/queues/:vhost/:name'], ['PUT', '/api/queues/:vhost/:name'], ['PUT', '/api/queues/:vhost/:name'],
  ['DELETE', '/api/queues/:vhost/:name'], ['DELETE', '/api/queues/:vhost/:name/contents'], ['GET', '/api/queues/:vhost/:name/bindings'], ['POST', '/api/queues/:vhost/:name/get'],
  ['GET', '/api/bindings'], ['GET', '/api/bindings/:vhost'], ['GET', '/api/bindings/:vhost/e/:source/q/:dest'], ['POST', '/api/bindings/:vhost/e/:source/q/:dest'],
  ['GET', '/api/bindings/:vhost/e/:source/e/:dest'], ['POST', '/api/bindings/:vhost/e/:source/e/:dest'], ['GET', '/api/bindings/:vhost/e/:source/q/:dest/:props'],
  ['DELETE', '/api/bindings/:vhost/e/:source/q/:dest/:props'], ['GET', '/api/vhosts'], ['GET', '/api/vhosts/:vhost'], ['PUT', '/api/vhosts/:vhost'], ['DELETE', '/api/vhosts/:vhost'],
  ['GET', '/api/vhosts/:vhost/permissions'], ['GET', '/api/vhosts/:vhost/topic-permissions'], ['GET', '/api/users'], ['GET', '/api/users/without-permissions'],
  ['POST', '/api/users/bulk-delete'], ['GET', '/api/users/:user'], ['PUT', '/api/users/:user'], ['DELETE', '/api/users/:user'], ['GET', '/api/users/:user/permissions'],
  ['GET', '/api/users/:user/topic-permissions'], ['GET', '/api/permissions'], ['GET', '/api/permissions/:vhost/:user'], ['PUT', '/api/permissions/:vhost/:user'],
  ['DELETE', '/api/permissions/:vhost/:user'], ['GET', '/api/topic-permissions'], ['GET', '/api/topic-permissions/:vhost/:user'], ['PUT', '/api/topic-permissions/:vhost/:user'],
  ['DELETE', '/api/topic-permissions/:vhost/:user'], ['GET', '/api/policies'], ['GET', '/api/policies/:vhost'], ['GET', '/api/policies/:vhost/:name'], ['PUT', '/api/policies/:vhost/:name'],
  ['DELETE', '/api/policies/:vhost/:name'], ['GET', '/api/definitions'], ['POST', '/api/definitions'], ['GET', '/api/definitions/:vhost'], ['POST', '/api/definitions/:vhost'],
  ['GET', '/api/health/checks/alarms'], ['GET', '/api/health/checks/local-alarms'], ['GET', '/api/health/checks/port-listener/:port'], ['GET', '/api/health/checks/protocol-listener/:protocol'],
  ['GET', '/api/health/checks/virtual-hosts'], ['GET', '/api/health/checks/certificate-expiration/:within/:unit'], ['GET', '/api/aliveness-test/:vhost'],
  ['GET', '/api/parameters'], ['GET', '/api/global-parameters'], ['GET', '/api/operator-policies'], ['GET', '/api/vhost-limits'], ['GET', '/api/feature-flags'],
  ['GET', '/metrics'], ['GET', '/metrics/detailed'], ['GET', '/'], ['GET', '/index.html'], ['GET', '/app.js'], ['GET', '/../package.json'], ['GET', '/api/nope'],
];

const METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'TRACE', 'CONNECT', 'get', 'BREW', ''];

const AUTH_GUEST = `Basic ${Buffer.from('guest:guest').toString('base64')}`;

/** A path parameter, percent-encoded or not quite. */
function param(rng: Rng, name: string, method: string, route: string, ctx: TargetContext): string {
  const ns = ctx.ns;
  const hostile = ['%', '%zz', '%2e%2e', '..', '%00', '%C0%AF', '%ED%A0%80', encodeURIComponent('x'.repeat(rng.range(256, 5000))), '__proto__', 'constructor', 'prototype', '%2F%2F', ''];
  let v: string;
  switch (name) {
    case 'vhost':
      v = rng.chance(0.6) ? '%2F' : rng.chance(0.5) ? `${ns}-v${rng.int(2)}` : rng.pick(hostile);
      // the bystanders live in "/": it is never deleted nor redefined
      if (method !== 'GET' && route.startsWith('/api/vhosts/') && safeDecode(v) === '/') v = `${ns}-v0`;
      break;
    case 'user':
      v = rng.chance(0.7) ? `${ns}-u${rng.int(2)}` : rng.pick(hostile);
      break;
    case 'name':
    case 'source':
    case 'dest':
      v = rng.chance(0.7) ? `${ns}-${rng.pick(['q', 'x'])}${rng.int(3)}` : rng.pick([...hostile, 'amq.topic', 'amq.default', 'amq.direct', 'x'.repeat(rng.range(20, 255))]);
      if (route.endsWith('/publish') && rng.chance(0.6)) v = rng.pick(['amq.topic', 'amq.default']);
      // names a backtracking filter takes long on
      if (!ctx.skip.has('mgmt-regex-redos') && rng.chance(0.2)) v = 'x'.repeat(rng.range(30, 255));
      if (method === 'DELETE' && safeDecode(v).startsWith('amq.')) v = `${ns}-x0`;
      break;
    case 'props':
      v = rng.pick(['~', `${ns}.k`, '%7E', 'x~abc', ...hostile]);
      break;
    case 'port':
      v = rng.pick(['5672', '0', '-1', '99999999999', 'x']);
      break;
    case 'protocol':
      v = rng.pick(['amqp', 'mqtt', 'stomp', 'http', 'x']);
      break;
    case 'within':
      v = rng.pick(['1', '-1', 'x', '1e400']);
      break;
    case 'unit':
      v = rng.pick(['days', 'weeks', 'x']);
      break;
    default:
      v = rng.pick(['x', 'rabbit@localhost', ...hostile]);
  }
  return v;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

function query(rng: Rng, ctx: TargetContext): string {
  const parts: string[] = [];
  const n = rng.int(4);
  for (let i = 0; i < n; i++) {
    switch (rng.int(10)) {
      case 0:
        parts.push(`columns=${rng.pick(['name', 'name,messages', 'tags.__proto__', 'constructor.name', 'a.b.c.d.e', 'prototype', '', ',,,', 'message_stats.publish_details.rate'])}`);
        break;
      case 1:
        parts.push(`sort=${rng.pick(['name', 'messages', '__proto__', 'constructor', 'a.b', '', 'x'.repeat(300)])}`, `sort_reverse=${rng.pick(['true', 'false', 'x'])}`);
        break;
      case 2:
        parts.push(`page=${rng.pick(['1', '0', '-1', '1e9', 'x', '9999999999999999999'])}`, `page_size=${rng.pick(['1', '100', '0', '-5', '100000', 'NaN'])}`);
        break;
      case 3:
        parts.push(`name=${encodeURIComponent(rng.pick(['q', '^f', '.*', '[', '(', '\\', 'x'.repeat(200), ...(ctx.skip.has('mgmt-regex-redos') ? [] : ['(x+)+y', '(x|x)*y'])]))}`, `use_regex=${rng.pick(['true', 'false'])}`);
        break;
      case 4:
        parts.push(`msg_rates_age=${rng.pick(['60', '-1', '1e12', 'x'])}`, `msg_rates_incr=${rng.pick(['5', '0', '-1', '0.0001'])}`);
        break;
      case 5:
        parts.push(rng.pick(['disable_stats=true', 'enable_queue_totals=true', 'pagination=true', 'download=x.json', 'download=../../x']));
        break;
      case 6:
        parts.push(rng.pick(['%', '%zz=1', 'a=%ED%A0%80', '=', '&&&', 'a[]=1&a[]=2', '__proto__=1', 'columns', 'sort']));
        break;
      default:
        parts.push(`${rng.word(rng.range(1, 8))}=${rng.word(rng.range(0, 12))}`);
    }
  }
  return parts.length === 0 ? '' : `?${parts.join('&')}`;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Deeply nested JSON as text (JSON.stringify of such an object would itself overflow the stack). */
function deepJson(rng: Rng, depth: number): string {
  const arr = rng.chance(0.5);
  return arr ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
}

function hostileValue(rng: Rng, depth: number, ns: string): Json {
  switch (rng.int(12)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -1, 1.5, 2 ** 53 + 2, -(2 ** 63), 1e308, 255, 256, 65536]);
    case 3:
      return rng.pick(['', 'x'.repeat(rng.range(256, 2000)), '\u0000', '\ud800', '.*', '(a+)+$', `${ns}-q1`, 'true', '1']);
    case 4:
    case 5: {
      if (depth <= 0) return [];
      return Array.from({ length: rng.int(4) }, () => hostileValue(rng, depth - 1, ns));
    }
    case 6: {
      const o: { [k: string]: Json } = {};
      Object.defineProperty(o, '__proto__', { value: { polluted: true }, enumerable: true, writable: true, configurable: true });
      return o;
    }
    default: {
      if (depth <= 0) return {};
      const o: { [k: string]: Json } = {};
      const n = rng.int(4);
      for (let i = 0; i < n; i++) o[rng.pick(['a', 'x-match', 'content_type', 'length', 'toString', 'constructor', 'prototype', `k${i}`])] = hostileValue(rng, depth - 1, ns);
      return o;
    }
  }
}

function headersTable(rng: Rng, ns: string): Json {
  const o: { [k: string]: Json } = {};
  const n = rng.int(5);
  for (let i = 0; i < n; i++) o[rng.chance(0.05) ? 'h'.repeat(300) : `h${i}`] = hostileValue(rng, 4, ns);
  return o;
}

/** A body for a route: mostly the shape it expects, with hostile values; sometimes any shape at all. */
function body(rng: Rng, method: string, route: string, ns: string): string | Buffer | undefined {
  if (method === 'GET' || method === 'HEAD' || (method === 'DELETE' && rng.chance(0.9))) return undefined;
  const r = rng.int(20);
  if (r === 0) return deepJson(rng, rng.chance(0.5) ? rng.range(65, 500) : rng.range(5000, 100_000));
  if (r === 1) return rng.pick(['{', '[1,', '{"a":1}{"b":2}', 'null', '"x"', '1e999', '{"a":NaN}', '', ' ', '\u0000']);
  if (r === 2) return Buffer.concat([Buffer.from('{"name":"'), INVALID_UTF8[rng.int(INVALID_UTF8.length)]!, Buffer.from('"}')]);
  if (r === 3) return JSON.stringify(hostileValue(rng, 6, ns));
  let b: Json;
  if (route.endsWith('/publish')) {
    const props: { [k: string]: Json } = {};
    if (rng.chance(0.5)) props['headers'] = rng.chance(0.1) ? JSON.parse(`{"d":${deepJson(rng, rng.range(60, 130)).replace(/^\[+\]+$/, '{}')}}`) as Json : headersTable(rng, ns);
    if (rng.chance(0.3)) props['content_type'] = hostileValue(rng, 1, ns);
    if (rng.chance(0.3)) props['delivery_mode'] = rng.pick([1, 2, 0, 3, '2', null]);
    if (rng.chance(0.2)) props['expiration'] = rng.pick(['100', '-1', 100, 'x']);
    if (rng.chance(0.2)) props['priority'] = rng.pick([0, 9, 300, -1]);
    if (rng.chance(0.2)) props[rng.pick(['correlation_id', 'reply_to', 'message_id', 'type', 'app_id', 'user_id'])] = rng.chance(0.3) ? 'x'.repeat(rng.range(256, 400)) : 'v';
    b = {
      properties: props,
      routing_key: rng.pick([`${ns}-q${rng.int(3)}`, `${ns}.k.${rng.int(3)}`, '', 5]),
      payload: rng.chance(0.9) ? rng.word(rng.size(2000)) : hostileValue(rng, 2, ns),
      payload_encoding: rng.pick(['string', 'base64', 'x', 5]),
    };
  } else if (route.includes('/queues/') && route.endsWith('/get')) {
    b = { count: rng.pick([1, 0, -1, 1e9, 'x']), ackmode: rng.pick(['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'x']), encoding: rng.pick(['auto', 'base64', 'x']), truncate: rng.pick([50000, 0, -1, null]) };
  } else if (route.startsWith('/api/queues/')) {
    b = { durable: rng.pick([true, false, 'yes']), auto_delete: rng.chance(0.2), arguments: rng.chance(0.7) ? { [rng.pick(['x-message-ttl', 'x-max-length', 'x-queue-type', 'x-dead-letter-exchange', 'x-expires'])]: hostileValue(rng, 1, ns) } : hostileValue(rng, 3, ns) };
  } else if (route.startsWith('/api/exchanges/')) {
    b = { type: rng.pick(['direct', 'topic', 'fanout', 'headers', 'x-bogus', 5, null]), durable: rng.chance(0.5), internal: rng.chance(0.1), arguments: hostileValue(rng, 2, ns) };
  } else if (route.startsWith('/api/bindings/')) {
    b = { routing_key: rng.pick([`${ns}.#`, '', 'x'.repeat(300), 5]), arguments: hostileValue(rng, 3, ns) };
  } else if (route.startsWith('/api/users/bulk-delete')) {
    b = { users: [`${ns}-u0`, `${ns}-u1`, 5, null] };
  } else if (route.startsWith('/api/users/')) {
    b = { password: rng.pick(['p', '', 5, null]), tags: rng.pick(['administrator', 'management,monitoring', '', ['a', 'b'], 5]) };
  } else if (route.startsWith('/api/permissions/') || route.startsWith('/api/topic-permissions/')) {
    const re = (): Json => rng.pick(['.*', '', `^${ns}`, '(a+)+$', '[', '{client_id}', '^{username}-.*', 5]);
    b = { configure: re(), write: re(), read: re(), exchange: rng.pick(['amq.topic', '', 5]) };
  } else if (route.startsWith('/api/policies/')) {
    b = { pattern: rng.pick([`^${ns}`, `^${ns}-q1$`, `^${ns}(a+)+$`]), 'apply-to': rng.pick(['queues', 'exchanges', 'all', 'x']), priority: rng.pick([0, 1, -1, 'x']), definition: rng.chance(0.7) ? { [rng.pick(['max-length', 'message-ttl', 'dead-letter-exchange', 'expires', 'queue-mode', 'x'])]: hostileValue(rng, 1, ns) } : hostileValue(rng, 3, ns) };
  } else if (route.startsWith('/api/vhosts/')) {
    b = { description: hostileValue(rng, 1, ns), tags: hostileValue(rng, 1, ns), default_queue_type: rng.pick(['classic', 'x']) };
  } else if (route.startsWith('/api/definitions')) {
    b = {
      queues: [{ name: `${ns}-q${rng.int(3)}`, vhost: rng.pick(['/', `${ns}-v0`, 5]), durable: rng.chance(0.5), auto_delete: false, arguments: hostileValue(rng, 2, ns) }, hostileValue(rng, 2, ns)],
      exchanges: [{ name: `${ns}-x${rng.int(3)}`, vhost: '/', type: rng.pick(['topic', 'x']), durable: true, arguments: {} }],
      bindings: [{ source: `${ns}-x0`, vhost: '/', destination: `${ns}-q0`, destination_type: rng.pick(['queue', 'exchange', 'x']), routing_key: '#', arguments: hostileValue(rng, 2, ns) }],
      users: [{ name: `${ns}-u${rng.int(2)}`, password_hash: rng.pick(['', 'x', 5]), hashing_algorithm: rng.pick(['rabbit_password_hashing_sha256', 'x']), tags: rng.pick(['', ['a'], 5]) }],
      vhosts: [{ name: `${ns}-v${rng.int(2)}` }, hostileValue(rng, 1, ns)],
      permissions: [{ user: `${ns}-u0`, vhost: '/', configure: '.*', write: '.*', read: '.*' }],
      policies: [{ vhost: '/', name: `${ns}-p`, pattern: `^${ns}`, definition: hostileValue(rng, 2, ns), priority: 0, 'apply-to': 'queues' }],
      ...(rng.chance(0.3) ? { [rng.pick(['parameters', 'global_parameters', 'topic_permissions', 'rabbit_version'])]: hostileValue(rng, 3, ns) } : {}),
    };
  } else b = hostileValue(rng, 4, ns);
  return JSON.stringify(b);
}

function request(rng: Rng, ctx: TargetContext, s: Session, last: boolean): void {
  const ns = ctx.ns;
  const [routeMethod, route] = rng.pick(ROUTES);
  const method = rng.chance(0.9) ? routeMethod : rng.pick(METHODS);
  const path = route.replace(/:([a-z]+)/g, (_m, name: string) => param(rng, name, method, route, ctx));
  const target = rng.chance(0.02) ? `http://127.0.0.1${path}` : rng.chance(0.01) ? '*' : path + query(rng, ctx);
  const b = body(rng, method, route, ns);
  const bytes = b === undefined ? undefined : typeof b === 'string' ? Buffer.from(b) : b;
  const eol = '\r\n';
  const lines = [`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1'];
  const a = rng.int(20);
  if (a > 2) lines.push(`Authorization: ${AUTH_GUEST}`);
  else if (a === 1) lines.push(`Authorization: Basic ${Buffer.from(rng.pick(['guest:bad', 'guest', ':', 'x'.repeat(5000)])).toString('base64')}`);
  else if (a === 2) lines.push(`Authorization: ${rng.pick(['Bearer x', 'Basic %%%', 'Basic', 'Digest a=b'])}`);
  if (bytes) lines.push(`Content-Type: ${rng.chance(0.9) ? 'application/json' : rng.pick(['text/plain', 'application/x-www-form-urlencoded', ''])}`);
  const lengths: LengthField[] = [];
  let head = lines.join(eol) + eol;
  let payload = bytes ?? Buffer.alloc(0);
  if (bytes) {
    if (rng.chance(0.1)) {
      // chunked, with a chunk size that may lie
      head += `Transfer-Encoding: chunked${eol}`;
      const size = rng.chance(0.8) ? bytes.length.toString(16) : rng.pick(['ffffffffffff', '-1', 'zz', '0']);
      payload = Buffer.concat([Buffer.from(`${size}${eol}`), bytes, Buffer.from(`${eol}0${eol}${eol}`)]);
    } else {
      const cl = String(bytes.length);
      lengths.push({ offset: Buffer.byteLength(head) + 'Content-Length: '.length, width: cl.length, kind: 'ascii' });
      head += `Content-Length: ${cl}${eol}`;
    }
  }
  if (rng.chance(0.05)) head += `X-Big: ${'b'.repeat(rng.range(8000, 20000))}${eol}`;
  if (rng.chance(0.05)) head += `Expect: 100-continue${eol}`;
  if (last && rng.chance(0.7)) head += `Connection: close${eol}`;
  head += eol;
  s.add(Buffer.concat([Buffer.from(head), payload]), lengths);
}

export function httpSession(rng: Rng, ctx: TargetContext): Session {
  const s = new Session();
  const n = rng.chance(0.8) ? 1 : rng.range(2, 4); // keep-alive: several requests on one connection
  for (let i = 0; i < n; i++) request(rng, ctx, s, i === n - 1);
  return s;
}

export const httpTarget: Target = {
  name: 'http',
  generate(rng: Rng, ctx: TargetContext): FuzzCase {
    const session = httpSession(rng, ctx);
    const chunks = rng.chance(0.25) ? mutate(rng, session, { other: () => httpSession(rng, ctx), text: true }) : session.parts.map((p) => p.bytes);
    return { kind: 'raw', port: 'http', chunks, awaitReply: false, end: rng.chance(0.8) ? 'linger' : rng.pick(['end', 'reset', 'now'] as const), note: `http: ${session.parts.length} request(s), first: ${session.parts[0]?.bytes.subarray(0, 80).toString('latin1').split('\r\n')[0] ?? ''}` };
  },
};
