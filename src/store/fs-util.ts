import {
  closeSync,
  fdatasyncSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { dirname } from 'node:path';

/** fsync a directory so that a created, renamed or deleted entry in it survives a power loss. */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export async function fsyncDir(dir: string): Promise<void> {
  const h = await open(dir, 'r');
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

/**
 * Replaces `file` atomically: the data goes to a temporary file, is fsynced, renamed over the
 * target, and the directory is fsynced. A crash leaves either the old or the new content.
 */
export async function atomicWriteFile(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.tmp`;
  const h = await open(tmp, 'w');
  try {
    await h.writeFile(data);
    await h.datasync();
  } finally {
    await h.close();
  }
  await rename(tmp, file);
  await fsyncDir(dirname(file));
}

export function atomicWriteFileSync(file: string, data: string | Buffer): void {
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    for (let off = 0; off < buf.length; ) off += writeSync(fd, buf, off, buf.length - off);
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
  fsyncDirSync(dirname(file));
}

/** The file's content, or undefined when it does not exist. */
export function readIfExists(file: string): Buffer | undefined {
  try {
    return readFileSync(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
}

export function errnoCode(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

/** A file-system error in words an operator can act on: the cause first, the system's text after. */
export function describeErrno(e: unknown): string {
  const code = errnoCode(e);
  const msg = e instanceof Error ? e.message : String(e);
  if (code === 'EACCES' || code === 'EPERM') return `permission denied (${msg})`;
  if (code === 'EROFS') return `read-only file system (${msg})`;
  if (code === 'ENOSPC') return `no space left on device (${msg})`;
  if (code === 'ENOTDIR') return `a path component is not a directory (${msg})`;
  return msg;
}

/** `NNNNNNNN.ext` for segment `n`. */
export function segName(n: number, ext: string): string {
  return `${String(n).padStart(8, '0')}.${ext}`;
}
