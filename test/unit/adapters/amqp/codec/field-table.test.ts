import { describe, expect, test } from 'vitest';
import {
  decodeFieldArray,
  decodeFieldTable,
  encodeFieldArray,
  encodeFieldTable,
} from '../../../../../adapters/amqp/codec/field-table.js';
import { BrokerError, ReplyCode } from '../../../../../src/core/errors.js';
import { Decimal } from '../../../../../src/core/types.js';
import type { FieldTable } from '../../../../../src/core/types.js';

/** Builds a table in wire form from raw entry bytes. */
function wireTable(...entries: Buffer[]): Buffer {
  const body = Buffer.concat(entries);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(body.length);
  return Buffer.concat([len, body]);
}

function entry(key: string, tag: string, value: Buffer): Buffer {
  return Buffer.concat([Buffer.from([key.length]), Buffer.from(key), Buffer.from(tag), value]);
}

function be(size: number, write: (b: Buffer) => void): Buffer {
  const b = Buffer.alloc(size);
  write(b);
  return b;
}

function codeOf(fn: () => unknown): number | string {
  try {
    fn();
  } catch (e) {
    if (e instanceof BrokerError) return e.code;
    return `not a BrokerError: ${String(e)}`;
  }
  return 'no error';
}

describe('decodeFieldTable reads every RabbitMQ value type', () => {
  test.each<[string, string, Buffer, unknown]>([
    ['t true', 't', Buffer.from([1]), true],
    ['t false', 't', Buffer.from([0]), false],
    ['b int8', 'b', Buffer.from([0xff]), -1],
    ['B uint8', 'B', Buffer.from([0xff]), 255],
    ['s int16', 's', be(2, (b) => b.writeInt16BE(-300)), -300],
    ['u uint16', 'u', be(2, (b) => b.writeUInt16BE(65000)), 65000],
    ['I int32', 'I', be(4, (b) => b.writeInt32BE(-70000)), -70000],
    ['i uint32', 'i', be(4, (b) => b.writeUInt32BE(4000000000)), 4000000000],
    ['l int64 safe', 'l', be(8, (b) => b.writeBigInt64BE(-(2n ** 40n))), -(2 ** 40)],
    ['l int64 beyond safe', 'l', be(8, (b) => b.writeBigInt64BE(2n ** 62n + 1n)), 2n ** 62n + 1n],
    ['l int64 min', 'l', be(8, (b) => b.writeBigInt64BE(-(2n ** 63n))), -(2n ** 63n)],
    ['L read as signed 64-bit like RabbitMQ', 'L', be(8, (b) => b.writeBigInt64BE(-5n)), -5],
    ['f float', 'f', be(4, (b) => b.writeFloatBE(1.5)), 1.5],
    ['d double', 'd', be(8, (b) => b.writeDoubleBE(Math.PI)), Math.PI],
    ['D decimal', 'D', Buffer.from([2, 0, 0, 0x30, 0x39]), new Decimal(2, 12345)],
    ['S long string (utf8)', 'S', Buffer.concat([be(4, (b) => b.writeUInt32BE(5)), Buffer.from('héé')]), 'héé'],
    ['x byte array', 'x', Buffer.from([0, 0, 0, 3, 1, 2, 3]), Buffer.from([1, 2, 3])],
    ['T timestamp (seconds)', 'T', be(8, (b) => b.writeBigUInt64BE(1700000000n)), new Date(1700000000 * 1000)],
    ['V void', 'V', Buffer.alloc(0), null],
    ['A array', 'A', Buffer.from([0, 0, 0, 7, 0x49, 0, 0, 0, 5, 0x74, 1]), [5, true]],
    ['F nested table', 'F', wireTable(entry('k', 'V', Buffer.alloc(0))), { k: null }],
  ])('%s', (_name, tag, value, expected) => {
    expect(decodeFieldTable(wireTable(entry('v', tag, value)))).toEqual({ v: expected });
  });

  test('byte arrays are copies, not views of the input', () => {
    const wire = wireTable(entry('x', 'x', Buffer.from([0, 0, 0, 2, 7, 8])));
    const t = decodeFieldTable(wire);
    wire.fill(0);
    expect(t.x).toEqual(Buffer.from([7, 8]));
  });

  test('a __proto__ key is an ordinary property and does not touch the prototype', () => {
    const t = decodeFieldTable(wireTable(entry('__proto__', 'F', wireTable(entry('polluted', 't', Buffer.from([1]))))));
    expect(Object.getPrototypeOf(t)).toBe(Object.prototype);
    expect(Object.keys(t)).toEqual(['__proto__']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  test('an empty table decodes to {}', () => {
    expect(decodeFieldTable(Buffer.from([0, 0, 0, 0]))).toEqual({});
  });
});

describe('encodeFieldTable chooses the tag from the JS type', () => {
  test.each<[string, unknown, string]>([
    ['string -> S', 'x', 'S'],
    ['boolean -> t', true, 't'],
    ['int32 -> I', -5, 'I'],
    ['int32 max -> I', 2147483647, 'I'],
    ['beyond int32 -> l', 2147483648, 'l'],
    ['safe integer -> l', 2 ** 52, 'l'],
    ['fraction -> d', 1.25, 'd'],
    ['unsafe integer -> d', 2 ** 60, 'd'],
    ['bigint -> l', 5n, 'l'],
    ['Buffer -> x', Buffer.from([1]), 'x'],
    ['Date -> T', new Date(5000), 'T'],
    ['Decimal -> D', new Decimal(1, 5), 'D'],
    ['null -> V', null, 'V'],
    ['undefined -> V', undefined, 'V'],
    ['array -> A', [1], 'A'],
    ['object -> F', { a: 1 }, 'F'],
  ])('%s', (_name, value, tag) => {
    const wire = encodeFieldTable({ k: value } as FieldTable);
    expect(String.fromCharCode(wire[4 + 2]!)).toBe(tag);
  });
});

describe('field tables round-trip', () => {
  const table: FieldTable = {
    str: 'hello wörld',
    empty: '',
    yes: true,
    no: false,
    int: 42,
    neg: -2147483648,
    long: 2 ** 40 + 3,
    negLong: -(2 ** 50),
    big: 2n ** 63n - 1n,
    dbl: -0.5,
    bytes: Buffer.from([0, 255, 7]),
    noBytes: Buffer.alloc(0),
    when: new Date(1700000000000),
    dec: new Decimal(3, 4294967295),
    nothing: null,
    list: [1, 'two', [3, [4]], { five: 5 }, null, new Date(0), new Decimal(0, 1), Buffer.from('x'), 1.5, 2n ** 60n],
    nested: { a: { b: { c: { d: 'deep' } } }, arr: [] },
    'x-match': 'any',
    'ключ': 'значение',
  };

  test('every type, nested tables and arrays', () => {
    expect(decodeFieldTable(encodeFieldTable(table))).toEqual(table);
  });

  test('arrays on their own', () => {
    const a = [1, 'a', { b: [true, null] }];
    expect(decodeFieldArray(encodeFieldArray(a))).toEqual(a);
  });

  test('the length prefix covers exactly the entries', () => {
    const wire = encodeFieldTable({ a: 1 });
    expect(wire.readUInt32BE(0)).toBe(wire.length - 4);
  });

  test('negative decimals keep their 32 bits and read back unsigned, as RabbitMQ reads them', () => {
    expect(decodeFieldTable(encodeFieldTable({ d: new Decimal(1, -1) }))).toEqual({ d: new Decimal(1, 0xffffffff) });
  });
});

describe('malformed input gives a BrokerError, never a RangeError', () => {
  const good = encodeFieldTable({
    s: 'abc',
    n: 1,
    l: 2 ** 40,
    d: 1.5,
    x: Buffer.from([1, 2]),
    a: [1, 'b', { c: null }],
    f: { g: true },
    t: new Date(0),
    dec: new Decimal(1, 1),
  });

  test('every truncation of a valid table', () => {
    for (let n = 0; n < good.length; n++) {
      const cut = Buffer.from(good.subarray(0, n));
      expect(codeOf(() => decodeFieldTable(cut))).toBe(ReplyCode.FRAME_ERROR);
    }
  });

  test('a table whose inner lengths overrun the table', () => {
    const wire = Buffer.from(good);
    wire.writeUInt32BE(wire.length - 4 - 1, 0); // claims one byte less than the entries need
    expect(codeOf(() => decodeFieldTable(wire))).toBe(ReplyCode.FRAME_ERROR);
  });

  test('a nested string length beyond the buffer', () => {
    const wire = wireTable(entry('s', 'S', Buffer.from([0xff, 0xff, 0xff, 0xff, 1])));
    expect(codeOf(() => decodeFieldTable(wire))).toBe(ReplyCode.FRAME_ERROR);
  });

  test('an unknown type tag is a syntax error', () => {
    expect(codeOf(() => decodeFieldTable(wireTable(entry('q', 'Q', Buffer.alloc(0)))))).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('trailing bytes after the table', () => {
    expect(codeOf(() => decodeFieldTable(Buffer.from([0, 0, 0, 0, 1])))).toBe(ReplyCode.FRAME_ERROR);
  });

  test('absurdly deep nesting is refused instead of overflowing the stack', () => {
    let wire: Buffer = Buffer.from([0, 0, 0, 0]);
    for (let i = 0; i < 1000; i++) wire = wireTable(entry('', 'F', wire));
    expect(codeOf(() => decodeFieldTable(wire))).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('random garbage only ever produces BrokerErrors', () => {
    let seed = 42;
    const rand = (): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed & 0xff;
    };
    for (let i = 0; i < 2000; i++) {
      const len = rand() % 40;
      const b = Buffer.alloc(4 + len);
      b.writeUInt32BE(len, 0);
      for (let j = 4; j < b.length; j++) b[j] = rand();
      const r = codeOf(() => decodeFieldTable(b));
      expect(typeof r === 'number' || r === 'no error').toBe(true);
    }
  });
});

describe('encoding refuses what it cannot represent', () => {
  test('a key longer than 255 bytes', () => {
    expect(codeOf(() => encodeFieldTable({ ['k'.repeat(256)]: 1 }))).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('a bigint beyond int64', () => {
    expect(codeOf(() => encodeFieldTable({ b: 2n ** 63n }))).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('an invalid or pre-epoch date', () => {
    expect(codeOf(() => encodeFieldTable({ d: new Date(NaN) }))).toBe(ReplyCode.SYNTAX_ERROR);
    expect(codeOf(() => encodeFieldTable({ d: new Date(-1000) }))).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('a decimal out of range', () => {
    expect(codeOf(() => encodeFieldTable({ d: new Decimal(256, 1) }))).toBe(ReplyCode.SYNTAX_ERROR);
    expect(codeOf(() => encodeFieldTable({ d: new Decimal(1, 2 ** 32) }))).toBe(ReplyCode.SYNTAX_ERROR);
  });

  test('a cyclic table', () => {
    const t: FieldTable = {};
    t.self = t;
    expect(codeOf(() => encodeFieldTable(t))).toBe(ReplyCode.SYNTAX_ERROR);
  });
});
