import { REPLY_TO_PREFIX, REPLY_TO_QUEUE, type CoreChannel, type Delivery, type DeliverySink, type MessageProperties } from '../../src/core/index.js';
import { Header } from './constants.js';
import type { OutboundFlow } from './outbound.js';

/*
 * Direct reply-to for MQTT 5 (RabbitMQ's `amq.rabbitmq.reply-to`, which RabbitMQ offers AMQP
 * clients): a PUBLISH whose Response Topic is `amq.rabbitmq.reply-to` makes the session a
 * requester. Its AMQP `reply-to` becomes the session's reply address
 * `amq.rabbitmq.reply-to.<token>`; a reply published there (AMQP: default exchange; MQTT: topic
 * `amq/rabbitmq/reply-to/<token>`) reaches the client as a QoS 0 PUBLISH on topic
 * `amq.rabbitmq.reply-to`, with no queue in between.
 */

/** The sink of a session's direct reply-to consumer: every reply is a QoS 0 PUBLISH. */
class ReplySink implements DeliverySink {
  constructor(private readonly out: OutboundFlow) {}

  get congested(): boolean {
    return false;
  }

  deliver(d: Delivery): void {
    const m = d.message;
    this.out.writePublish(REPLY_TO_QUEUE, m.body, m.properties, 0, 0, false, false, undefined, 0);
  }
}

/**
 * A request naming Response Topic `amq.rabbitmq.reply-to`: the channel starts consuming its
 * replies (once), and the AMQP properties carry `reply-to: amq.rabbitmq.reply-to`, which the core
 * rewrites into the reply address. `properties` is the request's own (never a shared) object.
 */
export function requestDirectReplies(ch: CoreChannel, out: OutboundFlow, properties: MessageProperties): void {
  if (ch.replyAddress === undefined) ch.consume(REPLY_TO_QUEUE, { consumerTag: REPLY_TO_QUEUE, noAck: true }, new ReplySink(out));
  properties.replyTo = REPLY_TO_QUEUE;
  if (properties.headers !== undefined) delete properties.headers[Header.REPLY_TO_TOPIC];
}

/** Whether a PUBLISH's routing key is a direct reply address (published to the default exchange, not amq.topic). */
export function isReplyAddress(routingKey: string): boolean {
  return routingKey.startsWith(REPLY_TO_PREFIX);
}
