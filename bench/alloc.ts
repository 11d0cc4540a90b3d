/**
 * Heap bytes the broker allocates per MQTT QoS 1 message (`npm run build && node dist/bench/alloc.js
 * [messages] [rounds]`): a broker in a child process with only its MQTT listener, 10 publisher
 * connections (QoS 1, 100 PUBLISHes awaiting PUBACK each) and one subscriber to their topics
 * (QoS 1, every delivery PUBACKed) in this process, over loopback. With `--amqp`, per AMQP 0-9-1
 * message instead: one amqplib publisher to the default exchange, one queue, one consumer
 * (prefetch 1000, each delivery acked), as the `amqp-1to1-16b` scenario.
 *
 * The broker's young generation is made large enough that no collection runs while a round is
 * measured: before a round the broker collects (`gc()`), after it the growth of the used heap is
 * what the round allocated. A round during which a collection did run is reported as such and not
 * counted. Memory outside the JavaScript heap (socket buffers in the runtime) is not included.
 *
 * With `ALLOC_PROFILE=<file>` the broker also writes a sampling heap profile of the whole run,
 * collected objects included (a `.heapprofile` for a browser's developer tools): where the bytes go.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';

import { openAmqpConsumer, openAmqpPublisher, setupAmqpTopology } from './clients/amqp.js';
import { openMqttConsumer, openMqttPublisher } from './clients/mqtt.js';
import type { ConsumerDriver, OnFatal, OnMessage, PublisherDriver } from './clients/types.js';

const PUBLISHERS = 10;
const INFLIGHT = 100;
const WARMUP = 50_000;
const SEMI_SPACE_MB = 256;

type ToBroker = { op: 'mark' } | { op: 'read' } | { op: 'stop' };
type FromBroker = { op: 'port'; port: number; amqpPort: number } | { op: 'marked' } | { op: 'read'; bytes: number; collections: number };

async function brokerMain(): Promise<void> {
  const { startBroker } = await import('../src/broker.js');
  const broker = await startBroker({ mqttPort: 0, amqpPort: 0, bind: '127.0.0.1', logLevel: 'silent' });
  const collect = (globalThis as { gc?: () => void }).gc;
  if (collect === undefined) throw new Error('the broker process needs --expose-gc');
  let collections = 0;
  let markedAt = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.startTime >= markedAt) collections++;
  }).observe({ entryTypes: ['gc'] });
  let base = 0;
  const send = (m: FromBroker): void => {
    process.send!(m);
  };
  const { Session } = await import('node:inspector');
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> => new Promise((res, rej) => session.post(method, params ?? {}, (err, r) => (err ? rej(err) : res(r))));
  const profOut = process.env['ALLOC_PROFILE'];
  if (profOut !== undefined) await post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  process.on('message', (m: ToBroker) => {
    if (m.op === 'stop' && profOut !== undefined) {
      void post('HeapProfiler.stopSampling').then(async (r) => {
        const { writeFileSync } = await import('node:fs');
        writeFileSync(profOut, JSON.stringify((r as { profile: unknown }).profile));
        process.exit(0);
      });
      return;
    }
    if (m.op === 'mark') {
      collect();
      // The observer reports the forced collection later: only collections that start after it count.
      markedAt = performance.now();
      collections = 0;
      base = getHeapStatistics().used_heap_size;
      send({ op: 'marked' });
    } else if (m.op === 'read') {
      const bytes = getHeapStatistics().used_heap_size - base;
      send({ op: 'read', bytes, collections });
    } else {
      void broker.stop().then(() => process.exit(0));
    }
  });
  send({ op: 'port', port: broker.ports.mqtt!, amqpPort: broker.ports.amqp! });
}

/** Publishes `n` messages through `pub`, resolving when the subscriber has received all of them. */
function pump(pub: PublisherDriver, n: number, received: () => number, onAll: (cb: () => void) => void): Promise<void> {
  const target = received() + n;
  const body = Buffer.alloc(16, 7);
  let sent = 0;
  return new Promise((resolve) => {
    onAll(() => {
      if (received() >= target) resolve();
    });
    const step = (): void => {
      while (sent < n) {
        sent++;
        if (!pub.publish(body)) {
          pub.whenWritable(step);
          return;
        }
      }
    };
    step();
  });
}

interface Clients {
  pub: PublisherDriver;
  consumer: ConsumerDriver;
}

async function openMqttClients(port: number, onMessage: OnMessage, fatal: OnFatal): Promise<Clients> {
  const url = `mqtt://127.0.0.1:${port}`;
  const consumer = await openMqttConsumer({ role: 'consumer', id: 'sub', protocol: 'mqtt', url, filter: 'alloc/#', qos: 1, clientId: 'alloc-sub' }, onMessage, fatal);
  const topics = Array.from({ length: PUBLISHERS }, (_, i) => `alloc/${i}/value`);
  const pub = await openMqttPublisher({ role: 'publisher', id: 'pub', bodySize: 16, maxMessages: Number.MAX_SAFE_INTEGER, protocol: 'mqtt', url, topics, qos: 1, inflight: INFLIGHT, clientIdPrefix: 'alloc-pub-' }, fatal);
  return { pub, consumer };
}

async function openAmqpClients(port: number, onMessage: OnMessage, fatal: OnFatal): Promise<Clients> {
  const url = `amqp://guest:guest@127.0.0.1:${port}`;
  const queue = 'alloc';
  await setupAmqpTopology(url, { exchanges: [], queues: [{ name: queue }], bindings: [] }, { queueExpiresMs: null });
  const consumer = await openAmqpConsumer({ role: 'consumer', id: 'con', protocol: 'amqp', url, queues: [queue], prefetch: 1_000, ackEvery: 1 }, onMessage, fatal);
  const pub = await openAmqpPublisher({ role: 'publisher', id: 'pub', bodySize: 16, maxMessages: Number.MAX_SAFE_INTEGER, protocol: 'amqp', url, exchange: '', routingKey: queue, persistent: false }, fatal);
  return { pub, consumer };
}

async function main(): Promise<void> {
  const args = process.argv.slice(2).filter((a) => a !== '--amqp');
  const amqp = process.argv.includes('--amqp');
  const n = Number(args[0] ?? 20_000);
  const rounds = Number(args[1] ?? 5);
  const child = fork(fileURLToPath(import.meta.url), ['--broker'], {
    execArgv: ['--expose-gc', `--min-semi-space-size=${SEMI_SPACE_MB}`, `--max-semi-space-size=${SEMI_SPACE_MB}`],
  });
  const replies: Array<(m: FromBroker) => void> = [];
  let portReply: ((m: { port: number; amqpPort: number }) => void) | null = null;
  child.on('message', (m: FromBroker) => {
    if (m.op === 'port') portReply?.(m);
    else replies.shift()?.(m);
  });
  const ask = (m: ToBroker): Promise<FromBroker> =>
    new Promise((resolve) => {
      replies.push(resolve);
      child.send(m);
    });
  const ports = await new Promise<{ port: number; amqpPort: number }>((resolve) => (portReply = resolve));
  const fatal = (err: Error): void => {
    console.error(err);
    process.exit(1);
  };
  let got = 0;
  let watcher: (() => void) | null = null;
  const onMessage = (): void => {
    got++;
    watcher?.();
  };
  const { pub, consumer } = amqp ? await openAmqpClients(ports.amqpPort, onMessage, fatal) : await openMqttClients(ports.port, onMessage, fatal);
  const onAll = (cb: () => void): void => {
    watcher = cb;
  };
  await pump(pub, WARMUP, () => got, onAll);
  const perMsg: number[] = [];
  for (let r = 1; r <= rounds; r++) {
    await ask({ op: 'mark' });
    await pump(pub, n, () => got, onAll);
    const m = await ask({ op: 'read' });
    if (m.op !== 'read') throw new Error('unexpected reply');
    const b = m.bytes / n;
    if (m.collections > 0) console.log(`round ${r}: ${m.collections} collection(s) during the round, not counted (${b.toFixed(0)} B/msg seen)`);
    else {
      perMsg.push(b);
      console.log(`round ${r}: ${n} messages, ${(m.bytes / 1024 / 1024).toFixed(1)} MiB, ${b.toFixed(0)} B/msg`);
    }
  }
  perMsg.sort((a, b) => a - b);
  const median = perMsg[Math.floor(perMsg.length / 2)];
  console.log(median === undefined ? 'no round without a collection' : `median: ${median.toFixed(0)} B/msg over ${perMsg.length} rounds`);
  await pub.close();
  await consumer.close();
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.send({ op: 'stop' } satisfies ToBroker);
  await exited;
}

if (process.argv.includes('--broker')) void brokerMain();
else void main();
