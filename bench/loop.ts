/**
 * The loop scenarios: many connections, each subscribed to a destination of its own and keeping a
 * few messages going round through the broker (loop-client.ts). No message crosses from one
 * connection to another, so the scenario needs no routing between nodes: it measures what all the
 * broker's processes together move when clients are spread over them (`--workers N` against one
 * process). Reported: messages/s (deliveries), broker CPU per message and in % of one core.
 */
import { fork } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { brokerPids, type Broker } from './brokers.js';
import { sleep, wallMs } from './clock.js';
import type { FromLoopClient, ToLoopClient } from './loop-client.js';
import { cpuSecondsOf, machineBusySeconds } from './proc.js';
import type { LoopScenario } from './scenarios.js';

const HERE = dirname(fileURLToPath(import.meta.url));

export interface LoopResult {
  scenario: string;
  broker: string;
  error: string | null;
  connections: number;
  seconds: number;
  delivered: number;
  msgsPerSec: number;
  brokerCpuUsPerMsg: number | null;
  brokerCpuPct: number | null;
  brokerProcesses: number;
  /** Everything but the broker on the machine meanwhile (clients included), % of one core. */
  restCpuPct: number | null;
}

class LoopProcess {
  readonly child: ChildProcess;
  private readonly waiters: Array<{ type: string; resolve: (m: FromLoopClient) => void }> = [];
  failure: string | null = null;

  constructor() {
    this.child = fork(join(HERE, 'loop-client.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.child.on('message', (m: FromLoopClient) => {
      if (m.type === 'fatal') this.failure = m.message;
      const i = this.waiters.findIndex((w) => w.type === m.type || m.type === 'fatal');
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m);
    });
  }

  ask<T extends FromLoopClient['type']>(msg: ToLoopClient, reply: T, timeoutMs: number): Promise<Extract<FromLoopClient, { type: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`loop client: no '${reply}' within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        type: reply,
        resolve: (m) => {
          clearTimeout(timer);
          if (m.type === 'fatal') reject(new Error(m.message));
          else resolve(m as Extract<FromLoopClient, { type: T }>);
        },
      });
      if (this.child.connected) this.child.send(msg);
    });
  }

  tell(msg: ToLoopClient): void {
    if (this.child.connected) this.child.send(msg);
  }

  async kill(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    await Promise.race([exited, sleep(5_000)]);
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

function brokerCpu(b: Broker): number | null {
  return cpuSecondsOf(brokerPids(b));
}

export async function runLoop(
  s: LoopScenario,
  broker: Broker,
  o: { runId: string; warmupS: number; durationS: number; onCleanup: (fn: () => Promise<void>) => () => void },
): Promise<LoopResult> {
  const url = broker.endpoints[s.protocol];
  const base: LoopResult = {
    scenario: s.name,
    broker: broker.name,
    error: null,
    connections: s.connections,
    seconds: o.durationS,
    delivered: 0,
    msgsPerSec: 0,
    brokerCpuUsPerMsg: null,
    brokerCpuPct: null,
    brokerProcesses: brokerPids(broker)?.length ?? 0,
    restCpuPct: null,
  };
  if (url === undefined) return { ...base, error: `no ${s.protocol} endpoint` };
  const procs: LoopProcess[] = [];
  const undo = o.onCleanup(async () => {
    await Promise.all(procs.map((p) => p.kill()));
  });
  try {
    const each = Math.ceil(s.connections / s.processes);
    for (let i = 0; i < s.processes; i++) procs.push(new LoopProcess());
    await Promise.all(
      procs.map((p, i) =>
        p.ask(
          { type: 'open', protocol: s.protocol, url, connections: each, inflight: s.inflight, bodySize: s.bodySize, qos: s.qos, idPrefix: `wb-${o.runId}-${s.name}-${i}` },
          'opened',
          60_000,
        ),
      ),
    );
    for (const p of procs) p.tell({ type: 'go' });
    await sleep(o.warmupS * 1000);
    const count = async (): Promise<number> => (await Promise.all(procs.map((p) => p.ask({ type: 'count' }, 'count', 10_000)))).reduce((a, m) => a + m.received, 0);
    const c0 = await count();
    const t0 = wallMs();
    const cpu0 = brokerCpu(broker);
    const busy0 = machineBusySeconds();
    await sleep(o.durationS * 1000);
    const c1 = await count();
    const t1 = wallMs();
    const cpu1 = brokerCpu(broker);
    const busy1 = machineBusySeconds();
    const delivered = c1 - c0;
    const secs = (t1 - t0) / 1000;
    const cpu = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
    return {
      ...base,
      error: delivered === 0 ? 'no messages delivered in the measured window' : null,
      seconds: secs,
      delivered,
      msgsPerSec: delivered / secs,
      brokerCpuUsPerMsg: cpu !== null && delivered > 0 ? (cpu * 1e6) / delivered : null,
      brokerCpuPct: cpu !== null ? (cpu / secs) * 100 : null,
      restCpuPct: cpu !== null && busy0 !== null && busy1 !== null ? Math.max(0, ((busy1 - busy0 - cpu) / secs) * 100) : null,
      connections: each * s.processes,
    };
  } catch (err) {
    return { ...base, error: err instanceof Error ? err.message : String(err) };
  } finally {
    undo();
    await Promise.all(procs.map((p) => p.ask({ type: 'stop' }, 'closed', 10_000).catch(() => undefined)));
    await Promise.all(procs.map((p) => p.kill()));
  }
}

export function loopTable(s: LoopScenario, rows: LoopResult[]): string {
  const lines = [
    `### ${s.name}`,
    '',
    s.summary,
    '',
    '| broker | processes | connections | msgs/s | broker CPU µs/msg | broker CPU % of a core | clients + other load, % of a core | error |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.broker} | ${r.brokerProcesses} | ${r.connections} | ${Math.round(r.msgsPerSec).toLocaleString('en-US')} | ` +
        `${r.brokerCpuUsPerMsg?.toFixed(1) ?? 'n/a'} | ${r.brokerCpuPct?.toFixed(0) ?? 'n/a'} | ${r.restCpuPct?.toFixed(0) ?? 'n/a'} | ${r.error ?? ''} |`,
    );
  }
  return lines.join('\n');
}
