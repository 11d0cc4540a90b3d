import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { Core } from '../../../src/core/index.js';
import { historyQuery, sampledDetails, withQueueHistory } from '../../../src/management/history.js';
import { CH, OBJECT_HISTORY, Q, Sampler } from '../../../src/management/sampler.js';

const INTERVAL = 5000;
const T0 = Date.UTC(2026, 0, 1, 12, 0, 0);

describe('per-object history in the sampler', () => {
  let core: Core;
  let sampler: Sampler;
  let now: number;
  const step = (n = 1): void => {
    for (let i = 0; i < n; i++) {
      now += INTERVAL;
      vi.setSystemTime(now);
      sampler.sample();
    }
  };

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['Date'] });
    now = T0;
    vi.setSystemTime(now);
    core = new Core();
    sampler = new Sampler(core, INTERVAL);
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  test('an idle queue serves its constant depth for every sample since it was first seen, newest first', () => {
    const v = core.vhosts.get('/')!;
    const q = v.declareQueue('idle', { durable: false }, false, 0);
    step(10);
    const s = sampler.objectSamples(q, 600_000, INTERVAL);
    expect(s).toHaveLength(10);
    expect(s.map((x) => x.timestamp)).toEqual(Array.from({ length: 10 }, (_, i) => T0 + (10 - i) * INTERVAL));
    for (const x of s) expect(Array.from(x.values)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  test('counters that change are kept per sample, and the values before the first change are filled in', () => {
    const q = core.vhosts.get('/')!.declareQueue('busy', { durable: false }, false, 0);
    step(5);
    for (let i = 1; i <= 5; i++) {
      q.stats.published += 10;
      step();
    }
    const s = sampler.objectSamples(q, 600_000, INTERVAL);
    expect(s.map((x) => x.values[Q.publish])).toEqual([50, 40, 30, 20, 10, 0, 0, 0, 0, 0]);
  });

  test('at most OBJECT_HISTORY samples are kept: the ring wraps and the oldest go', () => {
    const q = core.vhosts.get('/')!.declareQueue('long', { durable: false }, false, 0);
    for (let i = 0; i < OBJECT_HISTORY + 30; i++) {
      q.stats.published = i;
      step();
    }
    const s = sampler.objectSamples(q, 24 * 3600_000, INTERVAL);
    expect(s).toHaveLength(OBJECT_HISTORY);
    expect(s[0]!.values[Q.publish]).toBe(OBJECT_HISTORY + 29);
    expect(s[OBJECT_HISTORY - 1]!.values[Q.publish]).toBe(30);
  });

  test('idle objects share one zero record; one with traffic gets its own, with the right rates and history', () => {
    const v = core.vhosts.get('/')!;
    const a = v.declareQueue('idle-a', { durable: false }, false, 0);
    const b = v.declareQueue('idle-b', { durable: false }, false, 0);
    step(3);
    expect(sampler.rates(a)).toBe(sampler.rates(b));
    expect(sampler.objectSamples(a, 600_000, INTERVAL)[0]!.values).toBe(sampler.objectSamples(b, 600_000, INTERVAL)[0]!.values);
    expect(Object.isFrozen(sampler.rates(a))).toBe(true);

    a.stats.published = 50;
    step();
    expect(sampler.rates(a)[Q.publish]).toBe(10);
    expect(sampler.rates(b)[Q.publish]).toBe(0);
    a.stats.published = 75;
    step();
    expect(sampler.rates(a)[Q.publish]).toBe(5);
    const sa = sampler.objectSamples(a, 600_000, INTERVAL);
    expect(sa.map((x) => x.values[Q.publish])).toEqual([75, 50, 0, 0, 0]);
    // the one still idle kept reading zeros, and the record it shares was not touched
    const sb = sampler.objectSamples(b, 600_000, INTERVAL);
    expect(sb).toHaveLength(5);
    for (const x of sb) expect(Array.from(x.values)).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  test('an object first seen with traffic starts with zero rates, then the rates since that sample', () => {
    const q = core.vhosts.get('/')!.declareQueue('born-busy', { durable: false }, false, 0);
    q.stats.published = 20;
    step();
    expect(sampler.rates(q)[Q.publish]).toBe(0);
    q.stats.published = 30;
    step();
    expect(sampler.rates(q)[Q.publish]).toBe(2);
    expect(sampler.objectSamples(q, 600_000, INTERVAL).map((x) => x.values[Q.publish])).toEqual([30, 20]);
  });

  test('an idle channel reads zero rates; its first rates run from when it opened, or from the previous sample if later', () => {
    const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
    const early = conn.openChannel(1);
    step();
    vi.setSystemTime(T0 + INTERVAL + 2000);
    const late = conn.openChannel(2);
    const idle = conn.openChannel(3);
    early.stats.published = 35;
    late.stats.published = 30;
    step();
    // `early` over the 5 s since the previous sample, `late` over the 3 s since it opened
    expect(sampler.rates(early)[CH.publish]).toBe(7);
    expect(sampler.rates(late)[CH.publish]).toBe(10);
    expect(sampler.rates(idle)[CH.publish]).toBe(0);
    late.stats.published = 60;
    step();
    expect(sampler.rates(late)[CH.publish]).toBe(6);
    expect(sampler.rates(early)[CH.publish]).toBe(0);
    expect(sampler.rates(idle)[CH.publish]).toBe(0);
  });

  test('age and increment select samples as RabbitMQ does', () => {
    const q = core.vhosts.get('/')!.declareQueue('sel', { durable: false }, false, 0);
    for (let i = 0; i < 60; i++) {
      q.stats.published = i;
      step();
    }
    // the last 60 s, one sample every 15 s
    const s = sampler.objectSamples(q, 60_000, 15_000);
    expect(s.map((x) => x.values[Q.publish])).toEqual([59, 56, 53, 50, 47]);
  });

  test('a queue declared later has samples only from then on; a deleted vhost has none', () => {
    const v = core.vhosts.get('/')!;
    step(4);
    const q = v.declareQueue('late', { durable: false }, false, 0);
    step(3);
    expect(sampler.objectSamples(q, 600_000, INTERVAL)).toHaveLength(3);
    expect(sampler.objectSamples('/', 600_000, INTERVAL)).toHaveLength(7);
    expect(sampler.objectSamples('nope', 600_000, INTERVAL)).toEqual([]);
  });

  test('a queue row gets RabbitMQ-shaped details: rate, samples, avg, avg_rate', () => {
    const q = core.vhosts.get('/')!.declareQueue('row', { durable: false }, false, 0);
    for (let i = 0; i < 4; i++) {
      q.stats.published += 5;
      step();
    }
    const row = { messages_details: { rate: 0 }, message_stats: { publish_details: { rate: 1 } } };
    const hq = historyQuery(new URLSearchParams('lengths_age=60&lengths_incr=5&msg_rates_age=60&msg_rates_incr=5'), INTERVAL);
    withQueueHistory(row, sampler, q, hq);
    const pub = (row.message_stats as Record<string, unknown>)['publish_details'] as Record<string, unknown>;
    expect(pub).toEqual({
      rate: 1,
      samples: [20, 15, 10, 5].map((sample, i) => ({ sample, timestamp: T0 + (4 - i) * INTERVAL })),
      avg: 12.5,
      avg_rate: 1,
    });
    expect((row.messages_details as Record<string, unknown>)['samples']).toHaveLength(4);
    expect(historyQuery(new URLSearchParams(''), INTERVAL)).toEqual({ lengths: undefined, rates: undefined });
    expect(sampledDetails(0, [])).toEqual({ rate: 0, samples: [], avg: 0, avg_rate: 0 });
  });
});
