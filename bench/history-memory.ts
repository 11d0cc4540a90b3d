// Memory of the management history (OBJECT_HISTORY samples per queue) with 10,000 queues, idle
// and busy. In-process, no network: `npm run build && node --expose-gc dist/bench/history-memory.js`.
import { Core } from '../src/core/index.js';
import { OBJECT_HISTORY, Sampler } from '../src/management/sampler.js';

const QUEUES = Number(process.argv[2] ?? 10_000);

function heap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with node --expose-gc');
  for (let i = 0; i < 3; i++) gc();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
}

/** Bytes per queue of the sampler's state after a full ring of samples. */
function measure(busy: boolean): number {
  const core = new Core();
  const v = core.vhosts.get('/')!;
  const queues = Array.from({ length: QUEUES }, (_, i) => v.declareQueue(`q${i}`, { durable: false }, false, 0));
  const before = heap();
  const sampler = new Sampler(core, 5000);
  for (let t = 0; t < OBJECT_HISTORY + 5; t++) {
    if (busy) for (const q of queues) q.stats.published++;
    sampler.sample();
  }
  const after = heap();
  // keep both alive until measured
  if (sampler.objectSamples(queues[0]!, 600_000, 5000).length === 0) throw new Error('no samples');
  return (after - before) / QUEUES;
}

const idle = measure(false);
const busy = measure(true);
const kib = (b: number): string => `${(b / 1024).toFixed(2)} KiB`;
process.stdout.write(
  `${QUEUES} queues, ${OBJECT_HISTORY} samples each: sampler state per idle queue ${kib(idle)}, per busy queue ${kib(busy)} ` +
    `(total ${((busy * QUEUES) / 1048576).toFixed(1)} MiB busy)\n`,
);
