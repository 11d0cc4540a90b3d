import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../logger.js';

/**
 * `warren start --workers N`: N node processes on one host, sharing the listening ports through
 * Node's `cluster` module (the primary holds each listening socket and hands connections to the
 * workers in turn). Each worker is a full cluster node: it joins through the engine under the
 * name `<node-name>-<i>` with a data directory `<data-dir>/worker-<i>` of its own, so queues,
 * connections and definitions behave as on any other node. The primary only supervises: a worker
 * that dies is started again; SIGTERM or SIGINT stops them all.
 */

/** Set by the primary in each worker's environment: the worker's number, from 1. */
export const WORKER_INDEX_ENV = 'WARREN_WORKER_INDEX';

/** Which worker this process is (1-based), or undefined when it is not a worker. */
export function workerIndex(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const n = Number(process.env[WORKER_INDEX_ENV]);
  return Number.isInteger(n) && n >= 1 ? n : undefined;
}

/** A worker's node name: `<base>-<i>` (the base cut so that the name stays within 64 characters). */
export function workerNodeName(base: string, index: number): string {
  const suffix = `-${index}`;
  return `${base.slice(0, 64 - suffix.length)}${suffix}`;
}

/** Message a worker sends the primary once its listeners are open. */
interface ReadyMessage {
  readonly warren: 'ready';
  readonly line: string;
}

function isReady(m: unknown): m is ReadyMessage {
  return typeof m === 'object' && m !== null && (m as { warren?: unknown }).warren === 'ready' && typeof (m as { line?: unknown }).line === 'string';
}

/** In a worker: tells the primary the worker is ready (its ready line). */
export function reportReady(line: string): void {
  process.send?.({ warren: 'ready', line } satisfies ReadyMessage);
}

export interface PrimaryOptions {
  workers: number;
  log: Logger;
  /** Where the one ready line goes once every worker is ready. */
  out: (line: string) => void;
  /** First delay before a crashed worker is started again; doubles while it keeps crashing. */
  restartDelayMs?: number;
  /** A worker stopping longer than this after SIGTERM is killed. */
  stopTimeoutMs?: number;
}

/** A worker that lived at least this long before it died is restarted at the first delay again. */
const STABLE_MS = 30_000;
const MAX_RESTART_DELAY_MS = 10_000;

/**
 * Runs the primary: forks the workers (each runs the same command line), prints one ready line
 * when all are ready, restarts a worker that exits, and on SIGTERM / SIGINT stops every worker
 * and resolves with the exit code. A worker that fails before any worker was ever ready ends the
 * whole start (a wrong option or an unreachable engine would fail every restart the same way).
 */
export function runPrimary(opts: PrimaryOptions): Promise<number> {
  const { log, workers: n } = opts;
  const firstDelay = opts.restartDelayMs ?? 500;
  const ready = new Set<number>();
  let everReady = false;
  let stopping = false;
  const byIndex = new Map<number, { worker: Worker; startedAt: number; delay: number }>();
  let resolveDone: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (resolveDone = resolve));
  let exitCode = 0;

  const finishIfAllGone = (): void => {
    if (stopping && [...byIndex.values()].every((w) => w.worker.isDead())) resolveDone(exitCode);
  };

  const fork = (index: number, delay: number): void => {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(index) });
    byIndex.set(index, { worker, startedAt: Date.now(), delay });
    worker.on('message', (m: unknown) => {
      if (!isReady(m)) return;
      ready.add(index);
      log.info({ worker: index, pid: worker.process.pid }, 'worker ready');
      if (!everReady && ready.size === n) {
        everReady = true;
        opts.out(`${m.line} workers=${n}`);
      }
    });
    worker.on('exit', (code, signal) => {
      ready.delete(index);
      if (stopping) {
        finishIfAllGone();
        return;
      }
      if (!everReady && code !== 0) {
        log.error({ worker: index, code, signal }, 'worker failed to start: stopping the others');
        exitCode = code ?? 1;
        stop('worker failed');
        return;
      }
      const entry = byIndex.get(index);
      const lived = entry === undefined ? 0 : Date.now() - entry.startedAt;
      const next = lived >= STABLE_MS ? firstDelay : Math.min(MAX_RESTART_DELAY_MS, (entry?.delay ?? firstDelay / 2) * 2);
      log.warn({ worker: index, pid: worker.process.pid, code, signal, restartInMs: next }, 'worker exited: starting it again');
      setTimeout(() => {
        if (!stopping) fork(index, next);
      }, next).unref();
    });
  };

  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ reason: why }, 'stopping the workers');
    for (const { worker } of byIndex.values()) if (!worker.isDead()) worker.process.kill('SIGTERM');
    const timer = setTimeout(() => {
      for (const { worker } of byIndex.values()) {
        if (!worker.isDead()) {
          log.warn({ pid: worker.process.pid }, 'worker still running: killing it');
          worker.process.kill('SIGKILL');
        }
      }
    }, opts.stopTimeoutMs ?? 30_000);
    timer.unref();
    finishIfAllGone();
  };

  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // New certificates and a reopened log file: each worker does its own.
  process.on('SIGHUP', () => {
    for (const { worker } of byIndex.values()) if (!worker.isDead()) worker.process.kill('SIGHUP');
  });
  for (let i = 1; i <= n; i++) fork(i, firstDelay / 2);
  log.info({ workers: n }, 'started the workers');
  return done;
}
