import { processMemory, type StoredMessage } from '../core/index.js';
import type { PageSink, QueueSpill } from '../core/persistence.js';
import { newEntry, type QueueEntry } from '../core/queues/entry.js';
import { ByteReader, encodePropertiesScratch, messageHeadBound, readMessage, writeMessageHead } from './codec.js';

/**
 * The ready messages of a memory-only queue kept off the JavaScript heap: each is encoded into
 * large buffers, in order, and decoded again when the queue reads it back. A message held this
 * way costs the garbage collector nothing (a buffer's bytes are not on the heap it scans), so a
 * backlog of millions leaves the collections of every other queue as short as without it.
 * Nothing is written to disk.
 *
 * A record: u32 length (the record's, this field included) | f64 message id | f64 publisher id |
 * u32 size | u8 flags (1: persistent) | f64 queue sequence | u32 deliveries | u32 returns |
 * f64 expiry | the message as the store's codec writes it (head, then the body).
 */

/** Bytes of a buffer the records go into (a larger record gets a buffer of its own size). */
const CHUNK_BYTES = 1 << 20;
/** Bytes of a record before its message. */
const RECORD_HEAD = 4 + 8 + 8 + 4 + 1 + 8 + 4 + 4 + 8;
const PERSISTENT = 1;
/**
 * The most messages decoded at once: a read-back is a synchronous task, kept short so that other
 * connections' messages wait for it no more than a fraction of a millisecond.
 */
const MAX_READ_BACK = 256;

interface Chunk {
  readonly buf: Buffer;
  /** Bytes written so far. */
  end: number;
}

export class OffHeapSpill implements QueueSpill {
  private readonly chunks: Chunk[] = [];
  /** Where the next record to read starts in the first chunk. */
  private readPos = 0;
  private readonly r = new ByteReader();
  /** Records held. */
  private count = 0;

  constructor(readonly memoryBudget: number) {}

  get length(): number {
    return this.count;
  }

  push(entry: QueueEntry): void {
    const m = entry.msg;
    const props = encodePropertiesScratch(m.properties);
    const bound = RECORD_HEAD + messageHeadBound(m, props) + m.body.length;
    let c = this.chunks[this.chunks.length - 1];
    if (c === undefined || c.buf.length - c.end < bound) {
      const size = Math.max(CHUNK_BYTES, bound);
      c = { buf: Buffer.allocUnsafe(size), end: 0 };
      processMemory.hold(size);
      this.chunks.push(c);
    }
    const buf = c.buf;
    const start = c.end;
    let pos = start + 4;
    buf.writeDoubleLE(m.id, pos);
    buf.writeDoubleLE(m.publisherId, pos + 8);
    buf.writeUInt32LE(m.size >>> 0, pos + 16);
    buf[pos + 20] = m.persistent ? PERSISTENT : 0;
    buf.writeDoubleLE(entry.seq, pos + 21);
    buf.writeUInt32LE(entry.deliveryCount >>> 0, pos + 29);
    buf.writeUInt32LE(entry.returns >>> 0, pos + 33);
    buf.writeDoubleLE(entry.expiresAt, pos + 37);
    pos = writeMessageHead(buf, pos + 45, m, props);
    m.body.copy(buf, pos);
    pos += m.body.length;
    buf.writeUInt32LE(pos - start, start);
    c.end = pos;
    this.count++;
  }

  pageIn(maxBytes: number, sink: PageSink): void {
    const r = this.r;
    let bytes = 0;
    for (let n = 0; n < MAX_READ_BACK && bytes < maxBytes && this.count > 0; n++) {
      let c = this.chunks[0]!;
      if (this.readPos >= c.end) {
        this.dropFirst();
        c = this.chunks[0]!;
      }
      const start = this.readPos;
      const end = start + c.buf.readUInt32LE(start);
      r.reset(c.buf, start + 4, end);
      const id = r.f64();
      const publisherId = r.f64();
      const size = r.u32();
      const persistent = (r.u8() & PERSISTENT) !== 0;
      const seq = r.f64();
      const deliveries = r.u32();
      const returns = r.u32();
      const expiresAt = r.f64();
      this.readPos = end;
      this.count--;
      bytes += size;
      let entry: QueueEntry;
      try {
        // Copies: a message read back must not keep the whole chunk alive while it waits for an ack.
        const content = readMessage(r, true);
        const msg: StoredMessage = {
          exchange: content.exchange,
          routingKey: content.routingKey,
          properties: content.properties,
          body: content.body,
          rawProperties: content.rawProperties,
          id,
          size,
          persistent,
          refs: 0,
          publisherId,
        };
        entry = newEntry(msg, seq, deliveries, expiresAt, 0);
        entry.returns = returns;
      } catch {
        // What this spill wrote it reads back; a record that does not decode is never retried.
        sink.pagedLost(size);
        continue;
      }
      sink.paged(entry);
    }
    if (this.count === 0) this.clear();
  }

  clear(): void {
    while (this.chunks.length > 0) this.dropFirst();
    this.count = 0;
  }

  /** Bytes of the buffers held (the process memory account has them). */
  get heldBytes(): number {
    let n = 0;
    for (const c of this.chunks) n += c.buf.length;
    return n;
  }

  private dropFirst(): void {
    const c = this.chunks.shift();
    if (c !== undefined) processMemory.release(c.buf.length);
    this.readPos = 0;
  }
}
