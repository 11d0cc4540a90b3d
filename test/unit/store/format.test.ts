import { crc32 } from 'node:zlib';
import { describe, expect, test } from 'vitest';
import { FILE_HEADER, checkHeader, fileHeader, scanRecords, sealRecord } from '../../../src/store/format.js';

/** A store file of `kind` holding the given payloads. */
function file(payloads: string[]): Buffer {
  const parts = [fileHeader('queue')];
  for (const p of payloads) {
    const b = Buffer.alloc(8 + Buffer.byteLength(p));
    b.write(p, 8);
    sealRecord(b, 0, b.length);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

function scan(buf: Buffer): { payloads: string[]; result: ReturnType<typeof scanRecords> } {
  const payloads: string[] = [];
  const result = scanRecords(buf, FILE_HEADER, (b, s, e) => payloads.push(b.toString('utf8', s, e)));
  return { payloads, result };
}

const PAYLOADS = ['alpha', 'bravo', 'charlie-charlie', 'delta', 'echo'];

describe('record framing', () => {
  test('a record is length, crc32 of the payload, payload', () => {
    const b = file(['hello']);
    expect(b.readUInt32LE(8)).toBe(5);
    expect(b.readUInt32LE(12)).toBe(crc32(Buffer.from('hello')));
    expect(b.toString('utf8', 16)).toBe('hello');
  });

  test('an intact file yields every record and ends at its length', () => {
    const b = file(PAYLOADS);
    const { payloads, result } = scan(b);
    expect(payloads).toEqual(PAYLOADS);
    expect(result.end).toBe(b.length);
    expect(result.issues).toEqual([]);
    expect(result.records).toBe(5);
  });

  test.each([1, 3, 4, 8, 11])('a tail torn %i bytes short ends the scan at the last whole record', (cut) => {
    const whole = file(PAYLOADS);
    const lastStart = file(PAYLOADS.slice(0, 4)).length;
    const { payloads, result } = scan(whole.subarray(0, whole.length - cut));
    expect(payloads).toEqual(PAYLOADS.slice(0, 4));
    expect(result.end).toBe(lastStart);
    expect(result.issues.map((i) => i.kind)).toEqual(['torn']);
  });

  test('a zeroed tail is reported as such and truncated away', () => {
    const b = Buffer.concat([file(PAYLOADS), Buffer.alloc(1000)]);
    const { payloads, result } = scan(b);
    expect(payloads).toEqual(PAYLOADS);
    expect(result.end).toBe(b.length - 1000);
    expect(result.issues).toEqual([{ kind: 'zeroed', offset: b.length - 1000, bytes: 1000 }]);
  });

  test('a flipped payload byte in the middle skips that record only', () => {
    const b = file(PAYLOADS);
    const third = file(PAYLOADS.slice(0, 2)).length;
    b[third + 10] = b[third + 10]! ^ 0x01;
    const { payloads, result } = scan(b);
    expect(payloads).toEqual(['alpha', 'bravo', 'delta', 'echo']);
    expect(result.end).toBe(b.length);
    expect(result.issues).toEqual([{ kind: 'corrupt', offset: third, bytes: 8 + 'charlie-charlie'.length }]);
  });

  test('a flipped length byte in the middle is skipped by finding the next valid record', () => {
    const b = file(PAYLOADS);
    const second = file(PAYLOADS.slice(0, 1)).length;
    b[second + 2] = 0x7f;
    const { payloads, result } = scan(b);
    expect(payloads).toEqual(['alpha', 'charlie-charlie', 'delta', 'echo']);
    expect(result.issues.map((i) => i.kind)).toEqual(['corrupt']);
  });

  test('zeroes in the middle followed by valid records are skipped, not taken for the end', () => {
    const a = file(PAYLOADS.slice(0, 2));
    const rest = file(PAYLOADS.slice(2)).subarray(FILE_HEADER);
    const b = Buffer.concat([a, Buffer.alloc(64), rest]);
    const { payloads, result } = scan(b);
    expect(payloads).toEqual(PAYLOADS);
    expect(result.issues).toEqual([{ kind: 'corrupt', offset: a.length, bytes: 64 }]);
  });

  test('garbage after the records is a torn tail', () => {
    const good = file(PAYLOADS);
    const b = Buffer.concat([good, Buffer.from('not a record at all, just noise')]);
    const { payloads, result } = scan(b);
    expect(payloads).toEqual(PAYLOADS);
    expect(result.end).toBe(good.length);
    expect(result.issues[0]!.kind).toBe('torn');
  });
});

describe('file header', () => {
  test('names the kind of file and the schema version', () => {
    const h = fileHeader('acks');
    expect(h.toString('latin1', 0, 4)).toBe('WRNA');
    expect(h.readUInt32LE(4)).toBe(1);
    expect(() => checkHeader(h, 'acks', 'x.ack')).not.toThrow();
  });

  test('another kind, another version or no header at all is refused with a clear message', () => {
    expect(() => checkHeader(fileHeader('acks'), 'queue', 'q.seg')).toThrow("q.seg: not a queue file (magic 'WRNA')");
    const v2 = fileHeader('queue');
    v2.writeUInt32LE(2, 4);
    expect(() => checkHeader(v2, 'queue', 'q.seg')).toThrow('q.seg: schema version 2, this build reads version 1');
    expect(() => checkHeader(Buffer.alloc(3), 'queue', 'q.seg')).toThrow('has no header');
  });
});
