/**
 * MQTT topics and filters, and their AMQP forms (RabbitMQ's mapping): a topic becomes a routing
 * key on `amq.topic` by turning every `/` into `.`; a filter becomes a binding key the same way with
 * `+` -> `*` (`#` stays). Levels that contain `.` therefore collide with level boundaries (`a.b`
 * and `a/b` are the same routing key), exactly as in RabbitMQ.
 */
import { MAX_TOPIC_LENGTH, Reason } from './constants.js';

/** Recently translated topics: publishers repeat theirs, and a lookup is cheaper than a new string. */
const routingKeys = new Map<string, string>();
const ROUTING_KEY_CACHE = 4096;

/** `a/b/c` -> `a.b.c`, through the cache of recent topics (for publishers). */
export function topicToRoutingKey(topic: string): string {
  let key = routingKeys.get(topic);
  if (key === undefined) {
    key = routingKeyOf(topic);
    if (routingKeys.size >= ROUTING_KEY_CACHE) routingKeys.clear();
    routingKeys.set(topic, key);
  }
  return key;
}

/** `a/b/c` -> `a.b.c`, without the cache (a topic seen once, such as a will's). */
export function routingKeyOf(topic: string): string {
  return topic.includes('/') ? topic.replaceAll('/', '.') : topic;
}

/** `a.b.c` -> `a/b/c`. */
export function routingKeyToTopic(routingKey: string): string {
  return routingKey.includes('.') ? routingKey.replaceAll('.', '/') : routingKey;
}

/** `a/+/#` -> `a.*.#`. */
export function filterToBindingKey(filter: string): string {
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) if (levels[i] === '+') levels[i] = '*';
  return levels.join('.');
}

/** `a.*.#` -> `a/+/#` (the inverse of {@link filterToBindingKey}). */
export function bindingKeyToFilter(bindingKey: string): string {
  const words = bindingKey.split('.');
  for (let i = 0; i < words.length; i++) if (words[i] === '*') words[i] = '+';
  return words.join('/');
}

function byteLengthOver(s: string, max: number): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes: short strings need no count.
  return s.length * 3 > max && Buffer.byteLength(s) > max;
}

const WILDCARD_OR_NUL = /[+#\u0000]/;

/**
 * Why a topic name cannot be published to, as an MQTT 5 reason code with a text, or undefined when
 * it is valid. Invalid UTF-8 is detected on the raw bytes, before the string exists.
 */
export function checkTopicName(topic: string): { reason: number; text: string } | undefined {
  if (topic.length === 0) return { reason: Reason.TOPIC_NAME_INVALID, text: 'empty topic name' };
  if (WILDCARD_OR_NUL.test(topic)) {
    // [MQTT-3.3.2-2] no wildcards in a topic name; [MQTT-4.7.3-2] no U+0000.
    return { reason: Reason.TOPIC_NAME_INVALID, text: `invalid topic name '${printable(topic)}'` };
  }
  if (byteLengthOver(topic, MAX_TOPIC_LENGTH)) {
    return { reason: Reason.TOPIC_NAME_INVALID, text: `topic name longer than ${MAX_TOPIC_LENGTH} bytes` };
  }
  return undefined;
}

/** A SUBSCRIBE / UNSUBSCRIBE topic filter, validated and translated. */
export interface ParsedFilter {
  /** The filter as the client wrote it (with any `$share/<group>/` prefix). */
  readonly raw: string;
  /** The filter without the shared-subscription prefix. */
  readonly filter: string;
  /** `$share/<group>/...`: the group name; undefined for an ordinary subscription. */
  readonly group: string | undefined;
  /** AMQP binding key on `amq.topic`. */
  readonly bindingKey: string;
  /** The binding key's words: split at the first delivery that needs them (see filterWords). */
  words: readonly string[] | undefined;
}

/** The binding key's words of `f`, split once: an idle subscription keeps no array. */
export function filterWords(f: ParsedFilter): readonly string[] {
  return (f.words ??= f.bindingKey.split('.'));
}

/** Parses a filter; returns an error text when it is invalid ([MQTT-4.7.1-1..3], [MQTT-4.8.2-1/2]). */
export function parseFilter(raw: string): ParsedFilter | string {
  let filter = raw;
  let group: string | undefined;
  if (raw.startsWith('$share/')) {
    const slash = raw.indexOf('/', 7);
    if (slash < 0) return `shared subscription '${printable(raw)}' has no topic filter`;
    group = raw.slice(7, slash);
    filter = raw.slice(slash + 1);
    if (group.length === 0 || /[+#]/.test(group)) return `invalid share name in '${printable(raw)}'`;
  }
  const err = checkFilter(filter);
  if (err !== undefined) return err;
  return { raw, filter, group, bindingKey: filterToBindingKey(filter), words: undefined };
}

function checkFilter(filter: string): string | undefined {
  if (filter.length === 0) return 'empty topic filter';
  if (filter.includes('\u0000')) return 'topic filter contains U+0000';
  if (byteLengthOver(filter, MAX_TOPIC_LENGTH)) return `topic filter longer than ${MAX_TOPIC_LENGTH} bytes`;
  if (!filter.includes('+') && !filter.includes('#')) return undefined;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l === '#') {
      if (i !== levels.length - 1) return `'#' must be the last level in '${printable(filter)}'`;
    } else if (l !== '+' && (l.includes('+') || l.includes('#'))) {
      return `wildcards must occupy a whole level in '${printable(filter)}'`;
    }
  }
  return undefined;
}

/**
 * Whether a pattern (words of a binding key or filter, with `single` as the one-level wildcard and
 * `#` as the multi-level one) matches the words of a topic. `#` also matches the parent level
 * (`a/#` matches `a`), as in both MQTT and AMQP. A topic whose first level starts with `$` is not
 * matched by a pattern that starts with a wildcard [MQTT-4.7.2-1].
 */
export function matchWords(pattern: readonly string[], words: readonly string[], single: string): boolean {
  if (words.length > 0 && words[0]!.startsWith('$')) {
    const first = pattern[0];
    if (first === single || first === '#') return false;
  }
  return matchFrom(pattern, 0, words, 0, single);
}

function matchFrom(p: readonly string[], i: number, w: readonly string[], j: number, single: string): boolean {
  while (i < p.length) {
    const pw = p[i]!;
    if (pw === '#') {
      if (i === p.length - 1) return true;
      for (let k = j; k <= w.length; k++) if (matchFrom(p, i + 1, w, k, single)) return true;
      return false;
    }
    if (j >= w.length) return false;
    if (pw !== single && pw !== w[j]) return false;
    i++;
    j++;
  }
  return j === w.length;
}

/** Whether an MQTT filter (without `$share`) matches an MQTT topic name. */
export function filterMatches(filter: string, topic: string): boolean {
  return matchWords(filter.split('/'), topic.split('/'), '+');
}

/** A topic or filter as it goes into a log line or reason string: bounded, control characters escaped. */
export function printable(s: string): string {
  const t = s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return t.length > 100 ? `${t.slice(0, 100)}...` : t;
}

const DELAYED_PREFIX = '$delayed/';
/** EMQX's largest delay interval, in seconds. */
export const MAX_DELAY_SECONDS = 4294967;

/**
 * A delayed publish, EMQX's form `$delayed/<seconds>/<topic>`: the real topic and the delay in ms.
 * Undefined for any other topic; an error text when the interval or the topic is invalid.
 */
export function parseDelayedTopic(topic: string): { topic: string; delayMs: number } | string | undefined {
  if (!topic.startsWith(DELAYED_PREFIX)) return undefined;
  const slash = topic.indexOf('/', DELAYED_PREFIX.length);
  const interval = slash < 0 ? '' : topic.slice(DELAYED_PREFIX.length, slash);
  if (!/^[0-9]{1,10}$/.test(interval) || Number(interval) > MAX_DELAY_SECONDS) {
    return `invalid delay interval in '${printable(topic)}' (whole seconds up to ${MAX_DELAY_SECONDS})`;
  }
  const real = topic.slice(slash + 1);
  if (real.length === 0) return `no topic after the delay interval in '${printable(topic)}'`;
  return { topic: real, delayMs: Number(interval) * 1000 };
}
