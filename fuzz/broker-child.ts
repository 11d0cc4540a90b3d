import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Ports } from './case.js';

/** bin/warren.js, found from here whether this runs compiled (dist/fuzz) or from source (fuzz). */
function warrenBin(): string {
  for (let dir = import.meta.dirname; ; dir = dirname(dir)) {
    const bin = join(dir, 'bin', 'warren.js');
    if (existsSync(bin)) return bin;
    if (dirname(dir) === dir) throw new Error('bin/warren.js not found');
  }
}
/** Bytes of the child's stderr kept for a failure report. */
const TAIL_BYTES = 64 * 1024;

/** `node bin/warren.js start` with every listener on an ephemeral port, as the fuzzers' target. */
export class BrokerChild {
  private tail = '';
  /** Process warnings the broker printed (`(node:PID) XxxWarning: ...`): a timer overflow, a listener leak. */
  readonly warnings: string[] = [];
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;

  private constructor(
    readonly child: ChildProcess,
    readonly ports: Ports,
  ) {
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      });
    });
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** The last 64 KiB the broker wrote on stderr (its log). */
  get stderrTail(): string {
    return this.tail;
  }

  static async start(dataDir: string, logLevel: string, timeoutMs = 30_000): Promise<BrokerChild> {
    const args = [warrenBin(), 'start', '--data-dir', dataDir, '--bind', '127.0.0.1', '--log-level', logLevel];
    for (const p of ['amqp', 'mqtt', 'stomp', 'http']) args.push(`--${p}-port`, '0');
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let b: BrokerChild | undefined;
    let early = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => {
      if (b) {
        const w = /\(node:\d+\) (\w*Warning: .*)/.exec(s);
        if (w) b.warnings.push(w[1]!);
        b.tail += s;
        if (b.tail.length > TAIL_BYTES * 2) b.tail = b.tail.slice(-TAIL_BYTES);
      } else early += s;
    });
    const ports = await new Promise<Ports>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ready line after ${timeoutMs} ms: ${early}`)), timeoutMs);
      child.stdout!.setEncoding('utf8').on('data', (s: string) => {
        stdout += s;
        const m = /warren ready (.*)\n/.exec(stdout);
        if (!m) return;
        clearTimeout(timer);
        const found: Record<string, number> = {};
        for (const kv of m[1]!.split(' ')) {
          const [k, v] = kv.split('=');
          if (k !== undefined && v !== undefined) found[k] = Number(v);
        }
        const { amqp, mqtt, stomp, http } = found;
        if (amqp === undefined || mqtt === undefined || stomp === undefined || http === undefined) reject(new Error(`ready line without every port: ${m[0]}`));
        else resolve({ amqp, mqtt, stomp, http });
      });
      child.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`warren exited with ${code} before it was ready: ${early}`));
      });
    });
    b = new BrokerChild(child, ports);
    b.tail = early;
    return b;
  }

  /** Resident set size of the child in MiB, from /proc (undefined where there is no /proc). */
  async rssMiB(): Promise<number | undefined> {
    try {
      const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
      const m = /VmRSS:\s+(\d+) kB/.exec(status);
      return m ? Number(m[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  async stop(): Promise<void> {
    if (!this.alive) return;
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(t);
  }
}
