/**
 * The direct reply-to RPC scenario: one requester keeps N requests in flight, one responder answers
 * each, and the replies come back through `amq.rabbitmq.reply-to` (no reply queue). Measured: round
 * trips per second, round-trip latency, and the broker's CPU time per round trip (two messages: the
 * request through a queue, the reply straight to the requester's channel).
 *
 * Both clients are amqplib connections (noDelay, as the other scenarios) in the harness process itself (each round trip is one small
 * message each way; a separate process would only add IPC). The responder consumes with prefetch
 * and acknowledges each request, as RPC servers do.
 */
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';

import { sleep, wallMs } from './clock.js';
import { Histogram } from './histogram.js';
import { cpuSeconds, machineBusySeconds } from './proc.js';

export interface RpcScenario {
  kind: 'rpc';
  name: string;
  protocol: 'amqp';
  summary: string;
  /** Requests in flight at once, one run each. */
  inFlight: number[];
  bodySize: number;
}

export interface RpcResult {
  scenario: string;
  broker: string;
  isWarren: boolean;
  inFlight: number;
  error: string | null;
  seconds: number;
  roundTrips: number;
  perSec: number;
  p50Ms: number | null;
  p99Ms: number | null;
  brokerCpuUsPerRoundTrip: number | null;
  brokerCpuPct: number | null;
  /** Everything else busy on the machine during the window, harness included (% of one core). */
  machineCpuPct: number | null;
}

const REPLY_TO = 'amq.rabbitmq.reply-to';
const RESPONDER_PREFETCH = 256;

/**
 * One run: warm-up, then `durationS` measured. Request bodies carry the send time (first 8 bytes),
 * which the responder echoes: latency needs no map of pending requests.
 */
export async function runRpc(
  s: RpcScenario,
  broker: { name: string; isWarren: boolean; url: string; pid: number | null },
  queue: string,
  inFlight: number,
  warmupS: number,
  durationS: number,
): Promise<RpcResult> {
  const result: RpcResult = {
    scenario: s.name,
    broker: broker.name,
    isWarren: broker.isWarren,
    inFlight,
    error: null,
    seconds: 0,
    roundTrips: 0,
    perSec: 0,
    p50Ms: null,
    p99Ms: null,
    brokerCpuUsPerRoundTrip: null,
    brokerCpuPct: null,
    machineCpuPct: null,
  };
  let requesterConn: ChannelModel | undefined;
  let responderConn: ChannelModel | undefined;
  let failure: Error | null = null;
  const fail = (e: unknown): void => {
    failure ??= e instanceof Error ? e : new Error(String(e));
  };
  try {
    responderConn = await connect(broker.url, { noDelay: true });
    responderConn.on('error', fail);
    const responder: Channel = await responderConn.createChannel();
    responder.on('error', fail);
    await responder.assertQueue(queue, { exclusive: true, autoDelete: true });
    await responder.prefetch(RESPONDER_PREFETCH);
    await responder.consume(queue, (m: ConsumeMessage | null) => {
      if (m === null) return;
      responder.publish('', m.properties.replyTo as string, m.content, { correlationId: m.properties.correlationId as string });
      responder.ack(m);
    });

    requesterConn = await connect(broker.url, { noDelay: true });
    requesterConn.on('error', fail);
    const requester: Channel = await requesterConn.createChannel();
    requester.on('error', fail);
    const hist = new Histogram();
    let measuring = false;
    let stopping = false;
    let counted = 0;
    let outstanding = 0;
    const body = Buffer.alloc(Math.max(8, s.bodySize), 0x61);
    const send = (): void => {
      body.writeDoubleLE(performance.now(), 0);
      outstanding++;
      requester.sendToQueue(queue, body, { replyTo: REPLY_TO, correlationId: 'r' });
    };
    await requester.consume(
      REPLY_TO,
      (m: ConsumeMessage | null) => {
        if (m === null) return;
        outstanding--;
        if (measuring) {
          counted++;
          hist.recordMs(performance.now() - m.content.readDoubleLE(0));
        }
        if (!stopping) send();
      },
      { noAck: true },
    );
    for (let i = 0; i < inFlight; i++) send();
    await sleep(warmupS * 1000);
    if (failure !== null) throw failure;
    const pid = broker.pid;
    const cpu0 = pid === null ? null : cpuSeconds(pid);
    const busy0 = machineBusySeconds();
    const t0 = wallMs();
    measuring = true;
    await sleep(durationS * 1000);
    measuring = false;
    const seconds = (wallMs() - t0) / 1000;
    const cpu1 = pid === null ? null : cpuSeconds(pid);
    const busy1 = machineBusySeconds();
    stopping = true;
    const drainBy = wallMs() + 5000;
    while (outstanding > 0 && wallMs() < drainBy && failure === null) await sleep(10);
    if (failure !== null) throw failure;
    result.seconds = seconds;
    result.roundTrips = counted;
    result.perSec = counted / seconds;
    result.p50Ms = hist.quantileMs(0.5);
    result.p99Ms = hist.quantileMs(0.99);
    if (cpu0 !== null && cpu1 !== null) {
      result.brokerCpuPct = ((cpu1 - cpu0) / seconds) * 100;
      if (counted > 0) result.brokerCpuUsPerRoundTrip = ((cpu1 - cpu0) * 1e6) / counted;
      if (busy0 !== null && busy1 !== null) result.machineCpuPct = ((busy1 - busy0 - (cpu1 - cpu0)) / seconds) * 100;
    }
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
  } finally {
    await requesterConn?.close().catch(() => undefined);
    await responderConn?.close().catch(() => undefined);
  }
  return result;
}

const fmt = (n: number | null, digits = 0): string => (n === null ? 'n/a' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }));

/** One row per broker and in-flight count, then the Warren / peer ratio per in-flight count. */
export function rpcTable(s: RpcScenario, rows: RpcResult[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | in flight | round trips/s | p50 ms | p99 ms | broker CPU µs/round trip | broker CPU | rest of machine CPU |',
    '|---|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const r of rows) {
    if (r.error !== null) {
      lines.push(`| ${r.broker} | ${r.inFlight} | failed: ${r.error.replace(/\|/g, '\\|').replace(/\s+/g, ' ')} | | | | | |`);
      continue;
    }
    lines.push(
      `| ${r.broker} | ${r.inFlight} | ${fmt(r.perSec)} | ${fmt(r.p50Ms, 2)} | ${fmt(r.p99Ms, 2)} | ${fmt(r.brokerCpuUsPerRoundTrip, 1)} | ` +
        `${r.brokerCpuPct === null ? 'n/a' : `${Math.round(r.brokerCpuPct)} %`} | ${r.machineCpuPct === null ? 'n/a' : `${Math.round(r.machineCpuPct)} %`} |`,
    );
  }
  for (const n of s.inFlight) {
    const w = rows.find((r) => r.isWarren && r.inFlight === n && r.error === null);
    for (const p of rows.filter((r) => !r.isWarren && r.inFlight === n && r.error === null)) {
      if (w === undefined || p.perSec === 0) continue;
      const cpu =
        w.brokerCpuUsPerRoundTrip !== null && p.brokerCpuUsPerRoundTrip !== null && p.brokerCpuUsPerRoundTrip > 0
          ? `${(w.brokerCpuUsPerRoundTrip / p.brokerCpuUsPerRoundTrip).toFixed(2)}x`
          : 'n/a';
      lines.push(`| Warren / ${p.broker} | ${n} | ${(w.perSec / p.perSec).toFixed(2)}x | | | ${cpu} | | |`);
    }
  }
  lines.push(
    '',
    '- round trips/s: replies received per second of the measured window; p50/p99: request publish to reply callback.',
    '- broker CPU µs/round trip: broker process CPU time over the window / round trips in it (each is two messages).',
    '- rest of machine CPU: busy time of everything but the broker (the harness, which runs both clients, included), % of one core.',
  );
  return lines.join('\n');
}
