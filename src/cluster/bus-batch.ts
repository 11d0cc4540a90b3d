import { ByteWriter } from '../store/index.js';

/** Records in one bus message at most. */
export const BATCH_MAX_RECORDS = 1024;
/**
 * Bytes in one bus message at most (a single larger record goes alone): well under NATS's default
 * max_payload (1 MiB).
 */
export const BATCH_MAX_BYTES = 512 * 1024;

/**
 * Records bound for one subject, written into one buffer: a header, a u32 record count, then the
 * records. Sent as one bus message (see {@link TurnBatches}).
 */
export class Batch {
  readonly w = new ByteWriter(16 * 1024);
  /** Records written since the last `take`. */
  count = 0;
  /** In the batches to send at the end of this event-loop turn. */
  due = false;
  private countAt = 0;

  constructor(
    readonly subject: string,
    /** Writes what precedes the record count. */
    private readonly header: (w: ByteWriter) => void,
  ) {}

  /** The batch's records as one bus message (a copy: the bus may hold on to it); empties the batch. */
  take(): Uint8Array {
    const w = this.w;
    w.buf.writeUInt32LE(this.count, this.countAt);
    this.count = 0;
    return Buffer.from(w.buf.subarray(0, w.pos));
  }

  /** @internal the writer, with the header written when this is the first record. */
  open(): ByteWriter {
    const w = this.w;
    if (this.count === 0) {
      w.reset();
      this.header(w);
      this.countAt = w.pos;
      w.u32(0);
    }
    this.count++;
    return w;
  }
}

/**
 * Gathers the records written in one event-loop turn into one bus message per subject: a batch is
 * sent when the turn's I/O has been handled (`setImmediate`), or as soon as one more record would
 * take it over {@link BATCH_MAX_RECORDS} or {@link BATCH_MAX_BYTES}. Records of one batch keep
 * the order they were written in, and batches to one subject go in order.
 */
export class TurnBatches<B extends Batch> {
  private due: B[] = [];
  private scheduled = false;
  private readonly sendDue = (): void => {
    this.scheduled = false;
    const due = this.due;
    this.due = [];
    for (const b of due) {
      b.due = false;
      if (b.count > 0) this.send(b);
    }
  };

  constructor(
    /** Sends `b` (its `take()`) as one bus message. */
    private readonly send: (b: B) => void,
    private readonly maxRecords = BATCH_MAX_RECORDS,
    private readonly maxBytes = BATCH_MAX_BYTES,
  ) {}

  /**
   * The writer to write one more record of about `size` bytes into, right after this call. A
   * batch the record would take over its caps is sent first.
   */
  record(b: B, size: number): ByteWriter {
    if (b.count > 0 && (b.count >= this.maxRecords || b.w.pos + size > this.maxBytes)) this.send(b);
    if (!b.due) {
      b.due = true;
      this.due.push(b);
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(this.sendDue);
      }
    }
    return b.open();
  }

  /** Sends what `b` holds now (before a message that must not overtake its records). */
  flush(b: B): void {
    if (b.count > 0) this.send(b);
  }

  /** Sends every batch now. */
  flushAll(): void {
    for (const b of this.due) if (b.count > 0) this.send(b);
  }
}
