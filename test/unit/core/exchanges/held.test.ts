import { describe, expect, test } from 'vitest';
import { HeldMessages } from '../../../../src/core/exchanges/held.js';
import type { Message } from '../../../../src/core/types.js';
import { HELD_CODEC } from '../../../../src/store/delayed.js';

function msg(i: number, size = 16): Message {
  return { exchange: 'dx', routingKey: `k.${i}`, properties: { headers: { 'x-delay': i }, deliveryMode: 2 }, body: Buffer.alloc(size, i & 0xff) };
}

describe('HeldMessages', () => {
  test('packed: every message comes back as it was put, with its publisher and store key', () => {
    const h = new HeldMessages(HELD_CODEC);
    const slots = Array.from({ length: 5000 }, (_, i) => h.put(msg(i, i % 7 === 0 ? 70_000 : 16), i, i % 2 === 0 ? `key-${i}` : undefined));
    for (let i = 0; i < slots.length; i++) {
      const m = h.message(slots[i]!);
      expect(m.routingKey).toBe(`k.${i}`);
      expect(m.exchange).toBe('dx');
      expect(m.properties.headers?.['x-delay']).toBe(i);
      expect(m.body.length).toBe(i % 7 === 0 ? 70_000 : 16);
      expect(m.body[0]).toBe(i & 0xff);
      expect(h.publisher(slots[i]!)).toBe(i);
      expect(h.key(slots[i]!)).toBe(i % 2 === 0 ? `key-${i}` : undefined);
    }
  });

  test('packed: slabs are released once every message in them is freed; slots are reused', () => {
    const h = new HeldMessages(HELD_CODEC);
    const slots = Array.from({ length: 20_000 }, (_, i) => h.put(msg(i), 0, undefined));
    const full = h.bytes;
    expect(full).toBeGreaterThan(256 * 1024);
    for (const s of slots) h.free(s);
    expect(h.bytes).toBeLessThanOrEqual(256 * 1024);
    const again = h.put(msg(1), 0, undefined);
    expect(slots).toContain(again);
  });

  test('without a codec the objects are kept', () => {
    const h = new HeldMessages(undefined);
    const m = msg(3);
    const s = h.put(m, 9, 'k');
    expect(h.message(s)).toBe(m);
    expect(h.bytes).toBe(0);
    h.free(s);
    expect(h.key(s)).toBeUndefined();
  });
});
