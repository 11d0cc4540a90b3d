import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';

const BIN = join(import.meta.dirname, '..', '..', 'bin', 'warren.js');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Run {
  child: ChildProcessWithoutNullStreams;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

function run(args: string[], env: Record<string, string> = {}): Run {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, WARREN_LOG_LEVEL: 'warn', ...env },
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (s: string) => stdout.push(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stdout, stderr, exited };
}

async function readyLine(r: Run): Promise<string> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const out = r.stdout.join('');
    if (out.includes('\n')) return out.trim();
    if (Date.now() > deadline) throw new Error(`no ready line; stderr: ${r.stderr.join('')}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const base = ['start', '--mqtt-port', 'off', '--stomp-port', 'off'];

describe('the warren command', () => {
  test('start prints one ready line with the real ports, and SIGTERM closes clients and exits 0', async () => {
    const r = run([...base, '--amqp-port', '0', '--http-port', '0', '--bind', '127.0.0.1', '--data-dir', join(dir, 'a')]);
    const line = await readyLine(r);
    const m = /^warren ready amqp=(\d+) http=(\d+)$/.exec(line);
    expect(m).not.toBeNull();
    const port = Number(m![1]);
    expect(port).toBeGreaterThan(0);
    const c = await connect(`amqp://guest:guest@127.0.0.1:${port}`);
    // amqplib reports a server-initiated close on 'close', with the server's reason
    const closed = new Promise<Error>((resolve) => c.once('close', resolve));
    r.child.kill('SIGTERM');
    const err = await closed;
    expect(err.message).toMatch(/320/);
    expect(err.message).toMatch(/CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'/);
    expect(await r.exited).toBe(0);
    expect(r.stdout.join('').trim().split('\n')).toHaveLength(1);
  });

  test('SIGINT stops the broker too', async () => {
    const r = run([...base, '--amqp-port', '0', '--http-port', 'off', '--data-dir', join(dir, 'b')]);
    expect(await readyLine(r)).toMatch(/^warren ready amqp=\d+$/);
    r.child.kill('SIGINT');
    expect(await r.exited).toBe(0);
  });

  test('an invalid option value gets a one-line error naming it and exit code 2', async () => {
    const r = run([...base, '--amqp-port', 'seventy']);
    expect(await r.exited).toBe(2);
    const err = r.stderr.join('').trim();
    expect(err.split('\n')).toHaveLength(1);
    expect(err).toMatch(/--amqp-port/);
  });

  test('an unknown option exits 2', async () => {
    const r = run([...base, '--no-such-thing', '1']);
    expect(await r.exited).toBe(2);
    expect(r.stderr.join('')).toMatch(/no-such-thing/);
  });

  test('an invalid environment variable is reported by its option name', async () => {
    const r = run([...base], { WARREN_HTTP_PORT: '99999' });
    expect(await r.exited).toBe(2);
    expect(r.stderr.join('')).toMatch(/--http-port/);
  });

  test('precedence: config file < environment < flags; off disables a listener', async () => {
    const cfg = join(dir, 'warren.json');
    await writeFile(cfg, JSON.stringify({ amqpPort: 'off', httpPort: 0, dataDir: join(dir, 'c'), logLevel: 'warn' }));
    // the file disables AMQP; the environment turns it back on (ephemeral); the flag disables HTTP
    const r = run([...base, '--config', cfg, '--http-port', 'off'], { WARREN_AMQP_PORT: '0' });
    expect(await readyLine(r)).toMatch(/^warren ready amqp=\d+$/);
    r.child.kill('SIGTERM');
    expect(await r.exited).toBe(0);
  });

  test('a port already in use is a clear startup error', async () => {
    const first = run([...base, '--amqp-port', '0', '--http-port', 'off', '--data-dir', join(dir, 'd')]);
    const port = /amqp=(\d+)/.exec(await readyLine(first))![1]!;
    const second = run([...base, '--amqp-port', port, '--http-port', 'off', '--data-dir', join(dir, 'e')]);
    expect(await second.exited).not.toBe(0);
    expect(second.stderr.join('')).toMatch(/EADDRINUSE|in use/);
    first.child.kill('SIGTERM');
    await first.exited;
  });
});
