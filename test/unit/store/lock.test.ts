import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { LOCK_FILE, parseLock, procState, releaseLock, takeLock } from '../../../src/store/lock.js';
import { waitFor } from '../../helpers/broker.js';

let dir: string;
const children: ChildProcess[] = [];
let logs: string[];
let log: ReturnType<typeof pino>;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'warren-lock-'));
  logs = [];
  log = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (logs.push(c.toString()), cb()) }));
});
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

/** A live process that is not this one. */
async function liveProcess(): Promise<number> {
  const c = spawn('sleep', ['30'], { stdio: 'ignore' });
  children.push(c);
  await new Promise((r) => c.once('spawn', r));
  return c.pid!;
}

/**
 * A zombie: `sh` starts `sleep` in the background, prints its pid and becomes a second `sleep`
 * (exec) that never waits for it. Killed, the first stays a zombie until its parent exits.
 */
async function zombie(): Promise<number> {
  const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; exec sleep 30'], { stdio: ['ignore', 'pipe', 'ignore'] });
  children.push(parent);
  let out = '';
  parent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const pid = Number(await waitFor(() => /^(\d+)\n/.exec(out)?.[1], 5000, 'child pid'));
  process.kill(pid, 'SIGKILL');
  await waitFor(() => procState(pid).kind === 'zombie', 5000, 'zombie state');
  return pid;
}

function startOf(pid: number): string {
  const s = procState(pid);
  if (s.kind !== 'running') throw new Error(`process ${pid} is ${s.kind}`);
  return s.start;
}

const lockFile = (): string => join(dir, LOCK_FILE);

describe.skipIf(process.platform !== 'linux')('data directory lock', () => {
  test('the lock holds this process id and start time, and is released', () => {
    const fd = takeLock(dir, log);
    expect(parseLock(readFileSync(lockFile(), 'utf8'))).toEqual({ pid: process.pid, start: startOf(process.pid) });
    releaseLock(dir, fd);
    expect(() => readFileSync(lockFile())).toThrow(/ENOENT/);
  });

  test('a lock held by a live process is refused', async () => {
    const pid = await liveProcess();
    writeFileSync(lockFile(), `${pid} ${startOf(pid)}\n`);
    expect(() => takeLock(dir, log)).toThrow(`data directory '${dir}' is in use by another Warren (pid ${pid})`);
  });

  test('an old-format lock (pid only) of a live process is refused', async () => {
    const pid = await liveProcess();
    writeFileSync(lockFile(), `${pid}\n`);
    expect(() => takeLock(dir, log)).toThrow(/in use by another Warren/);
  });

  test('a lock whose owner is a zombie is taken over, with a log line', async () => {
    const pid = await zombie();
    writeFileSync(lockFile(), `${pid} 12345\n`);
    const fd = takeLock(dir, log);
    expect(parseLock(readFileSync(lockFile(), 'utf8'))?.pid).toBe(process.pid);
    expect(logs.join('')).toContain(`taking over the data directory lock of pid ${pid}`);
    closeSync(fd);
  });

  test('a lock whose pid now belongs to another process (different start time) is taken over', async () => {
    const pid = await liveProcess();
    writeFileSync(lockFile(), `${pid} ${Number(startOf(pid)) - 1}\n`);
    closeSync(takeLock(dir, log));
    expect(parseLock(readFileSync(lockFile(), 'utf8'))?.pid).toBe(process.pid);
  });

  test('a lock whose process has exited and been reaped is taken over', async () => {
    const c = spawn('true', { stdio: 'ignore' });
    const pid = await new Promise<number>((r) => c.once('exit', () => r(c.pid!)));
    writeFileSync(lockFile(), `${pid} 1\n`);
    closeSync(takeLock(dir, log));
    expect(parseLock(readFileSync(lockFile(), 'utf8'))?.pid).toBe(process.pid);
  });

  test('an empty lock is left alone while it may be one being written, and taken over later', () => {
    writeFileSync(lockFile(), '');
    expect(() => takeLock(dir, log)).toThrow(/being locked by another Warren/);
    const old = new Date(Date.now() - 60_000);
    utimesSync(lockFile(), old, old);
    closeSync(takeLock(dir, log));
    expect(parseLock(readFileSync(lockFile(), 'utf8'))?.pid).toBe(process.pid);
  });

  test('a takeover in progress by a live process is not disturbed', async () => {
    const dead = await zombie();
    const taker = await liveProcess();
    writeFileSync(lockFile(), `${dead} 1\n`);
    writeFileSync(join(dir, 'warren.lock.takeover'), `${taker} ${startOf(taker)}\n`);
    expect(() => takeLock(dir, log)).toThrow(/cannot lock data directory/);
    expect(readFileSync(lockFile(), 'utf8')).toBe(`${dead} 1\n`);
  });

  test('releasing does not remove a lock that another process has since taken', () => {
    const fd = takeLock(dir, log);
    writeFileSync(lockFile(), '1 1\n');
    releaseLock(dir, fd);
    expect(readFileSync(lockFile(), 'utf8')).toBe('1 1\n');
  });
});
