import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBroker, type Broker } from '../../src/broker.js';
import type { BrokerOptions } from '../../src/config.js';

export interface TestBroker {
  broker: Broker;
  dataDir: string;
  amqpUrl: string;
  stop(): Promise<void>;
}

/** A whole broker on ephemeral ports with a fresh data directory. */
export async function startTestBroker(opts: Partial<BrokerOptions> = {}): Promise<TestBroker> {
  const dataDir = await mkdtemp(join(tmpdir(), 'warren-test-'));
  const broker = await startBroker({
    amqpPort: 0,
    mqttPort: 0,
    stompPort: 0,
    httpPort: 0,
    bind: '127.0.0.1',
    logLevel: (process.env['WARREN_TEST_LOG'] as BrokerOptions['logLevel'] | undefined) ?? 'silent',
    dataDir,
    ...opts,
  });
  return {
    broker,
    dataDir,
    amqpUrl: `amqp://guest:guest@127.0.0.1:${broker.ports.amqp}`,
    async stop() {
      await broker.stop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `cond` until it returns a truthy value (returned) or the timeout passes (throws). */
export async function waitFor<T>(cond: () => T | Promise<T>, timeoutMs = 5000, what = 'condition'): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await cond();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Resolves with the first event of `name` on `emitter`. */
export function once<T = unknown>(emitter: { once(name: string, fn: (v: T) => void): unknown }, name: string): Promise<T> {
  return new Promise((resolve) => emitter.once(name, resolve));
}
