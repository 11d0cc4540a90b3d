import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { Client as StompClient } from '@stomp/stompjs';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker, type Broker } from '../../src/broker.js';
import { waitFor } from '../helpers/broker.js';
import { CHROMIUM, haveChromium, launchChromium, type Browser, type Page } from '../helpers/browser.js';
import { mgmt } from '../helpers/management.js';
import { connectMqtt } from '../helpers/mqtt.js';
import { stompClient, wsUrl } from '../helpers/stomp.js';

/**
 * The management UI in headless Chromium (Debian's package): log in as guest, see an AMQP, an MQTT
 * and a STOMP client side by side, create a queue, publish a message to it and get it back.
 */
if (!haveChromium) console.warn(`skipping the management UI test: ${CHROMIUM} is missing (apt-get install chromium)`);

/** Set WARREN_UPDATE_SCREENSHOT=1 to refresh the README's screenshot of the overview from this run. */
const SCREENSHOT = join(import.meta.dirname, '../../docs/management-overview.png');
const UPDATE = process.env['WARREN_UPDATE_SCREENSHOT'] === '1';

describe.skipIf(!haveChromium)('the management UI in headless Chromium', () => {
  let broker: Broker;
  let dataDir: string;
  let shots: string;
  let browser: Browser;
  let page: Page;
  let amqp: ChannelModel;
  let ch: Channel;
  let sensor: MqttClient;
  let stomp: StompClient;
  let traffic: NodeJS.Timeout;
  const errors: string[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'warren-ui-'));
    shots = await mkdtemp(join(tmpdir(), 'warren-ui-shots-'));
    broker = await startBroker({
      amqpPort: 0,
      mqttPort: 0,
      stompPort: 0,
      httpPort: 0,
      bind: '127.0.0.1',
      logLevel: 'silent',
      dataDir,
      management: { statsIntervalMs: 250 },
    });
    const { ports } = broker;
    // An AMQP worker, an MQTT sensor and a STOMP browser client, with a little steady traffic.
    amqp = await connect(`amqp://guest:guest@127.0.0.1:${ports.amqp}`, { clientProperties: { connection_name: 'order-worker' } });
    ch = await amqp.createChannel();
    await ch.assertQueue('orders', { durable: true });
    await ch.assertQueue('readings', { durable: false });
    await ch.bindQueue('readings', 'amq.topic', 'sensors.#');
    await ch.prefetch(50);
    await ch.consume('orders', (m) => m && ch.ack(m));
    await ch.consume('readings', (m) => m && ch.ack(m));
    sensor = await connectMqtt(`mqtt://127.0.0.1:${ports.mqtt}`, { clientId: 'kitchen-sensor', protocolVersion: 5 });
    stomp = await stompClient(wsUrl(ports.http!), { connectHeaders: { login: 'guest', passcode: 'guest', host: '/' } });
    stomp.subscribe('/topic/sensors.#', () => undefined);
    let n = 0;
    traffic = setInterval(() => {
      for (let i = 0; i < 20; i++) ch.sendToQueue('orders', Buffer.from(`order ${n++}`), { persistent: true });
      void sensor.publishAsync('sensors/kitchen/temp', String(20 + (n % 5)), { qos: 1 }).catch(() => undefined);
    }, 50);
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error' && !m.text().includes('401')) errors.push(m.text());
    });
  });

  afterAll(async () => {
    clearInterval(traffic);
    await browser?.close();
    await stomp?.deactivate();
    await sensor?.endAsync();
    await amqp?.close();
    await broker?.stop();
    for (const d of [dataDir, shots]) if (d) await rm(d, { recursive: true, force: true });
  });

  const base = (): string => `http://127.0.0.1:${broker.ports.http}`;

  test('a wrong password is refused on the login form', async () => {
    await page.goto(`${base()}/`);
    await page.fill('#login-username', 'guest');
    await page.fill('#login-password', 'not-the-password');
    await page.click('#login-submit');
    await page.waitForSelector('#login-error:has-text("Login failed")');
    expect(await page.isVisible('#app')).toBe(false);
  });

  test('after logging in, the overview shows clients of every protocol and live rates', async () => {
    await page.fill('#login-username', 'guest');
    await page.fill('#login-password', 'guest');
    await page.click('#login-submit');
    await page.waitForSelector('#overview-cards .card');
    await page.waitForSelector('#whoami:has-text("guest")');
    const table = page.locator('#protocols-table');
    await table.locator('text=AMQP 0-9-1').waitFor();
    await table.locator('text=MQTT 5.0').waitFor();
    await table.locator('text=STOMP 1.2').waitFor();
    // Charts are drawn from the sampled history; rates become non-zero within a few samples.
    await page.waitForSelector('#chart-rates .uplot');
    await page.waitForSelector('#chart-queued .uplot');
    await page.selectOption('#refresh', '2000');
    await page.waitForFunction(() => {
      const card = [...document.querySelectorAll('#overview-cards .card')].find((c) => c.querySelector('.label')?.textContent === 'Publish');
      return card !== undefined && !/^0\/s$/.test(card.querySelector('.value')?.textContent ?? '');
    }, undefined, { timeout: 10_000 });
    if (UPDATE) {
      // For the README: let the charts fill with a minute of samples first.
      await page.waitForFunction(() => Number((document.querySelector('#chart-rates') as HTMLElement | null)?.dataset['points'] ?? 0) >= 12, undefined, { timeout: 120_000 });
    }
    const file = UPDATE ? SCREENSHOT : join(shots, 'overview.png');
    await mkdir(dirname(file), { recursive: true });
    await page.screenshot({ path: file, fullPage: true });
    expect((await stat(file)).size).toBeGreaterThan(20_000);
  }, UPDATE ? 180_000 : undefined);

  test('the connections page lists each client with its protocol', async () => {
    await page.click('#nav a[data-nav="connections"]');
    const rows = page.locator('#connections-table tbody tr');
    await rows.first().waitFor();
    await page.locator('#connections-table').locator('text=kitchen-sensor').waitFor();
    const text = await page.locator('#connections-table').innerText();
    expect(text).toContain('AMQP 0-9-1');
    expect(text).toContain('MQTT 5.0');
    expect(text).toContain('STOMP 1.2');
    expect(text).toContain('order-worker');
    expect(await rows.count()).toBe(3);
  });

  test('create a queue, publish a message to it and get it back', async () => {
    await page.click('#nav a[data-nav="queues"]');
    await page.click('#add-queue-section summary');
    await page.fill('#add-queue-name', 'ui.created');
    await page.uncheck('#add-queue-durable');
    await page.fill('#add-queue-arguments', '{"x-max-length": 100}');
    await page.click('#add-queue-submit');
    await page.waitForSelector('#flash:has-text("Queue ui.created declared")');
    await page.locator('#queues-table').locator('a:text-is("ui.created")').click();
    await page.waitForSelector('h1:has-text("Queue ui.created")');

    await page.click('#publish-section summary');
    await page.fill('#queue-publish-payload', 'hello from the browser');
    await page.fill('#queue-publish-headers', '{"source": "ui"}');
    await page.click('#queue-publish-submit');
    await page.waitForSelector('#queue-publish-result:has-text("Message published.")');
    const api = mgmt(broker.ports.http!);
    await waitFor(async () => (await api.get('/queues/%2F/ui.created')).body['messages'] === 1, 3000, 'message in the queue');
    expect((await api.get('/queues/%2F/ui.created')).body).toMatchObject({ durable: false, arguments: { 'x-max-length': 100 } });

    await page.click('#get-section summary');
    await page.selectOption('#get-messages-ackmode', 'ack_requeue_false');
    await page.click('#get-messages-submit');
    const payload = page.locator('#get-results pre.payload');
    await payload.waitFor();
    expect(await payload.innerText()).toBe('hello from the browser');
    expect(await page.locator('#get-results').innerText()).toContain('"source":"ui"');
    expect((await api.get('/queues/%2F/ui.created')).body['messages']).toBe(0);
  });

  test('admin pages: users and permissions, policies, definitions export', async () => {
    await page.click('#nav a[data-nav="admin"]');
    await page.waitForSelector('#users-table');
    await page.click('summary:has-text("Add or update a user")');
    await page.fill('#add-user-name', 'operator');
    await page.fill('#add-user-password', 'op-secret');
    await page.fill('#add-user-tags', 'monitoring');
    await page.click('#add-user-submit');
    await page.locator('#users-table').locator('td:text-is("operator")').waitFor();

    await page.click('.subnav a:has-text("Policies")');
    await page.fill('#add-policy-name', 'ui-cap');
    await page.fill('#add-policy-pattern', '^ui\\.');
    await page.fill('#add-policy-definition', '{"max-length": 10}');
    await page.click('#add-policy-submit');
    await page.locator('#policies-table').locator('td:text-is("ui-cap")').waitFor();

    await page.click('.subnav a:has-text("Definitions")');
    const download = page.waitForEvent('download');
    await page.click('#export-definitions');
    const file = join(shots, 'definitions.json');
    await (await download).saveAs(file);
    expect((await stat(file)).size).toBeGreaterThan(100);
    expect(errors).toEqual([]);
  });
});
