import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type GetMessage } from 'amqplib';
import { startBroker, type Broker } from '../../src/broker.js';
import type { BrokerOptions } from '../../src/config.js';
import type { StoreTuning } from '../../src/store/index.js';

export async function tempDataDir(prefix = 'warren-dur-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

/** A broker on an existing data directory, AMQP only, on an ephemeral port. */
export async function startOn(dataDir: string, opts: Partial<BrokerOptions> & { store?: StoreTuning } = {}): Promise<Broker> {
  return startBroker({
    amqpPort: 0,
    mqttPort: null,
    stompPort: null,
    httpPort: null,
    bind: '127.0.0.1',
    logLevel: (process.env['WARREN_TEST_LOG'] as BrokerOptions['logLevel'] | undefined) ?? 'silent',
    dataDir,
    ...opts,
  });
}

export function amqpUrl(b: Broker): string {
  return `amqp://guest:guest@127.0.0.1:${b.ports.amqp}`;
}

export interface Client {
  conn: ChannelModel;
  ch: Channel;
  cc: ConfirmChannel;
  close(): Promise<void>;
}

export async function client(b: Broker): Promise<Client> {
  const conn = await connect(amqpUrl(b), { noDelay: true });
  conn.on('error', () => undefined);
  const ch = await conn.createChannel();
  const cc = await conn.createConfirmChannel();
  return {
    conn,
    ch,
    cc,
    async close() {
      await conn.close().catch(() => undefined);
    },
  };
}

/** Publishes persistent messages `prefix0..prefixN-1` to a queue and waits for every confirm. */
export async function publishConfirmed(cc: ConfirmChannel, queue: string, n: number, opts: { prefix?: string; size?: number; persistent?: boolean; exchange?: string } = {}): Promise<void> {
  const prefix = opts.prefix ?? 'm';
  for (let i = 0; i < n; i++) {
    const text = `${prefix}${i}`;
    const body = opts.size !== undefined && opts.size > text.length ? Buffer.concat([Buffer.from(`${text}:`), Buffer.alloc(opts.size - text.length - 1, 0x61)]) : Buffer.from(text);
    if (opts.exchange !== undefined) cc.publish(opts.exchange, queue, body, { persistent: opts.persistent ?? true });
    else cc.sendToQueue(queue, body, { persistent: opts.persistent ?? true });
  }
  await cc.waitForConfirms();
}

/** The message's label: the body up to the first ':'. */
export function label(m: { content: Buffer }): string {
  const s = m.content.toString('latin1');
  const i = s.indexOf(':');
  return i < 0 ? s : s.slice(0, i);
}

/** Takes every message with basic.get; acks each unless `ack` is false. */
export async function drain(ch: Channel, queue: string, ack = true): Promise<GetMessage[]> {
  const out: GetMessage[] = [];
  for (let m = await ch.get(queue, { noAck: false }); m; m = await ch.get(queue, { noAck: false })) {
    out.push(m);
    if (ack) ch.ack(m);
  }
  return out;
}
