import { pino, type DestinationStream, type Logger } from 'pino';

export type { Logger };

export interface LogOutput {
  /** 'pretty' (one readable line per entry) or 'json'; default pretty when the log goes to a terminal. */
  format?: string | undefined;
  /** Append to this file instead of writing to stderr. */
  file?: string | undefined;
}

/** A log destination whose file can be opened again (after logrotate moved it). */
export interface Reopenable {
  reopen(): void;
}

const REOPEN = Symbol('warren.logReopen');

/**
 * Logs on stderr (stdout carries only the ready line), or in a file: JSON lines, or with
 * `format: 'pretty'` one line per entry for a person (`12:00:01.123 INFO  broker started ports=...`).
 */
export function createLogger(level: string, out: LogOutput = {}): Logger {
  const dest = out.file === undefined ? pino.destination({ fd: 2, sync: false }) : pino.destination({ dest: out.file, append: true, mkdir: false, sync: false });
  const pretty = out.format === 'pretty' || (out.format === undefined && out.file === undefined && process.stderr.isTTY === true);
  const stream: DestinationStream = pretty ? new PrettyStream(dest) : dest;
  const log = pino({ level, base: { name: 'warren' } }, stream);
  // Only a file can be opened again (sonic-boom throws for a file descriptor such as stderr).
  if (out.file !== undefined) (log as Logger & { [REOPEN]?: Reopenable })[REOPEN] = { reopen: () => dest.reopen() };
  return log;
}

/** Reopens a file log (SIGHUP after rotation); false (nothing done) for stderr. */
export function reopenLog(log: Logger): boolean {
  const r = (log as Logger & { [REOPEN]?: Reopenable })[REOPEN];
  r?.reopen();
  return r !== undefined;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO ', 40: 'WARN ', 50: 'ERROR', 60: 'FATAL' };
const SKIP = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

/** pino's JSON lines turned into one readable line each; errors keep their stack below the line. */
class PrettyStream implements DestinationStream {
  constructor(private readonly dest: DestinationStream & { flushSync?: () => void; flush?: (cb: (err?: Error) => void) => void }) {}

  write(line: string): void {
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.dest.write(line);
      return;
    }
    const t = new Date(typeof entry['time'] === 'number' ? entry['time'] : Date.now());
    const time = t.toISOString().slice(11, 23);
    let text = `${time} ${LEVEL_NAMES[Number(entry['level'])] ?? String(entry['level'])} ${String(entry['msg'] ?? '')}`;
    let stack = '';
    for (const [k, v] of Object.entries(entry)) {
      if (SKIP.has(k)) continue;
      if (typeof v === 'object' && v !== null && typeof (v as { stack?: unknown }).stack === 'string') {
        stack += `\n    ${String((v as { stack: string }).stack).replaceAll('\n', '\n    ')}`;
        continue;
      }
      text += ` ${k}=${typeof v === 'string' ? (/\s/.test(v) || v === '' ? JSON.stringify(v) : v) : JSON.stringify(v)}`;
    }
    this.dest.write(`${text}${stack}\n`);
  }

  flushSync(): void {
    this.dest.flushSync?.();
  }

  /** `logger.flush(cb)` before exit reaches the file or stderr behind this stream. */
  flush(cb: (err?: Error) => void): void {
    if (this.dest.flush) this.dest.flush(cb);
    else cb();
  }
}
