import { describe, expect, test } from 'vitest';
import { Escaping, type DecoderLimits } from '../../../../../adapters/stomp/codec/constants.js';
import { FrameDecoder, type StompFrame } from '../../../../../adapters/stomp/codec/frame-decoder.js';
import { STOMP_ERRORS, StompError } from '../../../../../adapters/stomp/errors.js';

interface Plain {
  command: string;
  headers: [string, string][];
  body: string;
}

function plain(f: StompFrame): Plain {
  return { command: f.command, headers: [...f.headers], body: f.body.toString('latin1') };
}

function decoder(opts: { escaping?: Escaping; limits?: DecoderLimits; trim?: boolean } = {}): FrameDecoder {
  const d = new FrameDecoder(opts.limits);
  d.escaping = opts.escaping ?? Escaping.V12;
  d.trimValues = opts.trim ?? false;
  return d;
}

/** Feeds every chunk and collects every frame; frames are copied so later chunks cannot alter them. */
function decodeAll(chunks: Buffer[], opts: Parameters<typeof decoder>[0] = {}): Plain[] {
  const d = decoder(opts);
  const out: Plain[] = [];
  for (const c of chunks) {
    d.push(c);
    for (let f = d.next(); f !== null; f = d.next()) out.push(plain(f));
  }
  return out;
}

function decodeOne(wire: string | Buffer, opts: Parameters<typeof decoder>[0] = {}): Plain {
  const frames = decodeAll([typeof wire === 'string' ? Buffer.from(wire, 'latin1') : wire], opts);
  expect(frames).toHaveLength(1);
  return frames[0]!;
}

function decodeError(wire: string | Buffer[], opts: Parameters<typeof decoder>[0] = {}): StompError {
  const chunks = typeof wire === 'string' ? [Buffer.from(wire, 'latin1')] : wire;
  try {
    decodeAll(chunks, opts);
  } catch (e) {
    expect(e).toBeInstanceOf(StompError);
    return e as StompError;
  }
  throw new Error('expected the decoder to throw');
}

describe('FrameDecoder: the grammar', () => {
  test('a frame without content-length ends at the first NUL', () => {
    expect(decodeOne('SEND\ndestination:/queue/a\nx:1\n\nhello\u0000')).toEqual({
      command: 'SEND',
      headers: [
        ['destination', '/queue/a'],
        ['x', '1'],
      ],
      body: 'hello',
    });
  });

  test('a content-length body may contain NUL bytes', () => {
    const body = 'a\u0000b\u0000\u0000c';
    const f = decodeOne(`SEND\ncontent-length:${body.length}\n\n${body}\u0000`);
    expect(f.body).toBe(body);
  });

  test('an empty body, with and without content-length', () => {
    expect(decodeOne('DISCONNECT\nreceipt:7\n\n\u0000').body).toBe('');
    expect(decodeOne('SEND\ncontent-length:0\n\n\u0000').body).toBe('');
  });

  test('a frame without headers', () => {
    expect(decodeOne('DISCONNECT\n\n\u0000')).toEqual({ command: 'DISCONNECT', headers: [], body: '' });
  });

  test('a repeated header keeps its first value', () => {
    expect(decodeOne('MESSAGE\nfoo:World\nfoo:Hello\n\n\u0000').headers).toEqual([['foo', 'World']]);
  });

  test('CRLF line endings are accepted everywhere', () => {
    expect(decodeOne('SEND\r\ndestination:/topic/x\r\na:b\r\n\r\nbody\u0000\r\n')).toEqual({
      command: 'SEND',
      headers: [
        ['destination', '/topic/x'],
        ['a', 'b'],
      ],
      body: 'body',
    });
  });

  test('EOLs between frames are heart-beats and are skipped', () => {
    const d = decoder();
    d.push(Buffer.from('\n\r\n\nSEND\n\n1\u0000\n\n\r\nSEND\n\n2\u0000\n'));
    const bodies: string[] = [];
    for (let f = d.next(); f !== null; f = d.next()) bodies.push(f.body.toString());
    expect(bodies).toEqual(['1', '2']);
    expect(d.heartbeats).toBe(7);
    expect(d.buffered).toBe(0);
  });

  // RabbitMQ's parser skips LF, CR LF and NUL before a command (rabbit_stomp_frame parse_command).
  test('a stray NUL before a frame is an empty frame and is skipped', () => {
    const wire = '\n\u0000SUBSCRIBE\ndestination:/exchange/amq.fanout\n\n\u0000\n\u0000SEND\ndestination:/exchange/amq.fanout\n\nhello\n\u0000\n';
    expect(decodeAll([Buffer.from(wire, 'latin1')]).map((f) => [f.command, f.body])).toEqual([
      ['SUBSCRIBE', ''],
      ['SEND', 'hello\n'],
    ]);
  });

  test('NULs and EOLs alone make no frame and leave nothing buffered', () => {
    const d = decoder();
    d.push(Buffer.from('\u0000\n\u0000\u0000\r\n\u0000', 'latin1'));
    expect(d.next()).toBeNull();
    expect(d.buffered).toBe(0);
    expect(d.heartbeats).toBe(2);
  });

  test('a CR LF split across chunks between frames is one heart-beat', () => {
    const d = decoder();
    d.push(Buffer.from('\r'));
    expect(d.next()).toBeNull();
    d.push(Buffer.from('\nSEND\n\nx\u0000'));
    expect(d.next()?.body.toString()).toBe('x');
    expect(d.heartbeats).toBe(1);
  });

  test('a CR not followed by LF before a command belongs to the command (then unknown)', () => {
    const d = decoder();
    d.commands = new Set(['SEND']);
    d.push(Buffer.from('\rSEND\n\n\u0000'));
    expect(() => d.next()).toThrow(/Could not interpret command "\rSEND"/);
  });

  test.each([1, 2, 3, 5, 7, 11])('heart-beats and NULs between frames, split every %i bytes == unsplit', (step) => {
    const wire = Buffer.from('\r\n\n\u0000SEND\na:1\n\nbody\u0000\r\n\u0000\n\u0000SEND\ncontent-length:3\n\na\u0000b\u0000\n\n', 'latin1');
    const parts: Buffer[] = [];
    for (let i = 0; i < wire.length; i += step) parts.push(Buffer.from(wire.subarray(i, i + step)));
    expect(decodeAll(parts)).toEqual(decodeAll([wire]));
    expect(decodeAll([wire]).map((f) => f.body)).toEqual(['body', 'a\u0000b']);
  });

  test('only a value after the first colon; later colons belong to the value', () => {
    expect(decodeOne('SEND\nurl:http://x:80/\n\n\u0000', { escaping: Escaping.NONE }).headers).toEqual([['url', 'http://x:80/']]);
  });

  test('UTF-8 header names and values', () => {
    const f = decodeAll([Buffer.from('SEND\nnäme:välue €\n\n\u0000', 'utf8')]);
    expect(f[0]!.headers).toEqual([['näme', 'välue €']]);
  });
});

describe('FrameDecoder: header escaping per version', () => {
  const wire = 'SEND\nk\\cey:a\\cb\\nc\\\\d\n\n\u0000';

  test('STOMP 1.0 has no escaping: backslashes are literal', () => {
    expect(decodeOne(wire, { escaping: Escaping.NONE }).headers).toEqual([['k\\cey', 'a\\cb\\nc\\\\d']]);
  });

  test('STOMP 1.1 decodes \\c, \\n and \\\\ in names and values', () => {
    expect(decodeOne(wire, { escaping: Escaping.V11 }).headers).toEqual([['k:ey', 'a:b\nc\\d']]);
  });

  test('STOMP 1.2 also decodes \\r', () => {
    expect(decodeOne('SEND\nv:a\\rb\n\n\u0000', { escaping: Escaping.V12 }).headers).toEqual([['v', 'a\rb']]);
  });

  test('\\r is not an escape in STOMP 1.1', () => {
    expect(decodeError('SEND\nv:a\\rb\n\n\u0000', { escaping: Escaping.V11 }).summary).toBe('Invalid header');
  });

  test('an undefined escape is a fatal error', () => {
    expect(decodeError('SEND\nv:a\\tb\n\n\u0000').detail).toContain('\\t');
    expect(decodeError('SEND\nv:ab\\\n\n\u0000').summary).toBe('Invalid header');
  });

  test('CONNECT and CONNECTED headers are never unescaped', () => {
    expect(decodeOne('CONNECT\npasscode:a\\cb\n\n\u0000').headers).toEqual([['passcode', 'a\\cb']]);
    expect(decodeOne('CONNECTED\nsession:a\\tb\n\n\u0000').headers).toEqual([['session', 'a\\tb']]);
  });

  test('STOMP 1.0 drops the leading whitespace of values', () => {
    expect(decodeOne('SEND\ndestination:  /queue/a\n\n\u0000', { escaping: Escaping.NONE, trim: true }).headers).toEqual([
      ['destination', '/queue/a'],
    ]);
  });
});

describe('FrameDecoder: fragmentation is transparent', () => {
  const body = Buffer.from([0, 1, 2, 0, 255, 10, 13, 0]);
  const wire = Buffer.concat([
    Buffer.from('\n\nCONNECT\r\naccept-version:1.2\r\nhost:/\r\n\r\n\u0000\n'),
    Buffer.from(`SEND\ndestination:/queue/a\ncontent-length:${body.length}\nx:a\\cb\n\n`),
    body,
    Buffer.from('\u0000\r\n'),
    Buffer.from('SEND\r\ndestination:/topic/t\r\n\r\nno length here\u0000'),
    Buffer.from('\n'),
    Buffer.from('ACK\nid:T_1@@s@@9\n\n\u0000'),
  ]);

  test.each([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 17, 64, 4096])('split every %i bytes == unsplit', (step) => {
    const parts: Buffer[] = [];
    for (let i = 0; i < wire.length; i += step) parts.push(Buffer.from(wire.subarray(i, i + step)));
    const whole = decodeAll([wire]);
    expect(whole).toHaveLength(4);
    expect(whole[1]!.body).toBe(body.toString('latin1'));
    expect(whole[1]!.headers).toContainEqual(['x', 'a:b']);
    expect(decodeAll(parts)).toEqual(whole);
  });

  test('a body inside one chunk is a view of that chunk (zero-copy); across chunks one copy', () => {
    const d = decoder();
    const chunk = Buffer.from('SEND\ncontent-length:5\n\nhello\u0000');
    d.push(chunk);
    const f = d.next()!;
    expect(f.body.toString()).toBe('hello');
    expect(f.body.buffer).toBe(chunk.buffer);

    const a = Buffer.from('SEND\ncontent-length:5\n\nhel');
    const b = Buffer.from('lo\u0000');
    d.push(a);
    expect(d.next()).toBeNull();
    d.push(b);
    const g = d.next()!;
    a.fill(0);
    b.fill(0);
    expect(g.body.toString()).toBe('hello');
  });
});

describe('FrameDecoder: limits and bad input', () => {
  const limits: DecoderLimits = { maxFrame: 1000, maxHeaders: 3, maxLine: 50 };

  test('a header line longer than the limit fails before its end arrives', () => {
    const e = decodeError([Buffer.from('SEND\nh:' + 'x'.repeat(60))], { limits });
    expect(e.summary).toBe('Header too long');
  });

  test('a command line longer than the limit fails', () => {
    expect(decodeError([Buffer.from('X'.repeat(80))], { limits }).summary).toBe('Header too long');
  });

  test('more headers than allowed fail', () => {
    const e = decodeError('SEND\na:1\nb:2\nc:3\nd:4\n\n\u0000', { limits });
    expect(e.summary).toBe('Too many headers');
    expect(decodeAll([Buffer.from('SEND\na:1\nb:2\nc:3\n\n\u0000')], { limits })).toHaveLength(1);
  });

  test('a declared content-length over the frame limit fails before the body is buffered', () => {
    const e = decodeError([Buffer.from('SEND\ncontent-length:5000\n\n')], { limits });
    expect(e.summary).toBe('Frame too large');
  });

  test('a body without content-length fails as soon as it outgrows the frame limit', () => {
    const d = decoder({ limits });
    d.push(Buffer.from('SEND\n\n'));
    expect(d.next()).toBeNull();
    d.push(Buffer.alloc(900, 0x61));
    expect(d.next()).toBeNull();
    d.push(Buffer.alloc(200, 0x61));
    expect(() => d.next()).toThrow(/frames are limited to 1000 bytes/);
  });

  test('a frame of exactly the limit passes', () => {
    const head = 'SEND\ncontent-length:';
    // head + digits + "\n\n" + body + NUL == 1000
    const bodyLen = 1000 - head.length - 3 - 2 - 1;
    const wire = Buffer.concat([Buffer.from(`${head}${bodyLen}\n\n`), Buffer.alloc(bodyLen, 0x62), Buffer.from([0])]);
    expect(wire.length).toBe(1000);
    expect(decodeAll([wire], { limits })[0]!.body).toHaveLength(bodyLen);
    const over = Buffer.concat([Buffer.from(`${head}${bodyLen + 1}\n\n`), Buffer.alloc(bodyLen + 1, 0x62), Buffer.from([0])]);
    expect(decodeError([over], { limits }).summary).toBe('Frame too large');
  });

  test('a non-numeric content-length fails', () => {
    expect(decodeError('SEND\ncontent-length:12a\n\n\u0000').detail).toContain('content-length');
    expect(decodeError('SEND\ncontent-length:-1\n\n\u0000').summary).toBe('Invalid header');
    expect(decodeError('SEND\ncontent-length:\n\n\u0000').summary).toBe('Invalid header');
  });

  test('a body longer than its content-length fails', () => {
    expect(decodeError('SEND\ncontent-length:2\n\nabc\u0000').summary).toBe('Invalid frame');
  });

  test('a header line without a colon, or with an empty name, fails', () => {
    expect(decodeError('SEND\nnocolon\n\n\u0000').summary).toBe('Invalid header');
    expect(decodeError('SEND\n:value\n\n\u0000').summary).toBe('Invalid header');
  });

  test('with a command set, an unknown command fails as soon as its line ends', () => {
    const d = decoder();
    d.commands = new Set(['SEND']);
    d.push(Buffer.from('GET / HTTP/1.1\r\n'));
    expect(() => d.next()).toThrow(/Could not interpret command "GET \/ HTTP\/1.1"/);
    const ok = decoder();
    ok.commands = new Set(['SEND']);
    ok.push(Buffer.from('SEND\n\nx\u0000'));
    expect(ok.next()!.command).toBe('SEND');
  });

  test('the unknown-command error can be replaced (before CONNECT: Illegal command)', () => {
    const d = decoder();
    d.commands = new Set(['CONNECT']);
    d.unknownCommand = STOMP_ERRORS.illegalCommand;
    d.push(Buffer.from('SEND\n'));
    expect(() => d.next()).toThrow(/You must log in using CONNECT first/);
  });

  describe('maxBody and maxHead', () => {
    const big: DecoderLimits = { maxFrame: 10_000, maxHeaders: 10, maxLine: 100, maxHead: 200, maxBody: 1000 };

    test('a body of exactly maxBody passes, with and without content-length', () => {
      const body = 'b'.repeat(1000);
      expect(decodeAll([Buffer.from(`SEND\ncontent-length:1000\n\n${body}\u0000`)], { limits: big })[0]!.body).toBe(body);
      expect(decodeAll([Buffer.from(`SEND\n\n${body}\u0000`)], { limits: big })[0]!.body).toBe(body);
    });

    test('a declared content-length over maxBody is "Message too large" before the body arrives', () => {
      const e = decodeError([Buffer.from('SEND\ncontent-length:1001\n\n')], { limits: big });
      expect([e.summary, e.detail]).toEqual(['Message too large', 'message size 1001 is larger than configured max size 1000\n']);
    });

    test('a body without content-length is "Message too large" once it outgrows maxBody', () => {
      const d = decoder({ limits: big });
      d.push(Buffer.from('SEND\n\n'));
      d.push(Buffer.alloc(1000, 0x61));
      expect(d.next()).toBeNull();
      d.push(Buffer.alloc(1, 0x61));
      expect(() => d.next()).toThrow(/Message too large/);
    });

    test('headers beyond maxHead fail even when the frame limit is far away', () => {
      const head = 'SEND\n' + Array.from({ length: 5 }, (_, i) => `h${i}:${'v'.repeat(60)}\n`).join('');
      expect(decodeError([Buffer.from(head)], { limits: big }).summary).toBe('Frame too large');
    });
  });

  test('after clear() the decoder starts afresh', () => {
    const d = decoder();
    d.push(Buffer.from('SEND\ncontent-len'));
    expect(d.next()).toBeNull();
    d.clear();
    d.push(Buffer.from('ACK\nid:1\n\n\u0000'));
    expect(d.next()!.command).toBe('ACK');
  });
});
