/**
 * The AMQP 0-9-1 publisher and consumer roles on @cloudamqp/amqp-client, the second widely used Node
 * client. It writes each publish to the socket at once (amqplib defers its writes to an immediate)
 * and parses frames in place, so it spends less of the client process per message: the latency
 * scenarios run on it as well, to tell the broker's tail from the client library's.
 */
import { AMQPClient } from '@cloudamqp/amqp-client';
import type { AMQPChannel, AMQPMessage } from '@cloudamqp/amqp-client';

import type { AmqpConsumerSpec, AmqpPublisherSpec, ConsumerDriver, OnFatal, OnMessage, PublisherDriver } from './types.js';

const CLOSE_TIMEOUT_MS = 3_000;

async function open(url: string, onFatal: OnFatal): Promise<AMQPClient> {
  const client = new AMQPClient(url);
  client.onerror = (err) => onFatal(err);
  await client.connect();
  // Nagle off, as for amqplib: the benchmark wants each broker's own batching, not the kernel's.
  client.socket?.setNoDelay(true);
  return client;
}

async function closeQuietly(client: AMQPClient): Promise<void> {
  client.onerror = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    client.close().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
}

export async function openAmqpClientPublisher(spec: AmqpPublisherSpec, onFatal: OnFatal): Promise<PublisherDriver> {
  const client = await open(spec.url, onFatal);
  const ch = await client.channel();
  const properties = spec.persistent ? { deliveryMode: 2 } : {};
  const failed = (err: unknown): void => onFatal(err instanceof Error ? err : new Error(String(err)));
  return {
    publish: (body) => {
      ch.basicPublish(spec.exchange, spec.routingKey, body, properties).catch(failed);
      return client.socket?.writableNeedDrain !== true;
    },
    whenWritable: (cb) => {
      if (client.socket === undefined) cb();
      else client.socket.once('drain', cb);
    },
    close: () => closeQuietly(client),
  };
}

export async function openAmqpClientConsumer(
  spec: AmqpConsumerSpec,
  onMessage: OnMessage,
  onFatal: OnFatal,
): Promise<ConsumerDriver> {
  if (spec.ackEvery !== 1) throw new Error('the amqp-client consumer acks each message (ackEvery 1)');
  const client = await open(spec.url, onFatal);
  const failed = (err: unknown): void => onFatal(err instanceof Error ? err : new Error(String(err)));
  for (const queue of spec.queues) {
    const ch: AMQPChannel = await client.channel();
    await ch.basicQos(spec.prefetch);
    await ch.basicConsume(queue, { noAck: false }, (msg: AMQPMessage) => {
      const body = msg.body;
      if (body !== null) onMessage(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
      ch.basicAck(msg.deliveryTag).catch(failed);
    });
  }
  return { close: () => closeQuietly(client) };
}
