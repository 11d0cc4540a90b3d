/**
 * `npm run bench:alarm` — how far memory runs past the memory alarm's watermark under a publisher
 * flood, and whether the alarm clears once the memory is freed.
 *
 * Starts Warren with `--memory-high-watermark <bytes>`, forks publisher processes (AMQP and MQTT
 * QoS 0) that publish into one queue without a consumer as fast as the broker takes it, and reads
 * the broker's accounted memory (`mem_used` of /api/nodes, the alarm's own figure) and its resident
 * set size (VmRSS) every few milliseconds. After the flood the publishers stop, the queue is purged,
 * and the time until the alarm clears is measured, with the RSS at that moment.
 *
 *   npm run build && npm run bench:alarm -- --watermark-mib 200 --amqp 4 --mqtt 2 --seconds 15
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { connect } from 'amqplib';
import mqtt from 'mqtt';

import { startWarren } from './brokers.js';
import { sleep } from './clock.js';
import { rssKiB } from './idle.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = join(HERE, '..', '..');
const QUEUE = 'warren-bench.alarm-flood';
const TOPIC = 'warren-bench/alarm-flood';
const MiB = 1 << 20;
const POLL_MS = 5;

type PublisherRole = { role: 'amqp' | 'mqtt'; url: string; bodySize: number };

/** A publisher process: publishes until killed, waiting only for socket back-pressure. */
async function publish(p: PublisherRole): Promise<void> {
  const body = Buffer.alloc(p.bodySize, 0x61);
  if (p.role === 'amqp') {
    const conn = await connect(p.url);
    const ch = await conn.createChannel();
    process.send?.({ type: 'ready' });
    for (;;) {
      if (!ch.sendToQueue(QUEUE, body)) await new Promise<void>((r) => ch.once('drain', () => r()));
    }
  }
  const client = await mqtt.connectAsync(p.url, { reconnectPeriod: 0, clientId: `alarm-flood-${process.pid}` });
  process.send?.({ type: 'ready' });
  // At most WINDOW publishes not yet handed to the socket: the broker's reading paces the loop.
  const WINDOW = 256;
  let pending = 0;
  let wake: (() => void) | undefined;
  const written = (): void => {
    pending--;
    if (wake !== undefined && pending < WINDOW / 2) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  for (;;) {
    while (pending < WINDOW) {
      pending++;
      client.publish(TOPIC, body, { qos: 0 }, written);
    }
    await new Promise<void>((r) => (wake = r));
  }
}

interface Sample {
  at: number;
  used: number;
  alarm: boolean;
  rss: number;
}

interface NodeMemory {
  used: number;
  limit: number;
  alarm: boolean;
  parts: Record<string, number>;
}

async function nodeMemory(http: string, auth: string): Promise<NodeMemory> {
  const res = await fetch(`${http}/api/nodes`, { headers: { authorization: auth } });
  const nodes = (await res.json()) as { mem_used: number; mem_limit: number; mem_alarm: boolean; memory: Record<string, number> }[];
  const n = nodes[0]!;
  return { used: n.mem_used, limit: n.mem_limit, alarm: n.mem_alarm, parts: n.memory };
}

const PARTS = ['queued_messages', 'buffered', 'heap_used', 'other_external'];

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      'watermark-mib': { type: 'string', default: '200' },
      amqp: { type: 'string', default: '4' },
      mqtt: { type: 'string', default: '2' },
      'body-size': { type: 'string', default: '4096' },
      seconds: { type: 'string', default: '15' },
      'warren-bin': { type: 'string' },
    },
  });
  const watermark = Number(values['watermark-mib']) * MiB;
  const nAmqp = Number(values.amqp);
  const nMqtt = Number(values.mqtt);
  const bodySize = Number(values['body-size']);
  const seconds = Number(values.seconds);
  const broker = await startWarren({
    bin: values['warren-bin'] ?? join(REPO_ROOT, 'bin', 'warren.js'),
    extraArgs: ['--memory-high-watermark', String(watermark), '--log-level', 'warn'],
    verbose: false,
    startTimeoutMs: 30_000,
  });
  const children: ChildProcess[] = [];
  try {
    const pid = broker.pid!;
    const amqpUrl = broker.endpoints.amqp!;
    const httpPort = new URL(broker.endpoints['stomp-ws']!).port;
    const http = `http://127.0.0.1:${httpPort}`;
    const auth = `Basic ${Buffer.from('guest:guest').toString('base64')}`;
    const admin = await connect(amqpUrl);
    const ch = await admin.createChannel();
    await ch.assertQueue(QUEUE, { durable: false });
    await ch.bindQueue(QUEUE, 'amq.topic', TOPIC.replaceAll('/', '.'));

    const roles: PublisherRole[] = [
      ...Array.from({ length: nAmqp }, (): PublisherRole => ({ role: 'amqp', url: amqpUrl, bodySize })),
      ...Array.from({ length: nMqtt }, (): PublisherRole => ({ role: 'mqtt', url: broker.endpoints.mqtt!, bodySize })),
    ];
    const ready: Promise<void>[] = [];
    for (const r of roles) {
      const child = fork(fileURLToPath(import.meta.url), ['--publisher', JSON.stringify(r)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      children.push(child);
      ready.push(new Promise<void>((resolve) => child.once('message', () => resolve())));
    }
    await Promise.all(ready);
    const rssBefore = (rssKiB(pid) ?? 0) * 1024;

    // The flood: sample until the time is up.
    const samples: Sample[] = [];
    const start = performance.now();
    let raises = 0;
    let firstAlarmMs: number | null = null;
    let last = false;
    while (performance.now() - start < seconds * 1000) {
      const m = await nodeMemory(http, auth);
      const s: Sample = { at: performance.now() - start, used: m.used, alarm: m.alarm, rss: (rssKiB(pid) ?? 0) * 1024 };
      samples.push(s);
      if (s.alarm && !last) {
        raises++;
        firstAlarmMs ??= s.at;
      }
      last = s.alarm;
      await sleep(POLL_MS);
    }
    for (const c of children) c.kill('SIGKILL');
    const queued = (await ch.checkQueue(QUEUE)).messageCount;

    // Memory freed: purge, then wait for the alarm to clear.
    const purgedAt = performance.now();
    await ch.purgeQueue(QUEUE);
    let clearedMs: number | null = null;
    let after = await nodeMemory(http, auth);
    while (performance.now() - purgedAt < 30_000) {
      after = await nodeMemory(http, auth);
      if (!after.alarm) {
        clearedMs = performance.now() - purgedAt;
        break;
      }
      await sleep(POLL_MS);
    }
    const rssAfter = (rssKiB(pid) ?? 0) * 1024;
    await sleep(2000);
    const settled = await nodeMemory(http, auth);
    const rssSettled = (rssKiB(pid) ?? 0) * 1024;
    // Publishes still in the killed publishers' socket buffers are read once the alarm clears.
    const lateArrivals = (await ch.checkQueue(QUEUE)).messageCount;
    await admin.close();

    const peakUsed = Math.max(...samples.map((s) => s.used));
    const peakRss = Math.max(...samples.map((s) => s.rss));
    const mib = (n: number): string => (n / MiB).toFixed(0);
    const x = (n: number): string => `${(n / watermark).toFixed(2)}×`;
    const lines = [
      `## Memory alarm under a publisher flood`,
      '',
      `${nAmqp} AMQP + ${nMqtt} MQTT QoS 0 publishers, ${bodySize} B bodies, one queue without a consumer, ` +
        `${seconds} s; watermark ${mib(watermark)} MiB; /api/nodes and VmRSS read every ${POLL_MS} ms ` +
        `(${samples.length} samples).`,
      '',
      '| | MiB | × watermark |',
      '|---|---|---|',
      `| peak accounted memory (mem_used, the alarm's figure) | ${mib(peakUsed)} | ${x(peakUsed)} |`,
      `| peak RSS | ${mib(peakRss)} | ${x(peakRss)} |`,
      `| RSS before the flood | ${mib(rssBefore)} | ${x(rssBefore)} |`,
      `| accounted memory once the alarm cleared after the purge | ${mib(after.used)} | ${x(after.used)} |`,
      `| RSS then | ${mib(rssAfter)} | ${x(rssAfter)} |`,
      `| accounted memory 2 s later (alarm ${settled.alarm ? 'raised' : 'clear'}) | ${mib(settled.used)} | ${x(settled.used)} |`,
      `| RSS then | ${mib(rssSettled)} | ${x(rssSettled)} |`,
      '',
      `- first alarm after ${firstAlarmMs === null ? 'never' : `${(firstAlarmMs / 1000).toFixed(2)} s`}; ` +
        `raised ${raises} time(s) during the flood; ${queued} messages queued at the end`,
      `- ${lateArrivals} messages arrived after the purge (the rest of what the publishers had sent before they were stopped)`,
      `- parts 2 s after the purge (MiB): ${PARTS.map((k) => `${k} ${mib(settled.parts[k] ?? 0)}`).join(', ')}`,
      `- after the purge the alarm ${clearedMs === null ? 'did NOT clear within 30 s' : `cleared in ${clearedMs.toFixed(0)} ms`}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    return clearedMs === null || peakUsed > watermark * 1.2 ? 1 : 0;
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await broker.stop();
  }
}

const at = process.argv.indexOf('--publisher');
if (at >= 0) {
  publish(JSON.parse(process.argv[at + 1] ?? '{}') as PublisherRole).catch((err: unknown) => {
    process.stderr.write(`publisher: ${String(err)}\n`);
    process.exit(1);
  });
} else {
  main().then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`bench:alarm: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
