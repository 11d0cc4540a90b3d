/**
 * Aedes (the Node.js MQTT broker) as an MQTT peer: a child process running peers/aedes-server.js
 * with Aedes's defaults, on a free loopback port. Stopped with SIGTERM at the end.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { tail, waitExit } from '../brokers.js';
import type { Broker } from '../brokers.js';

const HERE = dirname(fileURLToPath(import.meta.url));

export function aedesVersion(): string | null {
  try {
    // The package's exports do not include package.json: read it next to the entry point.
    const require = createRequire(import.meta.url);
    const pkg = JSON.parse(readFileSync(join(dirname(require.resolve('aedes')), 'package.json'), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? '?';
  } catch {
    return null;
  }
}

export async function startAedes(o: { verbose: boolean; startTimeoutMs: number }): Promise<Broker> {
  const version = aedesVersion();
  if (version === null) throw new Error('aedes is not installed (npm i -D aedes)');
  const script = join(HERE, 'aedes-server.js');
  // stdin is a pipe the child watches: if the harness dies, the pipe closes and Aedes exits.
  const child = spawn(process.execPath, [script, '0'], { stdio: ['pipe', 'pipe', 'pipe'] });
  const output: string[] = [];
  tail(child.stderr, output, o.verbose);
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await waitExit(child, 10_000);
  };
  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`aedes did not start within ${o.startTimeoutMs} ms`)), o.startTimeoutMs);
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`aedes exited (${signal ?? code}):\n${output.join('\n')}`));
      });
      createInterface({ input: child.stdout }).on('line', (line) => {
        if (o.verbose) process.stderr.write(`  [aedes] ${line}\n`);
        const m = /^aedes ready mqtt=(\d+)/.exec(line);
        if (m?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    name: `Aedes ${version}`,
    isWarren: false,
    endpoints: { mqtt: `mqtt://127.0.0.1:${port}` },
    pid: child.pid ?? null,
    shared: false,
    details: `started by the harness: node peers/aedes-server.js (Aedes ${version}, in-memory, default options; Node.js ${process.version}) (pid ${child.pid ?? '?'})`,
    stop,
  };
}
