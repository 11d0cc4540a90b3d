import { accessSync, constants, mkdirSync, statSync, type Stats } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { startupError } from './store/errors.js';
import { describeErrno } from './store/fs-util.js';

function statOrUndefined(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** Why `path` cannot be written to, or undefined when it can. */
function notWritable(path: string): string | undefined {
  try {
    accessSync(path, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (e) {
    return describeErrno(e);
  }
}


/**
 * Makes sure `dir` can serve as a data directory before the store opens it. An existing directory
 * must be writable. A missing one is created, one level only: its parent must already be a writable
 * directory. Parents are never created, so a typo fails at once with a message instead of building
 * a tree somewhere unexpected (and a recursive mkdir is not attempted where it cannot finish, such
 * as under /proc). Throws a `startup` StoreError saying what is wrong.
 */
export function prepareDataDir(dir: string): void {
  const abs = resolve(dir);
  const st = statOrUndefined(abs);
  if (st) {
    if (!st.isDirectory()) throw startupError(`data directory '${dir}' is not a directory`);
    const why = notWritable(abs);
    if (why !== undefined) throw startupError(`data directory '${dir}' is not writable: ${why}`);
    return;
  }
  const parent = dirname(abs);
  const pst = statOrUndefined(parent);
  if (!pst) throw startupError(`cannot create data directory '${dir}': its parent '${parent}' does not exist (parents are not created)`);
  if (!pst.isDirectory()) throw startupError(`cannot create data directory '${dir}': its parent '${parent}' is not a directory`);
  const why = notWritable(parent);
  if (why !== undefined) throw startupError(`cannot create data directory '${dir}': its parent '${parent}' is not writable: ${why}`);
  try {
    mkdirSync(abs);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EEXIST' && statOrUndefined(abs)?.isDirectory()) return;
    throw startupError(`cannot create data directory '${dir}': ${describeErrno(err)}`);
  }
}

/** An existing data directory, for the offline commands: a missing one is refused, never created. */
export function requireDataDir(dir: string): void {
  const st = statOrUndefined(dir);
  if (!st) throw startupError(`no data directory '${dir}' (give the one a broker ran on with --data-dir)`);
  if (!st.isDirectory()) throw startupError(`data directory '${dir}' is not a directory`);
}
