import { describe, expect, test } from 'vitest';
import { Escaping } from '../../../../../adapters/stomp/codec/constants.js';
import { escapeHeader, unescapeHeader } from '../../../../../adapters/stomp/codec/escape.js';
import { FrameDecoder } from '../../../../../adapters/stomp/codec/frame-decoder.js';
import { encodeFrame } from '../../../../../adapters/stomp/codec/frame-encoder.js';

describe('encodeFrame', () => {
  test('command, headers, a blank line, the body, NUL; content-length whenever there is a body', () => {
    const wire = encodeFrame('MESSAGE', [['destination', '/topic/a']], Buffer.from('hi'));
    expect(wire.toString('latin1')).toBe('MESSAGE\ndestination:/topic/a\ncontent-length:2\n\nhi\u0000');
  });

  test('no body, no content-length; a content-length passed in is replaced by the true one', () => {
    expect(encodeFrame('RECEIPT', [['receipt-id', '1']]).toString()).toBe('RECEIPT\nreceipt-id:1\n\n\u0000');
    expect(encodeFrame('SEND', [['content-length', '99']], Buffer.from('abc')).toString()).toBe('SEND\ncontent-length:3\n\nabc\u0000');
  });

  test('header names and values are escaped for 1.2', () => {
    const wire = encodeFrame('ERROR', [['a:b', 'line1\nline2\r\\x']], undefined, Escaping.V12);
    expect(wire.toString()).toBe('ERROR\na\\cb:line1\\nline2\\r\\\\x\n\n\u0000');
  });

  test('CONNECTED is never escaped', () => {
    expect(encodeFrame('CONNECTED', [['server', 'a:b']], undefined, Escaping.V12).toString()).toBe('CONNECTED\nserver:a:b\n\n\u0000');
  });

  test('every encoded frame decodes back to the same command, headers and body', () => {
    const body = Buffer.from([0, 10, 13, 58, 92, 0]);
    const headers: [string, string][] = [
      ['plain', 'value'],
      ['colon:name', 'a:b:c'],
      ['nl', 'x\ny'],
      ['cr', 'x\ry'],
      ['bs', 'a\\b'],
      ['utf8', 'héllo €'],
      ['empty', ''],
    ];
    const d = new FrameDecoder();
    d.escaping = Escaping.V12;
    d.push(encodeFrame('MESSAGE', headers, body, Escaping.V12));
    const f = d.next()!;
    expect(f.command).toBe('MESSAGE');
    expect([...f.headers].filter(([k]) => k !== 'content-length')).toEqual(headers);
    expect(Buffer.compare(f.body, body)).toBe(0);
  });
});

describe('escapeHeader / unescapeHeader', () => {
  const samples = ['', 'plain', 'a:b', 'x\ny', 'back\\slash', '\\c literal', 'mixed:\n\\:'];

  test.each([Escaping.V11, Escaping.V12])('escaping %i round-trips', (esc) => {
    for (const s of samples) expect(unescapeHeader(escapeHeader(s, esc), esc)).toBe(s);
  });

  test('1.2 escapes CR; 1.1 cannot, so CR becomes a space', () => {
    expect(escapeHeader('a\rb', Escaping.V12)).toBe('a\\rb');
    expect(escapeHeader('a\rb', Escaping.V11)).toBe('a b');
  });

  test('1.0 has no escapes: line breaks become spaces, colons and backslashes stay', () => {
    expect(escapeHeader('a:b\\c\nd\re', Escaping.NONE)).toBe('a:b\\c d e');
    expect(unescapeHeader('a\\cb', Escaping.NONE)).toBe('a\\cb');
  });

  test('strings that need no escaping are returned as they are', () => {
    const s = 'nothing to escape here';
    expect(escapeHeader(s, Escaping.V12)).toBe(s);
  });
});
