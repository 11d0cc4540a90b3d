import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { Core } from '../../../src/core/index.js';
import type { Queue } from '../../../src/core/index.js';
import { G, Q, Sampler } from '../../../src/management/sampler.js';

const INTERVAL = 5000;
const QUEUES = 1_200;

/** Runs the slices still pending (each a setImmediate), not the next interval. */
function runSlices(): number {
  let turns = 0;
  while (vi.getTimerCount() > 1) {
    vi.advanceTimersToNextTimer();
    turns++;
  }
  return turns;
}

describe('the timed sample runs in slices', () => {
  let core: Core;
  let queues: Queue[];

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate'] });
    vi.setSystemTime(Date.UTC(2026, 0, 1, 12, 0, 0));
    core = new Core();
    const v = core.vhosts.get('/')!;
    queues = Array.from({ length: QUEUES }, (_, i) => v.declareQueue(`q${i}`, { durable: false }, false, 0));
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test('one turn of the timer samples only a slice; the rest follows in later turns', () => {
    const sliced = new Sampler(core, INTERVAL);
    sliced.start();
    for (const q of queues) q.stats.published += 50;
    vi.advanceTimersToNextTimer(); // the interval: the first slice only
    const last = queues[QUEUES - 1]!;
    expect(sliced.rates(queues[0]!)[Q.publish]).toBe(10);
    expect(sliced.rates(last)[Q.publish]).toBe(0);
    expect(runSlices()).toBeGreaterThanOrEqual(2);
    expect(sliced.rates(last)[Q.publish]).toBe(10);
    sliced.stop();
  });

  test('a sliced sample gives the same rates and totals as one taken at once', () => {
    const sliced = new Sampler(core, INTERVAL);
    const whole = new Sampler(core, INTERVAL);
    sliced.start();
    whole.sample();
    queues.forEach((q, i) => {
      q.stats.published += i;
      q.stats.delivered += 2 * i;
    });
    vi.advanceTimersByTime(INTERVAL);
    whole.sample(); // at the instant the sliced one started
    runSlices();
    for (const q of [queues[0]!, queues[599]!, queues[QUEUES - 1]!]) expect(sliced.rates(q)).toEqual(whole.rates(q));
    expect(sliced.globalRates()).toEqual(whole.globalRates());
    expect(sliced.vhostRates('/')).toEqual(whole.vhostRates('/'));
    expect(sliced.vhostRates('/')[G.deliver]).toBeGreaterThan(0);
    expect(sliced.samples(600_000, INTERVAL)).toEqual(whole.samples(600_000, INTERVAL));
    sliced.stop();
  });

  test('an explicit sample while a sliced one runs finishes that one first', () => {
    const sliced = new Sampler(core, INTERVAL);
    sliced.start();
    for (const q of queues) q.stats.published += 50;
    vi.advanceTimersToNextTimer();
    sliced.sample();
    expect(sliced.rates(queues[QUEUES - 1]!)[Q.publish]).toBe(10);
    expect(sliced.samples(600_000, 1)).toHaveLength(3);
    sliced.stop();
  });
});
