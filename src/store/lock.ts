import { closeSync, fsyncSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../logger.js';
import { startupError } from './errors.js';
import { describeErrno, errnoCode } from './fs-util.js';

/** The lock file in a data directory: `<pid> <start time>\n` of the broker that holds it. */
export const LOCK_FILE = 'warren.lock';
/** A lock file without an owner yet may be one another broker has just created: it is stale only after this. */
const UNWRITTEN_GRACE_MS = 5000;
/** Held only while a stale lock is being replaced, so that two starting brokers cannot both take it over. */
const TAKEOVER_FILE = 'warren.lock.takeover';

/** Who a lock file names. `start` is the process start time (Linux: /proc/PID/stat field 22), '' where unknown. */
export interface LockOwner {
  pid: number;
  start: string;
}

/** What /proc says about a process: gone, a zombie (killed, not yet reaped), or running since `start`. */
type ProcState = { kind: 'gone' } | { kind: 'zombie' } | { kind: 'running'; start: string } | { kind: 'unknown' };

/** Linux: the state and start time of `pid` from /proc/PID/stat; 'unknown' without /proc. */
export function procState(pid: number): ProcState {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch (e) {
    if (errnoCode(e) === 'ENOENT' || errnoCode(e) === 'ESRCH') return readable('/proc/self/stat') ? { kind: 'gone' } : { kind: 'unknown' };
    return { kind: 'unknown' };
  }
  // "pid (comm) state ppid ... starttime ...": comm may hold spaces and parentheses; it ends at the last ')'.
  const close = stat.lastIndexOf(')');
  if (close < 0) return { kind: 'unknown' };
  const fields = stat.slice(close + 2).split(' ');
  const state = fields[0];
  if (state === 'Z' || state === 'X' || state === 'x') return { kind: 'zombie' };
  const start = fields[19]; // field 22 overall: the 20th after the state
  return start === undefined || !/^\d+$/.test(start) ? { kind: 'unknown' } : { kind: 'running', start };
}

function readable(path: string): boolean {
  try {
    readFileSync(path, 'latin1');
    return true;
  } catch {
    return false;
  }
}

/** This process as a lock owner. */
export function selfOwner(): LockOwner {
  const s = procState(process.pid);
  return { pid: process.pid, start: s.kind === 'running' ? s.start : '' };
}

export function parseLock(text: string): LockOwner | undefined {
  const m = /^(\d+)(?: (\d+))?\s*$/.exec(text);
  if (m === null) return undefined;
  const pid = Number(m[1]);
  return Number.isSafeInteger(pid) && pid > 0 ? { pid, start: m[2] ?? '' } : undefined;
}

/**
 * Whether the process a lock names still holds it: it runs, is not a zombie, and (when both start
 * times are known) is the same process, not a later one that was given the same pid.
 */
export function ownerAlive(owner: LockOwner): boolean {
  const s = procState(owner.pid);
  switch (s.kind) {
    case 'gone':
    case 'zombie':
      return false;
    case 'running':
      return owner.start === '' || owner.start === s.start;
    case 'unknown':
      try {
        process.kill(owner.pid, 0);
        return true;
      } catch (e) {
        return errnoCode(e) === 'EPERM';
      }
  }
}

function writeOwner(fd: number, owner: LockOwner): void {
  writeSync(fd, `${owner.pid}${owner.start === '' ? '' : ` ${owner.start}`}\n`);
  fsyncSync(fd);
}

function readOwner(file: string): { owner: LockOwner | undefined; text: string } | undefined {
  try {
    const text = readFileSync(file, 'utf8');
    return { owner: parseLock(text), text };
  } catch (e) {
    if (errnoCode(e) === 'ENOENT') return undefined;
    throw e;
  }
}

function describe(owner: LockOwner | undefined): string {
  if (owner === undefined) return 'an unreadable owner';
  return `pid ${owner.pid}`;
}

/**
 * Takes `<dir>/warren.lock`: created exclusively (O_EXCL) and holding this process's pid and
 * start time; kept open while the broker runs. A lock whose owner is dead, a zombie (killed and
 * not reaped yet, as after `kill -9` with no init reaping or a supervisor restarting at once) or
 * a different process with a reused pid is taken over, with a log line. A lock whose owner is
 * alive is never taken: two brokers can never share a directory. A lock naming this very process
 * (a store opened again in the same process after it was not closed) is taken over as well.
 */
export function takeLock(dir: string, log: Logger): number {
  const file = join(dir, LOCK_FILE);
  const me = selfOwner();
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeOwner(fd, me);
      return fd;
    } catch (e) {
      if (e instanceof Error && e.name === 'StoreError') throw e;
      if (errnoCode(e) !== 'EEXIST') throw startupError(`data directory '${dir}' is not writable: ${describeErrno(e)}`);
    }
    const seen = readOwner(file);
    if (seen === undefined) continue; // released meanwhile: try again
    const owner = seen.owner;
    if (owner !== undefined && owner.pid !== process.pid && ownerAlive(owner)) {
      throw startupError(`data directory '${dir}' is in use by another Warren (pid ${owner.pid})`);
    }
    if (owner === undefined && Date.now() - mtimeOf(file) < UNWRITTEN_GRACE_MS) {
      throw startupError(`data directory '${dir}' is being locked by another Warren`);
    }
    const why = owner === undefined ? 'it names no process' : owner.pid === process.pid ? 'it was left by this process' : 'that process is gone';
    takeOver(dir, file, seen.text, () => log.warn({ dataDir: dir, owner: owner?.pid }, `taking over the data directory lock of ${describe(owner)}: ${why}`));
  }
  throw startupError(`cannot lock data directory '${dir}'`);
}

/**
 * Removes a stale lock, but only while holding the takeover lock and only if the lock still has
 * the content that was judged stale: of two brokers starting at once, one removes it and creates
 * its own; the other then finds a live owner.
 */
function takeOver(dir: string, file: string, staleText: string, onTakeOver: () => void): void {
  const takeoverFile = join(dir, TAKEOVER_FILE);
  let fd: number;
  try {
    fd = openSync(takeoverFile, 'wx');
  } catch (e) {
    if (errnoCode(e) !== 'EEXIST') throw startupError(`data directory '${dir}' is not writable: ${describeErrno(e)}`);
    // Another broker is taking over right now, or one died doing it.
    const other = readOwner(takeoverFile);
    if (other?.owner !== undefined && ownerAlive(other.owner)) return;
    unlinkQuiet(takeoverFile);
    return;
  }
  try {
    writeOwner(fd, selfOwner());
    const now = readOwner(file);
    if (now !== undefined && now.text === staleText) {
      onTakeOver();
      unlinkQuiet(file);
    }
  } finally {
    closeSync(fd);
    unlinkQuiet(takeoverFile);
  }
}

function mtimeOf(file: string): number {
  try {
    return statSync(file).mtimeMs;
  } catch {
    return 0;
  }
}

function unlinkQuiet(file: string): void {
  try {
    unlinkSync(file);
  } catch (e) {
    if (errnoCode(e) !== 'ENOENT') throw e;
  }
}

/** Closes the lock file and removes it if it still names this process. */
export function releaseLock(dir: string, fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
  try {
    const seen = readOwner(join(dir, LOCK_FILE));
    if (seen?.owner?.pid === process.pid) unlinkSync(join(dir, LOCK_FILE));
  } catch {
    // already gone
  }
}

