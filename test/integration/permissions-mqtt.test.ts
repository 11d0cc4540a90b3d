import type { Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { collect, connectMqtt, mqttUrl, RawMqtt, waitForCount } from '../helpers/mqtt.js';
import { mgmt, type Mgmt } from '../helpers/management.js';

/**
 * Permissions over MQTT, as RabbitMQ's MQTT plugin enforces them: credentials and vhost access at
 * CONNECT, configure/write/read on the session queue and amq.topic, topic permissions (with
 * `{client_id}`) on subscribe (SUBACK failure) and publish (v5 PUBACK 0x87, v3 disconnect).
 */

let tb: TestBroker;
let api: Mgmt;
let port: number;

/** What a session queue and amq.topic need, and nothing else. */
const MQTT_PERMS = { configure: '^mqtt-subscription-', write: '^mqtt-subscription-|^amq\\.topic$', read: '^mqtt-subscription-|^amq\\.topic$' };

beforeAll(async () => {
  tb = await startTestBroker();
  api = mgmt(tb.broker.ports.http!);
  port = tb.broker.ports.mqtt!;
  await api.put('/users/dev', { password: 'pw', tags: '' });
  await api.put('/permissions/%2F/dev', MQTT_PERMS);
  await api.put('/topic-permissions/%2F/dev', { exchange: 'amq.topic', write: '^sensors\\.{client_id}\\.', read: '^sensors\\.' });
  await api.put('/vhosts/iot', {});
  await api.put('/users/iot-only', { password: 'pw', tags: '' });
  await api.put('/permissions/iot/iot-only', { configure: '.*', write: '.*', read: '.*' });
  await api.put('/users/reader', { password: 'pw', tags: '' });
  await api.put('/permissions/%2F/reader', { ...MQTT_PERMS, write: '^mqtt-subscription-' });
});
afterAll(async () => {
  await tb.stop();
});

async function connack(version: 4 | 5, username: string, password: string): Promise<number> {
  const r = await RawMqtt.open(port, version);
  r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `c-${version}-${username}`, clean: true, keepalive: 0, username, password: Buffer.from(password) } as Packet);
  const ack = await r.next('connack');
  r.end();
  return (version === 5 ? ack.reasonCode : ack.returnCode) ?? -1;
}

describe('CONNECT', () => {
  test('bad credentials: CONNACK 4 (3.1.1) / 0x86 (5)', async () => {
    expect(await connack(4, 'dev', 'wrong')).toBe(4);
    expect(await connack(5, 'dev', 'wrong')).toBe(0x86);
    expect(await connack(4, 'nobody', 'pw')).toBe(4);
  });

  test('no access to the vhost: CONNACK 5 (3.1.1) / 0x87 (5); `vhost:user` selects the vhost', async () => {
    expect(await connack(4, 'iot-only', 'pw')).toBe(5);
    expect(await connack(5, 'iot-only', 'pw')).toBe(0x87);
    expect(await connack(4, 'iot:iot-only', 'pw')).toBe(0);
    expect(await connack(5, 'iot:iot-only', 'pw')).toBe(0);
    expect(await connack(4, 'iot:dev', 'pw')).toBe(5);
  });
});

describe('SUBSCRIBE', () => {
  test('a filter the topic read regex refuses gets a SUBACK failure; others are granted', async () => {
    for (const version of [4, 5] as const) {
      const r = await RawMqtt.connected(port, version, { clientId: `sub-${version}`, username: 'dev', password: Buffer.from('pw') });
      r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'sensors/#', qos: 1 }, { topic: 'alerts/#', qos: 1 }, { topic: '#', qos: 0 }] } as Packet);
      const ack = await r.next('suback');
      expect(ack.granted).toEqual(version === 5 ? [1, 0x87, 0x87] : [1, 0x80, 0x80]);
      r.end();
    }
  });

  test('a user without configure on its session queue cannot subscribe at all', async () => {
    await api.put('/users/noconf', { password: 'pw', tags: '' });
    await api.put('/permissions/%2F/noconf', { configure: '', write: '.*', read: '.*' });
    const r = await RawMqtt.connected(port, 5, { clientId: 'noconf-1', username: 'noconf', password: Buffer.from('pw') });
    r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'a/b', qos: 0 }] } as Packet);
    expect((await r.next('suback')).granted).toEqual([0x87]);
    r.end();
  });
});

describe('PUBLISH', () => {
  test('allowed topics flow; a refused QoS 1 publish gets PUBACK 0x87 in MQTT 5 and the connection stays', async () => {
    const sub = await connectMqtt(mqttUrl(tb), { clientId: 'watcher', username: 'dev', password: 'pw', protocolVersion: 5 });
    const got = collect(sub);
    await sub.subscribeAsync('sensors/#', { qos: 1 });

    const r = await RawMqtt.connected(port, 5, { clientId: 'dev-1', username: 'dev', password: Buffer.from('pw') });
    r.send({ cmd: 'publish', topic: 'sensors/dev-1/temp', payload: Buffer.from('21'), qos: 1, messageId: 1, retain: false, dup: false } as Packet);
    expect((await r.next('puback')).reasonCode ?? 0).toBe(0);
    r.send({ cmd: 'publish', topic: 'sensors/dev-2/temp', payload: Buffer.from('spoofed'), qos: 1, messageId: 2, retain: false, dup: false } as Packet);
    const refused = await r.next('puback');
    expect(refused).toMatchObject({ messageId: 2, reasonCode: 0x87 });
    r.send({ cmd: 'publish', topic: 'sensors/dev-1/hum', payload: Buffer.from('40'), qos: 1, messageId: 3, retain: false, dup: false } as Packet);
    expect((await r.next('puback')).messageId).toBe(3);
    expect(r.isClosed).toBe(false);

    await waitForCount(got, 2);
    expect(got.map((m) => [m.topic, m.payload])).toEqual([
      ['sensors/dev-1/temp', '21'],
      ['sensors/dev-1/hum', '40'],
    ]);
    r.end();
    await sub.endAsync();
  });

  test('MQTT 3.1.1 cannot report a refused publish: the connection is closed', async () => {
    const r = await RawMqtt.connected(port, 4, { clientId: 'dev-3', username: 'dev', password: Buffer.from('pw') });
    r.send({ cmd: 'publish', topic: 'sensors/dev-3/ok', payload: Buffer.from('1'), qos: 1, messageId: 1, retain: false, dup: false } as Packet);
    expect((await r.next('puback')).messageId).toBe(1);
    r.send({ cmd: 'publish', topic: 'sensors/someone-else/x', payload: Buffer.from('2'), qos: 0, retain: false, dup: false } as Packet);
    await r.waitClosed();
  });

  test('without write on amq.topic nothing can be published', async () => {
    const r = await RawMqtt.connected(port, 5, { clientId: 'reader-1', username: 'reader', password: Buffer.from('pw') });
    r.send({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: false, dup: false } as Packet);
    expect(await r.next('puback')).toMatchObject({ messageId: 7, reasonCode: 0x87 });
    r.end();
  });
});

describe('management sees MQTT clients', () => {
  test('connections are listed with protocol and client id, and can be closed', async () => {
    const c = await connectMqtt(mqttUrl(tb), { clientId: 'listed-device', username: 'dev', password: 'pw', protocolVersion: 4 });
    const row = await waitFor(async () => (await api.list('/connections')).body.find((x) => x['client_id'] === 'listed-device'), 3000, 'listed');
    expect(row).toMatchObject({ protocol: 'MQTT 3.1.1', user: 'dev', vhost: '/' });
    const closed = new Promise((resolve) => c.once('close', resolve));
    expect((await api.del(`/connections/${encodeURIComponent(String(row['name']))}`)).status).toBe(204);
    await closed;
    await c.endAsync(true);
  });
});
