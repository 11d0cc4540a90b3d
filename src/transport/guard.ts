import type { Duplex } from 'node:stream';
import type { Logger } from '../logger.js';

/** A protocol connection as the input guard sees it. */
export interface GuardedConnection {
  /** Decodes and handles bytes from the client; may throw, the guard contains it. */
  onInput(chunk: Buffer): void;
  /**
   * Ends this connection with its protocol's internal error (AMQP 541 connection.close, MQTT
   * DISCONNECT 0x83, STOMP ERROR) and logs `err` with its stack.
   */
  failInternal(err: unknown): void;
}

const GUARD = Symbol('warren.inputGuard');

type Guarded = Duplex & { [GUARD]?: InputGuard };

/**
 * Failure isolation for one connection: everything a client's input sets off (the 'data'
 * handler, decoding, per-frame dispatch, and the promise handlers and callbacks the adapter
 * routes through `contain`) runs under this guard. An exception closes this connection with its
 * protocol's error and a log line; it never reaches the process or another connection. If even
 * the protocol's close fails, the stream is destroyed.
 *
 * One guard per connection; the 'data' listener is shared by every stream (no closure each).
 */
export class InputGuard {
  private bound: ((err: unknown) => void) | undefined;

  constructor(
    private readonly stream: Duplex,
    private readonly conn: GuardedConnection,
    private readonly log: Logger,
  ) {
    (stream as Guarded)[GUARD] = this;
    stream.on('data', InputGuard.onData);
  }

  private static onData(this: Duplex, chunk: Buffer): void {
    const g = (this as Guarded)[GUARD];
    if (g === undefined) return;
    try {
      g.conn.onInput(chunk);
    } catch (err) {
      g.contain(err);
    }
  }

  /** Closes the connection after `err` escaped its handling (see the class). */
  contain(err: unknown): void {
    try {
      this.conn.failInternal(err);
    } catch (second) {
      this.log.error({ err: second, cause: err instanceof Error ? err.stack : String(err) }, 'internal error while closing a connection after an internal error');
      this.stream.destroy();
    }
  }

  /** `contain` as a function, for `promise.then(ok, fail).catch(guard.catcher)`; made once. */
  get catcher(): (err: unknown) => void {
    return (this.bound ??= (err: unknown) => this.contain(err));
  }

  /** `fn` as a callback that runs under the guard: for this connection's stream events, timers and alarm listeners. */
  wrap<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void {
    return (...args: A): void => {
      try {
        fn(...args);
      } catch (err) {
        this.contain(err);
      }
    };
  }

  /** Runs `fn(arg)` under the guard, without making a closure (for callbacks shared by all connections). */
  run<A>(fn: (arg: A) => void, arg: A): void {
    try {
      fn(arg);
    } catch (err) {
      this.contain(err);
    }
  }
}
