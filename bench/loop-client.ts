/**
 * Entry point of one loop-client process (forked by loop.ts): opens its connections; each one
 * subscribes to a destination of its own and keeps `inflight` messages going round through the
 * broker (every message received is sent again on the same connection). Everything a connection
 * does stays on the node it landed on, so the scenario measures how many messages one machine's
 * broker processes move, however the kernel or the primary spreads the connections. Counts are
 * reported when asked; exits at once when the parent goes away.
 */
import { connect as amqpConnect } from 'amqplib';
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import mqtt from 'mqtt';

export type ToLoopClient =
  | { type: 'open'; protocol: 'amqp' | 'mqtt'; url: string; connections: number; inflight: number; bodySize: number; qos: 0 | 1; idPrefix: string }
  | { type: 'go' }
  | { type: 'count' }
  | { type: 'stop' };

export type FromLoopClient =
  | { type: 'opened' }
  | { type: 'count'; received: number }
  | { type: 'closed' }
  | { type: 'fatal'; message: string };

function send(msg: FromLoopClient): void {
  if (process.connected) process.send?.(msg);
}

let received = 0;
let running = true;
const closers: Array<() => Promise<void>> = [];
const starters: Array<() => void> = [];

async function openAmqp(url: string, inflight: number, body: Buffer): Promise<void> {
  const conn: ChannelModel = await amqpConnect(url);
  const ch: Channel = await conn.createChannel();
  const q = await ch.assertQueue('', { exclusive: true, durable: false });
  await ch.prefetch(inflight);
  await ch.consume(q.queue, (m: ConsumeMessage | null) => {
    if (m === null) return;
    received++;
    ch.ack(m);
    if (running) ch.sendToQueue(q.queue, body);
  });
  starters.push(() => {
    for (let i = 0; i < inflight; i++) ch.sendToQueue(q.queue, body);
  });
  closers.push(async () => {
    await conn.close().catch(() => undefined);
  });
}

async function openMqtt(url: string, clientId: string, qos: 0 | 1, inflight: number, body: Buffer): Promise<void> {
  const topic = `warren-bench/loop/${clientId}`;
  const c = await mqtt.connectAsync(url, { clientId, clean: true, keepalive: 60, reconnectPeriod: 0 });
  await c.subscribeAsync(topic, { qos });
  c.on('message', () => {
    received++;
    if (running) c.publish(topic, body, { qos });
  });
  starters.push(() => {
    for (let i = 0; i < inflight; i++) c.publish(topic, body, { qos });
  });
  closers.push(async () => {
    await c.endAsync().catch(() => undefined);
  });
}

async function onMessage(msg: ToLoopClient): Promise<void> {
  switch (msg.type) {
    case 'open': {
      const body = Buffer.alloc(msg.bodySize, 0x61);
      for (let i = 0; i < msg.connections; i++) {
        if (msg.protocol === 'amqp') await openAmqp(msg.url, msg.inflight, body);
        else await openMqtt(msg.url, `${msg.idPrefix}-${i}`, msg.qos, msg.inflight, body);
      }
      send({ type: 'opened' });
      return;
    }
    case 'go':
      for (const s of starters) s();
      return;
    case 'count':
      send({ type: 'count', received });
      return;
    case 'stop':
      running = false;
      await Promise.all(closers.map((c) => c()));
      send({ type: 'closed' });
      process.exit(0);
  }
}

process.on('message', (m: ToLoopClient) => {
  onMessage(m).catch((err: unknown) => {
    send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
    process.exit(1);
  });
});
process.on('disconnect', () => process.exit(0));
