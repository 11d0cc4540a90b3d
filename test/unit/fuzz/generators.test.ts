import { describe, expect, test } from 'vitest';
import type { FuzzCase, TargetContext } from '../../../fuzz/case.js';
import { KNOWN_ISSUE_NAMES } from '../../../fuzz/config.js';
import { Rng, caseSeed } from '../../../fuzz/prng.js';
import { Session, mutate } from '../../../fuzz/session.js';
import { amqpTarget } from '../../../fuzz/targets/amqp.js';
import { httpTarget } from '../../../fuzz/targets/http.js';
import { mqttTarget } from '../../../fuzz/targets/mqtt.js';
import { stompTarget } from '../../../fuzz/targets/stomp.js';
import { wsTarget } from '../../../fuzz/targets/ws.js';

const TARGETS = [amqpTarget, mqttTarget, stompTarget, wsTarget, httpTarget];
const skipAll: TargetContext = { skip: new Set(KNOWN_ISSUE_NAMES), ns: 'fz' };

function bytesOf(c: FuzzCase): Buffer {
  return Buffer.concat(c.kind === 'raw' ? c.chunks : c.messages);
}

describe('fuzz case generation', () => {
  test.each(TARGETS.map((t) => [t.name, t] as const))('%s: the same seed and index give the same case', (_name, target) => {
    for (let i = 0; i < 50; i++) {
      const a = target.generate(new Rng(caseSeed(42, target.name, i)), skipAll);
      const b = target.generate(new Rng(caseSeed(42, target.name, i)), skipAll);
      expect(bytesOf(a).equals(bytesOf(b))).toBe(true);
      expect(a.note).toBe(b.note);
    }
  });

  test('different indexes give different cases', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) seen.add(bytesOf(amqpTarget.generate(new Rng(caseSeed(42, 'amqp', i)), skipAll)).toString('hex'));
    expect(seen.size).toBeGreaterThan(45);
  });

  test('with the unknown-path issue skipped, an upgrade to an unknown path is never followed by a reset', () => {
    for (let i = 0; i < 2000; i++) {
      const c = wsTarget.generate(new Rng(caseSeed(7, 'ws', i)), skipAll);
      if (c.kind === 'raw' && c.note.startsWith('upgrade to unknown path')) {
        expect(c.end).toBe('end');
        expect(c.chunks).toHaveLength(1);
      }
    }
  });

  test('a lying length mutation changes a marked length field and nothing else', () => {
    const s = new Session().add(Buffer.from([1, 0, 0, 0, 4, 9, 9, 9, 9]), [{ offset: 1, width: 4, kind: 'be' }]);
    let changedOnlyLength = 0;
    for (let i = 0; i < 200; i++) {
      const out = Buffer.concat(mutate(new Rng(i), s, { other: () => s }));
      if (out.length === 9 && out[0] === 1 && out.subarray(5).equals(Buffer.from([9, 9, 9, 9])) && out.readUInt32BE(1) !== 4) changedOnlyLength++;
    }
    expect(changedOnlyLength).toBeGreaterThan(0);
  });

  test('the PRNG is uniform enough for picking', () => {
    const rng = new Rng(1);
    const counts = [0, 0, 0, 0];
    for (let i = 0; i < 40_000; i++) counts[rng.int(4)]!++;
    for (const n of counts) expect(Math.abs(n - 10_000)).toBeLessThan(500);
  });
});
