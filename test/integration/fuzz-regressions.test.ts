import { generate } from 'mqtt-packet';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { BrokerChild } from '../../fuzz/broker-child.js';
import { Bystanders } from '../../fuzz/bystanders.js';
import type { PortName } from '../../fuzz/config.js';

/**
 * Inputs the fuzzers (`npm run fuzz`) found to crash or stall the broker, minimised, each sent on a
 * raw socket to a broker process; afterwards the process must be alive and a bystander of each
 * protocol (with an AMQP consumer of everything on amq.topic) must still round-trip a message.
 */


let dataDir: string;
let broker: BrokerChild;
let bystanders: Bystanders;

async function startBroker(): Promise<void> {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-fuzz-reg-'));
  broker = await BrokerChild.start(dataDir, 'warn');
  bystanders = await Bystanders.connect(broker.ports, true);
}

beforeAll(startBroker);

// a test that fails by killing the broker does not fail the ones after it
beforeEach(async () => {
  if (broker.alive) return;
  await bystanders.close();
  await rm(dataDir, { recursive: true, force: true });
  await startBroker();
});

afterAll(async () => {
  await bystanders?.close();
  await broker?.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** Writes `bytes`, collects the answer until the broker closes or is quiet for `quietMs`, then ends (or resets). */
function send(port: PortName, bytes: Buffer[], opts: { reset?: boolean; quietMs?: number; awaitReply?: boolean } = {}): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = connect({ port: broker.ports[port], host: '127.0.0.1' });
    let quiet: NodeJS.Timeout | undefined;
    let next = 0;
    const done = (): void => {
      clearTimeout(quiet);
      if (opts.reset) s.resetAndDestroy();
      else s.destroy();
      resolve(Buffer.concat(got));
    };
    const settle = (): void => {
      clearTimeout(quiet);
      quiet = setTimeout(done, opts.quietMs ?? 300);
    };
    const writeNext = (): void => {
      while (next < bytes.length) {
        s.write(bytes[next++]!);
        if (opts.awaitReply && next < bytes.length) return;
      }
      if (opts.reset && opts.quietMs === 0) done();
      else settle();
    };
    s.on('connect', writeNext);
    s.on('data', (c: Buffer) => {
      got.push(c);
      if (next < bytes.length) writeNext();
      else settle();
    });
    s.on('error', () => undefined);
    s.on('close', done);
  });
}

async function expectHealthy(): Promise<void> {
  expect(broker.alive).toBe(true);
  await bystanders.check(5000);
  expect(broker.alive).toBe(true);
}

function httpRequest(method: string, path: string, body: string): Buffer {
  const auth = Buffer.from('guest:guest').toString('base64');
  return Buffer.from(`${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic ${auth}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}

function stompSend(headers: string): Buffer[] {
  return [Buffer.from('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0'), Buffer.from(`SEND\n${headers}\n\nbody\0`), Buffer.from('DISCONNECT\nreceipt:r\n\n\0')];
}

function upgrade(path: string, protocol?: string): Buffer {
  const lines = [`GET ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Upgrade: websocket', 'Connection: Upgrade', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version: 13'];
  if (protocol) lines.push(`Sec-WebSocket-Protocol: ${protocol}`);
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`);
}

describe('management publish', () => {
  test('a priority over 255 is refused at publish, not thrown when delivered to an AMQP consumer', async () => {
    const body = JSON.stringify({ properties: { priority: 300 }, routing_key: 'reg.k', payload: 'x', payload_encoding: 'string' });
    const reply = await send('http', [httpRequest('POST', '/api/exchanges/%2F/amq.topic/publish', body)]);
    expect(reply.toString('latin1')).toMatch(/^HTTP\/1\.1 400 /);
    await expectHealthy();
  });

  test('a delivery_mode over 255 is refused at publish', async () => {
    const body = JSON.stringify({ properties: { delivery_mode: 256 }, routing_key: 'reg.k', payload: 'x', payload_encoding: 'string' });
    const reply = await send('http', [httpRequest('POST', '/api/exchanges/%2F/amq.topic/publish', body)]);
    expect(reply.toString('latin1')).toMatch(/^HTTP\/1\.1 400 /);
    await expectHealthy();
  });

  test('a timestamp beyond the safe integers is refused at publish, not thrown when delivered', async () => {
    const body = `{"properties":{"timestamp":9007199254740995},"routing_key":"reg.k","payload":"x","payload_encoding":"string"}`;
    const reply = await send('http', [httpRequest('POST', '/api/exchanges/%2F/amq.topic/publish', body)]);
    expect(reply.toString('latin1')).toMatch(/^HTTP\/1\.1 400 /);
    await expectHealthy();
  });
});

describe('crashes found before the fixes landed', () => {
  test('an upgrade to an unknown path followed by a TCP reset', async () => {
    for (let i = 0; i < 20; i++) await send('http', [upgrade('/nope')], { reset: true, quietMs: 0 });
    await expectHealthy();
  });

  test('an upgrade on /ws without a known subprotocol, then a frame with RSV1 set', async () => {
    await send('http', [upgrade('/ws'), Buffer.from([0xc1, 0x80, 1, 2, 3, 4])], { awaitReply: true });
    await expectHealthy();
  });

  test('a STOMP content-type of 300 bytes delivered to an AMQP consumer', async () => {
    await send('stomp', stompSend(`destination:/topic/reg.k\ncontent-type:${'t'.repeat(300)}`));
    await expectHealthy();
  });

  test('a STOMP routing key of 361 bytes delivered to an AMQP consumer', async () => {
    await send('stomp', stompSend(`destination:/topic/${'a.'.repeat(180)}z`));
    await expectHealthy();
  });

  test('an MQTT 5 user property name of 276 bytes delivered to an AMQP consumer', async () => {
    const connectPacket = generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, clientId: 'reg-mqtt5', keepalive: 0, username: 'guest', password: Buffer.from('guest') }, { protocolVersion: 5 });
    const publish = generate({ cmd: 'publish', topic: 'reg/k', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { userProperties: { ['k'.repeat(276)]: 'v' } } }, { protocolVersion: 5 });
    await send('mqtt', [connectPacket, publish]);
    await expectHealthy();
  });

  test('a management publish with headers nested 70 deep delivered to an AMQP consumer', async () => {
    const headers = `${'{"a":'.repeat(70)}1${'}'.repeat(70)}`;
    await send('http', [httpRequest('POST', '/api/exchanges/%2F/amq.topic/publish', `{"properties":{"headers":${headers}},"routing_key":"reg.k","payload":"x","payload_encoding":"string"}`)]);
    await expectHealthy();
  });
});
