import { setFlagsFromString } from 'node:v8';

/**
 * Engine settings for a process that is a broker (set by `warren start` before it serves).
 *
 * V8 watches where short-lived objects are made and, when nearly all of those from one place
 * survive a young-generation collection, makes that place allocate straight into the old
 * generation from then on ("allocation-site pretenuring"). A broker's messages live for
 * microseconds, except while a queue fills: a backlog of a million messages makes every place on
 * the publish path old-allocating, and the decision is never taken back. After it, each message
 * costs hundreds of bytes of old generation (measured: 1.3 MB per young collection at 5,000
 * msg/s over AMQP, after the backlog was purged), which only full collections reclaim: long
 * pauses on a large heap, in the tail of every client's latency. Without pretenuring, a backlog
 * is copied once more while it builds, and steady traffic after it stays in the young
 * generation.
 */
export function tuneEngineForBroker(): void {
  setFlagsFromString('--no-allocation-site-pretenuring');
}
