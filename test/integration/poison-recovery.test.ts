import { rm } from 'node:fs/promises';
import { connect, type ConsumeMessage } from 'amqplib';
import { afterAll, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { amqpUrl, startOn, tempDataDir } from '../helpers/durability.js';
import { spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

/**
 * A persistent message in a durable queue that no AMQP consumer can receive (stored by a broker
 * that did not yet check messages at publish: a 300-byte content_type) used to kill the broker as
 * soon as a consumer attached, on every restart. It is written here behind the core's publish
 * check, then the broker runs as a child process that is SIGKILLed and restarted.
 */

const dirs: string[] = [];
let proc: WarrenProcess | undefined;

afterAll(async () => {
  if (proc && proc.child.exitCode === null) proc.child.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

/** Consumes `queue` on the child until `n` messages arrived; checks the broker then still routes. */
async function consumeAndCheck(port: number, queue: string, n: number): Promise<string[]> {
  const c = await connect(`amqp://guest:guest@127.0.0.1:${port}`);
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

test('a stored poison message is rejected on delivery; the broker survives restarts and SIGKILL', async () => {
  const dataDir = await tempDataDir('warren-poison-');
  dirs.push(dataDir);
  const b = await startOn(dataDir);
  const c = await connect(amqpUrl(b));
  const cc = await c.createConfirmChannel();
  await cc.assertQueue('poison', { durable: true });
  const vhost = b.core.vhosts.get('/')!;
  const stored = vhost.publish(
    { exchange: '', routingKey: 'poison', properties: { deliveryMode: 2, contentType: 'x'.repeat(300) }, body: Buffer.from('poison') },
    0,
  );
  expect(stored.routed).toBe(1);
  await stored.settled;
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
