import { connect } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startTestBroker();
});
afterAll(async () => {
  await tb.stop();
});

describe('WebSocket output', () => {
  test('frames written in one turn share a WebSocket message, and every frame arrives intact', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${tb.broker.ports.http}/ws`, ['v12.stomp']);
    const messages: Buffer[] = [];
    ws.on('message', (data: Buffer) => messages.push(Buffer.from(data)));
    await new Promise((resolve) => ws.once('open', resolve));
    ws.send('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\u0000');
    ws.send('SUBSCRIBE\nid:s1\ndestination:/queue/ws-batch\nack:auto\nreceipt:r1\n\n\u0000');
    await waitFor(() => Buffer.concat(messages).includes('receipt-id:r1'));
    const before = messages.length;

    const n = 300;
    const amqp = await connect(tb.amqpUrl);
    const ch = await amqp.createConfirmChannel();
    for (let i = 0; i < n; i++) ch.sendToQueue('ws-batch', Buffer.from(`m${i}`));
    await ch.waitForConfirms();
    const frames = (): string[] =>
      Buffer.concat(messages.slice(before))
        .toString()
        .split('\u0000')
        .filter((f) => f.replace(/^\n+/, '').startsWith('MESSAGE'));
    await waitFor(() => frames().length === n, 5000, 'all MESSAGE frames');
    const bodies = frames().map((f) => f.slice(f.indexOf('\n\n') + 2));
    expect(bodies).toEqual(Array.from({ length: n }, (_, i) => `m${i}`));
    expect(messages.length - before).toBeLessThan(n);
    ws.close();
    await amqp.close();
  });
});
