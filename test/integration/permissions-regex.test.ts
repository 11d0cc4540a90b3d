import { connect, type ChannelModel } from 'amqplib';
import type { Packet } from 'mqtt-packet';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt } from '../helpers/management.js';
import { RawMqtt } from '../helpers/mqtt.js';
import { RawStomp } from '../helpers/stomp.js';

/**
 * Client-chosen text in permission patterns: `{client_id}`, `{username}` and `{vhost}` are
 * substituted as literal text, patterns run on a linear-time engine, and the names that reach
 * matching are bounded, over real MQTT, AMQP and STOMP connections.
 */

let tb: TestBroker;
let api: Mgmt;
let mqttPort: number;

const MQTT_PERMS = { configure: '^mqtt-subscription-', write: '^mqtt-subscription-|^amq\\.topic$', read: '^mqtt-subscription-|^amq\\.topic$' };
/** v5 PUBACK for an accepted publish that no subscription matched. */
const NO_SUBSCRIBERS = 0x10;
/** A user name made of regex operators. */
const OPS = 'ops|.*';

beforeAll(async () => {
  tb = await startTestBroker();
  api = mgmt(tb.broker.ports.http!);
  mqttPort = tb.broker.ports.mqtt!;
  expect((await api.put('/users/dev', { password: 'pw', tags: '' })).status).toBe(201);
  expect((await api.put('/permissions/%2F/dev', MQTT_PERMS)).status).toBe(201);
  expect((await api.put('/topic-permissions/%2F/dev', { exchange: 'amq.topic', write: '^sensors\\.{client_id}\\.', read: '.*' })).status).toBe(201);
  expect((await api.put(`/users/${encodeURIComponent(OPS)}`, { password: 'pw', tags: '' })).status).toBe(201);
  expect((await api.put(`/permissions/%2F/${encodeURIComponent(OPS)}`, { configure: '.*', write: '.*', read: '.*' })).status).toBe(201);
  expect((await api.put(`/topic-permissions/%2F/${encodeURIComponent(OPS)}`, { exchange: 'amq.topic', write: '^{username}\\.', read: '.*' })).status).toBe(201);
});
afterAll(async () => {
  await tb.stop();
});

/** Sends a QoS 1 publish and returns the PUBACK reason code and how long the answer took. */
async function publishTimed(r: RawMqtt, topic: string, messageId: number): Promise<{ reason: number; ms: number }> {
  const t0 = performance.now();
  r.send({ cmd: 'publish', topic, payload: Buffer.from('x'), qos: 1, messageId, retain: false, dup: false } as Packet);
  const ack = await r.next('puback');
  expect(ack.messageId).toBe(messageId);
  return { reason: ack.reasonCode ?? 0, ms: performance.now() - t0 };
}

describe('MQTT client ids in topic permissions', () => {
  test('a client id with regex operators does not widen its permission (no authorisation bypass)', async () => {
    const r = await RawMqtt.connected(mqttPort, 5, { clientId: 'dave|.*', username: 'dev', password: Buffer.from('pw') });
    expect((await publishTimed(r, 'other/x', 1)).reason).toBe(0x87);
    expect((await publishTimed(r, 'sensors/dave/x', 2)).reason).toBe(0x87);
    // the client id is a literal: its own topic is still allowed
    expect((await publishTimed(r, 'sensors/dave|.*/x', 3)).reason).toBe(NO_SUBSCRIBERS);
    expect(r.isClosed).toBe(false);
    r.end();
  });

  test('a backtracking client id is answered quickly and does not stall other clients', async () => {
    const evil = await RawMqtt.connected(mqttPort, 5, { clientId: 'dave(.*.*.*)*X', username: 'dev', password: Buffer.from('pw') });
    const bystander = await RawMqtt.connected(mqttPort, 5, { clientId: 'calm', username: 'dev', password: Buffer.from('pw') });
    const key = `sensors/dave${'a'.repeat(200)}`;
    for (let i = 1; i <= 5; i++) {
      const { reason, ms } = await publishTimed(evil, key, i);
      expect(reason).toBe(0x87);
      expect(ms).toBeLessThan(500);
    }
    const { reason, ms } = await publishTimed(bystander, 'sensors/calm/t', 1);
    expect(reason).toBe(NO_SUBSCRIBERS);
    expect(ms).toBeLessThan(500);
    evil.end();
    bystander.end();
  });

  test('a client id longer than 237 bytes is refused: CONNACK 0x85 (5) / 2 (3.1.1)', async () => {
    for (const version of [4, 5] as const) {
      const r = await RawMqtt.open(mqttPort, version);
      r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: 'c'.repeat(238), clean: true, keepalive: 0, username: 'dev', password: Buffer.from('pw') } as Packet);
      const ack = await r.next('connack');
      expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(version === 5 ? 0x85 : 2);
      await r.waitClosed();
    }
  });

  test('a user name longer than 255 bytes is refused at CONNECT: 0x86 (5) / 4 (3.1.1)', async () => {
    for (const version of [4, 5] as const) {
      const r = await RawMqtt.open(mqttPort, version);
      r.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `long-user-${version}`, clean: true, keepalive: 0, username: 'u'.repeat(300), password: Buffer.from('pw') } as Packet);
      const ack = await r.next('connack');
      expect(version === 5 ? ack.reasonCode : ack.returnCode).toBe(version === 5 ? 0x86 : 4);
      await r.waitClosed();
    }
  });
});

describe('AMQP user names in topic permissions', () => {
  let c: ChannelModel;
  beforeAll(async () => {
    c = await connect(`amqp://${encodeURIComponent(OPS)}:pw@127.0.0.1:${tb.broker.ports.amqp}`);
  });
  afterAll(async () => {
    await c.close();
  });

  test('{username} is a literal: a user named `ops|.*` may publish only under `ops|.*.`', async () => {
    const ok = await c.createConfirmChannel();
    ok.publish('amq.topic', `${OPS}.x`, Buffer.from('allowed'));
    await ok.waitForConfirms();
    await ok.close();

    const ch = await c.createChannel();
    const closed = new Promise<Error>((resolve) => ch.once('error', resolve));
    ch.publish('amq.topic', 'other.x', Buffer.from('refused'));
    expect((await closed).message).toMatch(/ACCESS_REFUSED - write access to topic 'other\.x' in exchange 'amq\.topic'/);
  });

  test('a login with a user name longer than 255 bytes is ACCESS_REFUSED', async () => {
    await expect(connect(`amqp://${'u'.repeat(300)}:pw@127.0.0.1:${tb.broker.ports.amqp}`)).rejects.toThrow(/ACCESS.REFUSED|403/);
  });
});

describe('STOMP logins', () => {
  test('a login longer than 255 bytes gets an ERROR and the connection closes', async () => {
    const c = await RawStomp.open(tb.broker.ports.stomp!);
    c.send('CONNECT', { 'accept-version': '1.2', host: '/', login: 'u'.repeat(300), passcode: 'pw' });
    const err = await c.expectError('Bad CONNECT');
    expect(err.body.toString()).toMatch(/Access refused/);
  });
});

describe('setting patterns the engine cannot run', () => {
  test('lookarounds, backreferences and oversized repetitions are refused with 400 and a reason', async () => {
    const look = await api.put('/permissions/%2F/dev', { ...MQTT_PERMS, write: '^(?!secret)' });
    expect(look.status).toBe(400);
    expect(String(look.body['reason'])).toMatch(/invalid regular expression for write '\^\(\?!secret\)'.*lookarounds are not supported/);
    const back = await api.put('/topic-permissions/%2F/dev', { exchange: 'amq.topic', write: '(a)\\1', read: '' });
    expect(back.status).toBe(400);
    expect(String(back.body['reason'])).toMatch(/backreferences are not supported/);
    const big = await api.put('/policies/%2F/big', { pattern: '(a|b){1,1000}'.repeat(20), definition: { 'max-length': 1 } });
    expect(big.status).toBe(400);
    expect(String(big.body['reason'])).toMatch(/too complex/);
    // the earlier permission is unchanged
    expect((await api.get('/permissions/%2F/dev')).body).toMatchObject(MQTT_PERMS);
  });

  test('a policy with a backtracking pattern is matched against client-chosen queue names in linear time', async () => {
    expect((await api.put('/policies/%2F/nested', { pattern: '^(a+)+$', definition: { 'max-length': 5 }, 'apply-to': 'queues' })).status).toBe(201);
    const c = await connect(tb.amqpUrl);
    const ch = await c.createChannel();
    const t0 = performance.now();
    await ch.assertQueue(`${'a'.repeat(200)}!`, { durable: false, autoDelete: true });
    await ch.assertQueue('aaaa', { durable: false, autoDelete: true });
    expect(performance.now() - t0).toBeLessThan(500);
    const row = (await api.get('/queues/%2F/aaaa')).body;
    expect(row['policy']).toBe('nested');
    expect((await api.get(`/queues/%2F/${'a'.repeat(200)}!`)).body['policy']).toBeNull();
    await c.close();
    expect((await api.del('/policies/%2F/nested')).status).toBe(204);
  });
});
