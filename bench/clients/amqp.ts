/**
 * AMQP 0-9-1 client roles on amqplib: a publisher, a consumer, and declaring/deleting the topology a
 * scenario needs. Works against any AMQP 0-9-1 broker (Warren, RabbitMQ, LavinMQ ...).
 */
import { connect } from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';

import type {
  AmqpConsumerSpec,
  AmqpPublisherSpec,
  ConsumerDriver,
  OnFatal,
  OnMessage,
  PublisherDriver,
} from './types.js';

export interface AmqpTopology {
  exchanges: Array<{ name: string; type: 'direct' | 'fanout' | 'topic' | 'headers' }>;
  queues: Array<{ name: string }>;
  bindings: Array<{ queue: string; exchange: string; routingKey: string }>;
}

const CLOSE_TIMEOUT_MS = 3_000;

async function open(url: string, onFatal: OnFatal | null): Promise<ChannelModel> {
  // Nagle off: the benchmark wants each broker's own batching, not the client kernel's.
  const conn = await connect(url, { noDelay: true });
  conn.on('error', (err: Error) => onFatal?.(err));
  conn.on('close', (err?: Error) => {
    if (err) onFatal?.(err);
  });
  conn.on('blocked', (reason: string) => process.stderr.write(`bench: connection blocked by broker: ${reason}\n`));
  return conn;
}

async function closeQuietly(conn: ChannelModel): Promise<void> {
  conn.removeAllListeners('close');
  conn.removeAllListeners('error');
  conn.on('error', () => undefined);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    conn.close().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, CLOSE_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
}

export async function openAmqpPublisher(spec: AmqpPublisherSpec, onFatal: OnFatal): Promise<PublisherDriver> {
  const conn = await open(spec.url, onFatal);
  const ch = await conn.createChannel();
  ch.on('error', onFatal);
  const options = { persistent: spec.persistent };
  return {
    publish: (body) => ch.publish(spec.exchange, spec.routingKey, body, options),
    whenWritable: (cb) => {
      ch.once('drain', cb);
    },
    close: () => closeQuietly(conn),
  };
}

interface AckState {
  ch: Channel;
  pending: number;
  last: ConsumeMessage | null;
}

export async function openAmqpConsumer(
  spec: AmqpConsumerSpec,
  onMessage: OnMessage,
  onFatal: OnFatal,
): Promise<ConsumerDriver> {
  const conn = await open(spec.url, onFatal);
  const states: AckState[] = [];
  const ackEvery = Math.max(1, spec.ackEvery);
  for (const queue of spec.queues) {
    const ch = await conn.createChannel();
    ch.on('error', onFatal);
    await ch.prefetch(spec.prefetch);
    if (spec.declareExclusiveOn !== undefined) {
      await ch.assertQueue(queue, { exclusive: true, durable: false });
      await ch.bindQueue(queue, spec.declareExclusiveOn, queue);
    }
    const state: AckState = { ch, pending: 0, last: null };
    states.push(state);
    await ch.consume(
      queue,
      (msg) => {
        if (msg === null) {
          onFatal(new Error(`consumer on ${queue} was cancelled by the broker`));
          return;
        }
        onMessage(msg.content);
        if (ackEvery === 1) {
          ch.ack(msg);
          return;
        }
        state.last = msg;
        if (++state.pending >= ackEvery) {
          ch.ack(msg, true);
          state.pending = 0;
          state.last = null;
        }
      },
      { noAck: false },
    );
  }
  // With multi-acks, a partial batch must not sit unacknowledged while the publisher waits on the
  // in-flight window: flush it on a timer.
  const flush = setInterval(() => {
    for (const s of states) {
      if (s.last !== null) {
        s.ch.ack(s.last, true);
        s.pending = 0;
        s.last = null;
      }
    }
  }, 20);
  flush.unref();
  return {
    close: async () => {
      clearInterval(flush);
      await closeQuietly(conn);
    },
  };
}

/** Declare the scenario's exchanges, queues and bindings (non-durable, not auto-delete). */
export async function setupAmqpTopology(
  url: string,
  topology: AmqpTopology,
  options: { queueExpiresMs: number | null },
): Promise<void> {
  const conn = await open(url, null);
  try {
    const ch = await conn.createChannel();
    for (const x of topology.exchanges) {
      await ch.assertExchange(x.name, x.type, { durable: false, autoDelete: false });
    }
    for (const q of topology.queues) {
      await ch.assertQueue(q.name, {
        durable: false,
        autoDelete: false,
        exclusive: false,
        // A safety net on shared brokers: if the harness is killed before teardown, the broker drops
        // the queue (and its backlog) after this long unused.
        ...(options.queueExpiresMs !== null ? { expires: options.queueExpiresMs } : {}),
      });
    }
    for (const b of topology.bindings) {
      await ch.bindQueue(b.queue, b.exchange, b.routingKey);
    }
  } finally {
    await closeQuietly(conn);
  }
}

/** Delete what setupAmqpTopology declared; each deletion is attempted even if another fails. */
export async function teardownAmqpTopology(url: string, topology: AmqpTopology): Promise<string[]> {
  const problems: string[] = [];
  const conn = await open(url, null);
  try {
    // A failed delete closes the channel, so use a fresh one per operation.
    for (const q of topology.queues) {
      try {
        const ch = await conn.createChannel();
        await ch.deleteQueue(q.name);
        await ch.close();
      } catch (err) {
        problems.push(`delete queue ${q.name}: ${String(err)}`);
      }
    }
    for (const x of topology.exchanges) {
      try {
        const ch = await conn.createChannel();
        await ch.deleteExchange(x.name);
        await ch.close();
      } catch (err) {
        problems.push(`delete exchange ${x.name}: ${String(err)}`);
      }
    }
  } finally {
    await closeQuietly(conn);
  }
  return problems;
}

export interface ServerInfo {
  product: string;
  version: string;
  platform: string;
}

/** Connect once to learn the server's product, version and platform (`RabbitMQ`, `3.10.8`, `Erlang/OTP 25.2.3`). */
export async function probeAmqp(url: string): Promise<ServerInfo> {
  const conn = await open(url, null);
  try {
    const props = conn.connection.serverProperties;
    const str = (v: unknown): string => (typeof v === 'string' ? v : '');
    return { product: str(props.product), version: str(props.version), platform: str(props.platform) };
  } finally {
    await closeQuietly(conn);
  }
}
