import { afterEach, expect, test, vi } from 'vitest';
import { Core } from '../../../src/core/core.js';

// Found by the MQTT fuzzer (a TimeoutOverflowWarning in the broker's log): Node runs a timer
// whose delay is over 2^31-1 ms after 1 ms. An x-expires of 30 days deleted the queue at once, and
// a message expiring in 115 days made its queue re-check every millisecond.

afterEach(() => {
  vi.restoreAllMocks();
});

const DAY = 86_400_000;

test('a queue whose x-expires is longer than 2^31-1 ms is not deleted early', async () => {
  const vhost = new Core().vhosts.get('/')!;
  vhost.declareQueue('monthly', { arguments: { 'x-expires': 30 * DAY } }, false, 0);
  // the bug deleted it 1 ms after the declare; proving absence needs some time to pass
  await new Promise((resolve) => setTimeout(resolve, 50));
  expect(vhost.queues.has('monthly')).toBe(true);
});

test('a message whose expiration is beyond 2^31-1 ms arms one timer, not one per millisecond', async () => {
  const vhost = new Core().vhosts.get('/')!;
  vhost.declareQueue('q', {}, false, 0);
  const timers = vi.spyOn(globalThis, 'setTimeout');
  vhost.publish({ exchange: '', routingKey: 'q', properties: { expiration: '9999999999' }, body: Buffer.from('later') }, 0);
  await new Promise((resolve) => setImmediate(resolve));
  const armed = timers.mock.calls.length;
  timers.mockRestore();
  await new Promise((resolve) => setTimeout(resolve, 50));
  const again = vi.spyOn(globalThis, 'setTimeout');
  await new Promise((resolve) => setTimeout(resolve, 20));
  // one call is the wait above; the queue re-armed nothing
  expect(again.mock.calls.length).toBe(1);
  expect(armed).toBeGreaterThan(0);
  expect(vhost.getQueue('q').readyCount).toBe(1);
});
