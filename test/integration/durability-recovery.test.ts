import { appendFileSync, chmodSync, existsSync, mkdirSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, test } from 'vitest';
import type { Broker } from '../../src/broker.js';
import { queueDirName } from '../../src/store/index.js';
import { client, drain, label, publishConfirmed, startOn, tempDataDir } from '../helpers/durability.js';
import { runWarren, spawnWarren } from '../helpers/warren-process.js';

const dirs: string[] = [];
const brokers: Broker[] = [];

afterEach(async () => {
  for (const b of brokers.splice(0)) await b.stop();
  for (const d of dirs.splice(0)) {
    chmodSync(d, 0o755);
    await rm(d, { recursive: true, force: true });
  }
});

async function fresh(): Promise<string> {
  const d = await tempDataDir('warren-rec-');
  dirs.push(d);
  return d;
}

/** A broker whose log lines are collected. */
async function startLogged(dataDir: string): Promise<{ b: Broker; lines: string[] }> {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split('\n').filter((s) => s !== ''));
      cb();
    },
  });
  const b = await startOn(dataDir, { logger: pino({ level: 'info' }, sink) } as never);
  brokers.push(b);
  return { b, lines };
}

async function stop(b: Broker): Promise<void> {
  await b.stop();
  brokers.splice(brokers.indexOf(b), 1);
}

/** Fills a durable queue with `n` confirmed messages m0..m(n-1) and stops the broker. */
async function seed(dataDir: string, queue: string, n: number): Promise<void> {
  const b = await startOn(dataDir);
  const c = await client(b);
  await c.ch.assertQueue(queue, { durable: true });
  await publishConfirmed(c.cc, queue, n, { size: 100 });
  await c.close();
  await b.stop();
}

function segPath(dataDir: string, queue: string, n = 1, ext = 'seg'): string {
  return join(dataDir, 'queues', queueDirName('/', queue), `${String(n).padStart(8, '0')}.${ext}`);
}

/** Byte offsets of the records of a store file. */
function recordOffsets(buf: Buffer): number[] {
  const out: number[] = [];
  for (let off = 8; off + 8 <= buf.length; off += 8 + buf.readUInt32LE(off)) out.push(off);
  return out;
}

async function labels(b: Broker, queue: string): Promise<{ labels: string[]; redelivered: boolean[] }> {
  const c = await client(b);
  const got = await drain(c.ch, queue);
  await c.close();
  return { labels: got.map(label), redelivered: got.map((m) => m.fields.redelivered) };
}

const range = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `m${i + from}`);

describe('damaged segment files', () => {
  test('a torn tail is truncated with a log line; the messages before it come back and appending continues', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 20);
    const file = segPath(dir, 'q');
    const size = statSync(file).size;
    truncateSync(file, size - 10);
    let { b, lines } = await startLogged(dir);
    expect(lines.some((l) => /truncated a torn tail of \d+ bytes/.test(l))).toBe(true);
    const c = await client(b);
    expect((await c.ch.checkQueue('q')).messageCount).toBe(19);
    await publishConfirmed(c.cc, 'q', 1, { prefix: 'new' });
    await c.close();
    await stop(b);
    ({ b, lines } = await startLogged(dir));
    expect(lines.some((l) => /torn|corrupt/.test(l))).toBe(false);
    expect((await labels(b, 'q')).labels).toEqual([...range(0, 19), 'new0']);
  });

  test('a zeroed tail (preallocated or zero-filled after a crash) is truncated with a log line', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 20);
    appendFileSync(segPath(dir, 'q'), Buffer.alloc(4096));
    const { b, lines } = await startLogged(dir);
    expect(lines.some((l) => /truncated a zeroed tail of 4096 bytes/.test(l))).toBe(true);
    expect((await labels(b, 'q')).labels).toEqual(range(0, 20));
  });

  test('a flipped byte inside a record skips that message alone, with a log line', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 20);
    const file = segPath(dir, 'q');
    const buf = readFileSync(file);
    const off = recordOffsets(buf)[10]!;
    buf[off + 40] = buf[off + 40]! ^ 0xff;
    writeFileSync(file, buf);
    const { b, lines } = await startLogged(dir);
    expect(lines.some((l) => /skipped \d+ corrupt bytes at offset/.test(l))).toBe(true);
    expect((await labels(b, 'q')).labels).toEqual([...range(0, 10), ...range(11, 20)]);
  });

  test('a flipped byte in a record length is skipped too: the next record is found again', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 20);
    const file = segPath(dir, 'q');
    const buf = readFileSync(file);
    const off = recordOffsets(buf)[5]!;
    buf[off + 1] = buf[off + 1]! ^ 0x40;
    writeFileSync(file, buf);
    const { b, lines } = await startLogged(dir);
    expect(lines.some((l) => /skipped \d+ corrupt bytes/.test(l))).toBe(true);
    expect((await labels(b, 'q')).labels).toEqual([...range(0, 5), ...range(6, 20)]);
  });

  test('a segment of an unknown schema version is set aside with a log line, the broker starts', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 3);
    const file = segPath(dir, 'q');
    const buf = readFileSync(file);
    buf.writeUInt32LE(99, 4);
    writeFileSync(file, buf);
    const { b, lines } = await startLogged(dir);
    expect(lines.some((l) => /schema version 99/.test(l))).toBe(true);
    expect(existsSync(`${file}.bad`)).toBe(true);
    expect((await labels(b, 'q')).labels).toEqual([]);
  });

  test('a damaged ack file is logged and its messages come back flagged redelivered', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 6);
    const b = await startOn(dir);
    const c = await client(b);
    const some = await drain(c.ch, 'q', false);
    for (const m of some.slice(0, 5)) c.ch.ack(m);
    await c.ch.checkQueue('q');
    await c.close();
    await b.stop();
    const af = segPath(dir, 'q', 1, 'ack');
    const buf = readFileSync(af);
    buf[buf.length - 3] = buf[buf.length - 3]! ^ 0xff;
    writeFileSync(af, buf);
    const { b: b2, lines } = await startLogged(dir);
    expect(lines.some((l) => l.includes('.ack') && /torn|corrupt/.test(l))).toBe(true);
    const back = await labels(b2, 'q');
    expect(back.labels).toEqual(range(0, 6));
    expect(back.redelivered.every((r) => r)).toBe(true);
  });
});

describe('definitions file', () => {
  test('a missing definitions file: durable queues come back from their own directories, with a warning', async () => {
    const dir = await fresh();
    let b = await startOn(dir);
    const c = await client(b);
    await c.ch.assertExchange('ex', 'direct', { durable: true });
    await c.ch.assertQueue('keep', { durable: true, arguments: { 'x-max-length': 1000 } });
    await c.ch.bindQueue('keep', 'ex', 'k');
    await publishConfirmed(c.cc, 'k', 4, { exchange: 'ex' });
    await c.close();
    await b.stop();
    unlinkSync(join(dir, 'definitions.log'));
    unlinkSync(join(dir, 'definitions.snap'));
    const started = await startLogged(dir);
    b = started.b;
    expect(started.lines.some((l) => /definitions file missing/.test(l))).toBe(true);
    expect(b.core.vhosts.get('/')!.queues.get('keep')!.args['x-max-length']).toBe(1000);
    expect(b.core.vhosts.get('/')!.exchanges.has('ex')).toBe(false);
    expect((await labels(b, 'keep')).labels).toEqual(range(0, 4));
    // the definitions are written again
    expect(existsSync(join(dir, 'definitions.snap'))).toBe(true);
    expect(existsSync(join(dir, 'definitions.log'))).toBe(true);
  });

  test('a definitions file that is not JSON stops the start with a clear error', async () => {
    const dir = await fresh();
    await seed(dir, 'q', 1);
    // an older data directory: definitions.json instead of the definitions log
    unlinkSync(join(dir, 'definitions.log'));
    unlinkSync(join(dir, 'definitions.snap'));
    writeFileSync(join(dir, 'definitions.json'), '{"queues": [');
    await expect(startOn(dir)).rejects.toThrow(/definitions file .* is not valid JSON/);
    // and the directory is not left locked
    unlinkSync(join(dir, 'definitions.json'));
    const b = await startOn(dir);
    brokers.push(b);
  });
});

/**
 * As root, permissions do not stop writes: the broker runs as nobody (uid 65534) instead, which
 * needs the checkout to be readable by other users.
 */
function usableAsNobody(): boolean {
  if (process.getuid?.() !== 0) return true;
  const need = [join(import.meta.dirname, '..', '..', 'bin', 'warren.js'), join(import.meta.dirname, '..', '..', 'dist', 'src', 'main.js')];
  return need.every((file) => {
    if ((statSync(file).mode & 0o004) === 0) return false;
    for (let d = join(file, '..'); d !== '/'; d = join(d, '..')) if ((statSync(d).mode & 0o001) === 0) return false;
    return true;
  });
}

describe('unusable data directory', () => {
  test.skipIf(!usableAsNobody())('a data directory without write permission: a clear startup error, exit code 1', async () => {
    const parent = await fresh();
    chmodSync(parent, 0o755);
    const dir = join(parent, 'ro');
    mkdirSync(dir, { mode: 0o555 });
    chmodSync(dir, 0o555);
    const asRoot = process.getuid?.() === 0;
    const r = await runWarren(
      ['start', '--data-dir', dir, '--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off'],
      {},
      asRoot ? { uid: 65534, gid: 65534 } : {},
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/warren: data directory '.*ro' is not writable: permission denied/);
  });

  test('a data directory path that is a file: a clear startup error', async () => {
    const parent = await fresh();
    const file = join(parent, 'plain-file');
    writeFileSync(file, 'x');
    await expect(startOn(file)).rejects.toThrow(/is not a directory/);
  });

  test('a data directory in use by a running broker is refused', async () => {
    const dir = await fresh();
    const first = await spawnWarren(dir);
    try {
      const r = await runWarren(['start', '--data-dir', dir, '--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`in use by another Warren \\(pid ${first.child.pid}\\)`));
    } finally {
      first.child.kill('SIGTERM');
      await first.exited;
    }
  });
});
