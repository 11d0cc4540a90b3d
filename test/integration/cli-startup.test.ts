import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker } from '../../src/broker.js';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { runWarren } from '../helpers/warren-process.js';

const ROOT = join(import.meta.dirname, '..', '..');
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-startup-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** `npm start` (without the build step) in its own process group, as a terminal runs it. */
function npmStart(dataDir: string): { ready: Promise<void>; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>; pid: number } {
  const child = spawn('npm', ['start', '--ignore-scripts', '--silent'], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      WARREN_AMQP_PORT: '0',
      WARREN_MQTT_PORT: '0',
      WARREN_STOMP_PORT: '0',
      WARREN_HTTP_PORT: '0',
      WARREN_BIND: '127.0.0.1',
      WARREN_DATA_DIR: dataDir,
      WARREN_LOG_LEVEL: 'warn',
    },
  });
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (/warren ready amqp=\d+/.test(out)) resolve();
    });
    void exited.then(() => reject(new Error(`npm start exited before the ready line: ${err}`)));
  });
  return { ready, exited, pid: child.pid! };
}

describe('npm start', () => {
  test.each(['SIGINT', 'SIGTERM'] as const)('exits 0 after a clean stop on %s sent to the whole process group (as Ctrl-C does)', async (sig) => {
    const run = npmStart(join(dir, `npm-${sig}`));
    await run.ready;
    process.kill(-run.pid, sig);
    expect(await run.exited).toEqual({ code: 0, signal: null });
  }, 60_000);
});

describe('connection options of the admin commands', () => {
  let b: TestBroker;
  let url: string;
  beforeAll(async () => {
    b = await startTestBroker();
    url = `http://127.0.0.1:${b.broker.ports.http}`;
  });
  afterAll(async () => {
    await b.stop();
  });

  test('before the subcommand', async () => {
    const r = await runWarren(['--url', url, '--user', 'guest', '--password=guest', 'declare', 'queue', 'before-q']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(b.broker.core.vhosts.get('/')!.queues.has('before-q')).toBe(true);
  });

  test('between the command and its subcommand, and after it', async () => {
    const r = await runWarren(['declare', `--url=${url}`, 'queue', 'between-q', '--user', 'guest']);
    expect(r.code).toBe(0);
    const after = await runWarren(['list', 'queues', '--json', '--url', url]);
    expect(after.code).toBe(0);
    const names = (JSON.parse(after.stdout) as { name: string }[]).map((q) => q.name);
    expect(names).toContain('between-q');
  });

  test('an option no command knows is still refused', async () => {
    const r = await runWarren(['--bogus', 'declare', 'queue', 'x', '--url', url]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--bogus'/);
  });
});

describe('start', () => {
  test('--help shows the default of each option', async () => {
    const r = await runWarren(['start', '--help']);
    expect(r.code).toBe(0);
    const help = r.stdout.replace(/\s+/g, ' ');
    expect(help).toMatch(/--amqp-port <value> AMQP 0-9-1 port .*\(default: 5672\)/);
    expect(help).toMatch(/\(default: 15672\)/);
    expect(help).toMatch(/\(default: \.\/data\)/);
    expect(help).toMatch(/\(default: none\) \[WARREN_DEFINITIONS\]/);
  });

  test.skipIf(!existsSync('/proc/self'))('a data directory under /proc fails at once with a message', async () => {
    const started = Date.now();
    const r = await runWarren(['start', '--data-dir', '/proc/warren-data', '--amqp-port', '0', '--mqtt-port', 'off', '--stomp-port', 'off', '--http-port', 'off']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^warren: cannot create data directory '\/proc\/warren-data'/);
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 15_000);

  test('a data directory whose parent does not exist is refused, and nothing is created', async () => {
    const target = join(dir, 'missing-parent', 'data');
    const r = await runWarren(['start', '--data-dir', target, '--amqp-port', '0', '--mqtt-port', 'off', '--stomp-port', 'off', '--http-port', 'off']);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`its parent '${join(dir, 'missing-parent')}' does not exist`);
    expect(existsSync(join(dir, 'missing-parent'))).toBe(false);
  });

  test('a data directory that is a file is refused', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'x');
    const r = await runWarren(['start', '--data-dir', file, '--amqp-port', '0', '--mqtt-port', 'off', '--stomp-port', 'off', '--http-port', 'off']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/is not a directory/);
  });
});

describe('definitions import', () => {
  test('a JSON file with no definitions key is refused', async () => {
    const data = join(dir, 'import-data');
    const empty = join(dir, 'not-defs.json');
    await writeFile(empty, JSON.stringify({ hello: 'world' }));
    await mkdir(data);
    const r = await runWarren(['definitions', 'import', empty, '--data-dir', data]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/not a definitions file/);
  });

  test('a data directory that does not exist is refused rather than created', async () => {
    const defs = join(dir, 'defs.json');
    await writeFile(defs, JSON.stringify({ queues: [{ name: 'q', vhost: '/', durable: true, auto_delete: false, arguments: {} }] }));
    const target = join(dir, 'no-such-data');
    const r = await runWarren(['definitions', 'import', defs, '--data-dir', target]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no data directory/);
    expect(existsSync(target)).toBe(false);
  });
});

describe('embedded startBroker', () => {
  test('a listener the caller does not name is off, and without dataDir a temporary directory is used and removed', async () => {
    const cwdData = join(process.cwd(), 'data');
    const hadCwdData = existsSync(cwdData);
    const broker = await startBroker({ amqpPort: 0, bind: '127.0.0.1', logLevel: 'silent' });
    expect(Object.keys(broker.ports)).toEqual(['amqp']);
    expect(broker.readyLine).toMatch(/^warren ready amqp=\d+$/);
    expect(broker.options.mqttPort).toBeNull();
    expect(broker.options.httpPort).toBeNull();
    const dataDir = broker.options.dataDir;
    expect(dataDir.startsWith(tmpdir())).toBe(true);
    expect(existsSync(dataDir)).toBe(true);
    await broker.stop();
    expect(existsSync(dataDir)).toBe(false);
    expect(existsSync(cwdData)).toBe(hadCwdData);
  });
});

describe('the README', () => {
  test('the embedded example runs as written and prints a ready line with ephemeral ports', async () => {
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
    const block = /```js\n(import \{ mkdtemp[\s\S]*?startBroker[\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const child = spawn(process.execPath, ['--input-type=module', '-e', block!], { cwd: ROOT });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code).toBe(0);
    expect(out.trim()).toMatch(/^warren ready amqp=\d+ http=\d+$/);
    expect(out).not.toMatch(/amqp=5672|http=15672/);
  }, 30_000);
});
