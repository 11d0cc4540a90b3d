import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MqttAdapter } from '../../adapters/mqtt/index.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawMqtt, collect, connectBytes, connectMqtt, mqttUrl, waitForCount, type Transport } from '../helpers/mqtt.js';

let tb: TestBroker;
let port: number;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.mqtt!;
  const core = tb.broker.core;
  core.addVhost('iot');
  core.auth.addUser('dev', 'secret');
  core.auth.setPermission('iot', 'dev', { configure: '.*', write: '.*', read: '.*' });
  core.auth.addUser('nobody', 'secret'); // no permissions anywhere
});
afterAll(async () => {
  await tb.stop();
});

const VERSIONS = [
  [3, 'MQIsdp', 'MQTT 3.1'],
  [4, 'MQTT', 'MQTT 3.1.1'],
  [5, 'MQTT', 'MQTT 5.0'],
] as const;

function connectionFor(clientId: string) {
  return [...tb.broker.core.connections].find((c) => c.info.clientId === clientId);
}

describe('protocol levels and transports', () => {
  const cases = VERSIONS.flatMap(([v, id, name]) => (['tcp', 'ws', 'ws-mqtt'] as Transport[]).map((t) => [v, id, name, t] as const));
  test.each(cases)('MQTT level %i (%s) over %s: connects, appears as %s, publishes and receives', async (v, protocolId, name, transport) => {
    const clientId = `lvl${v}-${transport}`;
    const c = await connectMqtt(mqttUrl(tb, transport), { protocolVersion: v, protocolId, clientId });
    const conn = connectionFor(clientId);
    expect(conn?.info.protocol).toBe(name);
    expect([conn?.info.user, conn?.info.vhost]).toEqual(['guest', '/']);
    const got = collect(c);
    await c.subscribeAsync(`t/${clientId}`, { qos: 1 });
    await c.publishAsync(`t/${clientId}`, 'ping', { qos: 1 });
    await waitForCount(got, 1);
    expect([got[0]!.topic, got[0]!.payload]).toEqual([`t/${clientId}`, 'ping']);
    await c.endAsync();
    await waitFor(() => connectionFor(clientId) === undefined, 3000, 'connection to leave core.connections');
  });
});

describe('CONNACK codes', () => {
  test('an unknown protocol level gets CONNACK 0x01 (unacceptable protocol version) and is closed', async () => {
    const r = await RawMqtt.open(port, 4);
    const connect = r.encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'x', clean: true, keepalive: 0 });
    connect[8] = 6; // protocol level byte
    r.send(connect);
    expect((await r.next('connack')).returnCode).toBe(1);
    await r.waitClosed();
  });

  test('a wrong protocol name gets CONNACK 0x01 and is closed', async () => {
    const r = await RawMqtt.open(port, 4);
    const connect = r.encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'x', clean: true, keepalive: 0 });
    connect.write('MQTX', 4, 'latin1');
    r.send(connect);
    expect((await r.next('connack')).returnCode).toBe(1);
    await r.waitClosed();
  });

  test('level 5 with a wrong protocol name gets v5 CONNACK 0x84 (unsupported protocol version)', async () => {
    const r = await RawMqtt.open(port, 5);
    const connect = r.encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'x', clean: true, keepalive: 0 });
    connect.write('MQIs', 4, 'latin1');
    r.send(connect);
    expect((await r.next('connack')).reasonCode).toBe(0x84);
    await r.waitClosed();
  });

  test.each([
    [3, true, 2],
    [4, false, 2],
  ] as const)('an empty client id at level %i with clean=%s is rejected (return code %i)', async (v, clean, code) => {
    const r = await RawMqtt.open(port, v);
    r.send(connectBytes(v, '', clean));
    expect((await r.next('connack')).returnCode).toBe(code);
    await r.waitClosed();
  });

  test('an empty client id at 3.1.1 with clean session is accepted with a generated id', async () => {
    const r = await RawMqtt.connected(port, 4, { clientId: '' });
    await waitFor(() => [...tb.broker.core.connections].some((c) => String(c.info.clientId).startsWith('warren-')));
    r.end();
  });

  test('v5: an empty client id gets an assigned client identifier', async () => {
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: '', clean: true, keepalive: 0 });
    const ack = await r.next('connack');
    expect(ack.reasonCode).toBe(0);
    expect(ack.properties?.assignedClientIdentifier).toMatch(/^warren-/);
    r.end();
  });

  test.each([
    [4, 2],
    [5, 0x85],
  ] as const)('level %i: a client id too long for a queue name is rejected with %i', async (v, code) => {
    const r = await RawMqtt.open(port, v);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clientId: 'x'.repeat(300), clean: true, keepalive: 0 });
    const ack = await r.next('connack');
    expect(v === 5 ? ack.reasonCode : ack.returnCode).toBe(code);
    await r.waitClosed();
  });

  test.each([
    [4, 'guest', 'wrong', 4],
    [5, 'guest', 'wrong', 0x86],
    [4, 'nobody-here', 'x', 4],
    [4, 'nobody', 'secret', 5],
    [5, 'nobody', 'secret', 0x87],
    [4, 'missing-vhost:dev', 'secret', 5],
    [5, 'iot:dev', 'wrong', 0x86],
  ] as const)('level %i user %s password %s -> code %i', async (v, username, password, code) => {
    const r = await RawMqtt.open(port, v);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clientId: 'auth', clean: true, keepalive: 0, username, password: Buffer.from(password) });
    const ack = await r.next('connack');
    expect(v === 5 ? ack.reasonCode : ack.returnCode).toBe(code);
    await r.waitClosed();
  });

  test('username vhost:user selects the vhost', async () => {
    const c = await connectMqtt(mqttUrl(tb), { clientId: 'in-iot', username: 'iot:dev', password: 'secret' });
    const conn = connectionFor('in-iot');
    expect([conn?.info.vhost, conn?.info.user]).toEqual(['iot', 'dev']);
    const got = collect(c);
    await c.subscribeAsync('x/y', { qos: 0 });
    await c.publishAsync('x/y', 'in iot', { qos: 1 });
    await waitForCount(got, 1);
    expect(tb.broker.core.vhosts.get('iot')?.queues.has('mqtt-subscription-in-iot')).toBe(true);
    expect(tb.broker.core.vhosts.get('/')?.queues.has('mqtt-subscription-in-iot')).toBe(false);
    await c.endAsync();
  });

  test('v5: an authentication method is refused with 0x8C', async () => {
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'am', clean: true, keepalive: 0, properties: { authenticationMethod: 'SCRAM-SHA-1' } });
    expect((await r.next('connack')).reasonCode).toBe(0x8c);
    await r.waitClosed();
  });

  test('v5 CONNACK announces the server limits and features', async () => {
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'caps', clean: true, keepalive: 0 });
    const ack = await r.next('connack');
    expect(ack.properties).toMatchObject({
      maximumPacketSize: 16 * 1024 * 1024,
      topicAliasMaximum: 64,
      retainAvailable: true,
      wildcardSubscriptionAvailable: true,
      subscriptionIdentifiersAvailable: true,
      sharedSubscriptionAvailable: true,
    });
    r.end();
  });
});

describe('connection rules', () => {
  test('the first packet must be CONNECT: anything else closes without CONNACK', async () => {
    const r = await RawMqtt.open(port, 4);
    r.send({ cmd: 'pingreq' });
    await r.waitClosed();
    expect(r.packets).toEqual([]);
  });

  test('a second CONNECT is a protocol error (v5: DISCONNECT 0x82)', async () => {
    const r = await RawMqtt.connected(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'again', clean: true, keepalive: 0 });
    expect((await r.next('disconnect')).reasonCode).toBe(0x82);
    await r.waitClosed();
  });

  test('a second CONNECT at 3.1.1 closes the connection', async () => {
    const r = await RawMqtt.connected(port, 4);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'again', clean: true, keepalive: 0 });
    await r.waitClosed();
  });

  test('client-id takeover closes the older connection (v5: DISCONNECT 0x8E)', async () => {
    const old = await RawMqtt.connected(port, 5, { clientId: 'twin' });
    const fresh = await RawMqtt.connected(port, 5, { clientId: 'twin' });
    expect((await old.next('disconnect')).reasonCode).toBe(0x8e);
    await old.waitClosed();
    fresh.send({ cmd: 'pingreq' });
    await fresh.next('pingresp');
    expect([...tb.broker.core.connections].filter((c) => c.info.clientId === 'twin')).toHaveLength(1);
    fresh.end();
  });

  test('takeover keeps working across repeated clean connections (a vhost with one session)', async () => {
    const opts = { clientId: 'solo', username: 'iot:dev', password: Buffer.from('secret') };
    const a = await RawMqtt.connected(port, 4, opts);
    const b = await RawMqtt.connected(port, 4, opts);
    await a.waitClosed();
    const c = await RawMqtt.connected(port, 4, opts);
    await b.waitClosed();
    expect([...tb.broker.core.connections].filter((x) => x.info.clientId === 'solo')).toHaveLength(1);
    expect((tb.broker.adapters.get('mqtt') as MqttAdapter).sessionCount).toBeGreaterThanOrEqual(1);
    c.end();
    await c.closed;
  });

  test('client-id takeover at 3.1.1 closes the older socket', async () => {
    const old = await RawMqtt.connected(port, 4, { clientId: 'twin4' });
    const fresh = await RawMqtt.connected(port, 4, { clientId: 'twin4' });
    await old.waitClosed();
    expect(old.packets.filter((p) => p.cmd === 'disconnect')).toEqual([]);
    fresh.send({ cmd: 'pingreq' });
    await fresh.next('pingresp');
    fresh.end();
  });

  test('keep-alive: a silent client is closed after 1.5 x the interval (v5: DISCONNECT 0x8D)', async () => {
    const r = await RawMqtt.connected(port, 5, { keepalive: 1 });
    const start = Date.now();
    expect((await r.next('disconnect', 4000)).reasonCode).toBe(0x8d);
    const elapsed = Date.now() - start;
    expect(elapsed).toBeGreaterThanOrEqual(1400);
    expect(elapsed).toBeLessThan(3000);
    await r.waitClosed();
  });

  test('keep-alive: a client that sends PINGREQ stays connected', async () => {
    const r = await RawMqtt.connected(port, 4, { keepalive: 1 });
    for (let i = 0; i < 4; i++) {
      await new Promise((res) => setTimeout(res, 450));
      r.send({ cmd: 'pingreq' });
      await r.next('pingresp');
    }
    expect(r.isClosed).toBe(false);
    r.end();
  });

  test('closing a connection through the core (management) sends v5 DISCONNECT 0x98', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'admin-closed' });
    connectionFor('admin-closed')!.handle.forceClose(320, 'closed by an operator');
    const d = await r.next('disconnect');
    expect([d.reasonCode, d.properties?.reasonString]).toEqual([0x98, 'closed by an operator']);
    await r.waitClosed();
    expect(connectionFor('admin-closed')).toBeUndefined();
  });

  test('a client DISCONNECT closes the connection and removes it from the core', async () => {
    const r = await RawMqtt.connected(port, 4, { clientId: 'bye' });
    expect(connectionFor('bye')).toBeDefined();
    r.send({ cmd: 'disconnect' });
    await r.waitClosed();
    await waitFor(() => connectionFor('bye') === undefined);
  });
});

test('broker shutdown sends v5 DISCONNECT 0x8B (server shutting down)', async () => {
  const other = await startTestBroker();
  const r = await RawMqtt.connected(other.broker.ports.mqtt!, 5);
  const v4 = await RawMqtt.connected(other.broker.ports.mqtt!, 4);
  await other.stop();
  expect((await r.next('disconnect')).reasonCode).toBe(0x8b);
  await r.waitClosed();
  await v4.waitClosed();
  expect((other.broker.adapters.get('mqtt') as MqttAdapter).connectionCount).toBe(0);
});
