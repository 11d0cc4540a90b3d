import { copyFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import amqplib from 'amqplib';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import type { BrokerOptions } from '../../src/config.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { makeTestPki, tlsOptions, type TestPki } from '../helpers/tls.js';
import { runWarren, spawnWarren } from '../helpers/warren-process.js';

let pki: TestPki;
let tb: TestBroker;
let certDir: string;
const logLines: Array<Record<string, unknown>> = [];

/** The cert and key paths the broker is configured with; tests overwrite them and reload. */
const certFile = (): string => join(certDir, 'server.crt');
const keyFile = (): string => join(certDir, 'server.key');

function install(cert: string, key: string): void {
  copyFileSync(cert, certFile());
  copyFileSync(key, keyFile());
}

/** The CN of the certificate a new connection to `port` is served. */
function servedCn(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.destroy();
      resolve(Array.isArray(cn) ? cn[0]! : cn);
    });
    s.on('error', reject);
  });
}

beforeAll(async () => {
  pki = makeTestPki();
  certDir = await mkdtemp(join(tmpdir(), 'warren-certs-'));
  install(pki.serverCert, pki.serverKey);
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line !== '') logLines.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  tb = await startTestBroker({
    ...(tlsOptions(pki, { tlsCert: certFile(), tlsKey: keyFile() }) as Partial<BrokerOptions>),
    logger: pino({ level: 'info' }, sink),
  } as Partial<BrokerOptions>);
}, 30_000);

afterAll(async () => {
  await tb?.stop();
  pki?.cleanup();
  await rm(certDir, { recursive: true, force: true });
});

describe('certificate reload', () => {
  test('under load: new connections get the new certificate, open ones keep going, nobody is dropped', async () => {
    const ports = tb.broker.ports;
    expect(await servedCn(ports.amqps!)).toBe('warren');
    const amqp = await amqplib.connect(`amqps://guest:guest@127.0.0.1:${ports.amqps}`, { ca: [pki.ca] });
    let amqpClosed = false;
    amqp.on('close', () => (amqpClosed = true));
    const ch = await amqp.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    let received = 0;
    await ch.consume(q.queue, () => received++, { noAck: true });
    const device = await mqtt.connectAsync(`mqtts://127.0.0.1:${ports.mqtts}`, { ca: pki.ca, clientId: 'reload-dev', reconnectPeriod: 0 });
    let mqttClosed = false;
    device.on('close', () => (mqttClosed = true));
    await ch.bindQueue(q.queue, 'amq.topic', 'load.#');
    // Publishing all the while.
    let sent = 0;
    let stop = false;
    const publishing = (async () => {
      while (!stop) {
        await device.publishAsync('load/x', String(sent), { qos: 1 });
        sent++;
      }
    })();
    await waitFor(() => received > 20);
    install(pki.server2Cert, pki.server2Key);
    const r = tb.broker.reloadTls();
    expect(r.failed).toEqual({});
    expect(r.reloaded.sort()).toEqual(['amqps', 'https', 'mqtts', 'stomps']);
    for (const p of [ports.amqps!, ports.mqtts!, ports.stomps!, ports.https!]) expect(await servedCn(p)).toBe('warren-2');
    const before = received;
    await waitFor(() => received > before + 20);
    stop = true;
    await publishing;
    await waitFor(() => received === sent);
    expect(amqpClosed).toBe(false);
    expect(mqttClosed).toBe(false);
    // A new client after the reload works as before.
    const late = await mqtt.connectAsync(`mqtts://127.0.0.1:${ports.mqtts}`, { ca: pki.ca, clientId: 'late' });
    await late.endAsync();
    await device.endAsync();
    await amqp.close();
  });

  test('a bad new certificate is refused with a log line and the old one stays', async () => {
    const current = await servedCn(tb.broker.ports.amqps!);
    writeFileSync(certFile(), '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    const r = tb.broker.reloadTls();
    expect(Object.keys(r.failed).sort()).toEqual(['amqps', 'https', 'mqtts', 'stomps']);
    expect(logLines.some((l) => l['level'] === 50 && String(l['msg']).includes('TLS certificate reload refused'))).toBe(true);
    expect(await servedCn(tb.broker.ports.amqps!)).toBe(current);
    // A certificate that does not match the key is refused the same way.
    copyFileSync(pki.serverCert, certFile());
    copyFileSync(pki.server2Key, keyFile());
    expect(Object.keys(tb.broker.reloadTls().failed)).toHaveLength(4);
    expect(await servedCn(tb.broker.ports.mqtts!)).toBe(current);
  });
});

describe('reload of a running warren process', () => {
  test('SIGHUP and `warren reload` switch certificates', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-reload-'));
    install(pki.serverCert, pki.serverKey);
    const w = await spawnWarren(dataDir, ['--tls-cert', certFile(), '--tls-key', keyFile(), '--amqps-port', '0', '--https-port', '0', '--mqtts-port', 'off', '--stomps-port', 'off'], { logLevel: 'info' });
    try {
      const ready = w.stdout.join('');
      const amqps = Number(/amqps=(\d+)/.exec(ready)?.[1]);
      const https = Number(/https=(\d+)/.exec(ready)?.[1]);
      expect(await servedCn(amqps)).toBe('warren');
      install(pki.server2Cert, pki.server2Key);
      w.child.kill('SIGHUP');
      await waitFor(async () => (await servedCn(amqps)) === 'warren-2', 10_000, 'the new certificate after SIGHUP');
      // Regression: SIGHUP used to end the process when the log went to stderr (no file to reopen).
      expect(w.child.exitCode).toBeNull();
      expect(w.stderr.join('')).not.toContain('uncaught exception');
      install(pki.serverCert, pki.serverKey);
      // The CLI trusts the test CA the way any Node program does: NODE_EXTRA_CA_CERTS.
      const r = await runWarren(['reload', '--url', `https://127.0.0.1:${https}`], { NODE_EXTRA_CA_CERTS: pki.caCert });
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/reloaded: .*amqps/);
      expect(await servedCn(amqps)).toBe('warren');
    } catch (e) {
      throw new Error(`${String(e)}\n${w.stderr.join('')}`);
    } finally {
      w.child.kill('SIGTERM');
      await w.exited;
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 30_000);
});
