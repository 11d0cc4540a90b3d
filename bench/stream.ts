/**
 * `npm run bench:stream` — stream queues over AMQP 0-9-1, Warren side by side with RabbitMQ
 * (a private node of the Debian package with `--start-rabbitmq`, or `--peer-url`):
 *
 * - publish: 1 publisher -> a stream, persistent messages with publisher confirms, at most 1000
 *   unconfirmed; msgs/s counts confirmed messages;
 * - read-1: 1 consumer reads the whole stream from `first` (prefetch 1000, an ack with multiple
 *   every 100 messages); msgs/s = messages delivered ÷ time to the last one;
 * - read-10: 10 consumers (10 connections, one channel each) read the whole stream from `first`
 *   at once; msgs/s = deliveries summed over the 10 ÷ time to the last one.
 *
 * Every client (the publisher and each consumer) is a process of its own (stream-client.ts), with
 * its connection and channel open before the clock starts; `--client` picks the library (amqplib,
 * the default, or @cloudamqp/amqp-client), the same for every broker; `--reader-client` another one
 * for the readers (on a 2-core machine each phase is limited by its client: amqp-client publishes
 * faster corked, amqplib reads faster). Broker CPU is charged per message
 * delivered (or confirmed); client CPU is the clients' processes summed, as % of one core.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism, cpus, release } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from 'amqplib';
import { connectPeer, startLocalRabbitmq, startWarren, type Broker } from './brokers.js';
import { wallMs } from './clock.js';
import { cpuSeconds } from './proc.js';
import { STREAM_CLIENTS, type FromStreamClient, type StreamClientLib, type StreamClientSpec, type ToStreamClient } from './stream-client.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const CLIENT_JS = join(HERE, 'stream-client.js');
const CONFIRM_WINDOW = 1000;
const PREFETCH = 1000;
const ACK_EVERY = 100;
const PHASES = ['publish', 'read-1', 'read-10'] as const;
type Phase = (typeof PHASES)[number];
const PHASE_TITLE: Record<Phase, string> = {
  publish: 'publish (confirms)',
  'read-1': 'read from first, 1 consumer',
  'read-10': 'read from first, 10 consumers',
};

interface Row {
  broker: string;
  phase: string;
  messages: number;
  seconds: number;
  rate: number;
  cpuUsPerMsg: number | null;
  /** The client processes, summed, as % of one core. */
  clientCpu: number | null;
}

function cpuOf(pid: number | null | undefined): number | null {
  return pid === null || pid === undefined ? null : cpuSeconds(pid);
}

/** A forked client process; `done` resolves with its count once it has finished its part. */
class Client {
  readonly child: ChildProcess;
  readonly ready: Promise<void>;
  readonly done: Promise<number>;

  constructor(spec: StreamClientSpec, execArgv: string[]) {
    this.child = fork(CLIENT_JS, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv });
    let ready: () => void = () => undefined;
    let done: (n: number) => void = () => undefined;
    let fail: (e: Error) => void = () => undefined;
    const failed = new Promise<never>((_, rej) => (fail = rej));
    failed.catch(() => undefined);
    this.ready = Promise.race([new Promise<void>((r) => (ready = r)), failed]);
    this.done = Promise.race([new Promise<number>((r) => (done = r)), failed]);
    this.child.on('message', (m: FromStreamClient) => {
      if (m.type === 'ready') ready();
      else if (m.type === 'done') done(m.count);
      else fail(new Error(`${spec.role}: ${m.message}`));
    });
    this.child.on('exit', (code) => fail(new Error(`${spec.role} exited with ${code}`)));
    this.send({ type: 'init', spec });
  }

  send(m: ToStreamClient): void {
    if (this.child.connected) this.child.send(m);
  }

  cpu(): number {
    return cpuOf(this.child.pid) ?? 0;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.send({ type: 'stop' });
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

/** Starts the clients once all are connected; the phase ends when the last one is done. */
async function measure(b: Broker, phase: Phase, messages: number, specs: StreamClientSpec[], execArgv: string[]): Promise<Row> {
  const clients = specs.map((s) => new Client(s, execArgv));
  try {
    await Promise.all(clients.map((c) => c.ready));
    const cpu0 = cpuOf(b.pid);
    const own0 = clients.map((c) => c.cpu());
    const t0 = wallMs();
    for (const c of clients) c.send({ type: 'start' });
    await Promise.all(clients.map((c) => c.done));
    const seconds = (wallMs() - t0) / 1000;
    const cpu1 = cpuOf(b.pid);
    let own = 0;
    for (let i = 0; i < clients.length; i++) own += clients[i]!.cpu() - own0[i]!;
    return {
      broker: b.name,
      phase: PHASE_TITLE[phase],
      messages,
      seconds,
      rate: messages / seconds,
      cpuUsPerMsg: cpu0 === null || cpu1 === null ? null : ((cpu1 - cpu0) * 1e6) / messages,
      clientCpu: (own / seconds) * 100,
    };
  } finally {
    await Promise.all(clients.map((c) => c.stop()));
  }
}

interface Run {
  n: number;
  bodySize: number;
  phases: readonly Phase[];
  client: StreamClientLib;
  readerClient: StreamClientLib;
  cork: boolean;
  /** Node.js options of the client processes (a CPU profile). */
  execArgv: string[];
}

async function benchBroker(b: Broker, { n, bodySize, phases, client, readerClient, cork, execArgv }: Run): Promise<Row[]> {
  const url = b.endpoints.amqp;
  if (url === undefined) throw new Error(`${b.name} has no AMQP endpoint`);
  const conn = await connect(url, { noDelay: true });
  const stream = `bench-stream-${Date.now()}`;
  const setup = await conn.createChannel();
  await setup.assertQueue(stream, { durable: true, arguments: { 'x-queue-type': 'stream' } });
  const reader: StreamClientSpec = { role: 'reader', client: readerClient, url, stream, count: n, prefetch: PREFETCH, ackEvery: ACK_EVERY };
  const rows: Row[] = [];
  // The publish phase always runs: it fills the stream the readers read.
  rows.push(await measure(b, 'publish', n, [{ role: 'publisher', client, url, stream, count: n, bodySize, window: CONFIRM_WINDOW, cork }], execArgv));
  if (phases.includes('read-1')) rows.push(await measure(b, 'read-1', n, [reader], execArgv));
  if (phases.includes('read-10')) rows.push(await measure(b, 'read-10', n * 10, Array.from({ length: 10 }, () => reader), execArgv));
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
      /** Comma-separated subset of publish,read-1,read-10 (publish always runs: it fills the stream). */
      phases: { type: 'string', default: PHASES.join(',') },
      /** Writes a V8 CPU profile of Warren into this directory when it stops. */
      'cpu-prof': { type: 'string' },
      /** Another build of Warren to measure instead (e.g. one of the parent commit). */
      'warren-bin': { type: 'string' },
      /** The client library of every client process: amqplib or amqp-client (@cloudamqp/amqp-client). */
      client: { type: 'string', default: 'amqplib' },
      /** The client library of the readers, when not `client`'s. */
      'reader-client': { type: 'string' },
      /** The publisher corks its socket for a turn, so the publishes of one turn leave in one write. */
      cork: { type: 'boolean', default: false },
      /** Writes a V8 CPU profile of each client process into this directory. */
      'client-cpu-prof': { type: 'string' },
      /** Warren's AMQP port (its other listeners are off); default: an ephemeral port for each. */
      'warren-port': { type: 'string' },
      /** The started RabbitMQ's AMQP port; its other ports are the next six (see startLocalRabbitmq). */
      'rabbitmq-port': { type: 'string' },
    },
  });
  const n = Number(values.messages);
  const bodySize = Number(values['body-size']);
  const repeat = Number(values.repeat);
  const phases = values.phases.split(',').map((p) => p.trim());
  for (const p of phases) if (!(PHASES as readonly string[]).includes(p)) throw new Error(`unknown phase '${p}' (expected ${PHASES.join(', ')})`);
  const prof = values['cpu-prof'];
  const client = values.client as StreamClientLib;
  const readerClient = (values['reader-client'] ?? client) as StreamClientLib;
  for (const c of [client, readerClient]) if (!(STREAM_CLIENTS as readonly string[]).includes(c)) throw new Error(`unknown client '${c}' (expected ${STREAM_CLIENTS.join(', ')})`);
  const clientProf = values['client-cpu-prof'];
  const execArgv = clientProf !== undefined ? ['--cpu-prof', '--cpu-prof-dir', clientProf] : [];
  const warrenPort = values['warren-port'];
  const fixedPorts =
    warrenPort === undefined
      ? []
      : ['--amqp-port', warrenPort, ...['--mqtt-port', '--stomp-port', '--http-port', '--amqps-port', '--mqtts-port'].flatMap((f) => [f, 'off'])];
  const rabbitPort = values['rabbitmq-port'];
  const brokers: Broker[] = [];
  try {
    brokers.push(
      await startWarren({
        bin: values['warren-bin'] ?? join(REPO_ROOT, 'bin', 'warren.js'),
        extraArgs: ['--log-level', 'warn', ...fixedPorts],
        ...(prof !== undefined ? { nodeArgs: ['--cpu-prof', '--cpu-prof-dir', prof] } : {}),
        verbose: false,
        startTimeoutMs: 30_000,
      }),
    );
    if (!values['warren-only']) {
      if (values['peer-url'] !== undefined) brokers.push(await connectPeer({ url: values['peer-url'], name: null, pid: null }));
      else if (values['start-rabbitmq']) {
        brokers.push(await startLocalRabbitmq({ verbose: false, startTimeoutMs: 90_000, ...(rabbitPort !== undefined ? { amqpPort: Number(rabbitPort) } : {}) }));
      }
    }
    const rows: Row[] = [];
    for (let r = 0; r < repeat; r++) {
      for (const b of brokers) {
        process.stderr.write(`${b.name}: run ${r + 1} of ${repeat} ...\n`);
        rows.push(...(await benchBroker(b, { n, bodySize, phases: phases as Phase[], client, readerClient, cork: values.cork, execArgv })));
      }
    }
    const out: string[] = [];
    out.push(`Stream queues over AMQP 0-9-1: ${fmt(n)} messages of ${bodySize} B, client ${client}${values.cork ? ' (publisher corked per turn)' : ''}${readerClient !== client ? `, readers ${readerClient}` : ''}, ${new Date().toISOString()}`);
    out.push(`Machine: ${cpus()[0]?.model ?? 'unknown'}, ${availableParallelism()} cores, Linux ${release()}, Node.js ${process.version}`);
    for (const b of brokers) out.push(`- ${b.name}: ${b.details}`);
    out.push('');
    out.push('| broker | phase | msgs/s | broker CPU µs/msg | client CPU % | seconds |');
    out.push('|---|---|--:|--:|--:|--:|');
    for (const row of rows) {
      out.push(`| ${row.broker} | ${row.phase} | ${fmt(row.rate)} | ${row.cpuUsPerMsg === null ? 'n/a' : row.cpuUsPerMsg.toFixed(1)} | ${row.clientCpu === null ? 'n/a' : row.clientCpu.toFixed(0)} | ${row.seconds.toFixed(2)} |`);
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
