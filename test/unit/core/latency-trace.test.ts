import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { latencyTrace, LatencyTrace, TraceSpan, traceNow } from '../../../src/core/index.js';

interface Dump {
  counts: { routes: number; enqueues: number; dispatches: number; flushes: number };
  read: number[];
  route: number[];
  enqueue: number[];
  dispatch: number[];
  flush: number[];
  flushBytes: number[];
  spans: { at: number[]; ms: number[]; kind: string[] };
  loopDelayMs: { p50: number } | null;
}

describe('the latency trace', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-trace-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('is off unless WARREN_LATENCY_TRACE is set', () => {
    expect(process.env.WARREN_LATENCY_TRACE ?? '').toBe('');
    expect(latencyTrace).toBeNull();
  });

  test('records nothing until started, then every stage in order, and writes it when stopped', async () => {
    const t = new LatencyTrace(dir);
    t.route();
    t.enqueue();
    expect(t.recording).toBe(false);
    t.toggle();
    for (let i = 0; i < 3; i++) {
      t.lastRead = traceNow();
      t.route();
      t.enqueue();
      t.dispatch();
      t.flush(37);
    }
    const t0 = traceNow();
    t.span(TraceSpan.STATS_SAMPLE, t0);
    t.toggle();
    t.route(); // after the stop: not recorded
    const d = JSON.parse(await readFile(join(dir, 'warren-trace.json'), 'utf8')) as Dump;
    expect(d.counts).toEqual({ routes: 3, enqueues: 3, dispatches: 3, flushes: 3 });
    expect(d.flushBytes).toEqual([37, 37, 37]);
    for (let i = 0; i < 3; i++) {
      expect(d.read[i]).toBeLessThanOrEqual(d.route[i]!);
      expect(d.route[i]).toBeLessThanOrEqual(d.enqueue[i]!);
      expect(d.enqueue[i]).toBeLessThanOrEqual(d.dispatch[i]!);
      expect(d.dispatch[i]).toBeLessThanOrEqual(d.flush[i]!);
    }
    expect(d.spans.kind).toEqual(['stats-sample']);
    expect(d.spans.at[0]).toBe(t0);
    expect(d.loopDelayMs).not.toBeNull();
  });

  test('a new recording starts from zero', async () => {
    const t = new LatencyTrace(dir);
    t.start();
    t.route();
    t.route();
    t.stop();
    t.start();
    t.route();
    t.stop();
    const d = JSON.parse(await readFile(join(dir, 'warren-trace.json'), 'utf8')) as Dump;
    expect(d.counts.routes).toBe(1);
    expect(d.route).toHaveLength(1);
  });
});
