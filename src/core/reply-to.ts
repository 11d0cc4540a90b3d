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
 * The direct reply-to registry of one vhost: token -> consumer. Replies go straight from the
 * responder's publish to the requester's sink: no queue, no buffer, no persistence, at most once.
 * A token is 144 random bits (not guessable), made when the consumer registers; it dies with it.
 */
export class DirectReplyTo {
  /** By reply address (`amq.rabbitmq.reply-to.<token>`): a reply's routing key is looked up as it is. */
  private readonly targets = new Map<string, ReplyTarget>();

  /** A fresh token, unknown to this registry. */
  newToken(): string {
    for (;;) {
      const t = randomBytes(18).toString('base64url');
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
