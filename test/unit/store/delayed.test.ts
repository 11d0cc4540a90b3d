import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, expect, test } from 'vitest';
import { Core } from '../../../src/core/core.js';
import { DEFINITIONS_LOG, DEFINITIONS_SNAPSHOT } from '../../../src/store/definitions-log.js';
import { openStore, type MessageStore } from '../../../src/store/index.js';

const log = pino({ level: 'silent' });
const dirs: string[] = [];
const stores: MessageStore[] = [];

afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

function open(dataDir: string): Core {
  const core = new Core();
  stores.push(openStore(core, { dataDir }, log).store);
  return core;
}

test('a held persistent message settles only once its exchange is in the definitions file, and comes back after reopening', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-delayed-'));
  dirs.push(dir);
  const core = open(dir);
  const v = core.vhosts.get('/')!;
  v.declareExchange('dx', 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'fanout' } }, false);
  const r = v.publish({ exchange: 'dx', routingKey: '', properties: { deliveryMode: 2, headers: { 'x-delay': 60_000 } }, body: Buffer.from('later') }, 0);
  expect(r.delayed).toBe(true);
  await r.settled;
  // the exchange's definition is on disk by then: in the definitions log (or the snapshot, after a compaction)
  const onDisk = [DEFINITIONS_LOG, DEFINITIONS_SNAPSHOT].map((f) => join(dir, f)).filter((f) => existsSync(f));
  expect(onDisk.map((f) => readFileSync(f, 'latin1')).join('')).toContain('"dx"');
  expect(v.exchanges.get('dx')!.delayed!.count).toBe(1);
  await stores.pop()!.close();

  const again = open(dir);
  const ex = again.vhosts.get('/')!.exchanges.get('dx')!;
  expect(ex.delayed?.count).toBe(1);
});

test('stored messages of a deleted exchange are not recovered', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-delayed-'));
  dirs.push(dir);
  const core = open(dir);
  const v = core.vhosts.get('/')!;
  v.declareExchange('gone', 'x-delayed-message', { durable: true, arguments: { 'x-delayed-type': 'direct' } }, false);
  await v.publish({ exchange: 'gone', routingKey: 'k', properties: { deliveryMode: 2, headers: { 'x-delay': 60_000 } }, body: Buffer.from('x') }, 0).settled;
  v.deleteExchange('gone', false);
  await stores.pop()!.close();
  const again = open(dir);
  expect(again.vhosts.get('/')!.exchanges.has('gone')).toBe(false);
  expect(stores[0]!.records('delayed').count).toBe(0);
});
