import * as fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { processMemory, type StoredMessage } from '../../../src/core/index.js';
import { checkMessage } from '../../../src/core/message-check.js';
import type { PageSink } from '../../../src/core/persistence.js';
import { newEntry, type QueueEntry } from '../../../src/core/queues/entry.js';
import { OffHeapSpill } from '../../../src/store/spill.js';
import { messages } from '../../helpers/message-arbitraries.js';

/** Collects what a spill reads back. */
class Sink implements PageSink {
  readonly got: QueueEntry[] = [];
  paged(e: QueueEntry): void {
    this.got.push(e);
  }
  pagedLost(): void {
    throw new Error('a spill loses nothing');
  }
}

const accepted = messages
  .map((m) => {
    try {
      return checkMessage(m);
    } catch {
      return undefined;
    }
  })
  .filter((m) => m !== undefined);

describe('the off-heap spill of a memory-only queue', () => {
  test('entries come back in order with every field of the entry and its message (random messages, bodies up to 2 MiB)', () => {
    const big = fc.integer({ min: 1 << 20, max: 2 << 20 }).map((n) => Buffer.alloc(n, 0x5a));
    const item = fc.record({
      m: accepted,
      bigBody: fc.option(big, { freq: 30 }),
      raw: fc.option(fc.uint8Array({ maxLength: 30 }).map((b) => Buffer.from(b)), { freq: 3 }),
      id: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
      publisherId: fc.integer({ min: 0, max: 2 ** 40 }),
      persistent: fc.boolean(),
      deliveries: fc.integer({ min: 0, max: 1000 }),
      returns: fc.integer({ min: 0, max: 1000 }),
      expiresAt: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2 ** 45 })),
    });
    fc.assert(
      fc.property(fc.array(item, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 4096 }), (items, step) => {
        const before = processMemory.messageBytes;
        const spill = new OffHeapSpill(1 << 20);
        const pushed = items.map((it, i) => {
          const body = it.bigBody ?? it.m.body;
          const msg: StoredMessage = {
            exchange: it.m.exchange,
            routingKey: it.m.routingKey,
            properties: it.m.properties,
            body,
            rawProperties: it.raw ?? undefined,
            id: it.id,
            size: body.length + 64,
            persistent: it.persistent,
            refs: 3,
            publisherId: it.publisherId,
          };
          const e = newEntry(msg, i + 1, it.deliveries, it.expiresAt, 0);
          e.returns = it.returns;
          spill.push(e);
          return e;
        });
        expect(spill.length).toBe(items.length);
        expect(processMemory.messageBytes - before).toBe(spill.heldBytes);
        const sink = new Sink();
        while (spill.length > 0) {
          const n = sink.got.length;
          spill.pageIn(step, sink);
          expect(sink.got.length).toBeGreaterThan(n);
        }
        expect(sink.got.length).toBe(pushed.length);
        sink.got.forEach((e, i) => {
          const p = pushed[i]!;
          expect([e.seq, e.deliveryCount, e.returns, e.expiresAt, e.level]).toEqual([p.seq, p.deliveryCount, p.returns, p.expiresAt, 0]);
          // Bodies compared as bytes (a deep comparison of megabytes is slow).
          const { refs: _a, body: backBody, ...back } = e.msg;
          const { refs: _b, body: sentBody, ...sent } = p.msg;
          expect(back).toEqual(sent);
          expect(backBody.equals(sentBody)).toBe(true);
          expect(e.msg.refs).toBe(0);
        });
        // Drained, it holds no buffer and the memory account is back where it was.
        expect([spill.heldBytes, processMemory.messageBytes]).toEqual([0, before]);
      }),
      { numRuns: 40 },
    );
  });

  test('a read-back stops at its byte budget and at 256 messages, and clear gives every buffer back', () => {
    const before = processMemory.messageBytes;
    const spill = new OffHeapSpill(0);
    for (let i = 0; i < 20_000; i++) {
      const body = Buffer.from(`m${i}`);
      spill.push(newEntry({ exchange: '', routingKey: 'q', properties: {}, body, id: i + 1, size: body.length + 64, persistent: false, refs: 0, publisherId: 1 }, i + 1, 0, 0, 0));
    }
    expect(spill.heldBytes).toBeGreaterThan(1 << 20);
    const sink = new Sink();
    spill.pageIn(10 * 66, sink); // m0..m9: 2 bytes and 64 each
    expect(sink.got.length).toBe(10);
    spill.pageIn(1 << 30, sink);
    expect(sink.got.length).toBe(10 + 256);
    expect(sink.got.map((e) => e.msg.body.toString())).toEqual(Array.from({ length: 266 }, (_, i) => `m${i}`));
    spill.clear();
    expect([spill.length, spill.heldBytes, processMemory.messageBytes]).toEqual([0, 0, before]);
  });
});
