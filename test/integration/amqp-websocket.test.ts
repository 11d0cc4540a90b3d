import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { AMQPWebSocketClient, type AMQPMessage } from '@cloudamqp/amqp-client';
import { connect, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { WebSocket } from 'ws';
import { FrameType, PROTOCOL_HEADER } from '../../adapters/amqp/codec/constants.js';
import { FrameDecoder, encodeContentFrames, type Frame } from '../../adapters/amqp/codec/frames.js';
import { decodeMethod, encodeMethod, type AmqpMethod } from '../../adapters/amqp/codec/methods.js';
import type { BrokerOptions } from '../../src/config.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { makeTestPki, tlsOptions, type TestPki } from '../helpers/tls.js';

// Node 20 has no WebSocket global; amqp-client's AMQPWebSocketClient uses the browser API, which
// ws implements (binaryType 'arraybuffer', onmessage, addEventListener).
const g = globalThis as { WebSocket?: unknown };
g.WebSocket ??= WebSocket;
const globalWebSocket = g.WebSocket;

let tb: TestBroker;
let http: number;
let tcp: ChannelModel;

beforeAll(async () => {
  tb = await startTestBroker({ maxMessageSize: 4 << 20 });
  http = tb.broker.ports.http!;
  tcp = await connect(tb.amqpUrl);
});
afterAll(async () => {
  await tcp.close();
  await tb.stop();
});

/** AMQP connections of both transports, the long-lived amqplib one over TCP included. */
function amqpConnections(): number {
  return tb.broker.adapters.get('amqp')!.connectionCount;
}

/** Waits until only the amqplib connection is left. */
function settled(): Promise<boolean> {
  return waitFor(() => amqpConnections() === 1, 5000, 'only the TCP connection to be left');
}

function wsClient(frameMax?: number): AMQPWebSocketClient {
  return new AMQPWebSocketClient({ url: `ws://127.0.0.1:${http}/amqp`, vhost: '/', username: 'guest', password: 'guest', ...(frameMax === undefined ? {} : { frameMax }) });
}

describe('AMQPWebSocketClient (amqp-client) on /amqp', () => {
  test('connects, declares, publishes with confirms and consumes', async () => {
    const client = wsClient();
    await client.connect();
    const ch = await client.channel();
    await ch.confirmSelect();
    const { name } = await ch.queueDeclare('', { exclusive: true });
    const got: string[] = [];
    const done = new Promise<void>((resolve) => {
      void ch.basicConsume(name, { noAck: false }, async (msg: AMQPMessage) => {
        got.push(`${msg.bodyToString() ?? ''}:${msg.properties.contentType ?? ''}`);
        await msg.ack();
        if (got.length === 3) resolve();
      });
    });
    // Resolved by basic.ack (confirm mode).
    for (const body of ['one', 'two', 'three']) await ch.basicPublish('', name, body, { contentType: 'text/plain' });
    await done;
    expect(got).toEqual(['one:text/plain', 'two:text/plain', 'three:text/plain']);
    await client.close();
    await settled();
  });

  test('a 1 MiB message, sent as one WebSocket message of 8 KiB frames, round-trips', async () => {
    const client = wsClient(8192);
    await client.connect();
    const ch = await client.channel();
    await ch.confirmSelect();
    const { name } = await ch.queueDeclare('', { exclusive: true });
    const body = randomBytes(1 << 20);
    await ch.basicPublish('', name, body);
    const msg = await waitFor(() => ch.basicGet(name, { noAck: true }), 5000, 'the big message');
    expect(Buffer.from(msg.body!).equals(body)).toBe(true);
    await client.close();
  });

  test('AMQP over TCP (amqplib) and over WebSocket share queues both ways', async () => {
    const client = wsClient();
    await client.connect();
    const ch = await client.channel();
    await ch.queueDeclare('ws-shared', { durable: false, autoDelete: false, exclusive: false });
    const t = await tcp.createConfirmChannel();
    t.sendToQueue('ws-shared', Buffer.from('from tcp'), { headers: { via: 'amqplib' } });
    await t.waitForConfirms();
    const m = await waitFor(() => ch.basicGet('ws-shared', { noAck: true }), 5000, 'the TCP message');
    expect([m.bodyToString(), m.properties.headers?.['via']]).toEqual(['from tcp', 'amqplib']);
    await ch.basicPublish('', 'ws-shared', 'from websocket', { headers: { via: 'amqp-client' } });
    const back = await waitFor(async () => (await t.get('ws-shared', { noAck: true })) || undefined, 5000, 'the WebSocket message');
    expect([back.content.toString(), back.properties.headers?.['via']]).toEqual(['from websocket', 'amqp-client']);
    await t.deleteQueue('ws-shared');
    await t.close();
    await client.close();
  });
});

/** A bare AMQP peer over a WebSocket (ws): writes arbitrary bytes as messages, decodes every frame. */
class WsAmqp {
  readonly frames: Frame[] = [];
  closeCode: number | undefined;
  private readonly decoder = new FrameDecoder(1 << 30);
  private headerSkipped = false;
  readonly raw: Buffer[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.raw.push(data);
      if (!this.headerSkipped) return;
      this.decoder.push(data);
      for (let f = this.decoder.next(); f !== null; f = this.decoder.next()) this.frames.push({ ...f, payload: Buffer.from(f.payload) });
    });
    ws.on('close', (code: number) => (this.closeCode = code));
    ws.on('error', () => undefined);
  }

  static open(path: string, protocols?: string[]): Promise<WsAmqp> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${http}${path}`, protocols);
      ws.once('open', () => resolve(new WsAmqp(ws)));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    });
  }

  /** `bytes` as WebSocket messages of `step` bytes each (0: one message). */
  write(bytes: Buffer, step = 0): void {
    if (step === 0) this.ws.send(bytes);
    else for (let i = 0; i < bytes.length; i += step) this.ws.send(bytes.subarray(i, i + step));
  }

  async nextMethod<K extends AmqpMethod['kind']>(kind: K): Promise<Extract<AmqpMethod, { kind: K }>> {
    const f = await waitFor(() => this.frames.shift(), 5000, kind);
    expect(f.type).toBe(FrameType.METHOD);
    const m = decodeMethod(f.payload);
    expect(m.kind).toBe(kind);
    return m as Extract<AmqpMethod, { kind: K }>;
  }

  /** Handshake to connection.open-ok, every byte sent as WebSocket messages of `step` bytes. */
  async handshake(step = 0): Promise<void> {
    this.headerSkipped = true;
    this.write(PROTOCOL_HEADER, step);
    await this.nextMethod('connection.start');
    const response = Buffer.from('\u0000guest\u0000guest');
    this.write(encodeMethod(0, { kind: 'connection.start-ok', clientProperties: {}, mechanism: 'PLAIN', response, locale: 'en_US' }), step);
    const tune = await this.nextMethod('connection.tune');
    this.write(
      Buffer.concat([
        encodeMethod(0, { kind: 'connection.tune-ok', channelMax: tune.channelMax, frameMax: tune.frameMax, heartbeat: 0 }),
        encodeMethod(0, { kind: 'connection.open', virtualHost: '/' }),
      ]),
      step,
    );
    await this.nextMethod('connection.open-ok');
  }

  waitClosed(): Promise<number> {
    return waitFor(() => this.closeCode, 5000, 'the WebSocket to close');
  }
}

/** Raw upgrade request, for what a WebSocket client library would not send. */
function upgradeRequest(path: string, protocol?: string): string {
  return (
    `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n` +
    (protocol === undefined ? '' : `Sec-WebSocket-Protocol: ${protocol}\r\n`) +
    '\r\n'
  );
}

function rawOpen(): Promise<{ s: Socket; data: () => Buffer; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port: http, host: '127.0.0.1' }, () => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => (buf = Buffer.concat([buf, c])));
      const closed = new Promise<void>((r) => s.once('close', () => r()));
      resolve({ s, data: () => buf, closed });
    });
    s.on('error', () => undefined);
    s.once('error', reject);
  });
}

/** A masked client frame whose header may declare more than it carries. */
function clientFrame(opcode: number, payload: Buffer, declaredLength = payload.length): Buffer {
  const head: number[] = [0x80 | opcode];
  if (declaredLength < 126) head.push(0x80 | declaredLength);
  else if (declaredLength < 65536) head.push(0x80 | 126, declaredLength >> 8, declaredLength & 0xff);
  else {
    head.push(0x80 | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(declaredLength));
    head.push(...b);
  }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i]! ^= mask[i & 3]!;
  return Buffer.concat([Buffer.from(head), mask, body]);
}

/** The close code of the first close frame after the 101 response, if any. */
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

describe('AMQP over WebSocket on the wire', () => {
  test('the amqp subprotocol is chosen on /amqp and on /ws; /amqp also takes a WebSocket offering none', async () => {
    for (const [path, protocols] of [
      ['/amqp', ['amqp']],
      ['/ws', ['amqp']],
      ['/amqp', undefined],
    ] as const) {
      const c = await WsAmqp.open(path, protocols === undefined ? undefined : [...protocols]);
      expect(c.ws.protocol, path).toBe(protocols === undefined ? '' : 'amqp');
      await c.handshake();
      c.ws.close();
      await c.waitClosed();
    }
  });

  test('a WebSocket on /amqp that offers only other subprotocols is refused before the upgrade', async () => {
    for (const protocols of [['mqtt'], ['v12.stomp', 'v11.stomp'], ['amqp1.0']]) {
      await expect(WsAmqp.open('/amqp', protocols)).rejects.toThrow('HTTP 400');
    }
    await settled();
    const before = amqpConnections();
    const c = await WsAmqp.open('/amqp', ['mqtt', 'amqp']);
    expect(c.ws.protocol).toBe('amqp');
    await c.handshake();
    expect(amqpConnections()).toBe(before + 1);
    c.ws.close();
    await waitFor(() => amqpConnections() === before, 5000, 'the connection to go');
  });

  test('AMQP frames split over one-byte messages, and many frames joined in one message, are handled', async () => {
    const c = await WsAmqp.open('/amqp', ['amqp']);
    await c.handshake(1);
    const open = encodeMethod(1, { kind: 'channel.open' });
    const declare = encodeMethod(1, { kind: 'queue.declare', queue: '', passive: false, durable: false, exclusive: true, autoDelete: false, noWait: false, arguments: {} });
    c.write(Buffer.concat([open, declare]), 3);
    await c.nextMethod('channel.open-ok');
    const { queue } = await c.nextMethod('queue.declare-ok');
    // 200 publishes in one message, with a frame split across the message boundary at the end.
    const burst: Buffer[] = [];
    for (let i = 0; i < 200; i++) {
      const body = Buffer.from(`m${i}`);
      burst.push(encodeMethod(1, { kind: 'basic.publish', exchange: '', routingKey: queue, mandatory: false, immediate: false }));
      burst.push(encodeContentFrames(1, 60, body.length, Buffer.from([0, 0]), body, 131072));
    }
    const all = Buffer.concat(burst);
    c.write(all.subarray(0, all.length - 5));
    c.write(all.subarray(all.length - 5));
    c.write(encodeMethod(1, { kind: 'queue.declare', queue, passive: true, durable: false, exclusive: true, autoDelete: false, noWait: false, arguments: {} }), 7);
    const ok = await c.nextMethod('queue.declare-ok');
    expect(ok.messageCount).toBe(200);
    c.ws.close();
    await c.waitClosed();
  });

  test('a wrong protocol header over WebSocket is answered with AMQP 0-9-1 and the WebSocket closes', async () => {
    const c = await WsAmqp.open('/amqp', ['amqp']);
    c.write(Buffer.from('AMQP\u0001\u0001\u0000\u000a'));
    await c.waitClosed();
    expect(Buffer.concat(c.raw).equals(PROTOCOL_HEADER)).toBe(true);
  });

  test('before tune-ok, a message over the 4096-byte frame limit is refused on its header (1009), as on TCP', async () => {
    const { s, data, closed } = await rawOpen();
    s.write(upgradeRequest('/amqp', 'amqp'));
    await waitFor(() => data().includes('\r\n\r\n'), 5000, '101 response');
    expect(data().toString('latin1')).toMatch(/^HTTP\/1\.1 101 /);
    const rss = process.memoryUsage().rss;
    // The header declares 1 MiB (under the post-auth limit); only 8 KiB is sent.
    s.write(clientFrame(0x2, Buffer.alloc(8192), 1 << 20));
    await closed;
    expect(closeCode(data())).toBe(1009);
    expect(process.memoryUsage().rss - rss).toBeLessThan(32 << 20);
  });

  test('after tune-ok, a message declaring more than the largest publish is refused on its header', async () => {
    const { s, data, closed } = await rawOpen();
    s.write(upgradeRequest('/amqp', 'amqp'));
    await waitFor(() => data().includes('\r\n\r\n'), 5000, '101 response');
    const response = Buffer.from('\u0000guest\u0000guest');
    s.write(clientFrame(0x2, PROTOCOL_HEADER));
    s.write(clientFrame(0x2, encodeMethod(0, { kind: 'connection.start-ok', clientProperties: {}, mechanism: 'PLAIN', response, locale: 'en_US' })));
    s.write(clientFrame(0x2, encodeMethod(0, { kind: 'connection.tune-ok', channelMax: 0, frameMax: 131072, heartbeat: 0 })));
    s.write(clientFrame(0x2, encodeMethod(0, { kind: 'connection.open', virtualHost: '/' })));
    const openOk = Buffer.from([0x00, 0x0a, 0x00, 0x29]);
    await waitFor(() => data().includes(openOk), 5000, 'connection.open-ok');
    // A whole 4 MiB publish (max-message-size here) fits in one message; 16 MiB is refused at once.
    s.write(clientFrame(0x2, Buffer.alloc(1024), 16 << 20));
    await closed;
    expect(closeCode(data())).toBe(1009);
  });

  test('a reset mid-frame, or right after the handshake, leaves no connection behind', async () => {
    await settled();
    const before = amqpConnections();
    for (let i = 0; i < 10; i++) {
      const c = await WsAmqp.open('/amqp', ['amqp']);
      if (i % 2 === 0) {
        await c.handshake();
        c.write(encodeMethod(1, { kind: 'channel.open' }).subarray(0, 5));
      } else c.write(PROTOCOL_HEADER.subarray(0, 3));
      await waitFor(() => amqpConnections() > before, 5000, 'the connection');
      c.ws.terminate();
    }
    await waitFor(() => amqpConnections() === before, 5000, 'every reset connection to go');
    const client = wsClient();
    await client.connect();
    const ch = await client.channel();
    const { name } = await ch.queueDeclare('', { exclusive: true });
    await ch.basicPublish('', name, 'still serving');
    const m = await waitFor(() => ch.basicGet(name, { noAck: true }), 5000, 'a message');
    expect(m.bodyToString()).toBe('still serving');
    await client.close();
  });
});

describe('AMQP over WebSocket switched off', () => {
  let off: TestBroker;
  beforeAll(async () => {
    off = await startTestBroker({ amqpWebsocket: false });
  });
  afterAll(async () => {
    await off.stop();
  });

  test('with amqpWebsocket false, /amqp is 404 and /ws does not choose amqp; MQTT on /ws still works', async () => {
    const port = off.broker.ports.http!;
    const refused = await new Promise<number>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/amqp`);
      ws.on('error', () => undefined);
      ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    });
    expect(refused).toBe(404);
    const noProtocol = await new Promise<string>((resolve) => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['amqp']);
      ws.once('error', (e: Error) => resolve(e.message));
      ws.once('open', () => resolve(`open with '${ws.protocol}'`));
    });
    expect(noProtocol).toMatch(/subprotocol/i);
    const mqttWs = new WebSocket(`ws://127.0.0.1:${port}/ws`, ['mqtt']);
    await new Promise((resolve) => mqttWs.once('open', resolve));
    expect(mqttWs.protocol).toBe('mqtt');
    mqttWs.close();
  });
});

describe('AMQP over wss:// on the HTTPS port', () => {
  let pki: TestPki;
  let secure: TestBroker;
  beforeAll(async () => {
    pki = makeTestPki();
    secure = await startTestBroker(tlsOptions(pki, { amqpsPort: 'off', mqttsPort: 'off', stompsPort: 'off' }) as Partial<BrokerOptions>);
  });
  afterAll(async () => {
    await secure.stop();
    pki.cleanup();
  });

  test('AMQPWebSocketClient connects over wss:// with the test CA and round-trips a message', async () => {
    const ca = pki.ca;
    // The browser API has no place for a CA: this WebSocket trusts the test CA.
    class TrustingWebSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols, { ca });
      }
    }
    const client = new AMQPWebSocketClient({ url: `wss://127.0.0.1:${secure.broker.ports.https}/amqp`, vhost: '/', username: 'guest', password: 'guest' });
    g.WebSocket = TrustingWebSocket;
    try {
      await client.connect();
    } finally {
      g.WebSocket = globalWebSocket;
    }
    const ch = await client.channel();
    await ch.confirmSelect();
    const { name } = await ch.queueDeclare('', { exclusive: true });
    await ch.basicPublish('', name, 'over wss');
    const m = await waitFor(() => ch.basicGet(name, { noAck: true }), 5000, 'the message');
    expect(m.bodyToString()).toBe('over wss');
    await client.close();
  });
});
