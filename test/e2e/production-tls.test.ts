import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import amqplib, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { SignJWT, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { serveDashboard } from '../../examples/dashboard/serve.mjs';
import type { BrokerOptions } from '../../src/config.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { haveChromium, launchChromium, type Browser, type Page } from '../helpers/browser.js';
import { makeTestPki, tlsOptions, type TestPki } from '../helpers/tls.js';
import { runWarren } from '../helpers/warren-process.js';

/**
 * The "done means", one test per sentence: a device on mqtts:// with a client
 * certificate, a browser dashboard on wss://, an AMQP worker on amqps:// with a token, a
 * certificate reload that drops nobody, and the documentation that says how.
 */
const run = promisify(execFile);
const haveMosquitto = spawnSync('mosquitto_pub', ['--help']).status !== null;
const ROOT = join(import.meta.dirname, '..', '..');

let pki: TestPki;
let tb: TestBroker;
let dir: string;
let signingKey: CryptoKey;
let worker: ChannelModel;
let workerCh: Channel;
let workerClosed = false;
const readings: ConsumeMessage[] = [];
let commandsQueue: string;
let firstTokenEnds = 0;

const certFile = (): string => join(dir, 'server.crt');
const keyFile = (): string => join(dir, 'server.key');

function accessToken(sub: string, expiresInSeconds: number): Promise<string> {
  return new SignJWT({ scope: 'rabbitmq.configure:*/* rabbitmq.write:*/* rabbitmq.read:*/*' })
    .setProtectedHeader({ alg: 'ES256' })
    .setSubject(sub)
    .setAudience('rabbitmq')
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + expiresInSeconds)
    .sign(signingKey);
}

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

/** Chromium's way to trust one certificate: the base64 SHA-256 of its public key. */
function spki(certPath: string): string {
  const der = new X509Certificate(readFileSync(certPath)).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

beforeAll(async () => {
  pki = makeTestPki();
  dir = await mkdtemp(join(tmpdir(), 'warren-done-'));
  copyFileSync(pki.serverCert, certFile());
  copyFileSync(pki.serverKey, keyFile());
  const keys = await generateKeyPair('ES256', { extractable: true });
  signingKey = keys.privateKey;
  writeFileSync(join(dir, 'oauth.pem'), await exportSPKI(keys.publicKey));
  tb = await startTestBroker(
    tlsOptions(pki, { tlsCert: certFile(), tlsKey: keyFile(), tlsVerifyPeer: true, tlsCertLogin: true, oauthKey: join(dir, 'oauth.pem'),
      // Browsers are not asked for a certificate: Chromium cancels a WebSocket whose server asks for one it does not have.
      tlsListeners: JSON.stringify({ https: { verifyPeer: false } }) }) as Partial<BrokerOptions>,
  );
  // Devices log in by certificate only: no password.
  for (const device of ['sensor-kitchen', 'sensor-hall']) {
    tb.broker.core.auth.putUser(device, { passwordHash: '' });
    tb.broker.core.auth.setPermission('/', device, { configure: '^mqtt-subscription-', write: '.*', read: '^(mqtt-subscription-|amq\\.topic)' });
  }
  // The AMQP worker: amqps:// with an access token as its password, renewed before it ends.
  firstTokenEnds = (Math.floor(Date.now() / 1000) + 6) * 1000;
  worker = await amqplib.connect(`amqps://worker:${await accessToken('billing-worker', 6)}@127.0.0.1:${tb.broker.ports.amqps}`, { ca: [pki.ca] });
  worker.on('close', () => (workerClosed = true));
  workerCh = await worker.createChannel();
  const q = await workerCh.assertQueue('sensor-readings', { durable: true });
  await workerCh.bindQueue(q.queue, 'amq.topic', 'sensors.#');
  await workerCh.consume(q.queue, (m) => {
    if (m) readings.push(m);
  }, { noAck: true });
  commandsQueue = (await workerCh.assertQueue('', { exclusive: true })).queue;
  await workerCh.bindQueue(commandsQueue, 'amq.topic', 'commands.#');
}, 60_000);

afterAll(async () => {
  await worker?.close().catch(() => undefined);
  await tb?.stop();
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function device(name: string): Promise<MqttClient> {
  const c = pki.client(name);
  return mqtt.connectAsync(`mqtts://127.0.0.1:${tb.broker.ports.mqtts}`, { ca: pki.ca, cert: c.cert, key: c.key, clientId: name, reconnectPeriod: 0 });
}

describe('done means', () => {
  let kitchen: MqttClient;
  let browser: Browser | undefined;
  let site: Awaited<ReturnType<typeof serveDashboard>> | undefined;
  let page: Page | undefined;

  afterAll(async () => {
    await kitchen?.endAsync();
    await browser?.close();
    await site?.close();
  });

  test('a device connects with mqtts:// and a client certificate', async () => {
    kitchen = await device('sensor-kitchen');
    expect([...tb.broker.core.connections].find((c) => c.info.clientId === 'sensor-kitchen')?.user).toBe('sensor-kitchen');
    await kitchen.publishAsync('sensors/kitchen/temp', '21.5', { qos: 1 });
    await waitFor(() => readings.some((m) => m.fields.routingKey === 'sensors.kitchen.temp' && m.content.toString() === '21.5'));
    if (haveMosquitto) {
      // The same with Mosquitto's client, as a small device would.
      const hall = pki.client('sensor-hall');
      await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(tb.broker.ports.mqtts), '--cafile', pki.caCert, '--cert', hall.certFile, '--key', hall.keyFile, '-i', 'sensor-hall', '-t', 'sensors/hall/temp', '-m', '19', '-q', '1']);
      await waitFor(() => readings.some((m) => m.fields.routingKey === 'sensors.hall.temp'));
    }
  });

  test('an AMQP worker uses amqps:// with a token', async () => {
    expect([...tb.broker.core.connections].find((c) => c.info.protocol.startsWith('AMQP') && c.user === 'billing-worker')).toBeDefined();
    // Renewed before the first token (6 s) ends, the connection lives on.
    await worker.updateSecret(Buffer.from(await accessToken('billing-worker', 3600)), 'refresh');
    // Time itself is the condition here: wait until the first token's end has passed.
    await new Promise((r) => setTimeout(r, Math.max(0, firstTokenEnds + 1000 - Date.now())));
    expect(workerClosed).toBe(false);
    const before = readings.length;
    await kitchen.publishAsync('sensors/kitchen/temp', '22.5', { qos: 1 });
    await waitFor(() => readings.length > before);
  }, 20_000);

  test.skipIf(!haveChromium)('a browser dashboard runs on wss://', async () => {
    browser = await launchChromium([`--ignore-certificate-errors-spki-list=${spki(pki.serverCert)},${spki(pki.server2Cert)}`]);
    site = await serveDashboard({ port: 0 });
    page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${site.url}/index.html?ws=wss://127.0.0.1:${tb.broker.ports.https}/ws`);
    await page.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
    await kitchen.publishAsync('sensors/kitchen/temp', '22.0', { qos: 1 });
    await page.waitForSelector('tr[data-key="kitchen.temp"] td.value:has-text("22.0")');
    await page.selectOption('select[name="device"]', 'heater');
    await page.selectOption('select[name="action"]', 'on');
    await page.click('#send-command');
    const cmd = await waitFor(async () => (await workerCh.get(commandsQueue, { noAck: true })) || undefined);
    expect([cmd.fields.routingKey, cmd.content.toString()]).toEqual(['commands.heater', 'on']);
    const stomp = [...tb.broker.core.connections].find((c) => c.info.protocol.startsWith('STOMP'));
    expect(stomp).toBeDefined();
    // The MQTT page of the dashboard, over wss://.../mqtt, as well.
    const mqttPage = await browser.newPage();
    mqttPage.on('pageerror', (e) => errors.push(e.message));
    await mqttPage.goto(`${site.url}/mqtt.html?ws=wss://127.0.0.1:${tb.broker.ports.https}/mqtt`);
    await mqttPage.waitForSelector('#status[data-state="live"]', { timeout: 15_000 });
    await kitchen.publishAsync('sensors/kitchen/temp', '22.2', { qos: 1 });
    await mqttPage.waitForSelector('tr[data-key="kitchen.temp"] td.value:has-text("22.2")');
    await mqttPage.close();
    expect(errors).toEqual([]);
  }, 60_000);

  test('the operator reloads certificates without dropping anyone', async () => {
    expect(await servedCn(tb.broker.ports.mqtts!)).toBe('warren');
    copyFileSync(pki.server2Cert, certFile());
    copyFileSync(pki.server2Key, keyFile());
    tb.broker.core.auth.addUser('ops', 'ops-secret', ['administrator']);
    const r = await runWarren(['reload', '--url', `https://127.0.0.1:${tb.broker.ports.https}`, '--user', 'ops', '--password', 'ops-secret'], {
      NODE_EXTRA_CA_CERTS: pki.caCert,
    });
    expect(r.stdout).toContain('reloaded: amqps mqtts stomps https');
    for (const p of [tb.broker.ports.amqps!, tb.broker.ports.mqtts!, tb.broker.ports.https!]) expect(await servedCn(p)).toBe('warren-2');
    // Everyone who was connected still is, and messages still flow both ways.
    expect(kitchen.connected).toBe(true);
    expect(workerClosed).toBe(false);
    const before = readings.length;
    await kitchen.publishAsync('sensors/kitchen/temp', '23.0', { qos: 1 });
    await waitFor(() => readings.length > before);
    if (page) {
      await page.waitForSelector('tr[data-key="kitchen.temp"] td.value:has-text("23.0")');
      expect(await page.getAttribute('#status', 'data-state')).toBe('live');
    }
    // A device that connects now gets the new certificate and logs in as before.
    const late = await device('sensor-hall');
    await late.endAsync();
  }, 30_000);

  test('the README and docs/production.md say how', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const guide = readFileSync(join(ROOT, 'docs/production.md'), 'utf8');
    // Every TLS, token and log option they name is one `warren start` has.
    const help = (await runWarren(['start', '--help'])).stdout;
    const named = new Set([...`${readme}\n${guide}`.matchAll(/--((?:tls|oauth|log|amqps|mqtts|stomps|https)[a-z-]*)/g)].map((m) => m[1]!));
    expect(named.size).toBeGreaterThan(20);
    for (const flag of named) expect(help, `--${flag}`).toContain(`--${flag} `);
    for (const text of ['mqtts://', 'wss://', 'amqps://', 'EXTERNAL', 'connection.update-secret', 'SIGHUP', 'warren reload']) {
      expect(readme).toContain(text);
      expect(guide.includes(text) || readme.includes(text)).toBe(true);
    }
    expect(guide).toContain('examples/systemd/warren.service');
    expect(readFileSync(join(ROOT, 'examples/systemd/warren.service'), 'utf8')).toMatch(/ExecReload=\/bin\/kill -HUP \$MAINPID/);
    // The guide's openssl example, run as written (in a temporary directory), makes certificates a
    // broker serves and a device logs in with.
    const block = /## TLS[\s\S]*?```sh\n([\s\S]*?)```/.exec(guide)![1]!;
    const work = await mkdtemp(join(tmpdir(), 'warren-guide-'));
    try {
      const script = block.replace('cd /etc/warren/tls', `cd ${work}`).replace(/^chown .*$/m, 'chmod 640 server.key');
      execFileSync('sh', ['-e', '-c', script], { stdio: 'ignore' });
      const guided = await startTestBroker({
        mqttsPort: 0,
        mqttPort: 'off',
        amqpPort: 'off',
        stompPort: 'off',
        httpPort: 'off',
        tlsCert: join(work, 'server-chain.pem'),
        tlsKey: join(work, 'server.key'),
        tlsCa: join(work, 'ca.pem'),
        tlsVerifyPeer: true,
        tlsCertLogin: true,
      } as Partial<BrokerOptions>);
      guided.broker.core.auth.putUser('device-17', { passwordHash: '' });
      guided.broker.core.auth.setPermission('/', 'device-17', { configure: '.*', write: '.*', read: '.*' });
      const d = await mqtt.connectAsync(`mqtts://localhost:${guided.broker.ports.mqtts}`, {
        ca: readFileSync(join(work, 'ca.pem')),
        cert: readFileSync(join(work, 'device-17.pem')),
        key: readFileSync(join(work, 'device-17.key')),
        reconnectPeriod: 0,
      });
      expect([...guided.broker.core.connections].map((c) => c.user)).toEqual(['device-17']);
      await d.endAsync();
      await guided.stop();
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }, 60_000);
});
