import { REPLY_TO_QUEUE } from '../../src/core/index.js';
import { StompError } from './errors.js';

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

function invalid(kind: string, rest: string): StompError {
  return new StompError('Invalid destination', `'${rest}' is not a valid ${kind} destination`);
}

/** One non-empty segment, else an invalid-destination error. */
function single(kind: string, parts: string[], from: number, original: string): string {
  if (parts.length !== from + 1 || parts[from] === '') throw invalid(kind, original);
  return unescapeName(parts[from]!);
}

/** Parses a `destination` (or `reply-to`) header. Throws StompError for unknown or malformed ones. */
export function parseDestination(dest: string): Destination {
  const parts = dest.split('/');
  if (parts.length === 1) {
    if (dest === '') throw new StompError('Invalid destination', 'Destination cannot be blank');
    return { kind: 'queue', name: unescapeName(dest) };
  }
  if (parts[0] === '') {
    switch (parts[1]) {
      case 'queue':
        return { kind: 'queue', name: single('queue', parts, 2, dest) };
      case 'topic':
        return { kind: 'topic', key: single('topic', parts, 2, dest) };
      case 'temp-queue':
        return { kind: 'temp-queue', name: single('temp-queue', parts, 2, dest) };
      case 'exchange': {
        const name = parts[2];
        if (name === undefined || name === '' || parts.length > 4) throw invalid('exchange', dest);
        const key = parts[3];
        return { kind: 'exchange', exchange: unescapeName(name), key: key === undefined ? undefined : unescapeName(key) };
      }
      case 'amq':
        if (parts[2] === 'queue') return { kind: 'amqqueue', name: single('amq/queue', parts, 3, dest) };
        break;
      case 'reply-queue': {
        // Reply queue names may contain slashes: everything after the prefix is the name.
        const name = dest.slice('/reply-queue/'.length);
        if (parts.length < 3 || name === '') throw invalid('reply-queue', dest);
        return { kind: 'reply-queue', name };
      }
      default:
        break;
    }
  }
  throw new StompError(
    'Unknown destination',
    `'${dest}' is not a valid destination. Valid destination types are: ${DESTINATION_PREFIXES.join(', ')}.`,
  );
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
