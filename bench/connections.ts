/**
 * The many-connections scenario: a broker holds about 20 000 connections at once — idle MQTT ones
 * (idle-client.ts, several processes) plus active AMQP and STOMP ones that publish to themselves
 * once a second (connections-client.ts) — and, while it holds them, a new client of each protocol
 * connects and makes one round trip (subscribe, publish, receive its own message), several times.
 *
 * Reported per broker: connections held, the broker's resident memory per idle MQTT connection
 * (settled, after the MQTT phase) and per active connection (after the active phase), and the new
 * clients' connect + round-trip latency (median and worst) per protocol. Brokers without AMQP or
 * STOMP (Mosquitto) run the MQTT part only, with the same number of idle MQTT connections.
 *
 * The count is capped by the open-files limit: every connection is a descriptor in the broker.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { connect as amqpConnect } from 'amqplib';
import mqtt from 'mqtt';

import { brokerPids, type Broker } from './brokers.js';
import { StompConnection, header } from './clients/stomp.js';
import { FailureLatch, sleep, wallMs, withTimeout } from './clock.js';
import type { FromActiveClient, ToActiveClient } from './connections-client.js';
import type { FromIdleClient, ToIdleClient } from './idle-client.js';
import { openFilesLimits, rssKiB } from './idle.js';
import type { ConnectionsScenario } from './scenarios.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const OPEN_TIMEOUT_MS = 300_000;
/** Descriptors a broker needs besides its client connections (listeners, data files, epoll ...). */
const FD_RESERVE = 100;
/** The target for a new client's connect + round trip while the connections are held. */
export const ROUND_TRIP_TARGET_MS = 50;

type ProbeProtocol = 'mqtt' | 'amqp' | 'stomp';

export interface ConnectionsResult {
  scenario: string;
  broker: string;
  isWarren: boolean;
  error: string | null;
  /** Why fewer connections than the scenario's were opened, if so. */
  capped: string | null;
  mqttIdle: number;
  active: number;
  connectSeconds: number;
  rssBeforeKiB: number | null;
  rssMqttKiB: number | null;
  rssAllKiB: number | null;
  rssClosedKiB: number | null;
  kibPerIdleMqtt: number | null;
  kibPerActive: number | null;
  /** Messages the active connections sent and got back while held. */
  activeSent: number;
  activeReceived: number;
  /** Connect + round-trip latencies in ms, per protocol. */
  probes: Partial<Record<ProbeProtocol, number[]>>;
}

/** A forked client process that speaks a `{ type }` message protocol. */
class Forked<To, From extends { type: string }> {
  readonly child: ChildProcess;
  private readonly waiters = new Map<string, (m: From) => void>();

  constructor(script: string, onFatal: (err: Error) => void) {
    this.child = fork(join(HERE, script), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: From) => {
      if (m.type === 'fatal') onFatal(new Error((m as unknown as { message: string }).message));
      this.waiters.get(m.type)?.(m);
    });
    this.child.on('error', onFatal);
  }

  send(msg: To): void {
    if (this.child.connected) this.child.send(msg as object);
  }

  next<T extends From['type']>(type: T): Promise<Extract<From, { type: T }>> {
    return new Promise((resolve) => {
      this.waiters.set(type, (m) => resolve(m as Extract<From, { type: T }>));
    });
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(5_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** The resident memory of all the broker's processes, in KiB. */
function brokerRss(broker: Broker): number | null {
  const pids = brokerPids(broker);
  if (pids === null || pids.length === 0) return null;
  let total = 0;
  for (const p of pids) {
    const r = rssKiB(p);
    if (r === null) return null;
    total += r;
  }
  return total;
}

/** RSS readings once a second for `seconds`; the median of the last third. */
async function settledRss(broker: Broker, seconds: number, guard: <T>(p: Promise<T>) => Promise<T>): Promise<number | null> {
  const readings: number[] = [];
  for (let t = 0; t < seconds; t++) {
    await guard(sleep(1_000));
    const r = brokerRss(broker);
    if (r !== null) readings.push(r);
  }
  const last = readings.slice(-Math.max(1, Math.floor(readings.length / 3))).sort((a, b) => a - b);
  if (last.length === 0) return null;
  const mid = last.length >> 1;
  return last.length % 2 === 1 ? last[mid]! : (last[mid - 1]! + last[mid]!) / 2;
}

// ---- new-client probes ------------------------------------------------------------------------

async function probeMqtt(url: string, id: string): Promise<number> {
  const t0 = performance.now();
  const client = await mqtt.connectAsync(url, { clientId: id, reconnectPeriod: 0, connectTimeout: 10_000 });
  try {
    const topic = `warren-bench/probe/${id}`;
    const got = new Promise<void>((resolve) => client.once('message', () => resolve()));
    await client.subscribeAsync(topic, { qos: 0 });
    await client.publishAsync(topic, 'ping', { qos: 0 });
    await withTimeout(got, 10_000, 'MQTT probe message');
    return performance.now() - t0;
  } finally {
    await client.endAsync();
  }
}

async function probeAmqp(url: string): Promise<number> {
  const t0 = performance.now();
  // TCP_NODELAY, as the Java, .NET and pika clients set by default (amqplib does not): with Nagle on
  // the client, each handshake step can wait out a 40 ms delayed ACK.
  const conn = await amqpConnect(url, { noDelay: true });
  try {
    const ch = await conn.createChannel();
    const q = (await ch.assertQueue('', { exclusive: true })).queue;
    const got = new Promise<void>((resolve) => void ch.consume(q, () => resolve(), { noAck: true }));
    ch.sendToQueue(q, Buffer.from('ping'));
    await withTimeout(got, 10_000, 'AMQP probe message');
    return performance.now() - t0;
  } finally {
    await conn.close();
  }
}

async function probeStomp(url: string, id: string): Promise<number> {
  const t0 = performance.now();
  const c = await StompConnection.open(url, id, null);
  try {
    const destination = `/exchange/amq.direct/${id}`;
    const got = new Promise<void>((resolve, reject) =>
      c.handle((f) => {
        if (f.command === 'MESSAGE') resolve();
        else reject(new Error(`${id}: ${f.command} ${header(f.head, 'message') ?? ''}`));
      }),
    );
    c.sendText(`SUBSCRIBE\nid:0\ndestination:${destination}\nack:auto\n\n`);
    c.sendWithBody(Buffer.from(`SEND\ndestination:${destination}\ncontent-length:4\n\n`, 'latin1'), Buffer.from('ping'));
    c.out.flush();
    await withTimeout(got, 10_000, 'STOMP probe message');
    return performance.now() - t0;
  } finally {
    await c.close();
  }
}

async function runProbes(broker: Broker, count: number, runId: string): Promise<Partial<Record<ProbeProtocol, number[]>>> {
  const out: Partial<Record<ProbeProtocol, number[]>> = {};
  const e = broker.endpoints;
  for (let i = 0; i < count; i++) {
    if (e.mqtt !== undefined) (out.mqtt ??= []).push(await probeMqtt(e.mqtt, `wb-probe-${runId}-${i}`));
    if (e.amqp !== undefined) (out.amqp ??= []).push(await probeAmqp(e.amqp));
    if (e.stomp !== undefined) (out.stomp ??= []).push(await probeStomp(e.stomp, `wb-probe-${runId}-${i}`));
    await sleep(100);
  }
  return out;
}

// ---- the run ------------------------------------------------------------------------------------

function failed(s: ConnectionsScenario, b: Broker, error: string): ConnectionsResult {
  return {
    scenario: s.name,
    broker: b.name,
    isWarren: b.isWarren,
    error,
    capped: null,
    mqttIdle: 0,
    active: 0,
    connectSeconds: 0,
    rssBeforeKiB: null,
    rssMqttKiB: null,
    rssAllKiB: null,
    rssClosedKiB: null,
    kibPerIdleMqtt: null,
    kibPerActive: null,
    activeSent: 0,
    activeReceived: 0,
    probes: {},
  };
}

export async function runConnections(
  s: ConnectionsScenario,
  broker: Broker,
  o: { runId: string; onCleanup: (fn: () => Promise<void>) => () => void; log: (msg: string) => void },
): Promise<ConnectionsResult> {
  const mqttUrl = broker.endpoints.mqtt;
  if (mqttUrl === undefined) return failed(s, broker, 'no MQTT endpoint');
  const pid = brokerPids(broker)?.at(-1) ?? null;
  if (pid === null || brokerRss(broker) === null) return failed(s, broker, 'broker pid unknown: cannot read its memory');
  // Each serving process (a worker) holds its own share of the connections, within its own limit.
  const serving = broker.servingProcesses ?? 1;
  const withActive = broker.endpoints.amqp !== undefined && broker.endpoints.stomp !== undefined;

  // Every connection is a descriptor in the broker: hold what its limit allows.
  let total = s.connections;
  let capped: string | null = null;
  const limits = openFilesLimits(pid);
  if (limits !== null && serving * (limits.soft - FD_RESERVE) < total) {
    total = serving * (limits.soft - FD_RESERVE);
    capped = `the broker's open files limit is ${limits.soft} per process (hard ${limits.hard}; ulimit -Hn of this machine)`;
    o.log(`  ${broker.name}: open files limit ${limits.soft}: holding ${total} connections instead of ${s.connections}`);
  }
  const activeEach = withActive ? s.activeEach : 0;
  // The same number of idle MQTT connections on every broker; MQTT-only ones get no active ones.
  const mqttIdle = total - 2 * s.activeEach;
  const procs: { kill(): Promise<void> }[] = [];
  const latch = new FailureLatch();
  const guard = <T>(p: Promise<T>): Promise<T> => latch.guard(p);
  const undo = o.onCleanup(async () => {
    await Promise.all(procs.map((p) => p.kill()));
  });
  try {
    await sleep(1_000);
    const rssBefore = brokerRss(broker);
    const t0 = wallMs();
    const idle: Forked<ToIdleClient, FromIdleClient>[] = [];
    const opened: Promise<Extract<FromIdleClient, { type: 'opened' }>>[] = [];
    for (let i = 0; i < s.processes; i++) {
      const p = new Forked<ToIdleClient, FromIdleClient>('idle-client.js', latch.signal);
      idle.push(p);
      procs.push(p);
      const count = Math.floor(mqttIdle / s.processes) + (i < mqttIdle % s.processes ? 1 : 0);
      opened.push(p.next('opened'));
      p.send({ type: 'open', url: mqttUrl, count, concurrency: 25, clientIdPrefix: `wb-${o.runId}-${s.name}-p${i}-`, keepAliveS: 60 });
    }
    const idleResults = await guard(withTimeout(Promise.all(opened), OPEN_TIMEOUT_MS, 'opening idle MQTT connections'));
    const idleOpened = idleResults.reduce((a, r) => a + r.opened, 0);
    if (idleOpened < mqttIdle) {
      return { ...failed(s, broker, `only ${idleOpened} of ${mqttIdle} MQTT connections opened: ${idleResults.flatMap((r) => r.errors)[0] ?? '?'}`), capped };
    }
    o.log(`  ${idleOpened} idle MQTT connections in ${((wallMs() - t0) / 1000).toFixed(1)} s; settling ${s.settleS} s ...`);
    const rssMqtt = await settledRss(broker, s.settleS, guard);

    let active: Forked<ToActiveClient, FromActiveClient> | undefined;
    let activeOpened = 0;
    let rssAll = rssMqtt;
    if (activeEach > 0) {
      active = new Forked<ToActiveClient, FromActiveClient>('connections-client.js', latch.signal);
      procs.push(active);
      const done = active.next('opened');
      active.send({
        type: 'open',
        amqpUrl: broker.endpoints.amqp!,
        stompUrl: broker.endpoints.stomp!,
        amqp: activeEach,
        stomp: activeEach,
        prefix: `wb-${o.runId}-active`,
        intervalMs: 1000,
        concurrency: 10,
      });
      const r = await guard(withTimeout(done, OPEN_TIMEOUT_MS, 'opening active connections'));
      activeOpened = r.opened;
      if (activeOpened < 2 * activeEach) {
        return { ...failed(s, broker, `only ${activeOpened} of ${2 * activeEach} active connections opened: ${r.errors[0] ?? '?'}`), capped };
      }
      o.log(`  ${activeOpened} active AMQP/STOMP connections; settling ${s.activeSettleS} s ...`);
      rssAll = await settledRss(broker, s.activeSettleS, guard);
    }
    const connectSeconds = (wallMs() - t0) / 1000;

    o.log(`  probing: a new client of each protocol connects and round-trips, ${s.probes} times ...`);
    const probes = await guard(runProbes(broker, s.probes, o.runId));

    let activeSent = 0;
    let activeReceived = 0;
    if (active !== undefined) {
      const closed = active.next('closed');
      active.send({ type: 'stop' });
      const c = await withTimeout(closed, 120_000, 'closing active connections');
      activeSent = c.sent;
      activeReceived = c.received;
    }
    const idleClosed = idle.map((p) => p.next('closed'));
    for (const p of idle) p.send({ type: 'stop' });
    await withTimeout(Promise.all(idleClosed), 120_000, 'closing idle connections').catch((err: unknown) => o.log(`  ${String(err)}`));
    await sleep(3_000);
    const rssClosed = brokerRss(broker);
    return {
      scenario: s.name,
      broker: broker.name,
      isWarren: broker.isWarren,
      error: null,
      capped,
      mqttIdle: idleOpened,
      active: activeOpened,
      connectSeconds,
      rssBeforeKiB: rssBefore,
      rssMqttKiB: rssMqtt,
      rssAllKiB: rssAll,
      rssClosedKiB: rssClosed,
      kibPerIdleMqtt: rssBefore !== null && rssMqtt !== null ? (rssMqtt - rssBefore) / idleOpened : null,
      kibPerActive: activeOpened > 0 && rssAll !== null && rssMqtt !== null ? (rssAll - rssMqtt) / activeOpened : null,
      activeSent,
      activeReceived,
      probes,
    };
  } catch (err) {
    const e = latch.failure ?? err;
    return { ...failed(s, broker, e instanceof Error ? e.message : String(e)), capped };
  } finally {
    undo();
    await Promise.all(procs.map((p) => p.kill()));
  }
}

// ---- report -------------------------------------------------------------------------------------

const mib = (k: number | null): string => (k === null ? 'n/a' : (k / 1024).toFixed(1));
const kib = (k: number | null): string => (k === null ? 'n/a' : k.toFixed(2));

function latency(xs: number[] | undefined): string {
  if (xs === undefined || xs.length === 0) return '—';
  const v = [...xs].sort((a, b) => a - b);
  const at = (q: number): number => v[Math.min(v.length - 1, Math.floor(q * v.length))]!;
  const max = v[v.length - 1]!;
  const within = v.filter((x) => x <= ROUND_TRIP_TARGET_MS).length;
  return `${at(0.5).toFixed(1)} / ${at(0.9).toFixed(1)} / ${max.toFixed(1)} (${within}/${v.length} ≤ ${ROUND_TRIP_TARGET_MS})`;
}

export function connectionsTable(s: ConnectionsScenario, results: ConnectionsResult[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | idle MQTT | active AMQP + STOMP | RSS before MiB | RSS with MQTT MiB | RSS with all MiB | RSS after closing MiB | KiB per idle MQTT connection | KiB per active connection | new MQTT client ms (median / p90 / max) | new AMQP client ms | new STOMP client ms |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of results) {
    if (r.error !== null) {
      lines.push(`| ${r.broker} | failed: ${r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ')} | | | | | | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.broker} | ${r.mqttIdle.toLocaleString('en-US')}${r.capped !== null ? ' ¹' : ''} | ${r.active} | ${mib(r.rssBeforeKiB)} | ` +
        `${mib(r.rssMqttKiB)} | ${r.active > 0 ? mib(r.rssAllKiB) : '—'} | ${mib(r.rssClosedKiB)} | ${kib(r.kibPerIdleMqtt)} | ` +
        `${r.active > 0 ? kib(r.kibPerActive) : '—'} | ${latency(r.probes.mqtt)} | ${latency(r.probes.amqp)} | ${latency(r.probes.stomp)} |`,
    );
  }
  const notes: string[] = [];
  for (const r of results.filter((x) => x.capped !== null)) notes.push(`- ¹ ${r.broker}: ${r.capped}.`);
  for (const r of results.filter((x) => x.error === null && x.active > 0)) {
    notes.push(`- ${r.broker}: the active connections sent ${r.activeSent} messages to themselves and got ${r.activeReceived} back while held.`);
  }
  notes.push(
    `- New client: connect (TCP + protocol handshake), subscribe, publish one message to itself and receive it, ${s.probes} times per protocol, ` +
      `one after another while the connections are held; in brackets how many took at most ${ROUND_TRIP_TARGET_MS} ms.`,
    '- KiB per idle MQTT connection: (RSS settled with the idle MQTT connections − RSS before) ÷ their number; per active connection: ' +
      '(RSS settled with all − RSS with MQTT) ÷ active connections. RSS is VmRSS, read once a second, the median of the last third.',
  );
  lines.push('', ...notes);
  return lines.join('\n');
}
