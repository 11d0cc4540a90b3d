import { connect as tlsConnect } from 'node:tls';
import amqplib from 'amqplib';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BrokerOptions } from '../../src/config.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { makeTestPki, tlsOptions, type TestPki } from '../helpers/tls.js';

let pki: TestPki;
let tb: TestBroker;
let device: ReturnType<TestPki['client']>;

const ALL = { configure: '.*', write: '.*', read: '.*' };

beforeAll(async () => {
  pki = makeTestPki();
  device = pki.client('device-1');
  tb = await startTestBroker(tlsOptions(pki, { tlsVerifyPeer: true, tlsCertLogin: true }) as Partial<BrokerOptions>);
  // A certificate user needs no password: it cannot log in with one at all.
  const auth = tb.broker.core.auth;
  auth.putUser('device-1', { passwordHash: '' });
  auth.setPermission('/', 'device-1', ALL);
  auth.putUser('device-2.devices.example', { passwordHash: '' });
  auth.setPermission('/', 'device-2.devices.example', ALL);
}, 30_000);

afterAll(async () => {
  await tb?.stop();
  pki?.cleanup();
});

const usersOf = (protocol: string): string[] =>
  [...tb.broker.core.connections].filter((c) => c.info.protocol.startsWith(protocol)).map((c) => c.user);

describe('certificate login', () => {
  test('AMQP mechanism EXTERNAL logs in as the certificate CN (amqplib credentials.external())', async () => {
    const c = await amqplib.connect(`amqps://127.0.0.1:${tb.broker.ports.amqps}`, {
      ca: [pki.ca],
      cert: device.cert,
      key: device.key,
      credentials: amqplib.credentials.external(),
    });
    const ch = await c.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    ch.sendToQueue(q.queue, Buffer.from('by certificate'));
    const m = await waitFor(async () => (await ch.get(q.queue, { noAck: true })) || undefined);
    expect(m.content.toString()).toBe('by certificate');
    expect(usersOf('AMQP')).toContain('device-1');
    await c.close();
  });

  test('EXTERNAL is not offered to a client without a certificate', async () => {
    await expect(
      amqplib.connect(`amqps://127.0.0.1:${tb.broker.ports.amqps}`, { ca: [pki.ca], credentials: amqplib.credentials.external() }),
    ).rejects.toThrow(/EXTERNAL/);
  });

  test('a password login still works on the same port without a certificate', async () => {
    const c = await amqplib.connect(`amqps://guest:guest@127.0.0.1:${tb.broker.ports.amqps}`, { ca: [pki.ca] });
    await c.close();
  });

  test('an expired client certificate is refused in the handshake', async () => {
    const expired = pki.expiredClient('device-1');
    await expect(
      amqplib.connect(`amqps://127.0.0.1:${tb.broker.ports.amqps}`, { ca: [pki.ca], ...expired, credentials: amqplib.credentials.external() }),
    ).rejects.toThrow();
    expect(await mqttOutcome(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, ...expired })).toBe('closed');
    expect(usersOf('MQTT')).not.toContain('device-1');
  });

  test('a client certificate from another CA is refused', async () => {
    const wrong = pki.wrongCaClient('device-1');
    expect(await mqttOutcome(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, ...wrong })).toBe('closed');
    await expect(
      amqplib.connect(`amqps://127.0.0.1:${tb.broker.ports.amqps}`, { ca: [pki.ca], ...wrong, credentials: amqplib.credentials.external() }),
    ).rejects.toThrow();
  });

  test('MQTT over mqtts:// takes the user from the certificate (--tls-cert-login), no password sent', async () => {
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, cert: device.cert, key: device.key, clientId: 'dev-cert' });
    expect(usersOf('MQTT')).toContain('device-1');
    await c.publishAsync('devices/1/temp', '20', { qos: 1 });
    await c.endAsync();
  });

  test('MQTT over wss:// takes the user from the certificate too', async () => {
    const c = await mqtt.connectAsync(`wss://127.0.0.1:${tb.broker.ports.https}/mqtt`, {
      clientId: 'dev-wss',
      wsOptions: { ca: pki.ca, cert: device.cert, key: device.key },
    });
    expect(usersOf('MQTT')).toContain('device-1');
    await c.endAsync();
  });

  test('STOMP over stomps:// takes the user from the certificate (no passcode)', async () => {
    const s = tlsConnect({ host: '127.0.0.1', port: tb.broker.ports.stomps!, ca: pki.ca, cert: device.cert, key: device.key });
    const data: Buffer[] = [];
    s.on('data', (c: Buffer) => data.push(c));
    s.write('CONNECT\naccept-version:1.2\nhost:/\n\n\0');
    await waitFor(() => Buffer.concat(data).toString().startsWith('CONNECTED'));
    expect(usersOf('STOMP')).toContain('device-1');
    s.destroy();
  });

  test('--tls-cert-login-from subject_alternative_name uses the DNS name', async () => {
    const other = await startTestBroker(
      tlsOptions(pki, { tlsVerifyPeer: true, tlsCertLogin: true, tlsCertLoginFrom: 'subject_alternative_name', amqpsPort: 'off', stompsPort: 'off', httpsPort: 'off' }) as Partial<BrokerOptions>,
    );
    other.broker.core.auth.putUser('device-2.devices.example', { passwordHash: '' });
    other.broker.core.auth.setPermission('/', 'device-2.devices.example', ALL);
    const d2 = pki.client('device-2');
    const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${other.broker.ports.mqtts}`, { ca: pki.ca, cert: d2.cert, key: d2.key, clientId: 'dev-san' });
    expect([...other.broker.core.connections].map((x) => x.user)).toContain('device-2.devices.example');
    await c.endAsync();
    await other.stop();
  });

  test('with --tls-fail-if-no-peer-cert a client without a certificate cannot connect', async () => {
    const strict = await startTestBroker(
      tlsOptions(pki, { tlsVerifyPeer: true, tlsFailIfNoPeerCert: true, amqpsPort: 'off', stompsPort: 'off', httpsPort: 'off' }) as Partial<BrokerOptions>,
    );
    expect(await mqttOutcome(`mqtts://127.0.0.1:${strict.broker.ports.mqtts}`, { ca: pki.ca, username: 'guest', password: 'guest' })).toBe('closed');
    const ok = await mqtt.connectAsync(`mqtts://127.0.0.1:${strict.broker.ports.mqtts}`, { ca: pki.ca, cert: device.cert, key: device.key, username: 'guest', password: 'guest' });
    await ok.endAsync();
    await strict.stop();
  });
});

/** Connects once (no reconnect): 'connected' on CONNACK, 'closed' if the connection ends first. */
function mqttOutcome(url: string, opts: mqtt.IClientOptions): Promise<'connected' | 'closed'> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { ...opts, reconnectPeriod: 0, connectTimeout: 5000 });
    c.on('error', () => undefined);
    c.once('connect', () => {
      resolve('connected');
      c.end(true);
    });
    c.once('close', () => resolve('closed'));
  });
}
