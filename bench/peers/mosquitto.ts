/**
 * Mosquitto as an MQTT peer: started by the harness from the Debian package (`apt-get install -y
 * mosquitto`) on a free loopback port with a small generated config, stopped (SIGTERM) and its temp
 * directory removed at the end.
 *
 * Config beyond the defaults, so that QoS 1 compares brokers rather than window sizes and no message
 * is dropped: `max_inflight_messages 1024` (outgoing QoS 1 deliveries awaiting PUBACK per client;
 * default 20; Warren's window is 1024) and `max_queued_messages 0` (default 1000 per client, above
 * which Mosquitto silently drops QoS 1 messages, which would stall the harness's in-flight window).
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort, tail, waitExit } from '../brokers.js';
import type { Broker } from '../brokers.js';
import { probeMqtt } from '../clients/mqtt.js';
import { sleep } from '../clock.js';

const CANDIDATES = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'];

/** Deliveries awaiting PUBACK per client, as Warren's MQTT window. */
export const MOSQUITTO_MAX_INFLIGHT = 1024;

export function mosquittoBinary(): string | undefined {
  return CANDIDATES.find((p) => existsSync(p));
}

/** `mosquitto version 2.0.11` -> `2.0.11`. */
function mosquittoVersion(bin: string): string {
  try {
    // `mosquitto -h` prints its usage (with the version) and exits 3.
    execFileSync(bin, ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const out = String((err as { stdout?: unknown }).stdout ?? '') + String((err as { stderr?: unknown }).stderr ?? '');
    const m = /mosquitto version (\S+)/.exec(out);
    if (m?.[1] !== undefined) return m[1];
  }
  return '?';
}

export async function startMosquitto(o: { verbose: boolean; startTimeoutMs: number }): Promise<Broker> {
  const bin = mosquittoBinary();
  if (bin === undefined) throw new Error('mosquitto is not installed (apt-get install -y mosquitto)');
  const version = mosquittoVersion(bin);
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-mosquitto-'));
  const port = await freePort();
  const conf = join(dir, 'mosquitto.conf');
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence false',
      `max_inflight_messages ${MOSQUITTO_MAX_INFLIGHT}`,
      'max_queued_messages 0',
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const child = spawn(bin, ['-c', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  tail(child.stdout, output, o.verbose);
  tail(child.stderr, output, o.verbose);
  const stop = async (): Promise<void> => {
    child.kill('SIGTERM');
    await waitExit(child, 10_000);
    await rm(dir, { recursive: true, force: true });
  };
  const url = `mqtt://127.0.0.1:${port}`;
  const deadline = Date.now() + o.startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`mosquitto exited (${child.exitCode ?? child.signalCode}):\n${output.join('\n')}`);
    }
    if (await probeMqtt(url).then(() => true, () => false)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`mosquitto not accepting MQTT on ${port} after ${o.startTimeoutMs} ms:\n${output.join('\n')}`);
    }
    await sleep(200);
  }
  return {
    name: `Mosquitto ${version}`,
    isWarren: false,
    endpoints: { mqtt: url },
    pid: child.pid ?? null,
    shared: false,
    details:
      `started by the harness: ${bin} -c <tmp>/mosquitto.conf (listener ${port} 127.0.0.1, allow_anonymous, ` +
      `persistence false, max_inflight_messages ${MOSQUITTO_MAX_INFLIGHT}, max_queued_messages 0) (pid ${child.pid ?? '?'})`,
    stop,
  };
}
