/**
 * One client process of `npm run bench:stream` (forked by stream.ts), so the bench measures the
 * brokers and not a harness that parses every delivery of every consumer on one core:
 * - `publisher`: `count` persistent messages to a stream on a confirm channel, at most `window`
 *   unconfirmed at a time;
 * - `reader`: one channel, prefetch `prefetch`, reads `count` messages from `first` and acks
 *   with `multiple` every `ackEvery` messages.
 * Each opens its connection and channel first, reports `ready`, and starts on `start`. The client
 * library is amqplib or @cloudamqp/amqp-client (`client`); the same one is used for every broker.
 */
import { Socket } from 'node:net';
import { AMQPClient, type AMQPChannel } from '@cloudamqp/amqp-client';
import { connect } from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';

export const STREAM_CLIENTS = ['amqplib', 'amqp-client'] as const;
export type StreamClientLib = (typeof STREAM_CLIENTS)[number];

export type StreamClientSpec =
  | {
      role: 'publisher';
      client: StreamClientLib;
      url: string;
      stream: string;
      count: number;
      bodySize: number;
      window: number;
      /** Publishes of one turn leave in one socket write (cork until the next turn) rather than one write each. */
      cork: boolean;
    }
  | { role: 'reader'; client: StreamClientLib; url: string; stream: string; count: number; prefetch: number; ackEvery: number };

export type ToStreamClient = { type: 'init'; spec: StreamClientSpec } | { type: 'start' } | { type: 'stop' };

export type FromStreamClient = { type: 'ready' } | { type: 'done'; count: number } | { type: 'fatal'; message: string };

function send(m: FromStreamClient): void {
  if (process.connected) process.send?.(m);
}

function fatal(err: unknown): void {
  send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
  setTimeout(() => process.exit(1), 200).unref();
}

let conn: { close(): Promise<void> } | undefined;
let start: (() => void) | undefined;

/**
 * Corks `socket` until the next turn of the event loop, so that the publishes a batch of confirms
 * releases go out in one write. amqp-client writes in basicPublish, so it corks first; amqplib
 * writes from a setImmediate of its own that its first publish schedules (from a nextTick), so
 * it corks after its publishes, and the uncork is scheduled from a later nextTick to follow that
 * write.
 */
function corker(socket: Socket | undefined, on: boolean): () => void {
  if (socket === undefined || !on) return () => undefined;
  let corked = false;
  const uncork = (): void => {
    corked = false;
    socket.uncork();
  };
  const later = (): void => void setImmediate(uncork);
  return () => {
    if (corked) return;
    corked = true;
    socket.cork();
    process.nextTick(later);
  };
}

/** amqplib keeps its socket on the connection (not in its types). */
function amqplibSocket(model: ChannelModel): Socket | undefined {
  const s = (model as unknown as { connection?: { stream?: unknown } }).connection?.stream;
  return s instanceof Socket ? s : undefined;
}

function publish(ch: ConfirmChannel, s: Extract<StreamClientSpec, { role: 'publisher' }>, cork: () => void): void {
  const body = Buffer.alloc(s.bodySize, 0x61);
  let sent = 0;
  let confirmed = 0;
  const onConfirm = (err: unknown): void => {
    if (err !== null && err !== undefined) {
      fatal(new Error('publish nacked'));
      return;
    }
    confirmed++;
    if (confirmed === s.count) send({ type: 'done', count: confirmed });
    else pump();
  };
  const pump = (): void => {
    const from = sent;
    while (sent < s.count && sent - confirmed < s.window) {
      sent++;
      ch.sendToQueue(s.stream, body, { persistent: true }, onConfirm);
    }
    if (sent > from) cork();
  };
  pump();
}

function read(ch: Channel, s: Extract<StreamClientSpec, { role: 'reader' }>): void {
  let got = 0;
  ch.consume(
    s.stream,
    (m) => {
      if (m === null) return;
      got++;
      if (got % s.ackEvery === 0 || got === s.count) ch.ack(m, true);
      if (got === s.count) send({ type: 'done', count: got });
    },
    { arguments: { 'x-stream-offset': 'first' } },
  ).catch(fatal);
}

/** The publisher on @cloudamqp/amqp-client: its basicPublish resolves once the broker confirms. */
function publishFast(ch: AMQPChannel, s: Extract<StreamClientSpec, { role: 'publisher' }>, cork: () => void): void {
  const body = Buffer.alloc(s.bodySize, 0x61);
  const props = { deliveryMode: 2 };
  let sent = 0;
  let confirmed = 0;
  const onConfirm = (): void => {
    confirmed++;
    if (confirmed === s.count) send({ type: 'done', count: confirmed });
    else pump();
  };
  const pump = (): void => {
    if (sent < s.count && sent - confirmed < s.window) cork();
    while (sent < s.count && sent - confirmed < s.window) {
      sent++;
      ch.basicPublish('', s.stream, body, props).then(onConfirm, fatal);
    }
  };
  pump();
}

function readFast(ch: AMQPChannel, s: Extract<StreamClientSpec, { role: 'reader' }>): void {
  let got = 0;
  ch.basicConsume(s.stream, { noAck: false, args: { 'x-stream-offset': 'first' } }, (m) => {
    got++;
    if (got % s.ackEvery === 0 || got === s.count) ch.basicAck(m.deliveryTag, true).catch(fatal);
    if (got === s.count) send({ type: 'done', count: got });
  }).catch(fatal);
}

async function initFast(spec: StreamClientSpec): Promise<void> {
  const client = new AMQPClient(spec.url);
  await client.connect();
  // amqplib is given noDelay too: both clients write without Nagle's delay.
  client.socket?.setNoDelay(true);
  client.onerror = fatal;
  conn = client;
  const ch = await client.channel();
  if (spec.role === 'publisher') {
    await ch.confirmSelect();
    const cork = corker(client.socket, spec.cork);
    start = () => publishFast(ch, spec, cork);
  } else {
    await ch.prefetch(spec.prefetch);
    start = () => readFast(ch, spec);
  }
  send({ type: 'ready' });
}

async function init(spec: StreamClientSpec): Promise<void> {
  if (spec.client === 'amqp-client') return initFast(spec);
  const model: ChannelModel = await connect(spec.url, { noDelay: true });
  model.on('error', fatal);
  conn = model;
  if (spec.role === 'publisher') {
    const ch = await model.createConfirmChannel();
    const cork = corker(amqplibSocket(model), spec.cork);
    start = () => publish(ch, spec, cork);
  } else {
    const ch = await model.createChannel();
    await ch.prefetch(spec.prefetch);
    start = () => read(ch, spec);
  }
  send({ type: 'ready' });
}

process.on('message', (m: ToStreamClient) => {
  if (m.type === 'init') init(m.spec).catch(fatal);
  else if (m.type === 'start') start?.();
  else {
    const c = conn;
    conn = undefined;
    void (c === undefined ? Promise.resolve() : c.close()).catch(() => undefined).then(() => process.exit(0));
  }
});
process.on('disconnect', () => process.exit(0));
