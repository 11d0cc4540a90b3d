import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { waitFor } from '../helpers/broker.js';
import { WARREN_BIN } from '../helpers/warren-process.js';

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-gc-'));
});
afterAll(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

test('under node --expose-gc, SIGUSR2 runs a full garbage collection and logs the memory after it', async () => {
  const args = ['--expose-gc', WARREN_BIN, 'start', '--data-dir', dataDir, '--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off', '--bind', '127.0.0.1', '--log-level', 'info', '--log-format', 'json'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  try {
    await waitFor(() => stdout.includes('warren ready'), 15_000, 'the ready line');
    child.kill('SIGUSR2');
    const line = await waitFor(() => stderr.split('\n').find((l) => l.includes('memory after a full garbage collection')), 10_000, 'the memory line');
    const m = (JSON.parse(line) as { memory: Record<string, number> }).memory;
    expect(m['heapUsed']).toBeGreaterThan(0);
    expect(m['rss']).toBeGreaterThan(m['heapUsed']!);
    expect(Object.keys(m).sort()).toEqual(['arrayBuffers', 'external', 'heapTotal', 'heapUsed', 'rss']);
    // The broker keeps running.
    child.kill('SIGUSR2');
    await waitFor(() => stderr.split('\n').filter((l) => l.includes('memory after a full garbage collection')).length >= 2, 10_000, 'a second memory line');
    expect(child.exitCode).toBeNull();
  } finally {
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
  }
});
