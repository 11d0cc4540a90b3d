import type { Writable } from 'node:stream';
import { processMemory, type MemorySource } from '../core/index.js';

/** Bytes above which a sink reports `congested` and dispatch to it pauses. */
export const HIGH_WATERMARK = 1 << 20;
/** Bytes above which the peer is considered dead (a slow consumer): the stream is destroyed. */
export const HARD_LIMIT = 256 << 20;

/**
 * Writes frames to a socket, batching everything written in one tick into one syscall (cork,
 * uncork on nextTick), and reports back-pressure to the dispatcher.
 */
export class Outbound implements MemorySource {
  private corked = false;
  bytesOut = 0;
  framesOut = 0;
  /** Also counted here once set: the connection's traffic as management reports it. */
  traffic: { sendOct: number; sendCnt: number } | undefined;

  constructor(
    private readonly stream: Writable,
    private readonly onDrain: () => void,
    private readonly high = HIGH_WATERMARK,
    private readonly hard = HARD_LIMIT,
  ) {
    stream.on('drain', onDrain);
  }

  write(buf: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.writableEnded) return;
    if (!this.corked) {
      this.corked = true;
      s.cork();
      process.nextTick(this.uncork);
    }
    this.bytesOut += buf.length;
    this.framesOut++;
    const t = this.traffic;
    if (t !== undefined) {
      t.sendOct += buf.length;
      t.sendCnt++;
    }
    s.write(buf);
    if (s.writableLength > this.hard) s.destroy(new Error('slow consumer: outbound buffer over limit'));
  }

  private readonly uncork = (): void => {
    this.corked = false;
    this.stream.uncork();
    // What the socket did not take at once is held here until it drains: the memory account polls it.
    if (this.stream.writableLength > 0) processMemory.track(this);
  };

  /** MemorySource: bytes waiting in the stream's write buffer (0 once it is destroyed). */
  get heldBytes(): number {
    const s = this.stream;
    return s.destroyed ? 0 : s.writableLength;
  }

  get congested(): boolean {
    return this.stream.writableLength > this.high;
  }

  /** Writes what is buffered, then ends the stream. */
  end(buf?: Buffer): void {
    const s = this.stream;
    if (s.destroyed || s.writableEnded) return;
    if (buf) this.write(buf);
    s.end();
  }
}
