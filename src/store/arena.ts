/**
 * The bytes of one write to one file in a batch: slices of the batch arena, plus large message
 * bodies passed by reference (never copied). Written with one positioned writev.
 */
export class FileWrite {
  readonly parts: Buffer[] = [];
  bytes = 0;
  /** Called when the batch is done with the write's outcome (before the batch settles). */
  done: ((ok: boolean) => void) | undefined;
  private chunk: Buffer | undefined;
  private start = 0;

  constructor(
    readonly fd: number,
    /** File offset the first byte goes to. */
    readonly position: number,
    /** fdatasync after writing (records a confirm waits for). */
    readonly sync: boolean,
  ) {}

  /** Starts (or continues) a slice of `chunk` at `at`. */
  open(chunk: Buffer, at: number): void {
    if (this.chunk === chunk) return;
    this.chunk = chunk;
    this.start = at;
  }

  /** Ends the current slice at `at` (the arena moved on or a body follows by reference). */
  close(at: number): void {
    if (this.chunk !== undefined && at > this.start) {
      this.parts.push(this.chunk.subarray(this.start, at));
      this.bytes += at - this.start;
    }
    this.chunk = undefined;
  }

  /** A buffer written as is, after what was written so far. */
  attach(buf: Buffer, arenaPos: number): void {
    this.close(arenaPos);
    this.parts.push(buf);
    this.bytes += buf.length;
  }
}

const CHUNK = 1 << 20;

/**
 * Bump allocator for a batch: records are encoded in place into large chunks. A batch is written
 * before the next one is built, so the first chunk is reused; a chunk that fills up is replaced,
 * and slices already taken keep the old one alive until their write completes.
 */
export class Arena {
  chunk: Buffer = Buffer.allocUnsafe(CHUNK);
  pos = 0;
  private readonly first = this.chunk;
  private w: FileWrite | undefined;

  reset(): void {
    this.chunk = this.first;
    this.pos = 0;
    this.w = undefined;
  }

  /** Directs the following bytes to `w`. */
  begin(w: FileWrite): void {
    this.w = w;
    w.open(this.chunk, this.pos);
  }

  /** Ends the current file's bytes. */
  end(): void {
    this.w?.close(this.pos);
    this.w = undefined;
  }

  /** Makes `n` contiguous bytes available at `pos`. */
  reserve(n: number): void {
    if (this.pos + n <= this.chunk.length) return;
    this.w?.close(this.pos);
    this.chunk = Buffer.allocUnsafe(Math.max(CHUNK, n));
    this.pos = 0;
    this.w?.open(this.chunk, 0);
  }

  /** Writes `buf` by reference into the current file (no copy). */
  attach(buf: Buffer): void {
    const w = this.w!;
    w.attach(buf, this.pos);
    w.open(this.chunk, this.pos);
  }
}
