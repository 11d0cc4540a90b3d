import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

/** Failure isolation on the HTTP/WebSocket port, driven with raw sockets (no client hides the wire). */
let tb: TestBroker;
let port: number;

beforeAll(async () => {
  tb = await startTestBroker({ maxMessageSize: 4 << 20 });
  port = tb.broker.ports.http!;
});
afterAll(async () => {
  await tb.stop();
});

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
}

function upgradeRequest(path: string, protocol?: string): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
    (protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
    '\r\n'
  );
}

/** Everything the server sent, collected; `until` resolves once `cond` holds for it. */
function collect(s: Socket): { data: () => Buffer; until: (cond: (b: Buffer) => boolean, what: string) => Promise<Buffer>; closed: Promise<void> } {
  let buf = Buffer.alloc(0);
  s.on('data', (c: Buffer) => (buf = Buffer.concat([buf, c])));
  s.on('error', () => undefined);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  return {
    data: () => buf,
    until: (cond, what) => waitFor(() => (cond(buf) ? buf : undefined), 5000, what),
    closed,
  };
}

/** A client frame (masked, as RFC 6455 requires), with RSV1 optionally set. */
function clientFrame(opcode: number, payload: Buffer, opts: { rsv1?: boolean; declaredLength?: number } = {}): Buffer {
  const len = opts.declaredLength ?? payload.length;
  const head: number[] = [0x80 | (opts.rsv1 === true ? 0x40 : 0) | opcode];
  if (len < 126) head.push(0x80 | len);
  else if (len < 65536) head.push(0x80 | 126, len >> 8, len & 0xff);
  else {
    head.push(0x80 | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([Buffer.from(head), mask, body]);
}

/** The close code in the first close frame the server sent after the 101 response, if any. */
function closeCode(received: Buffer): number | undefined {
  const end = received.indexOf('\r\n\r\n');
  if (end < 0) return undefined;
  for (let off = end + 4; off + 2 <= received.length; ) {
    const opcode = received[off]! & 0x0f;
    let len = received[off + 1]! & 0x7f;
    let at = off + 2;
    if (len === 126) {
      len = received.readUInt16BE(at);
      at += 2;
    } else if (len === 127) {
      len = Number(received.readBigUInt64BE(at));
      at += 8;
    }
    if (opcode === 0x8) return len >= 2 ? received.readUInt16BE(at) : 1005;
    off = at + len;
  }
  return undefined;
}

async function handshake(path: string, protocol?: string): Promise<{ s: Socket; rx: ReturnType<typeof collect> }> {
  const s = await open();
  const rx = collect(s);
  s.write(upgradeRequest(path, protocol));
  await rx.until((b) => b.includes('\r\n\r\n'), '101 response');
  expect(rx.data().toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
  return { s, rx };
}

/** The broker still answers on its HTTP port and round-trips an MQTT-over-WebSocket message. */
async function brokerStillServes(): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${port}/api/overview`, { headers: { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` } });
  expect(r.status).toBe(200);
  const c = await mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, { clientId: `alive-${randomBytes(4).toString('hex')}`, reconnectPeriod: 0 });
  const got = new Promise<string>((resolve) => c.on('message', (_t, p) => resolve(p.toString())));
  await c.subscribeAsync('hardening/alive', { qos: 1 });
  await c.publishAsync('hardening/alive', 'still here', { qos: 1 });
  expect(await got).toBe('still here');
  await c.endAsync();
}

const MQTT_CONNECT_V311 = Buffer.from([
  0x10, 0x12, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x06, 0x77, 0x73, 0x2d, 0x72, 0x73, 0x74,
]);

describe('HTTP port: no upgrade or WebSocket error reaches the process', () => {
  test('an upgrade to an unknown path followed by a TCP reset is answered 404 and leaves the broker running', async () => {
    for (let i = 0; i < 20; i++) {
      const s = await open();
      s.on('error', () => undefined);
      s.write(upgradeRequest('/nowhere'));
      s.resetAndDestroy();
    }
    const s = await open();
    const rx = collect(s);
    s.write(upgradeRequest('/nowhere'));
    await rx.closed;
    expect(rx.data().toString('latin1')).toMatch(/^HTTP\/1\.1 404 /);
    await brokerStillServes();
  });

  test('an invalid frame (RSV1 set) on /ws without a known subprotocol closes that WebSocket, not the broker', async () => {
    const { s, rx } = await handshake('/ws');
    s.write(clientFrame(0x1, Buffer.from('hello'), { rsv1: true }));
    await rx.closed;
    await brokerStillServes();
  });

  test('an invalid frame (RSV1 set) on an MQTT WebSocket closes it with 1002', async () => {
    const { s, rx } = await handshake('/mqtt', 'mqtt');
    s.write(clientFrame(0x2, MQTT_CONNECT_V311, { rsv1: true }));
    await rx.closed;
    expect(closeCode(rx.data())).toBe(1002);
    await brokerStillServes();
  });

  test('a reset right after the handshake, and a reset in the middle of a frame, leave the broker running', async () => {
    for (const path of ['/ws', '/mqtt', '/stomp']) {
      const a = await handshake(path, path === '/stomp' ? 'v12.stomp' : 'mqtt');
      a.s.resetAndDestroy();
      const b = await handshake(path, path === '/stomp' ? 'v12.stomp' : 'mqtt');
      b.s.write(clientFrame(0x2, Buffer.alloc(1000)).subarray(0, 300));
      b.s.resetAndDestroy();
    }
    await brokerStillServes();
  });

  test('a malformed HTTP request gets 400 and the broker keeps serving', async () => {
    const s = await open();
    const rx = collect(s);
    s.write('GET / HTTP/1.1\r\nHost: x\r\nBad Header Without Colon\r\n\r\n');
    await rx.closed;
    expect(rx.data().toString('latin1')).toMatch(/^HTTP\/1\.1 400 /);
    await brokerStillServes();
  });
});

describe('WebSocket connections end when the client resets the TCP connection', () => {
  test('MQTT over WebSocket: the connection is gone from the adapter and /api/connections', async () => {
    const mqttAdapter = tb.broker.adapters.get('mqtt')!;
    const before = mqttAdapter.connectionCount;
    const { s, rx } = await handshake('/mqtt', 'mqtt');
    s.write(clientFrame(0x2, MQTT_CONNECT_V311));
    // CONNACK: a binary frame 0x82 0x04 0x20 0x02 ...
    await rx.until((b) => b.includes(Buffer.from([0x20, 0x02, 0x00, 0x00])), 'CONNACK');
    expect(mqttAdapter.connectionCount).toBe(before + 1);
    s.resetAndDestroy();
    await waitFor(() => mqttAdapter.connectionCount === before, 5000, 'MQTT connection cleaned up');
    await waitFor(() => ![...tb.broker.core.connections].some((c) => c.info.clientId === 'ws-rst'), 5000, 'core connection closed');
  });

  test('STOMP over WebSocket: the connection is gone from the adapter', async () => {
    const stompAdapter = tb.broker.adapters.get('stomp')!;
    const before = stompAdapter.connectionCount;
    const { s, rx } = await handshake('/stomp', 'v12.stomp');
    s.write(clientFrame(0x1, Buffer.from('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0')));
    await rx.until((b) => b.includes('CONNECTED'), 'CONNECTED');
    expect(stompAdapter.connectionCount).toBe(before + 1);
    s.resetAndDestroy();
    await waitFor(() => stompAdapter.connectionCount === before, 5000, 'STOMP connection cleaned up');
  });
});

describe('pre-authentication limits are the same on WebSocket as on TCP', () => {
  test('before CONNECT, a WebSocket message declaring 1 MiB is refused on its header (1009), nothing buffered', async () => {
    for (const [path, protocol] of [
      ['/mqtt', 'mqtt'],
      ['/stomp', 'v12.stomp'],
      ['/ws', 'mqtt'],
      ['/ws', 'v12.stomp'],
    ] as const) {
      const { s, rx } = await handshake(path, protocol);
      const rss = process.memoryUsage().rss;
      // The header claims 1 MiB (under the post-auth limit); only 64 KiB + 1 of it is ever sent.
      s.write(clientFrame(0x2, Buffer.alloc(64 * 1024 + 1), { declaredLength: 1 << 20 }).subarray(0, 14 + 64 * 1024 + 1));
      await rx.closed;
      expect(closeCode(rx.data()), `${path} ${protocol}`).toBe(1009);
      expect(process.memoryUsage().rss - rss).toBeLessThan(32 << 20);
    }
  });

  test('before CONNECT, a STOMP frame over the 64 KiB pre-connect limit in one WebSocket message is refused', async () => {
    const { s, rx } = await handshake('/stomp', 'v12.stomp');
    const frame = Buffer.from(`CONNECT\naccept-version:1.2\nx:${'a'.repeat(70 * 1024)}\n\n\0`);
    s.write(clientFrame(0x1, frame));
    await rx.closed;
    expect(closeCode(rx.data())).toBe(1009);
  });

  test('a 64 KiB MQTT CONNECT is accepted, and once connected a 1 MiB message round-trips', async () => {
    const c = await mqtt.connectAsync(`ws://127.0.0.1:${port}/mqtt`, {
      clientId: 'big-after-auth',
      reconnectPeriod: 0,
      will: { topic: 'w', payload: Buffer.alloc(60 * 1024), qos: 0, retain: false },
    });
    const body = randomBytes(1 << 20);
    const got = new Promise<Buffer>((resolve) => c.on('message', (_t, p) => resolve(p)));
    await c.subscribeAsync('hardening/big', { qos: 1 });
    await c.publishAsync('hardening/big', body, { qos: 1 });
    expect((await got).equals(body)).toBe(true);
    await c.endAsync();
  });

  test('once connected, a WebSocket message may not be much larger than the protocol frame limit (checked on its header)', async () => {
    // MQTT packets are limited to maxMessageSize + 64 KiB (here 4 MiB + 64 KiB): a message declaring 8 MiB is refused at once.
    const { s, rx } = await handshake('/mqtt', 'mqtt');
    s.write(clientFrame(0x2, MQTT_CONNECT_V311));
    await rx.until((b) => b.includes(Buffer.from([0x20, 0x02, 0x00, 0x00])), 'CONNACK');
    s.write(clientFrame(0x2, Buffer.alloc(1024), { declaredLength: 8 << 20 }).subarray(0, 14 + 1024));
    await rx.closed;
    expect(closeCode(rx.data())).toBe(1009);
  });

  test('once connected over STOMP/WebSocket, a 1 MiB SEND is accepted', async () => {
    const { s, rx } = await handshake('/stomp', 'v12.stomp');
    s.write(clientFrame(0x1, Buffer.from('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0')));
    await rx.until((b) => b.includes('CONNECTED'), 'CONNECTED');
    s.write(clientFrame(0x1, Buffer.from('SUBSCRIBE\nid:0\ndestination:/queue/hardening-big\n\n\0')));
    const body = 'b'.repeat(1 << 20);
    s.write(clientFrame(0x2, Buffer.from(`SEND\ndestination:/queue/hardening-big\nreceipt:r1\n\n${body}\0`)));
    await rx.until((b) => b.includes('receipt-id:r1'), 'RECEIPT');
    await rx.until((b) => b.includes('MESSAGE') && b.length > 1 << 20, 'MESSAGE');
    expect(closeCode(rx.data())).toBeUndefined();
    s.destroy();
  });
});
