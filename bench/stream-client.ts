/**
 * One client process of `npm run bench:stream` (forked by stream.ts), so the bench measures the
 * brokers and not a harness that parses every delivery of every consumer on one core:
 * - `publisher`: `count` persistent messages to a stream on a confirm channel, at most `window`
 *   unconfirmed at a time;
 * - `reader`: one channel, prefetch `prefetch`, reads `count` messages from `first` and acks
 *   with `multiple` every `ackEvery` messages.
 * Each opens its connection and channel first, reports `ready`, and starts on `start`.
 */
import { connect } from 'amqplib';
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';

export type StreamClientSpec =
  | { role: 'publisher'; url: string; stream: string; count: number; bodySize: number; window: number }
  | { role: 'reader'; url: string; stream: string; count: number; prefetch: number; ackEvery: number };

export type ToStreamClient = { type: 'init'; spec: StreamClientSpec } | { type: 'start' } | { type: 'stop' };

export type FromStreamClient = { type: 'ready' } | { type: 'done'; count: number } | { type: 'fatal'; message: string };

function send(m: FromStreamClient): void {
  if (process.connected) process.send?.(m);
}

function fatal(err: unknown): void {
  send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
  setTimeout(() => process.exit(1), 200).unref();
}

let conn: ChannelModel | undefined;
let start: (() => void) | undefined;

function publish(ch: ConfirmChannel, s: Extract<StreamClientSpec, { role: 'publisher' }>): void {
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
    while (sent < s.count && sent - confirmed < s.window) {
      sent++;
      ch.sendToQueue(s.stream, body, { persistent: true }, onConfirm);
    }
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

async function init(spec: StreamClientSpec): Promise<void> {
  conn = await connect(spec.url, { noDelay: true });
  conn.on('error', fatal);
  if (spec.role === 'publisher') {
    const ch = await conn.createConfirmChannel();
    start = () => publish(ch, spec);
  } else {
    const ch = await conn.createChannel();
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
