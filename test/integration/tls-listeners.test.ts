import { execFile, spawnSync } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { AMQPClient } from '@cloudamqp/amqp-client';
import { Client as StompClient } from '@stomp/stompjs';
import amqplib from 'amqplib';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker } from '../../src/broker.js';
import type { BrokerOptions } from '../../src/config.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { makeTestPki, tlsOptions, type TestPki } from '../helpers/tls.js';

const run = promisify(execFile);
const haveMosquitto = spawnSync('mosquitto_pub', ['--help']).status !== null;

let pki: TestPki;
let tb: TestBroker;

beforeAll(async () => {
  pki = makeTestPki();
  tb = await startTestBroker(tlsOptions(pki, { tlsHandshakeTimeout: 500 }) as Partial<BrokerOptions>);
}, 30_000);

afterAll(async () => {
  await tb?.stop();
  pki?.cleanup();
});

function tlsSocket(port: number, opts: Record<string, unknown> = {}): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca, ...opts }, () => resolve(s));
    s.once('error', reject);
  });
}

describe('TLS listeners', () => {
  test('the ready line names every TLS port with its key', () => {
    const p = tb.broker.ports;
    for (const k of ['amqps', 'mqtts', 'stomps', 'https'] as const) {
      expect(p[k]).toBeGreaterThan(0);
      expect(tb.broker.readyLine).toContain(`${k}=${p[k]}`);
    }
  });

  test('amqplib and @cloudamqp/amqp-client publish and consume over amqps://', async () => {
    const url = `amqps://guest:guest@127.0.0.1:${tb.broker.ports.amqps}`;
    const a = await amqplib.connect(url, { ca: [pki.ca] });
    const ch = await a.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    const b = new AMQPClient(url);
    b.tlsOptions = { ca: [pki.ca] };
    await b.connect();
    const bch = await b.channel();
    await bch.basicPublish('', q.queue, 'over tls');
    const msg = await waitFor(async () => (await ch.get(q.queue, { noAck: true })) || undefined);
    expect(msg.content.toString()).toBe('over tls');
    await b.close();
    await a.close();
  });

  test('mqtt.js over mqtts:// and wss:// reaches a subscriber on the other', async () => {
    const sub = await mqtt.connectAsync(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, clientId: 'tls-sub' });
    await sub.subscribeAsync('tls/+/t', { qos: 1 });
    const got = new Promise<string>((r) => sub.on('message', (_t, p) => r(p.toString())));
    const pub = await mqtt.connectAsync(`wss://127.0.0.1:${tb.broker.ports.https}/ws`, { ca: pki.ca, clientId: 'tls-pub', wsOptions: { ca: pki.ca } });
    await pub.publishAsync('tls/a/t', '42', { qos: 1 });
    expect(await got).toBe('42');
    await pub.endAsync();
    await sub.endAsync();
  });

  test('@stomp/stompjs over wss:// with the test CA', async () => {
    const client = new StompClient({
      webSocketFactory: () => new WebSocket(`wss://127.0.0.1:${tb.broker.ports.https}/stomp`, ['v12.stomp'], { ca: pki.ca }),
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
    });
    const connected = new Promise<void>((r) => (client.onConnect = () => r()));
    client.activate();
    await connected;
    const got = new Promise<string>((r) => client.subscribe('/topic/tls.stomp', (m) => r(m.body)));
    // The subscription is in place once a receipt for it would have come; publish after a round trip.
    await new Promise<void>((r) => {
      client.watchForReceipt('r1', () => r());
      client.publish({ destination: '/topic/none', body: '', headers: { receipt: 'r1' } });
    });
    client.publish({ destination: '/topic/tls.stomp', body: 'hello wss' });
    expect(await got).toBe('hello wss');
    await client.deactivate();
  });

  test('STOMP over stomps:// (a raw TLS socket)', async () => {
    const s = await tlsSocket(tb.broker.ports.stomps!);
    const data: Buffer[] = [];
    s.on('data', (c: Buffer) => data.push(c));
    s.write('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\0');
    await waitFor(() => Buffer.concat(data).toString().startsWith('CONNECTED'));
    s.destroy();
  });

  test('the management API and /metrics answer on the HTTPS port', async () => {
    const res = await httpsGet(`/api/overview`, { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` });
    expect(res.status).toBe(200);
    expect((JSON.parse(res.body) as { listeners: Array<{ protocol: string }> }).listeners.map((l) => l.protocol)).toEqual(
      expect.arrayContaining(['amqp/ssl', 'mqtt/ssl', 'stomp/ssl', 'https']),
    );
    expect((await httpsGet('/metrics')).body).toContain('warren_build_info');
  });

  test.runIf(haveMosquitto)('mosquitto_pub --cafile publishes over mqtts://', async () => {
    const sub = await mqtt.connectAsync(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, clientId: 'mosq-sub' });
    await sub.subscribeAsync('mosq/tls', { qos: 1 });
    const got = new Promise<string>((r) => sub.on('message', (_t, p) => r(p.toString())));
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tb.broker.ports.mqtts), '--cafile', pki.caCert, '-t', 'mosq/tls', '-m', 'from mosquitto', '-q', '1', '-i', 'mosq-pub']);
    expect(await got).toBe('from mosquitto');
    await sub.endAsync();
  });

  test('openssl s_client: TLS 1.2 and 1.3 are accepted, 1.1 is refused (minimum 1.2)', async () => {
    const port = String(tb.broker.ports.amqps);
    const v13 = await sClient(['-tls1_3'], port);
    expect(v13).toMatch(/New, TLSv1\.3, Cipher is TLS_/);
    const v12 = await sClient(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], port);
    expect(v12).toMatch(/New, TLSv1\.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256/);
    const v11 = await sClient(['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], port);
    expect(v11).not.toMatch(/New, TLSv1\.1/);
    expect(v11).toMatch(/Cipher is \(NONE\)|alert|error/i);
  });

  test('plain text sent to a TLS port closes that connection, and nothing else', async () => {
    const good = await mqtt.connectAsync(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, clientId: 'bystander' });
    for (const port of [tb.broker.ports.amqps, tb.broker.ports.mqtts, tb.broker.ports.stomps, tb.broker.ports.https]) {
      const s = netConnect(port!, '127.0.0.1');
      s.on('error', () => undefined);
      s.on('connect', () => s.write('AMQP\x00\x00\x09\x01 GET / HTTP/1.1\r\n\r\n'));
      await new Promise((r) => s.on('close', r));
    }
    await good.publishAsync('still/here', 'yes', { qos: 1 });
    expect(good.connected).toBe(true);
    await good.endAsync();
  });

  test('a handshake that never completes is timed out and does not block others', async () => {
    const idle = netConnect(tb.broker.ports.amqps!, '127.0.0.1');
    idle.on('error', () => undefined);
    const closed = new Promise((r) => idle.on('close', r));
    await new Promise((r) => idle.on('connect', r));
    // Meanwhile another client completes its handshake and logs in.
    const c = await amqplib.connect(`amqps://guest:guest@127.0.0.1:${tb.broker.ports.amqps}`, { ca: [pki.ca] });
    await c.close();
    const t0 = Date.now();
    await closed;
    expect(Date.now() - t0).toBeLessThan(5000);
  });

  test('a TLS port of 0 without a certificate is off, and the plain listeners stay', async () => {
    const plain = await startTestBroker({ amqpsPort: 0, mqttsPort: 0 });
    expect(plain.broker.ports.amqps).toBeUndefined();
    expect(plain.broker.readyLine).not.toContain('amqps');
    await plain.stop();
  });
});

describe('TLS options', () => {
  test('--tls-min-version 1.3 refuses TLS 1.2; --tls-ciphers limits the TLS 1.2 suites', async () => {
    const v13 = await startTestBroker(tlsOptions(pki, { tlsMinVersion: '1.3', mqttsPort: 'off', stompsPort: 'off', httpsPort: 'off' }) as Partial<BrokerOptions>);
    const port13 = String(v13.broker.ports.amqps);
    expect(await sClient(['-tls1_3'], port13)).toMatch(/New, TLSv1\.3/);
    expect(await sClient(['-tls1_2'], port13)).not.toMatch(/New, TLSv1\.2/);
    await v13.stop();
    const ciphers = await startTestBroker(
      tlsOptions(pki, { tlsCiphers: 'ECDHE-ECDSA-AES256-GCM-SHA384', mqttsPort: 'off', stompsPort: 'off', httpsPort: 'off' }) as Partial<BrokerOptions>,
    );
    const portC = String(ciphers.broker.ports.amqps);
    expect(await sClient(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384'], portC)).toMatch(/Cipher is ECDHE-ECDSA-AES256-GCM-SHA384/);
    expect(await sClient(['-tls1_2', '-cipher', 'ECDHE-ECDSA-AES128-GCM-SHA256'], portC)).toMatch(/Cipher is \(NONE\)/);
    await ciphers.stop();
  });

  test('an encrypted key needs --tls-key-passphrase; a wrong one is refused at start naming the option', async () => {
    const enc = `${pki.dir}/server-enc.key`;
    await run('openssl', ['pkey', '-in', pki.serverKey, '-aes256', '-passout', 'pass:s3cret', '-out', enc]);
    const base = { tlsKey: enc, mqttsPort: 'off', stompsPort: 'off', httpsPort: 'off' };
    const ok = await startTestBroker(tlsOptions(pki, { ...base, tlsKeyPassphrase: 's3cret' }) as Partial<BrokerOptions>);
    const c = await amqplib.connect(`amqps://guest:guest@127.0.0.1:${ok.broker.ports.amqps}`, { ca: [pki.ca] });
    await c.close();
    await ok.stop();
    // Without a data directory the broker's own temporary one is removed again when start fails.
    await expect(
      startBroker({ amqpPort: 0, bind: '127.0.0.1', logLevel: 'silent', ...(tlsOptions(pki, { ...base, tlsKeyPassphrase: 'wrong' }) as Partial<BrokerOptions>) }),
    ).rejects.toThrow(/--tls-cert: cannot use/);
  });
});

function sClient(args: string[], port: string): Promise<string> {
  return new Promise((resolve) => {
    const p = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-CAfile', pki.caCert, ...args], { timeout: 10_000 }, (_err, stdout, stderr) =>
      resolve(`${stdout}${stderr}`),
    );
    p.stdin?.end();
  });
}

function httpsGet(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port: tb.broker.ports.https!, ca: pki.ca }, () => {
      const h = Object.entries({ host: 'localhost', connection: 'close', ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('');
      s.write(`GET ${path} HTTP/1.1\r\n${h}\r\n`);
    });
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', reject);
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString();
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(text)?.[1] ?? 0);
      const bodyStart = text.indexOf('\r\n\r\n') + 4;
      let body = text.slice(bodyStart);
      if (/transfer-encoding: chunked/i.test(text.slice(0, bodyStart))) body = body.replace(/^[0-9a-f]+\r\n/gim, '').replace(/\r\n/g, '');
      resolve({ status, body });
    });
  });
}
