import { connect as netConnect } from 'node:net';
import { generate, parser as createParser, type Packet } from 'mqtt-packet';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;

beforeAll(async () => {
  tb = await startTestBroker();
});
afterAll(async () => {
  await tb.stop();
});

/** One whole conversation, as the bytes a v5 client would send. */
function conversation(clientId: string): Buffer {
  const packets: Packet[] = [
    { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 30, properties: { topicAliasMaximum: 0 } },
    { cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `frag/${clientId}/#`, qos: 2, nl: false, rap: false, rh: 0 }] },
    { cmd: 'publish', topic: `frag/${clientId}/a`, payload: Buffer.from('zero'), qos: 0, dup: false, retain: false },
    { cmd: 'publish', topic: `frag/${clientId}/b`, payload: Buffer.alloc(300, 0x62), qos: 1, messageId: 2, dup: false, retain: false, properties: { contentType: 'x/y' } },
    { cmd: 'publish', topic: `frag/${clientId}/c`, payload: Buffer.from('two'), qos: 2, messageId: 3, dup: false, retain: false },
    { cmd: 'pubrel', messageId: 3, reasonCode: 0 },
    { cmd: 'pingreq' },
  ];
  return Buffer.concat(packets.map((p) => generate(p, { protocolVersion: 5 })));
}

function summary(received: Packet[]): string[] {
  return received
    .map((p) => {
      switch (p.cmd) {
        case 'publish':
          return `publish ${p.topic.split('/').pop()} q${p.qos} ${p.payload.length}`;
        case 'suback':
          return `suback ${JSON.stringify(p.granted)}`;
        case 'puback':
        case 'pubrec':
        case 'pubcomp':
          return `${p.cmd} ${p.messageId}`;
        case 'connack':
          return `connack ${p.reasonCode}`;
        default:
          return p.cmd;
      }
    })
    .sort();
}

const EXPECTED = ['connack 0', 'pingresp', 'puback 2', 'pubcomp 3', 'publish a q0 4', 'publish b q1 300', 'publish c q2 3', 'pubrec 3', 'suback [2]'].sort();

const yieldToIo = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

test.each([1, 2, 3, 5, 7, 13, 64])('TCP: the stream split every %i bytes is read exactly like the whole stream', async (step) => {
  const wire = conversation(`tcp${step}`);
  const socket = netConnect({ port: tb.broker.ports.mqtt!, host: '127.0.0.1' });
  socket.setNoDelay(true);
  const received: Packet[] = [];
  const p = createParser({ protocolVersion: 5 });
  p.on('packet', (x: Packet) => received.push(x));
  socket.on('data', (b: Buffer) => p.parse(b));
  await new Promise((r) => socket.once('connect', r));
  for (let i = 0; i < wire.length; i += step) {
    socket.write(wire.subarray(i, i + step));
    await yieldToIo();
  }
  await waitFor(() => received.length >= EXPECTED.length, 5000, `${EXPECTED.length} packets (have ${received.length})`);
  expect(summary(received)).toEqual(EXPECTED);
  socket.destroy();
});

test.each([1, 3, 13])('WebSocket: packets split across WebSocket messages every %i bytes', async (step) => {
  const wire = conversation(`ws${step}`);
  const ws = new WebSocket(`ws://127.0.0.1:${tb.broker.ports.http}/ws`, ['mqtt']);
  const received: Packet[] = [];
  const p = createParser({ protocolVersion: 5 });
  p.on('packet', (x: Packet) => received.push(x));
  ws.on('message', (b: Buffer) => p.parse(b));
  await new Promise((r) => ws.once('open', r));
  expect(ws.protocol).toBe('mqtt');
  for (let i = 0; i < wire.length; i += step) ws.send(wire.subarray(i, i + step));
  await waitFor(() => received.length >= EXPECTED.length, 5000, `${EXPECTED.length} packets (have ${received.length})`);
  expect(summary(received)).toEqual(EXPECTED);
  ws.close();
});
