// A broker process with store tuning from the environment (small memory budget and segments), for
// tests that kill it: `node warren-tuned-child.mjs <dataDir>`. Prints the same ready line as `warren start`.
import { startBroker } from '../../dist/src/broker.js';

const dataDir = process.argv[2];
const broker = await startBroker({
  dataDir,
  amqpPort: 0,
  mqttPort: null,
  stompPort: null,
  httpPort: null,
  bind: '127.0.0.1',
  logLevel: process.env.WARREN_LOG_LEVEL ?? 'warn',
  store: {
    queueMemoryBudget: Number(process.env.WARREN_TEST_QUEUE_MEMORY_BUDGET ?? 65536),
    segmentSize: Number(process.env.WARREN_TEST_SEGMENT_SIZE ?? 131072),
    definitionsCompactBytes: Number(process.env.WARREN_TEST_DEFINITIONS_COMPACT_BYTES ?? 1048576),
  },
});
process.stdout.write(`${broker.readyLine}\n`);
process.once('SIGTERM', () => broker.stop().then(() => process.exit(0)));
