import { rm } from 'node:fs/promises';
import { connect, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { afterAll, expect, test } from 'vitest';
import type { Message, PublishResult } from '../../src/core/index.js';
import { waitFor } from '../helpers/broker.js';
import { amqpUrl, startOn, tempDataDir } from '../helpers/durability.js';
import { spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

/**
 * A persistent message in a durable queue that a consumer cannot be sent used to kill the broker
 * as soon as that consumer attached, on every restart. Such a message is stored in a durable
 * queue, then the broker runs as a child process that is SIGKILLed and restarted while a consumer
 * with frame_max 4096 attaches.
 */

const dirs: string[] = [];
let proc: WarrenProcess | undefined;

afterAll(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Consumes `queue` on the child until `n` messages arrived; checks the broker then still routes. */
async function consumeAndCheck(port: number, queue: string, n: number): Promise<string[]> {
  const c = await connect(`amqp://guest:guest@127.0.0.1:${port}?frameMax=4096`);
  c.on('error', () => undefined);
  const ch = await c.createChannel();
  const got: ConsumeMessage[] = [];
  await ch.consume(queue, (m) => {
    if (m === null) return;
    got.push(m);
    ch.ack(m);
  });
  if (n > 0) await waitFor(() => got.length >= n, 10_000, `${n} messages`);
  // Still alive and serving: a round trip on a fresh queue.
  const q = await ch.assertQueue('', { exclusive: true });
  ch.sendToQueue(q.queue, Buffer.from('ping'));
  const ping = await waitFor(async () => (await ch.get(q.queue, { noAck: true })) || undefined, 10_000, 'ping');
  expect(ping.content.toString()).toBe('ping');
  await c.close();
  return got.map((m) => m.content.toString());
}

type Broker = Awaited<ReturnType<typeof startOn>>;
type Writer = (b: Broker, cc: ConfirmChannel) => Promise<void>;

/** Dead-lettering adds x-death to 4000 bytes of headers: larger than a 4096-byte frame can carry. */
const grownByDeadLettering: Writer = async (_b, cc) => {
  await cc.assertQueue('poison-src', { durable: true, arguments: { 'x-message-ttl': 0, 'x-dead-letter-exchange': '', 'x-dead-letter-routing-key': 'poison' } });
  cc.sendToQueue('poison-src', Buffer.from('poison'), { persistent: true, headers: { pad: 'p'.repeat(4000) } });
  await cc.waitForConfirms();
  await waitFor(async () => (await cc.checkQueue('poison')).messageCount === 1, 5000, 'the dead-lettered message');
};

/**
 * As an earlier Warren stored it, before publishes were checked: a 300-byte content_type. Routed
 * with the vhost's internal routing, which (like dead-lettering) does not check.
 */
const storedUnchecked: Writer = async (b) => {
  const vhost = b.core.vhosts.get('/')!;
  const route = Reflect.get(vhost, 'publishTo') as (ex: unknown, msg: Message, publisherId: number, skip: undefined) => PublishResult;
  const r = route.call(vhost, vhost.getExchange(''), { exchange: '', routingKey: 'poison', properties: { deliveryMode: 2, contentType: 'x'.repeat(300) }, body: Buffer.from('poison') }, 0, undefined);
  expect(r.routed).toBe(1);
  await r.settled;
};

test.each([
  ['grown past the frame_max of the consumer by dead-lettering', grownByDeadLettering],
  ['stored with a property AMQP cannot carry', storedUnchecked],
])('a stored message %s is rejected on delivery; the broker survives restarts and SIGKILL', async (_name, write) => {
  const dataDir = await tempDataDir('warren-poison-');
  dirs.push(dataDir);
  const b = await startOn(dataDir);
  const c = await connect(amqpUrl(b));
  const cc = await c.createConfirmChannel();
  await cc.assertQueue('poison', { durable: true });
  await write(b, cc);
  cc.sendToQueue('poison', Buffer.from('good'), { persistent: true });
  await cc.waitForConfirms();
  await c.close();
  await b.stop();

  proc = await spawnWarren(dataDir, [], { logLevel: 'warn' });
  expect(await consumeAndCheck(proc.amqpPort, 'poison', 1)).toEqual(['good']);
  await waitFor(() => proc!.stderr.join('').includes('cannot be encoded for this consumer'), 5000, 'the log line');
  expect(proc.child.exitCode).toBeNull();
  proc.child.kill('SIGKILL');
  await proc.exited;

  proc = await spawnWarren(dataDir, [], { logLevel: 'warn' });
  // An acknowledgement not yet on disk at the kill may bring 'good' back; the poison never arrives.
  expect(await consumeAndCheck(proc.amqpPort, 'poison', 0)).not.toContain('poison');
  expect(proc.child.exitCode).toBeNull();
  proc.child.kill('SIGKILL');
  await proc.exited;
}, 60_000);
