import { connect as netConnect } from 'node:net';
import amqplib from 'amqplib';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import type { CoreConnection, Message, PublishResult } from '../../src/core/index.js';
import { PauseReason, type Link } from '../../src/transport/link.js';
import { MAX_UNSETTLED_PUBLISHES } from '../../src/transport/settle-queue.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawMqtt } from '../helpers/mqtt.js';

let tb: TestBroker;

beforeAll(async () => {
  tb = await startTestBroker();
});

afterAll(async () => {
  await tb.stop();
});

afterEach(() => {
  vi.restoreAllMocks();
});

/**
 * Holds back every publish's `settled` until `open()`, as a disk that does not keep up would:
 * the broker routes the messages but may not acknowledge them to their clients yet.
 */
function slowSettle(): { calls: () => number; open: () => void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  const proto = Object.getPrototypeOf(tb.broker.core.vhosts.get('/')!) as { publish(msg: Message, id: number): PublishResult };
  const original = proto.publish;
  vi.spyOn(proto, 'publish').mockImplementation(function (this: unknown, msg: Message, id: number): PublishResult {
    calls++;
    const r = original.call(this, msg, id);
    return { routed: r.routed, settled: gate.then(() => r.settled) };
  });
  return { calls: () => calls, open: () => release() };
}

/** Waits until `n()` has not changed for 300 ms, and returns it. */
async function stable(n: () => number): Promise<number> {
  let last = -1;
  await waitFor(async () => {
    const now = n();
    if (now === last) return true;
    last = now;
    await new Promise((r) => setTimeout(r, 300));
    return false;
  }, 20_000, 'publishes to stop arriving');
  return last;
}

function linkOf(pred: (c: CoreConnection) => boolean): Link {
  const c = [...tb.broker.core.connections].find(pred)!;
  return (c.handle as unknown as { link: Link }).link;
}

const TOTAL = 12_000;
/** Publishes already read in the socket chunk that crossed the bound are still handled. */
const SLACK = 3000;

describe('one bound on unsettled publishes per connection, for every protocol', () => {
  test('AMQP confirm channel: reading stops at the bound until confirms drain', async () => {
    const slow = slowSettle();
    const conn = await amqplib.connect(tb.amqpUrl);
    const ch = await conn.createConfirmChannel();
    await ch.assertQueue('unsettled-amqp', { autoDelete: false });
    const before = slow.calls();
    for (let i = 0; i < TOTAL; i++) ch.sendToQueue('unsettled-amqp', Buffer.from('x'));
    const read = (await stable(slow.calls)) - before;
    expect(read).toBeGreaterThan(MAX_UNSETTLED_PUBLISHES);
    expect(read).toBeLessThan(MAX_UNSETTLED_PUBLISHES + SLACK);
    const link = linkOf((c) => c.info.protocol.startsWith('AMQP') && c.channels.length > 0);
    expect(link.pausedBy & PauseReason.UNSETTLED).toBe(PauseReason.UNSETTLED);
    slow.open();
    await ch.waitForConfirms();
    expect(slow.calls() - before).toBe(TOTAL);
    await ch.deleteQueue('unsettled-amqp');
    await conn.close();
  }, 60_000);

  test('STOMP SENDs with receipts: reading stops at the bound until receipts drain', async () => {
    const s = netConnect({ port: tb.broker.ports.stomp!, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      s.once('connect', resolve);
      s.once('error', reject);
    });
    let got = '';
    s.on('data', (b: Buffer) => (got += b.toString('latin1')));
    s.write('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0');
    await waitFor(() => got.includes('CONNECTED'), 5000, 'CONNECTED');
    s.write('SEND\ndestination:/queue/unsettled-stomp\nreceipt:declare\n\nfirst\0');
    await waitFor(() => got.includes('receipt-id:declare'), 5000, 'first receipt');
    const slow = slowSettle();
    const before = slow.calls();
    const frames: string[] = [];
    for (let i = 0; i < TOTAL; i++) frames.push(`SEND\ndestination:/queue/unsettled-stomp\nreceipt:r${i}\n\nx\0`);
    s.write(frames.join(''));
    const read = (await stable(slow.calls)) - before;
    expect(read).toBeGreaterThan(MAX_UNSETTLED_PUBLISHES);
    expect(read).toBeLessThan(MAX_UNSETTLED_PUBLISHES + SLACK);
    expect(got.includes('receipt-id:r0\n')).toBe(false);
    slow.open();
    await waitFor(() => got.includes(`receipt-id:r${TOTAL - 1}\n`), 20_000, 'the last receipt');
    // In SEND order.
    expect(got.indexOf('receipt-id:r0\n')).toBeLessThan(got.indexOf('receipt-id:r1\n'));
    expect(slow.calls() - before).toBe(TOTAL);
    s.destroy();
  }, 60_000);

  test('MQTT QoS 1: reading stops at the bound until PUBACKs drain', async () => {
    const slow = slowSettle();
    const c = await RawMqtt.connected(tb.broker.ports.mqtt!, 4, { clientId: 'unsettled-qos1' });
    const before = slow.calls();
    const packets: Buffer[] = [];
    for (let i = 1; i <= TOTAL; i++) packets.push(c.encode({ cmd: 'publish', topic: 'unsettled/q1', payload: Buffer.from('x'), qos: 1, messageId: i, retain: false, dup: false }));
    c.send(Buffer.concat(packets));
    const read = (await stable(slow.calls)) - before;
    expect(read).toBeGreaterThan(MAX_UNSETTLED_PUBLISHES);
    expect(read).toBeLessThan(MAX_UNSETTLED_PUBLISHES + SLACK);
    expect(c.packets.some((p) => p.cmd === 'puback')).toBe(false);
    slow.open();
    await waitFor(() => c.packets.filter((p) => p.cmd === 'puback').length === TOTAL, 20_000, 'every PUBACK');
    const ids = c.packets.flatMap((p) => (p.cmd === 'puback' ? [p.messageId] : []));
    expect(ids.slice(0, 3)).toEqual([1, 2, 3]);
    expect(ids[TOTAL - 1]).toBe(TOTAL);
    c.end();
  }, 60_000);
});
