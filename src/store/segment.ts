import { closeSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { StoredMessage } from '../core/types.js';
import type { MessageContent } from './codec.js';
import { FILE_HEADER } from './format.js';
import { errnoCode, segName } from './fs-util.js';

/** QueueEntry.pstate values (0: not persisted). */
export const QUEUED = 1;
/** Record built into a batch (in flight or on disk). */
export const WRITTEN = 2;
/** Like WRITTEN, and counted in its segment's `paged` (the queue holds no copy). */
export const WRITTEN_PAGED = 3;
export const GONE = 4;
/** QueueEntry.mseg while the body waits to be written to the shared log in the current batch. */
export const SHARED_PENDING = -1;

/** What the core counts per message besides its body (vhost.ts: size = body + 64). */
export const MESSAGE_OVERHEAD = 64;

/** One segment file of a queue (`NNNNNNNN.seg`) and its ack file (`NNNNNNNN.ack`). */
export interface Segment {
  readonly num: number;
  fd: number;
  /** Bytes built (including a batch in flight). */
  size: number;
  /** Bytes known to be written. */
  durable: number;
  /** Records not yet removed. */
  live: number;
  /** Live records the queue holds no copy of (paged). */
  paged: number;
  sealed: boolean;
  ackFd: number;
  ackSize: number;
  ackDurable: number;
  /** Acked offsets and removed seq ranges known from recovery, for the paged-message reader. */
  acked: Set<number> | undefined;
  ranges: number[] | undefined;
}

export function newSegment(num: number): Segment {
  return {
    num,
    fd: -1,
    size: FILE_HEADER,
    durable: FILE_HEADER,
    live: 0,
    paged: 0,
    sealed: false,
    ackFd: -1,
    ackSize: FILE_HEADER,
    ackDurable: FILE_HEADER,
    acked: undefined,
    ranges: undefined,
  };
}

/** The segment's file descriptor, opening the file in `dir` when it is not open. */
export function segmentFd(dir: string, seg: Segment): number {
  if (seg.fd < 0) seg.fd = openSync(join(dir, segName(seg.num, 'seg')), 'r+');
  return seg.fd;
}

/** Deletes a segment file and its ack file (either may be missing). */
export function removeSegmentFiles(dir: string, num: number): void {
  for (const ext of ['seg', 'ack']) {
    try {
      unlinkSync(join(dir, segName(num, ext)));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
  }
}

export function closeQuietly(fd: number): void {
  if (fd < 0) return;
  try {
    closeSync(fd);
  } catch {
    // already closed: nothing to release
  }
}

/** A message read back from a segment or the shared log, as the core keeps it. */
export function storedMessage(m: MessageContent, id: number): StoredMessage {
  // Same field order as the vhost's own StoredMessage literal (one hidden class).
  return {
    exchange: m.exchange,
    routingKey: m.routingKey,
    properties: m.properties,
    body: m.body,
    rawProperties: m.rawProperties,
    id,
    size: m.body.length + MESSAGE_OVERHEAD,
    persistent: true,
    refs: 0,
    publisherId: 0,
  };
}
