/**
 * A second opinion: amqplib's own codec (generated from the spec JSON) must agree with ours, both
 * ways. amqplib's package `exports` hide `lib/`, so its files are loaded by absolute path.
 */
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ClassId } from '../../../../../adapters/amqp/codec/constants.js';
import { decodeFieldTable, encodeFieldTable } from '../../../../../adapters/amqp/codec/field-table.js';
import { FrameDecoder, encodeContentFrames, encodeDelivery } from '../../../../../adapters/amqp/codec/frames.js';
import { decodeMethod, encodeMethod, methodIdOf } from '../../../../../adapters/amqp/codec/methods.js';
import type { AmqpMethod } from '../../../../../adapters/amqp/codec/methods.js';
import { decodeContentHeader, encodeProperties } from '../../../../../adapters/amqp/codec/properties.js';
import { Decimal } from '../../../../../src/core/types.js';
import type { FieldTable, MessageProperties } from '../../../../../src/core/types.js';
import { SAMPLES } from './method-samples.js';

type Fields = Record<string, unknown>;

interface AmqplibDefs {
  encodeMethod(id: number, channel: number, fields: Fields): Buffer;
  encodeProperties(id: number, channel: number, size: number, fields: Fields): Buffer;
}
interface AmqplibFrame {
  parseFrame(bin: Buffer, max: number): { type: number; channel: number; payload: Buffer; rest: Buffer } | false;
  decodeFrame(frame: { type: number; channel: number; payload: Buffer }): {
    id?: number;
    channel: number;
    fields?: Fields;
    size?: number;
  };
}
interface AmqplibCodec {
  encodeTable(buffer: Buffer, value: Fields, offset: number): number;
  decodeFields(slice: Buffer): Fields;
}

const require = createRequire(import.meta.url);
const lib = join(dirname(require.resolve('amqplib')), 'lib');
const defs = require(join(lib, 'defs.js')) as AmqplibDefs;
const frame = require(join(lib, 'frame.js')) as AmqplibFrame;
const codec = require(join(lib, 'codec.js')) as AmqplibCodec;

/** Our argument names -> amqplib's, and our values -> what amqplib takes/returns. */
const RENAME: Record<string, string> = { noWait: 'nowait' };
const LONGSTR_AS_BUFFER = new Set(['mechanisms', 'locales']);

function toAmqplib(m: AmqpMethod): Fields {
  const out: Fields = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === 'kind') continue;
    out[RENAME[k] ?? k] = LONGSTR_AS_BUFFER.has(k) && typeof v === 'string' ? Buffer.from(v) : v;
  }
  return out;
}

function amqplibId(m: AmqpMethod): number {
  const { classId, methodId } = methodIdOf(m);
  return classId * 65536 + methodId;
}

function ourFrames(wire: Buffer): { type: number; channel: number; payload: Buffer }[] {
  const d = new FrameDecoder(1 << 20);
  d.push(wire);
  const out = [];
  for (let f = d.next(); f !== null; f = d.next()) out.push(f);
  return out;
}

function amqplibFrames(wire: Buffer): ReturnType<AmqplibFrame['decodeFrame']>[] {
  const out = [];
  let rest = wire;
  while (rest.length > 0) {
    const f = frame.parseFrame(rest, 0);
    if (f === false) throw new Error('amqplib could not parse a frame');
    out.push(frame.decodeFrame(f));
    rest = f.rest;
  }
  return out;
}

// access.request is not in amqplib's method table; everything else is.
const COMMON = SAMPLES.filter((m) => !m.kind.startsWith('access.'));

describe('methods agree with amqplib', () => {
  test.each(COMMON.map((m) => [m.kind, m] as const))('%s encoded by amqplib decodes to the same method', (_k, m) => {
    const wire = defs.encodeMethod(amqplibId(m), 3, toAmqplib(m));
    const [f] = ourFrames(wire);
    expect(f?.channel).toBe(3);
    expect(decodeMethod(f!.payload)).toEqual(m);
  });

  test.each(COMMON.map((m) => [m.kind, m] as const))('%s encoded by us decodes in amqplib', (_k, m) => {
    const [f] = amqplibFrames(encodeMethod(3, m));
    expect(f?.id).toBe(amqplibId(m));
    expect(f?.channel).toBe(3);
    expect(f?.fields).toMatchObject(toAmqplib(m));
  });

  test('our encoding is byte-identical to amqplib for the basic methods without tables', () => {
    // (amqplib writes small integers in tables with the narrowest tag, we use I)
    for (const m of COMMON.filter((x) => x.kind.startsWith('basic.') && x.kind !== 'basic.consume')) {
      expect(encodeMethod(1, m).toString('hex')).toBe(defs.encodeMethod(amqplibId(m), 1, toAmqplib(m)).toString('hex'));
    }
  });
});

const PROPS: MessageProperties = {
  contentType: 'application/json',
  contentEncoding: 'utf-8',
  headers: { retries: 3, big: 2 ** 40, neg: -1, s: 'x', nested: { ok: true }, list: ['a', 1] },
  deliveryMode: 2,
  priority: 5,
  correlationId: 'c',
  replyTo: 'r',
  expiration: '1000',
  messageId: 'm',
  timestamp: 1700000000,
  type: 't',
  userId: 'guest',
  appId: 'a',
  clusterId: 'cl',
};

describe('content headers agree with amqplib', () => {
  test('a header encoded by amqplib decodes to the same properties', () => {
    const [f] = ourFrames(defs.encodeProperties(60, 1, 12345, PROPS as Fields));
    const h = decodeContentHeader(f!.payload);
    expect(h.bodySize).toBe(12345);
    expect(h.properties).toEqual(PROPS);
  });

  test('an empty header encoded by amqplib decodes to no properties', () => {
    const [f] = ourFrames(defs.encodeProperties(60, 1, 0, {}));
    expect(decodeContentHeader(f!.payload).properties).toEqual({});
  });

  test('a header we encode decodes in amqplib', () => {
    const wire = encodeContentFrames(1, ClassId.BASIC, 3, encodeProperties(PROPS), Buffer.from('abc'), 4096);
    const [h, b] = amqplibFrames(wire);
    expect(h?.size).toBe(3);
    expect(h?.fields).toEqual(PROPS);
    expect(b).toMatchObject({ channel: 1, content: Buffer.from('abc') });
  });

  test('a header frame without headers is byte-identical to amqplib', () => {
    // amqplib writes small integers with the narrowest tag, so a headers table would differ
    const noHeaders: MessageProperties = { ...PROPS };
    delete noHeaders.headers;
    const theirs = defs.encodeProperties(60, 1, 0, noHeaders as Fields);
    const ours = encodeContentFrames(1, ClassId.BASIC, 0, encodeProperties(noHeaders), Buffer.alloc(0), 0);
    expect(ours.toString('hex')).toBe(theirs.toString('hex'));
  });

  test('a whole delivery we encode is read by amqplib', () => {
    const body = Buffer.alloc(10000, 7);
    const wire = encodeDelivery(4, 4096, 'ctag', 99, true, {
      exchange: 'amq.topic',
      routingKey: 'a.b',
      properties: PROPS,
      body,
    });
    const fs = amqplibFrames(wire);
    expect(fs[0]?.fields).toMatchObject({
      consumerTag: 'ctag',
      deliveryTag: 99,
      redelivered: true,
      exchange: 'amq.topic',
      routingKey: 'a.b',
    });
    expect(fs[1]?.fields).toEqual(PROPS);
    const content = Buffer.concat(fs.slice(2).map((f) => (f as unknown as { content: Buffer }).content));
    expect(content.equals(body)).toBe(true);
  });
});

describe('field tables agree with amqplib', () => {
  const amqplibTable: Fields = {
    str: 'héllo',
    byte: 5, // amqplib picks b
    short: 1000, // s
    int: 100000, // I
    long: 2 ** 40, // l
    dbl: 0.25,
    yes: true,
    nothing: null,
    bin: Buffer.from([1, 2, 3]),
    list: [1, 'a', [true], { deep: 'x' }],
    nested: { a: { b: 'c' } },
    ts: { '!': 'timestamp', value: 1700000000 },
    dec: { '!': 'decimal', value: { places: 2, digits: 314 } },
    flt: { '!': 'float', value: 1.5 },
    ub: { '!': 'unsignedbyte', value: 250 },
    us: { '!': 'unsignedshort', value: 65000 },
    ui: { '!': 'unsignedint', value: 4000000000 },
  };

  test('a table encoded by amqplib decodes with every type', () => {
    const buf = Buffer.alloc(4096);
    const n = codec.encodeTable(buf, amqplibTable, 0);
    expect(decodeFieldTable(buf.subarray(0, n))).toEqual({
      str: 'héllo',
      byte: 5,
      short: 1000,
      int: 100000,
      long: 2 ** 40,
      dbl: 0.25,
      yes: true,
      nothing: null,
      bin: Buffer.from([1, 2, 3]),
      list: [1, 'a', [true], { deep: 'x' }],
      nested: { a: { b: 'c' } },
      ts: new Date(1700000000 * 1000),
      dec: new Decimal(2, 314),
      flt: 1.5,
      ub: 250,
      us: 65000,
      ui: 4000000000,
    });
  });

  test('a table we encode decodes in amqplib', () => {
    const ours: FieldTable = {
      str: 'héllo',
      int: -7,
      long: -(2 ** 40),
      dbl: 2.5,
      yes: false,
      nothing: null,
      bin: Buffer.from([9]),
      list: [1, ['x'], { y: 2 }],
      nested: { a: { b: 'c' } },
      ts: new Date(1700000000 * 1000),
      dec: new Decimal(1, 5),
    };
    const wire = encodeFieldTable(ours);
    expect(codec.decodeFields(wire.subarray(4))).toEqual({
      ...ours,
      ts: { '!': 'timestamp', value: 1700000000 },
      dec: { '!': 'decimal', value: { places: 1, digits: 5 } },
    });
  });
});
