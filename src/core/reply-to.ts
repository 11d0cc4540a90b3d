import { randomBytes } from 'node:crypto';
import type { CoreChannel } from './channel.js';
import type { DeliverySink } from './types.js';

/** The pseudo-queue a requester consumes (no-ack) and names in `reply-to` (RabbitMQ's direct reply-to). */
export const REPLY_TO_QUEUE = 'amq.rabbitmq.reply-to';
/** What a rewritten `reply-to` starts with; the rest is the token of one requester. */
export const REPLY_TO_PREFIX = 'amq.rabbitmq.reply-to.';

/** Who receives the replies sent to one token: one channel's direct reply-to consumer. */
export interface ReplyTarget {
  readonly token: string;
  readonly consumerTag: string;
  readonly sink: DeliverySink;
  /** The requester's channel: it numbers the deliveries. */
  readonly channel: CoreChannel;
}

/**
 * A token: 144 random bits (base64url, no `.`), and on a cluster node `.` and the node's name
 * (base64url of its UTF-8), so that a reply published on any node finds the requester's node.
 */
export function replyToken(random: string, node: string | undefined): string {
  return node === undefined ? random : `${random}.${Buffer.from(node, 'utf8').toString('base64url')}`;
}

function isBase64url(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    const ok = (c >= 48 && c <= 57) || (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 45 || c === 95;
    if (!ok) return false;
  }
  return true;
}

/** The node a reply address (`amq.rabbitmq.reply-to.<token>`) or a token names; undefined when it names none. */
export function replyNode(addressOrToken: string): string | undefined {
  const token = addressOrToken.startsWith(REPLY_TO_PREFIX) ? addressOrToken.slice(REPLY_TO_PREFIX.length) : addressOrToken;
  // Parsed by hand, not by a regular expression: the routing key is the client's text.
  const dot = token.indexOf('.');
  if (dot <= 0 || dot === token.length - 1 || token.indexOf('.', dot + 1) !== -1) return undefined;
  const tag = token.slice(dot + 1);
  const node = Buffer.from(tag, 'base64url').toString('utf8');
  // Only what a node wrote: its name encodes back to the same tag (and the random part is base64url).
  if (Buffer.from(node, 'utf8').toString('base64url') !== tag || !isBase64url(token, 0, dot)) return undefined;
  return node;
}

/**
 * The direct reply-to registry of one vhost: token -> consumer. Replies go straight from the
 * responder's publish to the requester's sink: no queue, no buffer, no persistence, at most once.
 * A token is 144 random bits (not guessable), made when the consumer registers; it dies with it.
 */
export class DirectReplyTo {
  /** By reply address (`amq.rabbitmq.reply-to.<token>`): a reply's routing key is looked up as it is. */
  private readonly targets = new Map<string, ReplyTarget>();

  /** @param node This node's name in a cluster, named in every token (none: a single node). */
  constructor(private readonly node: () => string | undefined = () => undefined) {}

  /** A fresh token, unknown to this registry. */
  newToken(): string {
    for (;;) {
      const t = replyToken(randomBytes(18).toString('base64url'), this.node());
      if (!this.targets.has(REPLY_TO_PREFIX + t)) return t;
    }
  }

  add(target: ReplyTarget): void {
    this.targets.set(REPLY_TO_PREFIX + target.token, target);
  }

  remove(target: ReplyTarget): void {
    const address = REPLY_TO_PREFIX + target.token;
    if (this.targets.get(address) === target) this.targets.delete(address);
  }

  /** The consumer behind a routing key `amq.rabbitmq.reply-to.<token>`, if it is still there. */
  lookup(routingKey: string): ReplyTarget | undefined {
    return this.targets.get(routingKey);
  }

  /** Whether a queue name is the pseudo-queue or a live reply address (passive declare answers 1 consumer). */
  exists(name: string): boolean {
    return name === REPLY_TO_QUEUE || this.lookup(name) !== undefined;
  }

  get size(): number {
    return this.targets.size;
  }
}
