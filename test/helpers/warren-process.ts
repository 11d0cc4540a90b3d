import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';

export const WARREN_BIN = join(import.meta.dirname, '..', '..', 'bin', 'warren.js');
/** A broker process whose store is tuned from the environment (see the file). */
const TUNED_CHILD = join(import.meta.dirname, 'warren-tuned-child.mjs');

export interface WarrenProcess {
  child: ChildProcessWithoutNullStreams;
  /** The AMQP port from the ready line. */
  amqpPort: number;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
}

/**
 * Starts `node bin/warren.js start` on `dataDir` with AMQP on an ephemeral port and every other
 * listener off; resolves once the ready line is printed, rejects if the process exits first.
 */
export async function spawnWarren(
  dataDir: string,
  extra: string[] = [],
  opts: { logLevel?: string; timeoutMs?: number; tuned?: { queueMemoryBudget: number; segmentSize: number; definitionsCompactBytes?: number } } = {},
): Promise<WarrenProcess> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const level = opts.logLevel ?? 'warn';
  const t = opts.tuned;
  const args = t
    ? [TUNED_CHILD, dataDir]
    : [WARREN_BIN, 'start', '--data-dir', dataDir, '--amqp-port', '0', '--http-port', 'off', '--mqtt-port', 'off', '--stomp-port', 'off', '--bind', '127.0.0.1', '--log-level', level, ...extra];
  const env = t
    ? { ...process.env, WARREN_LOG_LEVEL: level, WARREN_TEST_QUEUE_MEMORY_BUDGET: String(t.queueMemoryBudget), WARREN_TEST_SEGMENT_SIZE: String(t.segmentSize), WARREN_TEST_DEFINITIONS_COMPACT_BYTES: String(t.definitionsCompactBytes ?? 1 << 20) }
    : process.env;
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  const stdout: string[] = [];
  const stderr: string[] = [];
  child.stdout.setEncoding('utf8').on('data', (s: string) => stdout.push(s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ready line after ${timeoutMs} ms: ${stderr.join('')}`)), timeoutMs);
    const onData = (): void => {
      const m = /warren ready amqp=(\d+)/.exec(stdout.join(''));
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`warren exited with ${code} before it was ready: ${stderr.join('')}`));
    });
  });
  return { child, amqpPort: port, stdout, stderr, exited };
}

/** Runs a warren command to completion. */
export function runWarren(
  args: string[],
  env: Record<string, string> = {},
  ids: { uid?: number; gid?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [WARREN_BIN, ...args], { env: { ...process.env, ...env }, ...ids });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}
