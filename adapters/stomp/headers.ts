import { OVERFLOW_HEADERS, propertyText, scalarText, setHeader, type FieldTable, type MessageProperties, type OverflowProperty } from '../../src/core/index.js';
import { Escaping } from './codec/constants.js';
import { escapeHeader } from './codec/escape.js';
import { replyToHeader } from './destination.js';
import { STOMP_ERRORS } from './errors.js';

/**
 * MESSAGE headers the server writes itself. A header of the same name in the message (from a
 * STOMP SEND, an AMQP headers table or MQTT user properties) never reaches the subscriber.
 */
export const SERVER_OWNED: ReadonlySet<string> = new Set(['subscription', 'destination', 'message-id', 'redelivered', 'ack', 'content-length']);

/** STOMP headers that map onto AMQP basic properties (RabbitMQ `rabbit_stomp_util`). */
export const PROPERTY_HEADERS: ReadonlySet<string> = new Set([
  'content-type',
  'content-encoding',
  'persistent',
  'priority',
  'correlation-id',
  'reply-to',
  'expiration',
  'amqp-message-id',
  'timestamp',
  'type',
  'user-id',
  'app-id',
]);

/** Headers a SEND may not carry (RabbitMQ's list): refused before anything else is looked at. */
export const HEADERS_NOT_ON_SEND: readonly string[] = ['message-id'];

/** SEND headers that steer the frame and are not part of the message. */
const CONTROL_HEADERS: ReadonlySet<string> = new Set(['destination', 'content-length', 'receipt', 'transaction']);

function intHeader(name: string, v: string, min: number, max: number): number {
  const s = v.trim();
  const n = Number(s);
  if (s === '' || !/^-?[0-9]+$/.test(s) || n < min || n > max) {
    throw STOMP_ERRORS.invalidHeader(name, `must be an integer between ${min} and ${max}, got '${v}'`);
  }
  return n;
}

/** `true`/`false` as RabbitMQ reads them; anything else is "not given". */
export function booleanHeader(v: string | undefined): boolean | undefined {
  if (v === 'true' || v === 'True') return true;
  if (v === 'false' || v === 'False') return false;
  return undefined;
}

/**
 * The AMQP properties of a SEND: the mapped headers become properties, every other header goes
 * into the headers table as a string. `replyTo` replaces the `reply-to` header (temp queues).
 */
export function propertiesFromSend(headers: ReadonlyMap<string, string>, replyTo: string | undefined): MessageProperties {
  const p: MessageProperties = {};
  let table: FieldTable | undefined;
  for (const [k, v] of headers) {
    switch (k) {
      case 'content-type':
        p.contentType = v;
        break;
      case 'content-encoding':
        p.contentEncoding = v;
        break;
      case 'persistent':
        if (booleanHeader(v) === true) p.deliveryMode = 2;
        break;
      case 'priority':
        p.priority = intHeader(k, v, 0, 255);
        break;
      case 'correlation-id':
        p.correlationId = v;
        break;
      case 'reply-to':
        p.replyTo = replyTo ?? v;
        break;
      case 'expiration':
        p.expiration = v;
        break;
      case 'amqp-message-id':
        p.messageId = v;
        break;
      case 'timestamp':
        p.timestamp = intHeader(k, v, 0, Number.MAX_SAFE_INTEGER);
        break;
      case 'type':
        p.type = v;
        break;
      case 'user-id':
        p.userId = v;
        break;
      case 'app-id':
        p.appId = v;
        break;
      case 'message-id':
        throw STOMP_ERRORS.notAllowedOnSend(k);
      case 'x-delay':
        // Kept as a number: the delay (ms) before the message is routed, as on a delayed exchange.
        (table ??= {})[k] = intHeader(k, v, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
        break;
      default:
        if (CONTROL_HEADERS.has(k)) break;
        setHeader((table ??= {}), k, v);
    }
  }
  if (table !== undefined) p.headers = table;
  return p;
}

/**
 * The header lines (escaped, each ending in LF) that carry a message's AMQP properties and custom
 * headers on a MESSAGE. Server-owned names and property names in the headers table are skipped so
 * that a publisher cannot forge them.
 */
export function propertyLines(p: MessageProperties, esc: Escaping): string {
  const h = p.headers;
  // A value too long for its AMQP property waits in an overflow header (the core's policy): it
  // comes back under its STOMP name.
  const over = h !== undefined;
  let out = '';
  const contentType = over ? propertyText(p, 'contentType') : p.contentType;
  if (contentType !== undefined) out += line('content-type', contentType, esc);
  const contentEncoding = over ? propertyText(p, 'contentEncoding') : p.contentEncoding;
  if (contentEncoding !== undefined) out += line('content-encoding', contentEncoding, esc);
  if (p.deliveryMode === 2) out += 'persistent:true\n';
  if (p.priority !== undefined) out += `priority:${p.priority}\n`;
  const correlationId = over ? propertyText(p, 'correlationId') : p.correlationId;
  if (correlationId !== undefined) out += line('correlation-id', correlationId, esc);
  const replyTo = over ? propertyText(p, 'replyTo') : p.replyTo;
  if (replyTo !== undefined) out += line('reply-to', replyToHeader(replyTo), esc);
  if (p.expiration !== undefined) out += line('expiration', p.expiration, esc);
  const messageId = over ? propertyText(p, 'messageId') : p.messageId;
  if (messageId !== undefined) out += line('amqp-message-id', messageId, esc);
  if (p.timestamp !== undefined) out += `timestamp:${p.timestamp}\n`;
  const type = over ? propertyText(p, 'type') : p.type;
  if (type !== undefined) out += line('type', type, esc);
  if (p.userId !== undefined) out += line('user-id', p.userId, esc);
  const appId = over ? propertyText(p, 'appId') : p.appId;
  if (appId !== undefined) out += line('app-id', appId, esc);
  if (h !== undefined) {
    for (const k in h) {
      if (!hasOwn.call(h, k) || SERVER_OWNED.has(k) || PROPERTY_HEADERS.has(k) || k === '') continue;
      const prop = OVERFLOW_NAMES.get(k);
      if (prop !== undefined && p[prop] === undefined && propertyText(p, prop) !== undefined) continue; // shown under its STOMP name above
      const v = scalarText(h[k]); // values STOMP cannot show are skipped
      if (v === undefined) continue;
      // STOMP 1.0 cannot escape a colon in a name.
      if (esc === Escaping.NONE && k.indexOf(':') !== -1) continue;
      out += line(k, v, esc);
    }
  }
  return out;
}

const hasOwn = Object.prototype.hasOwnProperty;

/** Overflow header -> the property it stands for, for the properties STOMP has a header for. */
const OVERFLOW_NAMES: ReadonlyMap<string, OverflowProperty> = new Map(
  (['contentType', 'contentEncoding', 'correlationId', 'replyTo', 'messageId', 'type', 'appId'] as const).map((k) => [OVERFLOW_HEADERS[k], k]),
);

function line(k: string, v: string, esc: Escaping): string {
  return `${escapeHeader(k, esc)}:${escapeHeader(v, esc)}\n`;
}

const INT_ARGS: ReadonlySet<string> = new Set([
  'x-expires',
  'x-max-length',
  'x-max-length-bytes',
  'x-max-priority',
  'x-message-ttl',
  'x-delivery-limit',
  'x-consumer-timeout',
  'x-requeue-delay',
  'x-requeue-delay-max',
  'x-stream-max-segment-size-bytes',
  'x-stream-filter-size-bytes',
]);
const STRING_ARGS: ReadonlySet<string> = new Set([
  'x-dead-letter-exchange',
  'x-dead-letter-routing-key',
  'x-max-age',
  'x-queue-type',
  'x-overflow',
  'x-queue-mode',
]);
const BOOLEAN_ARGS: ReadonlySet<string> = new Set(['x-single-active-consumer']);

/** Queue arguments given as `x-*` headers on SUBSCRIBE (and SEND to `/queue/`), typed as RabbitMQ does. */
export function queueArguments(headers: ReadonlyMap<string, string>): FieldTable {
  const args: FieldTable = {};
  for (const [k, v] of headers) {
    if (k.charCodeAt(0) !== 0x78 || k.charCodeAt(1) !== 0x2d) continue; // 'x-'
    if (INT_ARGS.has(k)) args[k] = intHeader(k, v, 0, Number.MAX_SAFE_INTEGER);
    else if (STRING_ARGS.has(k)) args[k] = v.trim();
    else if (BOOLEAN_ARGS.has(k)) {
      const b = booleanHeader(v.trim());
      if (b === undefined) throw STOMP_ERRORS.invalidHeader(k, `must be true or false, got '${v}'`);
      args[k] = b;
    }
  }
  return args;
}
