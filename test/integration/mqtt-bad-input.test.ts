import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker, type Broker } from '../../src/broker.js';
import { waitFor } from '../helpers/broker.js';
import { RawMqtt, collect, connectMqtt, waitForCount } from '../helpers/mqtt.js';
import type { MqttClient } from 'mqtt';

/** Every log line the broker writes, parsed. */
const lines: Record<string, unknown>[] = [];
let broker: Broker;
let dataDir: string;
let port: number;
let healthy: MqttClient;
let healthyGot: ReturnType<typeof collect>;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'warren-mqtt-bad-'));
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  broker = await startBroker({ amqpPort: 0, mqttPort: 0, stompPort: 0, httpPort: 0, bind: '127.0.0.1', dataDir, logger: pino({ level: 'warn' }, sink) });
  port = broker.ports.mqtt!;
  healthy = await connectMqtt(`mqtt://127.0.0.1:${port}`, { clientId: 'bystander' });
  healthyGot = collect(healthy);
  await healthy.subscribeAsync('bystander/echo', { qos: 1 });
});
afterAll(async () => {
  await healthy.endAsync();
  await broker.stop();
  await rm(dataDir, { recursive: true, force: true });
});

/** 3.1.1-style bytes of a string with its 2-byte length. */
function str(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s) : s;
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

function packet(first: number, ...body: Buffer[]): Buffer {
  const b = Buffer.concat(body);
  if (b.length > 127) throw new Error('test packets stay small');
  return Buffer.concat([Buffer.from([first, b.length]), b]);
}

const id1 = Buffer.from([0, 1]);
const noProps = Buffer.from([0]);

/** [name, level, bytes sent after CONNECT, v5 reason code expected in DISCONNECT] */
const CASES: [string, 4 | 5, Buffer, number | undefined][] = [
  ['SUBSCRIBE with reserved header flags 0000', 4, packet(0x80, id1, str('a'), Buffer.from([0])), undefined],
  ['SUBSCRIBE with reserved header flags 0000', 5, packet(0x80, id1, noProps, str('a'), Buffer.from([0])), 0x81],
  ['PUBREL with reserved header flags 0000', 4, packet(0x60, id1), undefined],
  ['PINGREQ with remaining length 1', 4, packet(0xc0, Buffer.from([0])), undefined],
  ['PINGREQ with remaining length 1', 5, packet(0xc0, Buffer.from([0])), 0x81],
  ['PUBACK with remaining length 3 at 3.1.1', 4, packet(0x40, id1, Buffer.from([0])), undefined],
  ['PUBLISH whose topic length runs past the remaining length', 4, Buffer.from([0x30, 0x04, 0x00, 0x09, 0x61, 0x62]), undefined],
  ['PUBLISH whose topic length runs past the remaining length', 5, Buffer.from([0x30, 0x04, 0x00, 0x09, 0x61, 0x62]), 0x81],
  ['PUBLISH with an invalid UTF-8 topic', 4, packet(0x30, str(Buffer.from([0x61, 0xc3, 0x28])), Buffer.from('x')), undefined],
  ['PUBLISH with an invalid UTF-8 topic', 5, packet(0x30, str(Buffer.from([0x61, 0xc3, 0x28])), noProps, Buffer.from('x')), 0x81],
  ['PUBLISH with a wildcard in its topic', 4, packet(0x30, str('a/+/b'), Buffer.from('x')), undefined],
  ['PUBLISH with a wildcard in its topic', 5, packet(0x30, str('a/#'), noProps, Buffer.from('x')), 0x90],
  ['PUBLISH with U+0000 in its topic', 5, packet(0x30, str('a\u0000b'), noProps, Buffer.from('x')), 0x90],
  ['PUBLISH with an empty topic and no alias', 5, packet(0x30, str(''), noProps, Buffer.from('x')), 0x90],
  ['PUBLISH with QoS 3', 4, packet(0x36, str('a'), id1, Buffer.from('x')), undefined],
  ['PUBLISH QoS 0 with DUP set', 5, packet(0x38, str('a'), noProps, Buffer.from('x')), 0x82],
  ['PUBLISH QoS 1 with packet id 0', 4, packet(0x32, str('a'), Buffer.from([0, 0]), Buffer.from('x')), undefined],
  ['SUBSCRIBE with an invalid UTF-8 filter', 4, packet(0x82, id1, str(Buffer.from([0xff, 0xfe])), Buffer.from([0])), undefined],
  ['SUBSCRIBE with QoS 3', 4, packet(0x82, id1, str('a'), Buffer.from([3])), undefined],
  ['SUBSCRIBE without filters', 4, packet(0x82, id1), undefined],
  ['UNSUBSCRIBE without filters', 5, packet(0xa2, id1, noProps), 0x82],
  ['a remaining length of five bytes', 4, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), undefined],
  ['a remaining length of five bytes', 5, Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 0x81],
  ['packet type 0 (reserved)', 4, Buffer.from([0x00, 0x00]), undefined],
  ['a CONNACK sent by a client', 5, packet(0x20, Buffer.from([0, 0]), noProps), 0x82],
  ['AUTH at 3.1.1', 4, Buffer.from([0xf0, 0x00]), undefined],
  ['a second CONNECT', 4, packet(0x10, str('MQTT'), Buffer.from([4, 2, 0, 0]), str('again')), undefined],
  ['an unknown v5 property', 5, packet(0x30, str('a'), Buffer.from([2, 0x7f, 0]), Buffer.from('x')), 0x81],
  ['a declared packet size over 16 MiB', 5, Buffer.from([0x30, 0x81, 0x80, 0x80, 0x08]), 0x95],
];

describe('a raw socket per bad input: closed, logged, nothing else affected', () => {
  test.each(CASES)('%s (level %i)', async (name, level, bytes, reason) => {
    const before = lines.length;
    const r = await RawMqtt.connected(port, level);
    r.send(bytes);
    await r.waitClosed();
    const disconnects = r.packets.filter((p) => p.cmd === 'disconnect');
    if (level === 5) expect(disconnects.map((p) => (p.cmd === 'disconnect' ? p.reasonCode : -1))).toEqual([reason]);
    else expect(r.packets).toEqual([]);
    await waitFor(() => lines.slice(before).some((l) => String(l['msg']).startsWith('closing connection')), 2000, `a log line for ${name}`);
    // The bystander connection still works.
    const n = healthyGot.length;
    await healthy.publishAsync('bystander/echo', name, { qos: 1 });
    await waitForCount(healthyGot, n + 1);
    expect(healthyGot[n]!.payload).toBe(name);
  });

  test('a CONNECT with the reserved flag bit set is refused before a session exists', async () => {
    const r = await RawMqtt.open(port, 4);
    r.send(packet(0x10, str('MQTT'), Buffer.from([4, 0x03, 0, 0]), str('reserved')));
    await r.waitClosed();
    expect(r.packets).toEqual([]);
  });

  test('a CONNECT with will QoS 3 is refused', async () => {
    const r = await RawMqtt.open(port, 4);
    r.send(packet(0x10, str('MQTT'), Buffer.from([4, 0x1e, 0, 0]), str('w'), str('t'), str('p')));
    await r.waitClosed();
    expect(r.packets).toEqual([]);
  });

  test('v5: a CONNECT with a will topic containing a wildcard gets CONNACK 0x90', async () => {
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'wt', clean: true, keepalive: 0, will: { topic: 'a/#', payload: Buffer.from('x'), qos: 0, retain: false } });
    expect((await r.next('connack')).reasonCode).toBe(0x90);
    await r.waitClosed();
  });

  test('v5: receive maximum 0 in CONNECT gets CONNACK 0x82', async () => {
    const r = await RawMqtt.open(port, 5);
    const connect = r.encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'rm0', clean: true, keepalive: 0, properties: { receiveMaximum: 1 } });
    connect[connect.indexOf(0x21) + 2] = 0; // receive maximum property (0x21) value 1 -> 0
    r.send(connect);
    expect((await r.next('connack')).reasonCode).toBe(0x82);
    await r.waitClosed();
  });

  test('a password without a user name at 3.1.1 is malformed', async () => {
    const r = await RawMqtt.open(port, 4);
    r.send(packet(0x10, str('MQTT'), Buffer.from([4, 0x42, 0, 0]), str('pw-only'), str('secret')));
    await r.waitClosed();
    expect(r.packets).toEqual([]);
  });

  test('the broker is still fine after all of this', async () => {
    expect((broker.adapters.get('mqtt')?.connectionCount ?? 0) >= 1).toBe(true);
    const c = await connectMqtt(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5 });
    await c.publishAsync('bystander/echo', 'still here', { qos: 2 });
    await waitFor(() => healthyGot.some((m) => m.payload === 'still here'));
    await c.endAsync();
  });
});
