import { existsSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { afterEach, describe, expect, test } from 'vitest';
import type { Broker } from '../../src/broker.js';
import { BrokerError, ReplyCode, type Persistence } from '../../src/core/index.js';
import { amqpUrl, client, startOn, tempDataDir } from '../helpers/durability.js';
import { waitFor } from '../helpers/broker.js';
import { mgmt } from '../helpers/management.js';
import { RawMqtt } from '../helpers/mqtt.js';
import { RawStomp } from '../helpers/stomp.js';

const dirs: string[] = [];
const brokers: Broker[] = [];
afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop();
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function fresh(): Promise<string> {
  const d = await tempDataDir('warren-defs-log-');
  dirs.push(d);
  return d;
}

async function started(dir: string): Promise<Broker> {
  const b = await startOn(dir);
  brokers.push(b);
  return b;
}

async function stop(b: Broker): Promise<void> {
  brokers.splice(brokers.indexOf(b), 1);
  await b.stop();
}

function fileSize(dir: string, name: string): number {
  return existsSync(join(dir, name)) ? statSync(join(dir, name)).size : 0;
}

describe('the definitions log', () => {
  test('declaring 10,000 durable queues writes bytes in proportion to them, not a whole file per declare', async () => {
    const dir = await fresh();
    const b = await started(dir);
    const defs = b.store!.definitionsLog;
    const before = defs.bytesWritten;
    const conn = await connect(amqpUrl(b), { noDelay: true });
    const CHANNELS = 25;
    const PER_CHANNEL = 400;
    await Promise.all(
      Array.from({ length: CHANNELS }, async (_, c) => {
        const ch = await conn.createChannel();
        for (let i = 0; i < PER_CHANNEL; i++) await ch.assertQueue(`many-${c}-${i}`, { durable: true });
      }),
    );
    const written = defs.bytesWritten - before;
    const onDisk = fileSize(dir, 'definitions.log') + fileSize(dir, 'definitions.snap');
    await conn.close();
    const queues = CHANNELS * PER_CHANNEL;
    // One queue's entry is about 110 bytes; appends plus the occasional compaction stay within a
    // few times that per queue (a whole-file rewrite per declare would be thousands of times more).
    expect(written / queues).toBeLessThan(600);
    expect(onDisk).toBeLessThan(queues * 400);
    expect(b.core.vhosts.get('/')!.queues.size).toBe(queues);

    await stop(b);
    const b2 = await started(dir);
    expect(b2.core.vhosts.get('/')!.queues.size).toBe(queues);
  }, 60_000);

  test('an older data directory with definitions.json is migrated: everything comes back, the file is replaced', async () => {
    const dir = await fresh();
    writeFileSync(
      join(dir, 'definitions.json'),
      JSON.stringify({
        users: [{ name: 'guest', password_hash: '', hashing_algorithm: 'rabbit_password_hashing_sha256', tags: ['administrator'] }],
        vhosts: [{ name: '/' }, { name: 'other' }],
        permissions: [{ user: 'guest', vhost: '/', configure: '.*', write: '.*', read: '.*' }],
        exchanges: [{ name: 'old-x', vhost: '/', type: 'topic', durable: true, auto_delete: false, internal: false, arguments: {} }],
        queues: [{ name: 'old-q', vhost: '/', durable: true, auto_delete: false, arguments: { 'x-max-length': 7 } }],
        bindings: [{ source: 'old-x', vhost: '/', destination: 'old-q', destination_type: 'queue', routing_key: 'a.#', arguments: {} }],
      }),
    );
    let b = await started(dir);
    const check = (br: Broker): void => {
      const v = br.core.vhosts.get('/')!;
      expect(v.queues.get('old-q')?.args['x-max-length']).toBe(7);
      expect([...v.exchanges.get('old-x')!.bindings.values()].map((x) => x.routingKey)).toEqual(['a.#']);
      expect(br.core.vhosts.has('other')).toBe(true);
    };
    check(b);
    expect(existsSync(join(dir, 'definitions.json'))).toBe(false);
    expect(fileSize(dir, 'definitions.snap')).toBeGreaterThan(0);
    await stop(b);
    b = await started(dir);
    check(b);
  });

  test('users, permissions, policies and vhosts changed in the core are written too', async () => {
    const dir = await fresh();
    let b = await started(dir);
    b.core.auth.addUser('carol', 'pw', ['management']);
    b.core.addVhost('v2');
    b.core.auth.setPermission('v2', 'carol', { configure: '', write: 'w', read: 'r' });
    b.core.policies.set({ vhost: 'v2', name: 'ttl', pattern: '^t', applyTo: 'queues', definition: { 'message-ttl': 1000 }, priority: 1 });
    await b.core.persistence.definitionsSettled();
    await stop(b);
    b = await started(dir);
    expect(b.core.auth.users.get('carol')?.tags).toEqual(['management']);
    expect(b.core.auth.getPermission('v2', 'carol')?.write).toBe('w');
    expect(b.core.policies.get('v2', 'ttl')?.priority).toBe(1);
    b.core.auth.deleteUser('carol');
    b.core.policies.delete('v2', 'ttl');
    await b.core.persistence.definitionsSettled();
    await stop(b);
    b = await started(dir);
    expect(b.core.auth.users.has('carol')).toBe(false);
    expect(b.core.policies.get('v2', 'ttl')).toBeUndefined();
  });
});

/** As the store's own promises: a rejection nobody waits for is not an unhandled one. */
function quiet(p: Promise<void>): Promise<void> {
  p.catch(() => undefined);
  return p;
}

/** Lets a test hold back (or fail) the definition writes of the real store. */
function gatedPersistence(real: Persistence): { p: Persistence; release: () => void; fail: (e: Error) => void } {
  let release!: () => void;
  let fail!: (e: Error) => void;
  const gate = new Promise<void>((res, rej) => {
    release = res;
    fail = rej;
  });
  gate.catch(() => undefined);
  let waiting = false;
  const p: Persistence = {
    openQueue: (q) => real.openQueue(q),
    definitionsChanged: (c) => {
      waiting = true;
      return quiet(real.definitionsChanged(c).then(() => gate));
    },
    definitionsSettled: () => (waiting ? quiet(real.definitionsSettled().then(() => gate)) : real.definitionsSettled()),
  };
  return { p, release, fail };
}

describe('replies wait for the disk', () => {
  test('a durable declare-ok waits; later replies on its channel wait behind it; other channels and non-durable declares do not', async () => {
    const dir = await fresh();
    const b = await started(dir);
    const real = b.core.persistence;
    const g = gatedPersistence(real);
    const c = await client(b);
    const other = await c.conn.createChannel();
    b.core.persistence = g.p;
    try {
      const order: string[] = [];
      const declared = c.ch.assertQueue('gated', { durable: true }).then(() => order.push('declare-ok'));
      const qos = c.ch.prefetch(3).then(() => order.push('qos-ok'));
      // Another channel of the same connection: a transient declare answers at once.
      await other.assertQueue('transient', { durable: false, exclusive: true });
      await other.assertExchange('transient-x', 'fanout', { durable: false });
      expect(order).toEqual([]);
      g.release();
      await Promise.all([declared, qos]);
      expect(order).toEqual(['declare-ok', 'qos-ok']);
    } finally {
      b.core.persistence = real;
      await c.close();
    }
  });

  test('megabytes pipelined behind a waiting declare-ok are held (reading pauses past a limit) and all handled once it is sent', async () => {
    const dir = await fresh();
    const b = await started(dir);
    const real = b.core.persistence;
    const g = gatedPersistence(real);
    const c = await client(b);
    b.core.persistence = g.p;
    try {
      const declared = c.ch.assertQueue('held-behind', { durable: true });
      const body = Buffer.alloc(512 * 1024, 0x61);
      for (let i = 0; i < 40; i++) c.ch.sendToQueue('held-behind', body);
      // The broker's side of this connection stops reading once 8 MiB are held.
      const server = [...b.core.connections].find((x) => x.info.protocol === 'AMQP 0-9-1')!;
      const socket = (server.handle as unknown as { link: { stream: { isPaused(): boolean } } }).link.stream;
      await waitFor(() => socket.isPaused(), 10_000, 'reading paused');
      g.release();
      await declared;
      await waitFor(async () => (await c.ch.checkQueue('held-behind')).messageCount === 40, 10_000);
      expect(socket.isPaused()).toBe(false);
    } finally {
      b.core.persistence = real;
      await c.close();
    }
  }, 30_000);

  test('a failed definitions write is never confirmed: the connection closes with 541', async () => {
    const dir = await fresh();
    const b = await started(dir);
    const real = b.core.persistence;
    const g = gatedPersistence(real);
    const c = await client(b);
    let closedWith: unknown;
    c.conn.on('close', (e: unknown) => (closedWith = e));
    b.core.persistence = g.p;
    try {
      const declared = c.ch.assertQueue('doomed', { durable: true });
      declared.catch(() => undefined);
      g.fail(new BrokerError(ReplyCode.INTERNAL_ERROR, 'message store write failed: no space left on device'));
      await expect(declared).rejects.toThrow();
      await waitFor(() => closedWith !== undefined);
      expect(String(closedWith)).toMatch(/541/);
    } finally {
      b.core.persistence = real;
      await c.close();
    }
  });
});

describe('other protocols wait for the disk too', () => {
  async function gated(): Promise<{ b: Broker; g: ReturnType<typeof gatedPersistence>; restore: () => void }> {
    const dir = await fresh();
    const b = await startOn(dir, { mqttPort: 0, stompPort: 0, httpPort: 0 });
    brokers.push(b);
    const real = b.core.persistence;
    const g = gatedPersistence(real);
    b.core.persistence = g.p;
    return { b, g, restore: () => (b.core.persistence = real) };
  }

  test('STOMP: the RECEIPT of a SUBSCRIBE that declares a durable queue waits; a transient one does not', async () => {
    const { b, g, restore } = await gated();
    try {
      const c = await RawStomp.connected(b.ports.stomp!);
      c.send('SUBSCRIBE', { destination: '/topic/quick', id: 't', receipt: 'transient' });
      expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('transient');
      c.send('SUBSCRIBE', { destination: '/queue/stomp-durable', id: 'd', receipt: 'durable' });
      c.send('SUBSCRIBE', { destination: '/topic/after', id: 'a', receipt: 'after' });
      // A SEND to the transient subscription proves the server handled all three frames.
      c.send('SEND', { destination: '/topic/quick' }, 'probe');
      expect((await c.next('MESSAGE')).body.toString()).toBe('probe');
      expect(c.frames.filter((f) => f.command === 'RECEIPT')).toHaveLength(1);
      g.release();
      expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('durable');
      expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('after');
      c.destroy();
    } finally {
      restore();
    }
  });

  test('MQTT: the SUBACK of a persistent session waits until its queue and binding are on disk', async () => {
    const { b, g, restore } = await gated();
    try {
      const clean = await RawMqtt.connected(b.ports.mqtt!, 4, { clean: true });
      clean.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'clean/#', qos: 1 }] });
      expect((await clean.next('suback')).granted).toEqual([1]);
      const persistent = await RawMqtt.connected(b.ports.mqtt!, 4, { clean: false, clientId: 'defs-persistent' });
      persistent.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'kept/#', qos: 1 }] });
      // The PINGRESP proves the server handled the SUBSCRIBE; its SUBACK has not come.
      persistent.send({ cmd: 'pingreq' });
      await persistent.next('pingresp');
      expect(persistent.packets.some((p) => p.cmd === 'suback')).toBe(false);
      g.release();
      expect((await persistent.next('suback')).granted).toEqual([1]);
      clean.end();
      persistent.end();
    } finally {
      restore();
    }
  });

  test('management: PUT of a durable queue answers once it is on disk, 500 if the write failed', async () => {
    const { b, g, restore } = await gated();
    try {
      const api = mgmt(b.ports.http!);
      let answered = false;
      const put = api.put('/queues/%2F/mgmt-durable', { durable: true }).then((r) => {
        answered = true;
        return r;
      });
      await waitFor(() => b.core.vhosts.get('/')!.queues.has('mgmt-durable'));
      expect(answered).toBe(false);
      g.fail(new BrokerError(ReplyCode.INTERNAL_ERROR, 'message store write failed'));
      expect((await put).status).toBe(500);
    } finally {
      restore();
    }
  });
});
