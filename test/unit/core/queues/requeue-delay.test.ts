import { describe, expect, test } from 'vitest';
import { requeueDelayFor } from '../../../../src/core/queues/requeue-delay.js';

describe('requeueDelayFor', () => {
  test('without a maximum the delay is the same for every return', () => {
    expect([1, 2, 3, 10].map((n) => requeueDelayFor(n, 500, undefined))).toEqual([500, 500, 500, 500]);
  });

  test('with a maximum the delay doubles per return up to the maximum', () => {
    expect([1, 2, 3, 4, 5, 6].map((n) => requeueDelayFor(n, 100, 1000))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  test('a huge return count does not overflow past the maximum', () => {
    expect(requeueDelayFor(10_000, 100, 60_000)).toBe(60_000);
  });
});
