/**
 * Micro-benchmark of topic-permission checks on the publish path: the cost per check of the
 * pattern a channel keeps (literal fast path, RE2 with its answer cache warm and cold), of a
 * full `Auth.topicPermitted` lookup, and, for comparison, of a native RegExp (which backtracks);
 * then whole core publishes to amq.topic (no bindings) without a topic permission and with one.
 *
 *   npm run build && node dist/bench/patterns.js [iterations]
 */
import { Auth } from '../src/core/auth.js';
import { Core } from '../src/core/core.js';
import { compilePattern, type Pattern } from '../src/core/pattern.js';

const N = Number(process.argv[2] ?? 1_000_000);

/** Best of five runs of N calls (the machine may be shared: the minimum is the least disturbed). */
function measure(name: string, fn: (i: number) => boolean): void {
  let hits = 0;
  for (let i = 0; i < 200_000; i++) if (fn(i)) hits++; // warm-up, lets the JIT settle
  let best = Infinity;
  for (let run = 0; run < 5; run++) {
    hits = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) if (fn(i)) hits++;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / N);
  }
  console.log(`${name.padEnd(58)} ${best.toFixed(1).padStart(8)} ns/check  (${hits === N ? 'all allowed' : `${hits} allowed`})`);
}

const key = 'sensors.dev-42.kitchen.temp';
/** 1 000 distinct routing keys: more than an RE2 pattern's answer cache holds. */
const keys = Array.from({ length: 1000 }, (_, i) => `sensors.dev-42.room-${i}.temp`);

const literal: Pattern = compilePattern('^sensors\\.dev-42\\.');
const re2: Pattern = compilePattern('^sensors\\.dev-42\\.[a-z0-9-]+\\.(temp|hum)$');
const native = /^sensors\.dev-42\.[a-z0-9-]+\.(temp|hum)$/;

const auth = new Auth();
auth.setTopicPermission('/', 'dev', { exchange: 'amq.topic', write: '^sensors\\.{client_id}\\.', read: '' });
const vars = { username: 'dev', vhost: '/', client_id: 'dev-42' };

console.log(`node ${process.version}, best of 5 runs of ${N} checks each`);
measure('baseline: the loop and call alone', (i) => i >= 0);
measure('literal prefix (channel-kept Pattern)', () => literal.test(key));
measure('RE2, one routing key (answer cached)', () => re2.test(key));
measure('RE2, 1 000 rotating routing keys (cache misses)', (i) => re2.test(keys[i % 1000]!));
measure('native RegExp, one routing key (for comparison)', () => native.test(key));
measure('native RegExp, 1 000 rotating routing keys', (i) => native.test(keys[i % 1000]!));
measure('Auth.topicPermitted with {client_id} (lookup + substitute)', () => auth.topicPermitted('dev', '/', 'amq.topic', 'write', key, vars));

/** Core publishes to amq.topic by a user with the given topic write pattern (none: unrestricted). */
function publishes(name: string, write: string | undefined, routingKey: (i: number) => string): void {
  const core = new Core();
  core.auth.addUser('dev', 'pw');
  core.auth.setPermission('/', 'dev', { configure: '.*', write: '.*', read: '.*' });
  if (write !== undefined) core.auth.setTopicPermission('/', 'dev', { exchange: 'amq.topic', write, read: '' });
  const conn = core.connect({ protocol: 'bench', peer: { address: '127.0.0.1', port: 1 }, user: 'dev', vhost: '/', clientId: 'dev-42' }, { forceClose: () => undefined });
  const ch = conn.openChannel(1);
  const body = Buffer.from('21.5');
  const properties = {};
  measure(name, (i) => ch.publish({ exchange: 'amq.topic', routingKey: routingKey(i), properties, body }).routed === 0);
}

const one = (): string => key;
const rotating = (i: number): string => keys[i % 1000]!;
publishes('core publish, no topic permission', undefined, one);
publishes('core publish, topic permission ^sensors\\.{client_id}\\.', '^sensors\\.{client_id}\\.', one);
publishes('core publish, RE2 topic permission, one routing key', '^sensors\\.{client_id}\\.[a-z0-9-]+\\.(temp|hum)$', one);
publishes('core publish, RE2 topic permission, 1 000 routing keys', '^sensors\\.{client_id}\\.[a-z0-9-]+\\.(temp|hum)$', rotating);
publishes('core publish, no topic permission, 1 000 routing keys', undefined, rotating);
