import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker } from '../../src/broker.js';
import { ConfigError, resolveOptions } from '../../src/config.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawMqtt, collect, connectCollecting, connectMqtt, mqttUrl, settle, waitForCount } from '../helpers/mqtt.js';

/** A QoS 2 PUBLISH with packet id `id` (the raw client never sends PUBREL unless told to). */
function qos2(id: number, topic = 'flow/q2'): Parameters<RawMqtt['send']>[0] {
  return { cmd: 'publish', topic, payload: Buffer.from(`m${id}`), qos: 2, messageId: id, dup: false, retain: false };
}

describe('MQTT 5 Receive Maximum (server side, --mqtt-receive-maximum 3)', () => {
  let tb: TestBroker;
  let port: number;
  let url: string;

  beforeAll(async () => {
    tb = await startTestBroker({ mqttReceiveMaximum: 3 });
    port = tb.broker.ports.mqtt!;
    url = mqttUrl(tb);
  });
  afterAll(async () => {
    await tb.stop();
  });

  test('CONNACK announces the configured Receive Maximum', async () => {
    const { client, connack } = await connectCollecting(url, { protocolVersion: 5 });
    expect(connack.properties?.receiveMaximum).toBe(3);
    await client.endAsync();
  });

  test('a fourth unacknowledged QoS 2 PUBLISH gets DISCONNECT 0x93 and the socket closes', async () => {
    const r = await RawMqtt.connected(port, 5);
    for (let id = 1; id <= 3; id++) r.send(qos2(id));
    for (let id = 1; id <= 3; id++) expect((await r.next('pubrec')).messageId).toBe(id);
    r.send(qos2(4));
    const d = await r.next('disconnect');
    expect(d.reasonCode).toBe(0x93);
    expect(d.properties?.reasonString).toContain('receive maximum');
    await r.waitClosed();
  });

  test('PUBREL/PUBCOMP frees quota: the next QoS 2 PUBLISH is accepted', async () => {
    const r = await RawMqtt.connected(port, 5);
    for (let id = 1; id <= 3; id++) r.send(qos2(id));
    for (let id = 1; id <= 3; id++) await r.next('pubrec');
    r.send({ cmd: 'pubrel', messageId: 2 });
    expect((await r.next('pubcomp')).messageId).toBe(2);
    r.send(qos2(5));
    expect((await r.next('pubrec')).messageId).toBe(5);
    // A resent PUBLISH of an id still awaiting PUBREL is no new publication: no quota used.
    r.send({ ...qos2(1), dup: true } as Parameters<RawMqtt['send']>[0]);
    expect((await r.next('pubrec')).messageId).toBe(1);
    await settle();
    expect(r.isClosed).toBe(false);
    expect(r.packets.find((p) => p.cmd === 'disconnect')).toBeUndefined();
    r.end();
  });

  test('QoS 2 ids a persistent session kept from its last connection do not count: the quota starts afresh', async () => {
    const connect = { clientId: 'flow-q2-resume', clean: false, properties: { sessionExpiryInterval: 60 } };
    const first = await RawMqtt.connected(port, 5, connect);
    for (let id = 1; id <= 3; id++) first.send(qos2(id));
    for (let id = 1; id <= 3; id++) await first.next('pubrec');
    first.end();
    await first.closed;
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, keepalive: 0, ...connect });
    expect((await r.next('connack')).sessionPresent).toBe(true);
    for (let id = 10; id <= 12; id++) r.send(qos2(id));
    for (let id = 10; id <= 12; id++) expect((await r.next('pubrec')).messageId).toBe(id);
    r.send(qos2(13));
    expect((await r.next('disconnect')).reasonCode).toBe(0x93);
    await r.waitClosed();
    const end = await connectMqtt(url, { protocolVersion: 5, clientId: 'flow-q2-resume', clean: true });
    await end.endAsync();
  });

  test('QoS 1 PUBLISHes whose PUBACK waits for the store count too', async () => {
    // A persistent subscriber: its durable queue makes each persistent QoS 1 publish wait for the disk.
    const sub = await connectMqtt(url, { protocolVersion: 5, clientId: 'flow-durable-sub', clean: false, properties: { sessionExpiryInterval: 60 } });
    await sub.subscribeAsync('flow/q1', { qos: 1 });
    const r = await RawMqtt.connected(port, 5);
    const burst = [];
    for (let id = 1; id <= 6; id++) burst.push(r.encode({ cmd: 'publish', topic: 'flow/q1', payload: Buffer.from(`m${id}`), qos: 1, messageId: id, dup: false, retain: false }));
    r.send(Buffer.concat(burst)); // one chunk: all six are read before any write to the disk completes
    const d = await r.next('disconnect');
    expect(d.reasonCode).toBe(0x93);
    await r.waitClosed();
    await sub.endAsync();
    const clean = await connectMqtt(url, { protocolVersion: 5, clientId: 'flow-durable-sub', clean: true });
    await clean.endAsync();
  });

  test('a client that waits for its acknowledgements stays connected (mqtt.js)', async () => {
    const sub = await connectMqtt(url, { protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('flow/ok', { qos: 2 });
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    for (let i = 0; i < 10; i++) await pub.publishAsync('flow/ok', `m${i}`, { qos: (1 + (i % 2)) as 1 | 2 });
    await waitForCount(got, 10);
    expect(pub.connected).toBe(true);
    await pub.endAsync();
    await sub.endAsync();
  });

  test('3.1.1 clients have no Receive Maximum: more unacknowledged QoS 2 PUBLISHes are fine', async () => {
    const r = await RawMqtt.connected(port, 4);
    for (let id = 1; id <= 6; id++) r.send(qos2(id));
    for (let id = 1; id <= 6; id++) await r.next('pubrec');
    await settle();
    expect(r.isClosed).toBe(false);
    r.end();
  });
});

describe("the client's Receive Maximum bounds deliveries in flight", () => {
  let tb: TestBroker;
  let port: number;
  let url: string;

  beforeAll(async () => {
    tb = await startTestBroker();
    port = tb.broker.ports.mqtt!;
    url = mqttUrl(tb);
  });
  afterAll(async () => {
    await tb.stop();
  });

  test('the default Receive Maximum is 1024', async () => {
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'flow-default', clean: true, keepalive: 0 });
    const ack = await r.next('connack');
    expect(ack.properties?.receiveMaximum).toBe(1024);
    expect(ack.properties?.serverKeepAlive).toBeUndefined();
    r.end();
  });

  test('receive maximum 2: two QoS 1 PUBLISHes in flight, the third after a PUBACK', async () => {
    const r = await RawMqtt.connected(port, 5, { properties: { receiveMaximum: 2 } });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flow/out', qos: 1, nl: false, rap: false, rh: 0 }] });
    await r.next('suback');
    const pub = await connectMqtt(url, { protocolVersion: 5 });
    for (let i = 0; i < 5; i++) await pub.publishAsync('flow/out', `m${i}`, { qos: 1 });
    await waitFor(() => r.packets.filter((p) => p.cmd === 'publish').length >= 2, 3000, 'two deliveries');
    await settle(300);
    const first = r.packets.filter((p) => p.cmd === 'publish');
    expect(first).toHaveLength(2);
    const one = await r.next('publish');
    r.send({ cmd: 'puback', messageId: one.messageId });
    await waitFor(() => r.packets.filter((p) => p.cmd === 'publish').length >= 2, 3000, 'the third delivery');
    await settle(300);
    expect(r.packets.filter((p) => p.cmd === 'publish')).toHaveLength(2);
    expect(r.packets.filter((p) => p.cmd === 'publish').map((p) => (p.cmd === 'publish' ? p.payload.toString() : ''))).toEqual(['m1', 'm2']);
    r.end();
    await pub.endAsync();
  });
});

describe('--mqtt-max-keepalive 2', () => {
  let tb: TestBroker;
  let port: number;
  let url: string;

  beforeAll(async () => {
    tb = await startTestBroker({ mqttMaxKeepalive: 2 });
    port = tb.broker.ports.mqtt!;
    url = mqttUrl(tb);
  });
  afterAll(async () => {
    await tb.stop();
  });

  test.each([
    [60, 2],
    [0, 2],
    [3, 2],
    [2, undefined],
    [1, undefined],
  ])('v5 keep-alive %i: Server Keep Alive %s', async (asked, told) => {
    const r = await RawMqtt.open(port, 5);
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: `flow-ka-${asked}`, clean: true, keepalive: asked });
    const ack = await r.next('connack');
    expect(ack.reasonCode).toBe(0);
    expect(ack.properties?.serverKeepAlive).toBe(told);
    r.end();
  });

  test('a v5 client that asked for no keep-alive is held to the cap: DISCONNECT 0x8D after 1.5 x 2 s of silence', async () => {
    const r = await RawMqtt.open(port, 5);
    const t0 = Date.now();
    r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'flow-ka-silent', clean: true, keepalive: 0 });
    await r.next('connack');
    expect((await r.next('disconnect', 6000)).reasonCode).toBe(0x8d);
    await r.waitClosed();
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(2900);
    expect(took).toBeLessThan(6000);
  });

  test('mqtt.js adopts the Server Keep Alive and stays connected past the cap', async () => {
    const { client, connack } = await connectCollecting(url, { protocolVersion: 5, keepalive: 60 });
    expect(connack.properties?.serverKeepAlive).toBe(2);
    let pings = 0;
    client.on('packetreceive', (p) => {
      if (p.cmd === 'pingresp') pings++;
    });
    await waitFor(() => pings >= 2, 8000, 'two keep-alive round trips');
    expect(client.connected).toBe(true);
    await client.endAsync();
  });

  test.each([
    [4, 60, 2],
    [4, 0, 2],
    [3, 60, 2],
    [4, 2, 0],
  ])('MQTT level %i keep-alive %i: CONNACK return code %i (as Mosquitto)', async (level, asked, code) => {
    const r = await RawMqtt.open(port, level as 3 | 4);
    r.send({ cmd: 'connect', protocolId: level === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: level as 3 | 4, clientId: `flow-ka3-${level}-${asked}`, clean: true, keepalive: asked });
    expect((await r.next('connack')).returnCode).toBe(code);
    if (code !== 0) await r.waitClosed();
    r.end();
  });
});

describe('options', () => {
  test('flag, environment and config keys', () => {
    const o = resolveOptions({ mqttMaxKeepalive: '30' }, { WARREN_MQTT_RECEIVE_MAXIMUM: '100' });
    expect(o.mqttMaxKeepalive).toBe(30);
    expect(o.mqttReceiveMaximum).toBe(100);
    const d = resolveOptions({}, {});
    expect(d.mqttReceiveMaximum).toBe(1024);
    expect(d.mqttMaxKeepalive).toBe(0);
  });

  test.each([
    [{ mqttReceiveMaximum: 0 }, 'mqtt-receive-maximum'],
    [{ mqttReceiveMaximum: 65536 }, 'mqtt-receive-maximum'],
    [{ mqttMaxKeepalive: 65536 }, 'mqtt-max-keepalive'],
  ])('%o is refused', async (opts, name) => {
    const err: unknown = await startBroker({ mqttPort: 0, bind: '127.0.0.1', logLevel: 'silent', ...opts }).then(
      async (b) => {
        await b.stop();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).option).toBe(name);
  });
});
