/**
 * `npm run bench:stream` — stream queues over AMQP 0-9-1, Warren side by side with RabbitMQ
 * (a private node of the Debian package with `--start-rabbitmq`, or `--peer-url`):
 *
 * - publish: 1 publisher -> a stream, persistent messages with publisher confirms, at most 1000
 *   unconfirmed; msgs/s counts confirmed messages;
 * - read-1: 1 consumer reads the whole stream from `first` (prefetch 1000, an ack with multiple
 *   every 100 messages); msgs/s = messages delivered ÷ time to the last one;
 * - read-10: 10 consumers (10 channels on one connection) read the whole stream from `first` at
 *   once; msgs/s = deliveries summed over the 10 ÷ time to the last one.
 *
 * Broker CPU is charged per message delivered (or confirmed). Clients run in this process.
 */
import { availableParallelism, cpus, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect, type ChannelModel, type ConfirmChannel } from 'amqplib';
import { connectPeer, startLocalRabbitmq, startWarren, type Broker } from './brokers.js';
import { wallMs } from './clock.js';
import { cpuSeconds } from './proc.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const CONFIRM_WINDOW = 1000;
const PREFETCH = 1000;
const ACK_EVERY = 100;

interface Row {
  broker: string;
  phase: string;
  messages: number;
  seconds: number;
  rate: number;
  cpuUsPerMsg: number | null;
  /** This process (the clients), as % of one core. */
  clientCpu: number;
}

function cpuOf(b: Broker): number | null {
  return b.pid === null ? null : cpuSeconds(b.pid);
}

async function measure(b: Broker, phase: string, messages: number, run: () => Promise<void>): Promise<Row> {
  const cpu0 = cpuOf(b);
  const own0 = process.cpuUsage();
  const t0 = wallMs();
  await run();
  const seconds = (wallMs() - t0) / 1000;
  const cpu1 = cpuOf(b);
  const own = process.cpuUsage(own0);
  return {
    broker: b.name,
    phase,
    messages,
    seconds,
    rate: messages / seconds,
    cpuUsPerMsg: cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) * 1e6) / messages,
    clientCpu: ((own.user + own.system) / 1e6 / seconds) * 100,
  };
}

async function publish(conn: ChannelModel, stream: string, n: number, body: Buffer): Promise<void> {
  const ch: ConfirmChannel = await conn.createConfirmChannel();
  let sent = 0;
  let confirmed = 0;
  await new Promise<void>((resolve, reject) => {
    const onConfirm = (err: unknown): void => {
      if (err !== null && err !== undefined) {
        reject(new Error('publish nacked'));
        return;
      }
      confirmed++;
      if (confirmed === n) resolve();
      else pump();
    };
    const pump = (): void => {
      while (sent < n && sent - confirmed < CONFIRM_WINDOW) {
        sent++;
        ch.sendToQueue(stream, body, { persistent: true }, onConfirm);
      }
    };
    pump();
  });
  await ch.close();
}

async function read(conn: ChannelModel, stream: string, consumers: number, n: number): Promise<void> {
  const chans = await Promise.all(Array.from({ length: consumers }, () => conn.createChannel()));
  await Promise.all(
    chans.map(
      (ch) =>
        new Promise<void>((resolve, reject) => {
          let got = 0;
          void ch.prefetch(PREFETCH).then(() =>
            ch.consume(
              stream,
              (m) => {
                if (m === null) return;
                got++;
                if (got % ACK_EVERY === 0 || got === n) ch.ack(m, true);
                if (got === n) resolve();
              },
              { arguments: { 'x-stream-offset': 'first' } },
            ),
          ).catch(reject);
        }),
    ),
  );
  await Promise.all(chans.map((ch) => ch.close()));
}

async function benchBroker(b: Broker, n: number, bodySize: number): Promise<Row[]> {
  const url = b.endpoints.amqp;
  if (url === undefined) throw new Error(`${b.name} has no AMQP endpoint`);
  const conn = await connect(url, { noDelay: true });
  const stream = `bench-stream-${Date.now()}`;
  const setup = await conn.createChannel();
  await setup.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream' } });
  const body = Buffer.alloc(bodySize, 0x61);
  const rows: Row[] = [];
  rows.push(await measure(b, 'publish (confirms)', n, () => publish(conn, stream, n, body)));
  rows.push(await measure(b, 'read from first, 1 consumer', n, () => read(conn, stream, 1, n)));
  rows.push(await measure(b, 'read from first, 10 consumers', n * 10, () => read(conn, stream, 10, n)));
  await setup.deleteQueue(stream);
  await setup.close();
  await conn.close();
  return rows;
}

function fmt(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      messages: { type: 'string', default: '200000' },
      'body-size': { type: 'string', default: '100' },
      repeat: { type: 'string', default: '1' },
      'start-rabbitmq': { type: 'boolean', default: false },
      'peer-url': { type: 'string' },
      'warren-only': { type: 'boolean', default: false },
    },
  });
  const n = Number(values.messages);
  const bodySize = Number(values['body-size']);
  const repeat = Number(values.repeat);
  const brokers: Broker[] = [];
  try {
    brokers.push(await startWarren({ bin: join(REPO_ROOT, 'bin', 'warren.js'), extraArgs: ['--log-level', 'warn'], verbose: false, startTimeoutMs: 30_000 }));
    if (!values['warren-only']) {
      if (values['peer-url'] !== undefined) brokers.push(await connectPeer({ url: values['peer-url'], name: null, pid: null }));
      else if (values['start-rabbitmq']) brokers.push(await startLocalRabbitmq({ verbose: false, startTimeoutMs: 90_000 }));
    }
    const rows: Row[] = [];
    for (let r = 0; r < repeat; r++) {
      for (const b of brokers) {
        process.stderr.write(`${b.name}: run ${r + 1} of ${repeat} ...\n`);
        rows.push(...(await benchBroker(b, n, bodySize)));
      }
    }
    const out: string[] = [];
    out.push(`Stream queues over AMQP 0-9-1: ${fmt(n)} messages of ${bodySize} B, ${new Date().toISOString()}`);
    out.push(`Machine: ${cpus()[0]?.model ?? 'unknown'}, ${availableParallelism()} cores, Linux ${release()}, Node.js ${process.version}`);
    for (const b of brokers) out.push(`- ${b.name}: ${b.details}`);
    out.push('');
    out.push('| broker | phase | msgs/s | broker CPU µs/msg | client CPU % | seconds |');
    out.push('|---|---|--:|--:|--:|--:|');
    for (const row of rows) {
      out.push(`| ${row.broker} | ${row.phase} | ${fmt(row.rate)} | ${row.cpuUsPerMsg === null ? 'n/a' : row.cpuUsPerMsg.toFixed(1)} | ${row.clientCpu.toFixed(0)} | ${row.seconds.toFixed(2)} |`);
    }
    if (brokers.length > 1) {
      out.push('');
      out.push('| phase | Warren ÷ peer (msgs/s, best run of each) |');
      out.push('|---|--:|');
      for (const phase of [...new Set(rows.map((r) => r.phase))]) {
        const best = (name: string): number => Math.max(...rows.filter((r) => r.phase === phase && r.broker === name).map((r) => r.rate));
        out.push(`| ${phase} | ${(best(brokers[0]!.name) / best(brokers[1]!.name)).toFixed(2)}× |`);
      }
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    for (const b of brokers) await b.stop().catch(() => undefined);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
});
