import { REPLY_TO_QUEUE } from '../../src/core/index.js';
import { STOMP_ERRORS, type StompError } from './errors.js';

/**
 * A parsed STOMP destination (DESIGN "STOMP", RabbitMQ's STOMP plugin):
 * - `/queue/<name>`: the default exchange, queue declared durable if missing;
 * - `/amq/queue/<name>`: an existing queue;
 * - `/topic/<key>`: `amq.topic`;
 * - `/exchange/<x>[/<key>]`: any exchange;
 * - `/temp-queue/<n>`: only in `reply-to`: a private reply queue per session;
 * - `/reply-queue/<q>`: how a responder addresses a temp queue.
 * A destination without a leading slash names a queue, as in RabbitMQ.
 */
export type Destination =
  | { readonly kind: 'queue'; readonly name: string }
  | { readonly kind: 'amqqueue'; readonly name: string }
  | { readonly kind: 'topic'; readonly key: string }
  | { readonly kind: 'exchange'; readonly exchange: string; readonly key: string | undefined }
  | { readonly kind: 'temp-queue'; readonly name: string }
  | { readonly kind: 'reply-queue'; readonly name: string };

export const DESTINATION_PREFIXES = ['/exchange/', '/topic/', '/queue/', '/amq/queue/', '/temp-queue/', '/reply-queue/'] as const;

/** Prefixes that mark a `reply-to` as already being a STOMP destination (RabbitMQ `dest_prefixes`). */
const REPLY_TO_PREFIXES = ['/exchange/', '/topic/', '/queue/', '/amq/queue/', '/reply-queue/'] as const;

/** `%2F` stands for `/` inside a name (the only escape RabbitMQ decodes). */
function unescapeName(s: string): string {
  return s.indexOf('%2') === -1 ? s : s.replace(/%2[Ff]/g, '/');
}

/**
 * RabbitMQ's "Invalid destination" error: `type` is its name for the kind (`queue`, `topic`,
 * `exchange`, `amqqueue`, `temp_queue`, `reply_queue`), the quoted content is what follows the
 * prefix, rebuilt from its segments (`/exchange//foo` -> `'//foo'`, `/queue` -> `''`).
 */
function invalid(type: string, parts: string[], from: number): StompError {
  const rest = parts.slice(from);
  return STOMP_ERRORS.invalidDestination(rest.length === 0 ? '' : `/${rest.join('/')}`, type);
}

/** One non-empty segment, else an invalid-destination error. */
function single(type: string, parts: string[], from: number): string {
  if (parts.length !== from + 1 || parts[from] === '') throw invalid(type, parts, from);
  return unescapeName(parts[from]!);
}

/** Parses a `destination` (or `reply-to`) header. Throws StompError for unknown or malformed ones. */
export function parseDestination(dest: string): Destination {
  const parts = dest.split('/');
  if (parts.length === 1) {
    if (dest === '') throw STOMP_ERRORS.blankDestination();
    return { kind: 'queue', name: unescapeName(dest) };
  }
  if (parts[0] === '') {
    switch (parts[1]) {
      case 'queue':
        return { kind: 'queue', name: single('queue', parts, 2) };
      case 'topic':
        return { kind: 'topic', key: single('topic', parts, 2) };
      case 'temp-queue':
        return { kind: 'temp-queue', name: single('temp_queue', parts, 2) };
      case 'exchange': {
        const name = parts[2];
        if (name === undefined || name === '' || parts.length > 4) throw invalid('exchange', parts, 2);
        const key = parts[3];
        return { kind: 'exchange', exchange: unescapeName(name), key: key === undefined ? undefined : unescapeName(key) };
      }
      case 'amq':
        if (parts[2] === 'queue') return { kind: 'amqqueue', name: single('amqqueue', parts, 3) };
        break;
      case 'reply-queue': {
        // Reply queue names may contain slashes: everything after the prefix is the name.
        const name = dest.slice('/reply-queue/'.length);
        if (parts.length < 3) break;
        if (name === '') throw STOMP_ERRORS.invalidDestination('/', 'reply_queue');
        return { kind: 'reply-queue', name };
      }
      default:
        break;
    }
  }
  throw STOMP_ERRORS.unknownDestination(dest);
}

/** Exchange and routing key a SEND to this destination publishes with. */
export function routeOf(d: Destination): { exchange: string; routingKey: string } {
  switch (d.kind) {
    case 'topic':
      return { exchange: 'amq.topic', routingKey: d.key };
    case 'exchange':
      return { exchange: d.exchange, routingKey: d.key ?? '' };
    case 'queue':
    case 'amqqueue':
    case 'reply-queue':
    case 'temp-queue':
      return { exchange: '', routingKey: d.name };
  }
}

const PLAIN = /^[\x20-\x24\x26-\x2e\x30-\x7f]*$/;

/** RabbitMQ's escaping of a name inside a MESSAGE destination: `/`, `%`, control and non-ASCII bytes. */
export function escapeName(s: string): string {
  if (PLAIN.test(s)) return s;
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    if (byte === 0x2f || byte === 0x25 || byte < 0x20 || byte > 0x7f) out += `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
    else out += String.fromCharCode(byte);
  }
  return out;
}

/**
 * The `destination` of a MESSAGE, rebuilt from where the message was published as RabbitMQ does:
 * the default exchange gives `/queue/<rk>`, `amq.topic` gives `/topic/<rk>` (so an MQTT publish to
 * `a/b` arrives as `/topic/a.b`), any other exchange `/exchange/<x>[/<rk>]`.
 */
export function formatDestination(exchange: string, routingKey: string): string {
  if (exchange === '') return `/queue/${escapeName(routingKey)}`;
  if (exchange === 'amq.topic') return `/topic/${escapeName(routingKey)}`;
  if (routingKey === '') return `/exchange/${escapeName(exchange)}`;
  return `/exchange/${escapeName(exchange)}/${escapeName(routingKey)}`;
}

/**
 * A `reply-to` property as a STOMP header: a bare queue name (an AMQP client's reply queue, or a
 * temp queue) becomes `/reply-queue/<name>` so that a STOMP responder can SEND to it.
 */
export function replyToHeader(replyTo: string): string {
  for (const p of REPLY_TO_PREFIXES) if (replyTo.startsWith(p)) return replyTo;
  return `/reply-queue/${replyTo}`;
}

/**
 * A SEND `reply-to` naming the direct reply-to pseudo-queue (`/amq/queue/amq.rabbitmq.reply-to`,
 * `/queue/amq.rabbitmq.reply-to` or the bare name) as the AMQP property the core rewrites into
 * this session's reply address; undefined for any other `reply-to`.
 */
export function directReplyTo(replyTo: string): string | undefined {
  if (!replyTo.endsWith(REPLY_TO_QUEUE)) return undefined;
  const prefix = replyTo.slice(0, replyTo.length - REPLY_TO_QUEUE.length);
  return prefix === '/amq/queue/' || prefix === '/queue/' || prefix === '' ? REPLY_TO_QUEUE : undefined;
}
