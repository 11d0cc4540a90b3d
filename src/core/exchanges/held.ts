import type { Message } from '../types.js';

/** Encodes held messages into bytes and back (the store's message codec); decoded buffers are copies. */
export interface HeldCodec {
  encode(m: Message): Buffer;
  decode(bytes: Buffer): Message;
}

/** Slab size: held messages are packed into buffers of this size. */
const CHUNK = 256 * 1024;
/** A message above this gets a buffer of its own. */
const BIG = CHUNK >> 2;

/**
 * The messages an exchange holds until they are due, by slot number. With a codec they are packed
 * as bytes into a few large buffers, so a million pending messages are a few hundred buffers and
 * some typed arrays rather than millions of small objects for the garbage collector to trace;
 * without one (an embedded core with no store) the message objects are kept as they are.
 */
export class HeldMessages {
  private chunkOf: Int32Array = new Int32Array(1024);
  private offsetOf: Int32Array = new Int32Array(1024);
  private lengthOf: Int32Array = new Int32Array(1024);
  private publisherOf: Float64Array = new Float64Array(1024);
  /** Store keys of persistent held messages (the store's own strings), else undefined. */
  private readonly keys: (string | undefined)[] = [];
  private readonly objects: (Message | undefined)[] = [];
  private freeSlots: number[] = [];
  private nextSlot = 0;
  private readonly chunks: (Buffer | undefined)[] = [];
  private readonly live: number[] = [];
  private freeChunks: number[] = [];
  private current = -1;
  private pos = CHUNK;

  constructor(private readonly codec: HeldCodec | undefined) {}

  /** Bytes held in slabs (0 without a codec). */
  get bytes(): number {
    let n = 0;
    for (const c of this.chunks) if (c !== undefined) n += c.length;
    return n;
  }

  put(msg: Message, publisherId: number, key: string | undefined): number {
    const slot = this.freeSlots.length > 0 ? this.freeSlots.pop()! : this.nextSlot++;
    if (slot >= this.chunkOf.length) this.grow();
    this.publisherOf[slot] = publisherId;
    this.keys[slot] = key;
    const codec = this.codec;
    if (codec === undefined) {
      this.objects[slot] = msg;
      return slot;
    }
    const bytes = codec.encode(msg);
    const len = bytes.length;
    let chunk: number;
    let at: number;
    if (len > BIG) {
      chunk = this.newChunk(len);
      at = 0;
    } else {
      if (this.current < 0 || this.pos + len > CHUNK) {
        const old = this.current;
        this.current = this.newChunk(CHUNK);
        this.pos = 0;
        if (old >= 0 && this.live[old] === 0) this.dropChunk(old);
      }
      chunk = this.current;
      at = this.pos;
      this.pos += len;
    }
    bytes.copy(this.chunks[chunk]!, at);
    this.live[chunk]!++;
    this.chunkOf[slot] = chunk;
    this.offsetOf[slot] = at;
    this.lengthOf[slot] = len;
    return slot;
  }

  message(slot: number): Message {
    if (this.codec === undefined) return this.objects[slot]!;
    const chunk = this.chunks[this.chunkOf[slot]!]!;
    const at = this.offsetOf[slot]!;
    return this.codec.decode(chunk.subarray(at, at + this.lengthOf[slot]!));
  }

  publisher(slot: number): number {
    return this.publisherOf[slot]!;
  }

  key(slot: number): string | undefined {
    return this.keys[slot];
  }

  /** The slot is done with: its bytes may go once its slab holds nothing else. */
  free(slot: number): void {
    this.keys[slot] = undefined;
    if (this.codec === undefined) this.objects[slot] = undefined;
    else {
      const c = this.chunkOf[slot]!;
      if (--this.live[c]! === 0 && c !== this.current) this.dropChunk(c);
    }
    this.freeSlots.push(slot);
  }

  private newChunk(size: number): number {
    const i = this.freeChunks.length > 0 ? this.freeChunks.pop()! : this.chunks.length;
    this.chunks[i] = Buffer.allocUnsafeSlow(size);
    this.live[i] = 0;
    return i;
  }

  private dropChunk(i: number): void {
    this.chunks[i] = undefined;
    this.freeChunks.push(i);
  }

  private grow(): void {
    const n = this.chunkOf.length * 2;
    const grow32 = (a: Int32Array): Int32Array => {
      const b = new Int32Array(n);
      b.set(a);
      return b;
    };
    this.chunkOf = grow32(this.chunkOf);
    this.offsetOf = grow32(this.offsetOf);
    this.lengthOf = grow32(this.lengthOf);
    const p = new Float64Array(n);
    p.set(this.publisherOf);
    this.publisherOf = p;
  }
}
