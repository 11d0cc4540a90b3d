/**
 * Entry point of one idle-connection process (forked by idle.ts for the memory scenario): opens its
 * share of the idle MQTT connections, reports how many connected, keeps them alive until told to stop,
 * then closes them and exits. Exits at once when the parent goes away.
 */
import { readFileSync } from 'node:fs';

import { openIdleMqttConnections, type IdleSubscription } from './clients/mqtt.js';

export type ToIdleClient =
  | { type: 'open'; url: string; count: number; concurrency: number; clientIdPrefix: string; keepAliveS: number; clean?: boolean; subscribe?: IdleSubscription | null }
  | { type: 'stop' };

export type FromIdleClient =
  | { type: 'opened'; opened: number; errors: string[] }
  | { type: 'closed'; deliveries: number }
  | { type: 'fatal'; message: string };

function send(msg: FromIdleClient): void {
  if (process.connected) process.send?.(msg);
}

/** The soft limit on open files of this process (from /proc/self/limits), or null. */
function openFilesLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (m?.[1] === undefined) return null;
    return m[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(m[1]);
  } catch {
    return null;
  }
}

let close: (() => Promise<void>) | null = null;
let deliveries = 0;
let fatalSent = false;

async function onMessage(msg: ToIdleClient): Promise<void> {
  if (msg.type === 'open') {
    const limit = openFilesLimit();
    if (limit !== null && limit < msg.count + 64) {
      send({
        type: 'fatal',
        message: `open files limit ${limit} is below the ${msg.count} connections this process must hold (raise ulimit -n)`,
      });
      return;
    }
    const r = await openIdleMqttConnections({
      url: msg.url,
      count: msg.count,
      concurrency: msg.concurrency,
      clientIdPrefix: msg.clientIdPrefix,
      keepAliveS: msg.keepAliveS,
      clean: msg.clean,
      subscribe: msg.subscribe,
      onDelivery: () => {
        deliveries++;
      },
      onFatal: (err) => {
        // A broker closing idle connections spoils the measurement: report the first one.
        if (fatalSent) return;
        fatalSent = true;
        send({ type: 'fatal', message: err.message });
      },
    });
    close = r.close;
    send({ type: 'opened', opened: r.opened, errors: r.errors.slice(0, 5) });
    return;
  }
  await close?.();
  close = null;
  send({ type: 'closed', deliveries });
  setTimeout(() => process.exit(0), 100);
}

if (process.send === undefined) {
  process.stderr.write('bench/idle-client.js is started by bench/run.js, not directly\n');
  process.exit(2);
}
process.on('message', (msg: ToIdleClient) => {
  onMessage(msg).catch((err: unknown) => send({ type: 'fatal', message: err instanceof Error ? err.message : String(err) }));
});
process.on('disconnect', () => process.exit(0));
