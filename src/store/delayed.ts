import type { Core } from '../core/core.js';
import type { DelayedStore } from '../core/exchanges/delayed.js';
import type { HeldCodec } from '../core/exchanges/held.js';
import type { Message } from '../core/types.js';
import type { Logger } from '../logger.js';
import { decodeMessage, encodeMessage } from './codec.js';
import type { RecordStore } from './record-store.js';

const SEP = '\u0000';
const noop = (): void => undefined;

/**
 * Held (delayed) messages on disk, one record each in a {@link RecordStore}: key
 * `<vhost> NUL <exchange> NUL <n>`, value the due time (8 bytes, ms since the epoch) followed by the
 * encoded message. A record is written when a persistent message is held by a durable exchange and
 * deleted once the released message is settled in its queues.
 */
export class DurableDelayed implements DelayedStore {
  private seq = 0;

  constructor(
    private readonly records: RecordStore,
    private readonly log: Logger,
    /** Resolves once the current definitions are on disk: a held message's exchange must survive with it. */
    private readonly definitionsWritten: () => Promise<void> = () => Promise.resolve(),
  ) {
    for (const key of records.keys()) {
      const n = Number(key.slice(key.lastIndexOf(SEP) + 1));
      if (Number.isInteger(n) && n > this.seq) this.seq = n;
    }
  }

  add(vhost: string, exchange: string, due: number, msg: Message): { key: string; written: Promise<void> } {
    const key = `${vhost}${SEP}${exchange}${SEP}${++this.seq}`;
    const m = encodeMessage({ exchange: msg.exchange, routingKey: msg.routingKey, properties: msg.properties, rawProperties: msg.rawProperties, body: msg.body });
    const value = Buffer.allocUnsafe(8 + m.length);
    value.writeDoubleBE(due, 0);
    m.copy(value, 8);
    const stored = this.records.set(key, value);
    const defs = this.definitionsWritten();
    return { key, written: Promise.all([stored, defs]).then(noop) };
  }

  remove(key: string): void {
    this.records.delete(key).catch((err: unknown) => this.log.error({ err }, 'cannot delete a released delayed message'));
  }

  *load(): Iterable<{ key: string; vhost: string; exchange: string; due: number; message: Message }> {
    for (const [key, value] of [...this.records.entries()]) {
      const parts = key.split(SEP);
      if (parts.length !== 3 || value.length < 8) {
        this.log.warn({ key }, 'unreadable delayed message record dropped');
        this.remove(key);
        continue;
      }
      let message: Message;
      try {
        message = decodeMessage(value.subarray(8));
      } catch (err) {
        this.log.warn({ err }, 'unreadable delayed message record dropped');
        this.remove(key);
        continue;
      }
      yield { key, vhost: parts[0]!, exchange: parts[1]!, due: value.readDoubleBE(0), message };
    }
  }
}

/** The store's message codec, for packing held messages in memory. */
export const HELD_CODEC: HeldCodec = {
  encode: (m) => encodeMessage({ exchange: m.exchange, routingKey: m.routingKey, properties: m.properties, rawProperties: m.rawProperties, body: m.body }),
  decode: (b) => decodeMessage(b),
};

/** Hands every stored delayed message back to its exchange; records whose exchange is gone are deleted. */
export function recoverDelayed(core: Core, store: DurableDelayed, log: Logger): number {
  let n = 0;
  for (const r of store.load()) {
    const vh = core.vhosts.get(r.vhost);
    const ex = vh?.exchanges.get(r.exchange);
    if (vh === undefined || ex === undefined) {
      store.remove(r.key);
      continue;
    }
    vh.delayedOf(ex).restore(r.key, r.due, r.message);
    n++;
  }
  if (n > 0) log.info({ messages: n }, `recovered ${n} delayed messages`);
  return n;
}
