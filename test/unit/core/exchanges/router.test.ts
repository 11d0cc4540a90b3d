import { describe, expect, test } from 'vitest';
import { BrokerError, ReplyCode } from '../../../../src/core/errors.js';
import { EXCHANGE_TYPES, createRouter } from '../../../../src/core/exchanges/router.js';
import type { Router } from '../../../../src/core/exchanges/router.js';
import type { FieldTable } from '../../../../src/core/types.js';

function route(r: Router<string>, key: string, headers?: FieldTable): string[] {
  const out = new Set<string>();
  r.route(key, headers, out);
  return [...out].sort();
}

describe('createRouter', () => {
  test.each(EXCHANGE_TYPES)('creates an empty %s router', (type) => {
    const r = createRouter<string>(type);
    expect(r.size).toBe(0);
    expect(route(r, 'a')).toEqual([]);
  });

  test('an unknown type is 503 COMMAND_INVALID with RabbitMQ\'s text', () => {
    let err: unknown;
    try {
      createRouter<string>('x-consistent-hash');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(BrokerError);
    const e = err as BrokerError;
    expect(e.code).toBe(ReplyCode.COMMAND_INVALID);
    expect(e.text).toBe("invalid exchange type 'x-consistent-hash'");
    expect(e.replyText).toBe("COMMAND_INVALID - invalid exchange type 'x-consistent-hash'");
    expect(e.isHard).toBe(true);
  });

  test('type names are case-sensitive', () => {
    expect(() => createRouter<string>('Direct')).toThrow("invalid exchange type 'Direct'");
    expect(() => createRouter<string>('')).toThrow("invalid exchange type ''");
  });

  test('the topic router routes with wildcards and counts bindings', () => {
    const r = createRouter<string>('topic');
    r.add('sensors.*.temp', {}, 'q1');
    r.add('sensors.#', {}, 'q2');
    r.add('sensors.kitchen.temp', {}, 'q3');
    expect(r.size).toBe(3);
    expect(route(r, 'sensors.kitchen.temp')).toEqual(['q1', 'q2', 'q3']);
    expect(route(r, 'sensors')).toEqual(['q2']);
    r.remove('sensors.#', {}, 'q2');
    expect(route(r, 'sensors.kitchen.temp')).toEqual(['q1', 'q3']);
    expect(r.size).toBe(2);
  });

  test('the topic router keeps a destination bound twice with different args until both go', () => {
    const r = createRouter<string>('topic');
    r.add('a.*', { qos: 0 }, 'q');
    r.add('a.*', { qos: 1 }, 'q');
    r.remove('a.*', { qos: 0 }, 'q');
    expect(route(r, 'a.b')).toEqual(['q']);
    r.remove('a.*', { qos: 1 }, 'q');
    expect(route(r, 'a.b')).toEqual([]);
    expect(r.size).toBe(0);
  });
});
