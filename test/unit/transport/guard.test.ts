import { PassThrough, Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, test } from 'vitest';
import { InputGuard, type GuardedConnection } from '../../../src/transport/guard.js';

function logger(): { log: ReturnType<typeof pino>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) if (l !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { log: pino({ level: 'info' }, sink), lines };
}

class Conn implements GuardedConnection {
  readonly input: Buffer[] = [];
  readonly failures: unknown[] = [];
  constructor(
    private readonly onInputImpl: (chunk: Buffer) => void,
    private readonly failImpl: (err: unknown) => void = () => undefined,
  ) {}
  onInput(chunk: Buffer): void {
    this.input.push(chunk);
    this.onInputImpl(chunk);
  }
  failInternal(err: unknown): void {
    this.failures.push(err);
    this.failImpl(err);
  }
}

describe('InputGuard', () => {
  test('feeds every chunk of the stream to the connection', () => {
    const stream = new PassThrough();
    const c = new Conn(() => undefined);
    new InputGuard(stream, c, logger().log);
    stream.write(Buffer.from('ab'));
    stream.write(Buffer.from('cd'));
    expect(Buffer.concat(c.input).toString()).toBe('abcd');
    expect(c.failures).toEqual([]);
  });

  test('an exception from onInput becomes failInternal of that connection; the stream stays open', () => {
    const stream = new PassThrough();
    const boom = new TypeError('boom');
    const c = new Conn(() => {
      throw boom;
    });
    new InputGuard(stream, c, logger().log);
    expect(() => stream.write(Buffer.from('x'))).not.toThrow();
    expect(c.failures).toEqual([boom]);
    expect(stream.destroyed).toBe(false);
  });

  test('if failInternal throws too, the stream is destroyed and both errors are logged', async () => {
    const stream = new PassThrough();
    const { log, lines } = logger();
    const c = new Conn(
      () => {
        throw new TypeError('first');
      },
      () => {
        throw new RangeError('second');
      },
    );
    new InputGuard(stream, c, log);
    expect(() => stream.write(Buffer.from('x'))).not.toThrow();
    expect(stream.destroyed).toBe(true);
    await new Promise((r) => setImmediate(r));
    const line = lines.find((l) => l['level'] === 50);
    expect(JSON.stringify(line)).toContain('second');
    expect(JSON.stringify(line)).toContain('first');
  });

  test('catcher contains a rejection from a promise chain (no unhandled rejection)', async () => {
    const stream = new PassThrough();
    const c = new Conn(() => undefined);
    const g = new InputGuard(stream, c, logger().log);
    expect(g.catcher).toBe(g.catcher); // made once per connection
    const err = new Error('in a settle handler');
    await Promise.resolve()
      .then(() => {
        throw err;
      })
      .catch(g.catcher);
    expect(c.failures).toEqual([err]);
  });

  test('run contains a throw from a callback', () => {
    const stream = new PassThrough();
    const c = new Conn(() => undefined);
    const g = new InputGuard(stream, c, logger().log);
    g.run((n: number) => {
      throw new Error(`timer ${n}`);
    }, 7);
    expect(String(c.failures[0])).toContain('timer 7');
  });
});
