/**
 * Entry point of one process of the disconnect-storm scenario (forked by teardown.ts): opens its
 * share of subscribed MQTT 3.1.1 sessions (clean session, one SUBSCRIBE each, so every session has
 * a queue and a binding on a broker that maps MQTT to queues, and a QoS 0 will that tells the
 * harness when the broker has handled the session's end), reports how many are up, and on
 * `drop` destroys all its sockets at once, as a load balancer restart does (no DISCONNECT packet).
 * Each process connects from its own loopback address so that repeated runs do not run out of
 * ephemeral ports while the previous run's sockets sit in TIME_WAIT.
 */
import type { Socket } from 'node:net';

import { openSession } from './clients/mqtt-raw.js';

export type ToStormClient =
  | { type: 'open'; host: string; port: number; localAddress: string; count: number; concurrency: number; prefix: string; willPrefix: string }
  | { type: 'drop' };

export type FromStormClient =
  | { type: 'opened'; opened: number; errors: string[] }
  | { type: 'dropped'; atMs: number }
  | { type: 'fatal'; message: string };

function send(msg: FromStormClient): void {
  if (process.connected) process.send?.(msg);
}

const sockets: Socket[] = [];

async function open(msg: Extract<ToStormClient, { type: 'open' }>): Promise<void> {
  const errors: string[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < msg.count && errors.length === 0) {
      const id = `${msg.prefix}${next++}`;
      try {
        sockets.push(await openSession({ host: msg.host, port: msg.port, localAddress: msg.localAddress, clientId: id, topic: `wbench/storm/${id}`, will: `${msg.willPrefix}${id}` }));
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, msg.concurrency) }, worker));
  send({ type: 'opened', opened: sockets.length, errors: errors.slice(0, 5) });
}

function drop(): void {
  for (const s of sockets) s.destroy();
  sockets.length = 0;
  send({ type: 'dropped', atMs: performance.timeOrigin + performance.now() });
}

if (process.send === undefined) {
  process.stderr.write('bench/storm-client.js is started by bench/run.js, not directly\n');
  process.exit(2);
}
process.on('message', (msg: ToStormClient) => {
  if (msg.type === 'drop') drop();
  else open(msg).catch((err: unknown) => send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) }));
});
process.on('disconnect', () => process.exit(0));
