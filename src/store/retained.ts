import type { MessageProperties } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter, readProperties, writeProperties } from './codec.js';
import type { RecordStore } from './record-store.js';

/** What a retained message holds (the MQTT adapter's RetainedMessage has this shape). */
export interface RetainedRecord {
  readonly topic: string;
  readonly qos: number;
  readonly properties: MessageProperties;
  readonly body: Buffer;
  /** Absolute expiry in ms since the epoch; 0 = never. */
  readonly expiresAt: number;
}

/** An in-memory index of retained messages (the MQTT adapter's RetainedStore has this shape). */
export interface RetainedIndex<M extends RetainedRecord> {
  set(vhost: string, topic: string, msg: M | null): void;
  get(vhost: string, topic: string): M | undefined;
  match(vhost: string, filter: string): M[];
  count(vhost: string): number;
}

const VERSION = 1;

function encode(m: RetainedRecord): Buffer {
  const w = new ByteWriter(64 + m.body.length);
  w.u8(VERSION);
  w.u8(m.qos);
  w.f64(m.expiresAt);
  const at = w.pos;
  w.u32(0);
  writeProperties(w, m.properties);
  w.buf.writeUInt32LE(w.pos - at - 4, at);
  w.bytes32(m.body);
  return w.toBuffer();
}

function decode(topic: string, b: Buffer): RetainedRecord {
  const r = new ByteReader().reset(b);
  if (r.u8() !== VERSION) throw new Error('unknown retained record version');
  const qos = r.u8();
  const expiresAt = r.f64();
  const len = r.u32();
  const end = r.end;
  r.end = r.pos + len;
  const properties = readProperties(r);
  r.end = end;
  const body = r.bytes32();
  return { topic, qos, properties, body, expiresAt };
}

function keyOf(vhost: string, topic: string): string {
  return `${vhost}\u0000${topic}`;
}

/**
 * Retained messages that survive restarts: matching stays with the in-memory index it wraps (the
 * MQTT adapter's own), every change is also written to a record store, and the index is refilled
 * from it at startup (expired messages are dropped then).
 */
export class DurableRetained<M extends RetainedRecord> implements RetainedIndex<M> {
  constructor(
    private readonly inner: RetainedIndex<M>,
    private readonly records: RecordStore,
    private readonly log: Logger,
    /** Turns a stored record back into the index's message type. */
    revive: (r: RetainedRecord) => M,
  ) {
    const now = Date.now();
    let loaded = 0;
    for (const [key, value] of [...records.entries()]) {
      const sep = key.indexOf('\u0000');
      const vhost = key.slice(0, sep);
      const topic = key.slice(sep + 1);
      let rec: RetainedRecord;
      try {
        rec = decode(topic, value);
      } catch (err) {
        log.warn({ err, vhost, topic }, 'unreadable retained message dropped');
        void records.delete(key).catch(() => undefined);
        continue;
      }
      if (rec.expiresAt !== 0 && rec.expiresAt <= now) {
        void records.delete(key).catch(() => undefined);
        continue;
      }
      inner.set(vhost, topic, revive(rec));
      loaded++;
    }
    if (loaded > 0) log.info({ retained: loaded }, 'retained messages recovered');
  }

  set(vhost: string, topic: string, msg: M | null): void {
    this.inner.set(vhost, topic, msg);
    const key = keyOf(vhost, topic);
    const done = msg === null ? this.records.delete(key) : this.records.set(key, encode(msg));
    done.catch((err: unknown) => this.log.error({ err, vhost, topic }, 'cannot store a retained message'));
  }

  get(vhost: string, topic: string): M | undefined {
    return this.inner.get(vhost, topic);
  }

  match(vhost: string, filter: string): M[] {
    return this.inner.match(vhost, filter);
  }

  count(vhost: string): number {
    return this.inner.count(vhost);
  }
}
