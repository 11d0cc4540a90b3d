import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { procState } from '../../src/store/lock.js';
import { waitFor } from '../helpers/broker.js';
import { WARREN_BIN, runWarren, spawnWarren, type WarrenProcess } from '../helpers/warren-process.js';

/** The data-directory lock against real broker processes: a SIGKILLed, unreaped owner, and a live one. */
let dir: string;
const cleanup: Array<() => void> = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-lock-it-'));
});
afterEach(async () => {
  for (const fn of cleanup.splice(0)) fn();
  await rm(dir, { recursive: true, force: true });
});

const LISTENERS = ['--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off', '--bind', '127.0.0.1', '--log-level', 'warn'];

async function stop(w: WarrenProcess): Promise<void> {
  w.child.kill('SIGTERM');
  expect(await w.exited, w.stderr.join('')).toBe(0);
}

/**
 * A broker whose parent never reaps it: `sh` starts it in the background, prints its pid, and
 * becomes `sleep` (exec), which never waits. Killed, the broker stays a zombie until `sleep` ends,
 * as under a container init that does not reap or a supervisor that restarts at once.
 */
async function unreapedBroker(): Promise<{ pid: number; parent: ChildProcess }> {
  const script = `"$0" "$1" start --data-dir "$2" ${LISTENERS.join(' ')} & echo "pid $!"; exec sleep 120`;
  const parent = spawn('sh', ['-c', script, process.execPath, WARREN_BIN, dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanup.push(() => parent.kill('SIGKILL'));
  let out = '';
  parent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const pid = Number(await waitFor(() => /pid (\d+)\n/.exec(out)?.[1], 10_000, 'broker pid'));
  cleanup.push(() => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  });
  await waitFor(() => /warren ready amqp=\d+/.test(out), 15_000, 'ready line');
  return { pid, parent };
}

describe.skipIf(process.platform !== 'linux')('data directory lock across processes', () => {
  test('after kill -9, a broker starts on the directory while the dead one is still an unreaped zombie', async () => {
    const { pid } = await unreapedBroker();
    process.kill(pid, 'SIGKILL');
    await waitFor(() => procState(pid).kind === 'zombie', 5000, 'the killed broker to be a zombie');
    const next = await spawnWarren(dir);
    expect(next.stderr.join('')).toContain(`taking over the data directory lock of pid ${pid}`);
    expect(procState(pid).kind).toBe('zombie'); // it really was never reaped
    await stop(next);
  });

  test('two live brokers can never share a directory', async () => {
    const first = await spawnWarren(dir);
    const second = await runWarren(['start', '--data-dir', dir, ...LISTENERS]);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain(`data directory '${dir}' is in use by another Warren (pid ${first.child.pid})`);
    await stop(first);
    // Stopped cleanly, the lock is gone and the next broker starts without a takeover.
    const third = await spawnWarren(dir);
    expect(third.stderr.join('')).not.toContain('taking over');
    await stop(third);
  });
});
