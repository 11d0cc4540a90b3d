/**
 * Entry point of the process that holds the active connections of the many-connections scenario
 * (forked by connections.ts): AMQP connections that each consume their own exclusive queue and
 * publish to it once per interval, and STOMP connections that do the same through
 * `/exchange/amq.direct/<key>`. Reports how many opened, then how many messages went round when
 * told to stop. Exits at once when the parent goes away.
 */
import { connect, type ChannelModel } from 'amqplib';

import { StompConnection } from './clients/stomp.js';

export type ToActiveClient =
  | { type: 'open'; amqpUrl: string; stompUrl: string; amqp: number; stomp: number; prefix: string; intervalMs: number; concurrency: number }
  | { type: 'stop' };

export type FromActiveClient =
  | { type: 'opened'; opened: number; errors: string[] }
  | { type: 'closed'; sent: number; received: number }
  | { type: 'fatal'; message: string };

function send(msg: FromActiveClient): void {
  if (process.connected) process.send?.(msg);
}

const BODY = Buffer.from('{"reading":21.5}');
let sent = 0;
let received = 0;
let stopping = false;
const timers: NodeJS.Timeout[] = [];
const amqpConns: ChannelModel[] = [];
const stompConns: StompConnection[] = [];

function fatal(err: unknown): void {
  if (!stopping) send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) });
}

async function openAmqp(url: string, key: string, intervalMs: number): Promise<void> {
  const conn = await connect(url);
  amqpConns.push(conn);
  conn.on('error', fatal);
  conn.on('close', () => fatal(new Error(`${key}: AMQP connection closed by the broker`)));
  const ch = await conn.createChannel();
  const q = (await ch.assertQueue('', { exclusive: true })).queue;
  await ch.consume(q, () => received++, { noAck: true });
  const t = setInterval(() => {
    ch.sendToQueue(q, BODY);
    sent++;
  }, intervalMs);
  timers.push(t);
}

async function openStomp(url: string, key: string, intervalMs: number): Promise<void> {
  const c = await StompConnection.open(url, key, fatal);
  stompConns.push(c);
  c.handle((f) => {
    if (f.command === 'MESSAGE') received++;
    else fatal(new Error(`${key}: unexpected ${f.command}`));
  });
  const destination = `/exchange/amq.direct/${key}`;
  c.sendText(`SUBSCRIBE\nid:0\ndestination:${destination}\nack:auto\n\n`);
  c.out.flush();
  const prefix = Buffer.from(`SEND\ndestination:${destination}\ncontent-length:${BODY.length}\n\n`, 'latin1');
  const t = setInterval(() => {
    c.sendWithBody(prefix, BODY);
    c.out.flush();
    sent++;
  }, intervalMs);
  timers.push(t);
}

async function onMessage(msg: ToActiveClient): Promise<void> {
  if (msg.type === 'open') {
    const jobs: (() => Promise<void>)[] = [];
    for (let i = 0; i < msg.amqp; i++) jobs.push(() => openAmqp(msg.amqpUrl, `${msg.prefix}-a${i}`, msg.intervalMs));
    for (let i = 0; i < msg.stomp; i++) jobs.push(() => openStomp(msg.stompUrl, `${msg.prefix}-s${i}`, msg.intervalMs));
    const errors: string[] = [];
    let next = 0;
    let opened = 0;
    const worker = async (): Promise<void> => {
      while (next < jobs.length) {
        const job = jobs[next++]!;
        try {
          await job();
          opened++;
        } catch (err) {
          errors.push(err instanceof Error ? err.message : String(err));
        }
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, msg.concurrency) }, worker));
    send({ type: 'opened', opened, errors: errors.slice(0, 5) });
    return;
  }
  stopping = true;
  for (const t of timers) clearInterval(t);
  for (let i = 0; i < amqpConns.length; i += 100) await Promise.all(amqpConns.slice(i, i + 100).map((c) => c.close().catch(() => undefined)));
  for (let i = 0; i < stompConns.length; i += 100) await Promise.all(stompConns.slice(i, i + 100).map((c) => c.close()));
  send({ type: 'closed', sent, received });
  setTimeout(() => process.exit(0), 100);
}

if (process.send === undefined) {
  process.stderr.write('bench/connections-client.js is started by bench/run.js, not directly\n');
  process.exit(2);
}
process.on('message', (msg: ToActiveClient) => {
  onMessage(msg).catch(fatal);
});
process.on('disconnect', () => process.exit(0));
