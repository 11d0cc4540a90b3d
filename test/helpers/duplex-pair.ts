import { Duplex } from 'node:stream';

/**
 * Two connected in-memory streams: what one writes, the other reads. A side that is not read
 * pushes back: once its readable buffer is full, the writer's callbacks wait, so the writer's
 * `writableLength` grows as it would on a socket whose peer stopped reading.
 */
export function duplexPair(readableHighWaterMark = 16 * 1024): [Duplex, Duplex] {
  let waitingA: (() => void) | undefined;
  let waitingB: (() => void) | undefined;
  const a: Duplex = new Duplex({
    readableHighWaterMark,
    read() {
      const w = waitingB;
      waitingB = undefined;
      w?.();
    },
    write(chunk: Buffer, _enc, cb) {
      if (b.push(chunk)) cb();
      else waitingA = cb;
    },
    final(cb) {
      b.push(null);
      cb();
    },
  });
  const b: Duplex = new Duplex({
    readableHighWaterMark,
    read() {
      const w = waitingA;
      waitingA = undefined;
      w?.();
    },
    write(chunk: Buffer, _enc, cb) {
      if (a.push(chunk)) cb();
      else waitingB = cb;
    },
    final(cb) {
      a.push(null);
      cb();
    },
  });
  return [a, b];
}
