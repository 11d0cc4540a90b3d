import { rm } from 'node:fs/promises';
import { afterEach, expect, test } from 'vitest';
import type { Broker } from '../../src/broker.js';
import { waitFor } from '../helpers/broker.js';
import { client, startOn, tempDataDir } from '../helpers/durability.js';

let b: Broker | undefined;
let dir: string | undefined;
afterEach(async () => {
  await b?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  b = undefined;
});

test('below the disk free limit publishers are blocked until space comes back; consumers keep draining', async () => {
  dir = await tempDataDir();
  b = await startOn(dir);
  expect(b.core.alarms.active).toEqual([]);
  expect(b.core.alarms.diskFree).toBeGreaterThan(0);
  const pub = await client(b);
  const sub = await client(b);
  const events: string[] = [];
  pub.conn.on('blocked', (reason: string) => events.push(`blocked: ${reason}`));
  pub.conn.on('unblocked', () => events.push('unblocked'));
  await pub.ch.assertQueue('held', { durable: true });
  pub.ch.sendToQueue('held', Buffer.from('before'), { persistent: true });
  await waitFor(async () => (await sub.ch.checkQueue('held')).messageCount === 1, 5000, 'the first publish');

  // A limit above any real free space: the next check raises the disk alarm.
  b.core.alarms.diskFreeLimit = Number.MAX_SAFE_INTEGER;
  b.core.alarms.check();
  await waitFor(() => events.length > 0, 5000, 'connection.blocked');
  expect(events[0]).toBe('blocked: low on disk');
  expect(b.core.alarms.active).toEqual(['disk']);
  // The consumer side keeps working while the blocked publisher is no longer read from: at most
  // the publish that found the connection blocked gets through.
  const got = await sub.ch.get('held', { noAck: true });
  expect(got && got.content.toString()).toBe('before');
  for (let i = 0; i < 10; i++) {
    pub.ch.sendToQueue('held', Buffer.from(`waits-${i}`), { persistent: true });
    await new Promise((r) => setTimeout(r, 20));
  }
  expect((await sub.ch.checkQueue('held')).messageCount).toBeLessThanOrEqual(1);

  b.core.alarms.diskFreeLimit = 1;
  b.core.alarms.check();
  await waitFor(() => events.includes('unblocked'), 5000, 'connection.unblocked');
  await waitFor(async () => (await sub.ch.checkQueue('held')).messageCount === 10, 5000, 'the held publishes');
  await pub.close();
  await sub.close();
});

test('a broker started with less free disk than its limit starts with the alarm raised', async () => {
  dir = await tempDataDir();
  b = await startOn(dir, { diskFreeLimit: Number.MAX_SAFE_INTEGER });
  expect(b.core.alarms.active).toEqual(['disk']);
  expect(b.core.alarms.blocked).toBe(true);
});
