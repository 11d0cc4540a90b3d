import type { Message, StoredMessage } from '../core/index.js';
import { ByteReader, ByteWriter, readProperties, writeProperties } from '../store/index.js';
import { LogFullError, NoResponderError, unknownSubjectPauseMs, type LogStatus } from './engine.js';

/*
 * What replicated queues and replicated streams share: a message as the engine's logs and streams
 * keep it (u8 version | str16 exchange | str16 routing key | properties (the store's codec) |
 * bytes32 body [| u32 deliveries before it reached the log: a message moved from a classic
 * queue]), appends retried under one message id, and the engine object opened on first use.
 */

const VERSION = 1;
/** Attempts of one append (same message id) before the publish fails. */
const APPEND_ATTEMPTS = 3;
/**
 * Attempts of an append the engine answered with "nobody there" (a log created a moment ago
 * through another engine server, not known to this one yet): it answers at once, so more tries,
 * backing off from 50 ms to 800 ms (about 3 s in all).
 */
const UNKNOWN_LOG_ATTEMPTS = 8;

/** Encodes `msg` (a copy: `w` is reused); `deliveredBefore`: deliveries it had in a classic queue. */
export function encodeLogEntry(w: ByteWriter, msg: StoredMessage, deliveredBefore = 0): Buffer {
  w.reset();
  w.u8(VERSION);
  w.str16(msg.exchange);
  w.str16(msg.routingKey);
  writeProperties(w, msg.properties);
  w.bytes32(msg.body);
  if (deliveredBefore > 0) w.u32(deliveredBefore);
  return Buffer.from(w.buf.subarray(0, w.pos));
}

/** After {@link decodeLogEntry} with the same reader: the deliveries the message had before it reached the log. */
export function deliveredBefore(r: ByteReader): number {
  return r.remaining >= 4 ? r.u32() : 0;
}

/** Decodes an entry; throws when it is not one. */
export function decodeLogEntry(r: ByteReader, data: Uint8Array): Message {
  r.reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  if (r.u8() !== VERSION) throw new Error('unknown log entry version');
  const exchange = r.str16();
  const routingKey = r.str16();
  const properties = readProperties(r);
  const body = r.bytes32();
  return { exchange, routingKey, properties, body };
}

/** An append that failed (a timeout, a leader change) is sent again with the same id: never twice in the log. */
export async function appendRetried(
  target: { append(data: Uint8Array, opts: { msgId: string }): Promise<number> },
  data: Uint8Array,
  msgId: string,
  stopped: () => boolean,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await target.append(data, { msgId });
    } catch (e) {
      const unknown = e instanceof NoResponderError;
      // A full log that refuses new messages refuses this one again: no retry.
      if (e instanceof LogFullError || attempt >= (unknown ? UNKNOWN_LOG_ATTEMPTS : APPEND_ATTEMPTS) || stopped()) throw e;
      await new Promise((resolve) => setTimeout(resolve, unknown ? unknownSubjectPauseMs(attempt) : 100 * attempt));
    }
  }
}

/** What a node opens on the engine on first use and keeps; a failed open is tried again by the next use. */
export class EngineOpen<T> {
  current: T | undefined = undefined;
  private opening: Promise<T> | undefined = undefined;

  constructor(private readonly open: () => Promise<T>) {}

  get(): Promise<T> {
    if (this.current !== undefined) return Promise.resolve(this.current);
    if (this.opening !== undefined) return this.opening;
    const opening = this.open();
    this.opening = opening;
    opening.then(
      (v) => {
        this.current = v;
        this.opening = undefined;
      },
      () => {
        this.opening = undefined;
      },
    );
    return opening;
  }
}

/** A replication status asked of the engine; undefined when it fails or does not answer within `timeoutMs`. */
export async function statusWithin(ask: () => Promise<LogStatus>, timeoutMs: number): Promise<LogStatus | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), timeoutMs);
    timer.unref();
  });
  const asked = ask().catch(() => undefined);
  const status = await Promise.race([asked, timeout]);
  clearTimeout(timer);
  return status;
}
