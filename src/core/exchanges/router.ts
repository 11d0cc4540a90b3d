import { BrokerError, ReplyCode } from '../errors.js';
import type { FieldTable } from '../types.js';
import type { RouteOut } from '../routing/route-set.js';
import { DirectRouter } from './direct.js';
import { FanoutRouter } from './fanout.js';
import { HeadersRouter } from './headers.js';
import { TopicRouter } from './topic.js';

/**
 * The bindings of one exchange, generic over the destination (a queue or another exchange).
 * The vhost owns exchanges and bindings and keeps one router per exchange for routing.
 */
export interface Router<T> {
  /** Adds a binding; the vhost guarantees (routingKey, args, dest) is not already bound. */
  add(routingKey: string, args: FieldTable, dest: T): void;
  /** Removes a binding previously added with equal routingKey and args (args compared by value). */
  remove(routingKey: string, args: FieldTable, dest: T): void;
  /** Adds every destination matching the message into `out` (which keeps a dest bound twice once). */
  route(routingKey: string, headers: FieldTable | undefined, out: RouteOut<T>): void;
  /** Number of bindings held. */
  readonly size: number;
}

/** The exchange types Warren implements, as named in `exchange.declare`. */
export const EXCHANGE_TYPES: readonly string[] = ['direct', 'fanout', 'topic', 'headers'];

/**
 * A router for an exchange of `type`. An unknown type is the error RabbitMQ gives on
 * `exchange.declare`: `503 COMMAND_INVALID - invalid exchange type '<type>'`.
 */
export function createRouter<T>(type: string): Router<T> {
  switch (type) {
    case 'direct':
      return new DirectRouter<T>();
    case 'fanout':
      return new FanoutRouter<T>();
    case 'topic':
      return new TopicRouter<T>();
    case 'headers':
      return new HeadersRouter<T>();
    default:
      throw new BrokerError(ReplyCode.COMMAND_INVALID, `invalid exchange type '${type}'`);
  }
}
