import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { Core } from '../../../src/core/core.js';
import type { Message } from '../../../src/core/types.js';
import { openStore, type MessageStore } from '../../../src/store/index.js';

// Found by the MQTT fuzzer: a persistent session's queue deleted while the batch holding its first
// segment was being written made the whole batch fail, refusing other clients' publishes with it.

const log = pino({ level: 'silent' });
let dataDir: string | undefined;
let store: MessageStore | undefined;

afterEach(async () => {
  await store?.close();
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

const persistent = (routingKey: string): Message => ({ exchange: '', routingKey, properties: { deliveryMode: 2 }, body: Buffer.from(routingKey) });

test("a queue deleted while its batch is written does not fail the other queues' publishes in that batch", async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-store-'));
  const core = new Core();
  ({ store } = openStore(core, { dataDir }, log));
  const vhost = core.vhosts.get('/')!;
  vhost.declareQueue('doomed', { durable: true }, false, 0);
  const other = vhost.declareQueue('other', { durable: true }, false, 0);
  const doomed = vhost.publish(persistent('doomed'), 0).settled;
  const kept = vhost.publish(persistent('other'), 0).settled;
  // the store's batch runs in a setImmediate queued before this one: its writes are now in flight
  await new Promise((resolve) => setImmediate(resolve));
  vhost.deleteQueue('doomed', false, false, 0);
  await expect(kept).resolves.toBeUndefined();
  await doomed;
  expect(other.readyCount).toBe(1);
});
