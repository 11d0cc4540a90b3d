/**
 * What routing to other nodes' transient subscribers adds to a publish on a cluster node, in
 * process (`npm run build && node dist/bench/relay-cost.js`): one core, one exclusive queue on the
 * default exchange, N publishes of 16 B routed to it, CPU per publish without the relay, with the
 * relay sending every publish to a real nats-server (nobody listening), and with the relay and
 * its interest view (nothing announced by another node: nothing sent).
 */
import { pino } from 'pino';
import { connectNats } from '../src/cluster/nats/nats-engine.js';
import { startNatsServers } from '../src/cluster/dev-cluster.js';
import { TransientRouting } from '../src/cluster/transient-routing.js';
import { Core, type Delivery, type DeliverySink } from '../src/core/index.js';

const N = 300_000;
const ROUNDS = 3;

class Counter implements DeliverySink {
  got = 0;
  congested = false;
  deliver(_d: Delivery): void {
    this.got++;
  }
}

type Mode = 'no relay' | 'relay, every publish sent' | 'relay with interest view';

async function main(): Promise<void> {
  const nats = await startNatsServers({ count: 1 });
  const engine = await connectNats({ servers: nats.url.split(','), name: 'relay-cost' });
  const kv = await engine.openKV('relay_cost_interest', { replicas: 1 });
  const log = pino({ level: 'silent' });
  const run = async (mode: Mode): Promise<number> => {
    const core = new Core();
    const relay = mode === 'no relay' ? undefined : new TransientRouting(core, engine.bus, 'bench', 'n1', log, mode === 'relay with interest view' ? kv : undefined);
    await relay?.start();
    const conn = core.connect({ protocol: 'bench', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
    const ch = conn.openChannel(1);
    const q = ch.declareQueue('', { exclusive: true }).queue;
    ch.consume(q, { noAck: true }, new Counter());
    const body = Buffer.alloc(16);
    const t0 = process.cpuUsage();
    for (let i = 0; i < N; i++) {
      ch.publish({ exchange: '', routingKey: q, properties: {}, body });
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => setImmediate(r));
    const c = process.cpuUsage(t0);
    await relay?.stop();
    ch.deleteQueue(q, false, false);
    return (c.user + c.system) / N;
  };
  const modes: Mode[] = ['no relay', 'relay, every publish sent', 'relay with interest view'];
  const results = new Map<Mode, number[]>(modes.map((m) => [m, []]));
  for (let r = 0; r < ROUNDS; r++) for (const m of modes) results.get(m)!.push(await run(m));
  console.log(`| mode | CPU µs per publish (${ROUNDS} rounds of ${N.toLocaleString('en-US')}) |\n|---|--:|`);
  for (const m of modes) console.log(`| ${m} | ${results.get(m)!.map((v) => v.toFixed(2)).join(' / ')} |`);
  await engine.close();
  await nats.stop();
}

await main();
