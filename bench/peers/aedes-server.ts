/**
 * Child process entry: an Aedes MQTT broker (in-memory persistence, default options) on 127.0.0.1
 * and the port given as argv[2] (0 = ephemeral). Prints `aedes ready mqtt=<port>` once listening and
 * exits on SIGTERM/SIGINT or when its parent goes away (stdin closes).
 */
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';

import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? '0');
const broker = await Aedes.createBroker();
const server = createServer(broker.handle);
server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`aedes ready mqtt=${(server.address() as AddressInfo).port}\n`);
});

let stopping = false;
function stop(): void {
  if (stopping) return;
  stopping = true;
  setTimeout(() => process.exit(0), 3_000).unref();
  server.close();
  broker.close(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('close', stop);
process.stdin.resume();
