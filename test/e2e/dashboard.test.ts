import { existsSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { serveDashboard } from '../../examples/dashboard/serve.mjs';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { CHROMIUM, haveChromium, launchChromium, type Browser, type Page } from '../helpers/browser.js';

/**
 * The dashboard example in a real browser: headless Chromium (Debian's package) loads the page,
 * which connects to Warren over WebSocket, shows what an MQTT device and an AMQP service publish,
 * and sends a command that an AMQP consumer receives.
 */
if (!haveChromium) console.warn(`skipping the browser tests: ${CHROMIUM} is missing (apt-get install chromium)`);

/** Set WARREN_UPDATE_SCREENSHOT=1 to refresh examples/dashboard/screenshot.png from this run. */
const SCREENSHOT = join(import.meta.dirname, '../../examples/dashboard/screenshot.png');

describe.skipIf(!haveChromium)('the dashboard example in headless Chromium', () => {
  let tb: TestBroker;
  let site: Awaited<ReturnType<typeof serveDashboard>>;
  let browser: Browser;
  let amqp: ChannelModel;
  let ch: Channel;
  let commands: string;
  let device: MqttClient;
  let shots: string;

  beforeAll(async () => {
    tb = await startTestBroker();
    site = await serveDashboard({ port: 0 });
    browser = await launchChromium();
    amqp = await connect(tb.amqpUrl);
    ch = await amqp.createChannel();
    commands = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(commands, 'amq.topic', 'commands.#');
    device = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.broker.ports.mqtt}`, { clientId: 'e2e-sensors', reconnectPeriod: 0 });
    shots = process.env['WARREN_UI_SHOTS'] ?? (await mkdtemp(join(tmpdir(), 'warren-e2e-')));
  });

  afterAll(async () => {
    await browser?.close();
    await device?.endAsync();
    await amqp?.close();
    await site?.close();
    await tb?.stop();
    if (shots && process.env['WARREN_UI_SHOTS'] === undefined) await rm(shots, { recursive: true, force: true });
  });

  /** Opens a page against this broker and waits until its subscriptions are confirmed. */
  async function open(page: string, wsPath: string): Promise<{ page: Page; errors: string[] }> {
    const p = await browser.newPage({ viewport: { width: 1100, height: 490 } });
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    p.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await p.goto(`${site.url}/${page}?ws=ws://127.0.0.1:${tb.broker.ports.http}${wsPath}`);
    await p.waitForSelector('#status[data-state="live"]', { timeout: 10_000 });
    return { page: p, errors };
  }

  async function nextCommand(): Promise<GetMessage> {
    return waitFor(async () => (await ch.get(commands, { noAck: true })) || undefined, 5000, 'a command on the AMQP queue');
  }

  async function publishReadings(): Promise<void> {
    const readings: [string, string][] = [
      ['sensors/kitchen/temp', '21.5'],
      ['sensors/kitchen/humidity', '48'],
      ['sensors/living-room/temp', '20.1'],
      ['sensors/bedroom/temp', '18.4'],
    ];
    for (const [topic, value] of readings) await device.publishAsync(topic, value, { qos: 1 });
  }

  async function roundTrip(page: Page, expectedContentType: string | undefined): Promise<void> {
    // A reading published by an MQTT client.
    await publishReadings();
    await page.waitForSelector('tr[data-key="kitchen.temp"] td.value:has-text("21.5")');
    await page.waitForSelector('tr[data-key="bedroom.temp"] td.value:has-text("18.4")');
    // A message published over AMQP.
    ch.publish('amq.topic', 'alerts.kitchen', Buffer.from('smoke detector self-test passed'), { appId: 'home-service' });
    await page.waitForSelector('#alerts li:has-text("smoke detector self-test passed")');
    // Tagged with its device, the same on the STOMP and the MQTT page (not the publisher's app id).
    expect(await page.textContent('#alerts li:has-text("smoke detector self-test passed") .from')).toBe('kitchen');
    // A command the page sends reaches an AMQP consumer.
    await page.selectOption('select[name="device"]', 'heater');
    await page.selectOption('select[name="action"]', 'on');
    await page.click('#send-command');
    const cmd = await nextCommand();
    expect(cmd.fields.exchange).toBe('amq.topic');
    expect(cmd.fields.routingKey).toBe('commands.heater');
    expect(cmd.content.toString()).toBe('on');
    expect(cmd.properties.contentType).toBe(expectedContentType);
    // The service answers; the page shows it.
    ch.publish('amq.topic', 'alerts.heater', Buffer.from('heater switched on'), { appId: 'home-service' });
    await page.waitForSelector('#alerts li:has-text("heater switched on")');
  }

  test('the STOMP page (@stomp/stompjs over ws://.../ws) shows MQTT readings and AMQP alerts, and its commands reach AMQP', async () => {
    const { page, errors } = await open('index.html', '/ws');
    await roundTrip(page, 'text/plain');
    const file = process.env['WARREN_UPDATE_SCREENSHOT'] === '1' ? SCREENSHOT : join(shots, 'stomp.png');
    await page.screenshot({ path: file });
    expect((await stat(file)).size).toBeGreaterThan(10_000);
    expect(errors).toEqual([]);
    const protocols = [...tb.broker.core.connections].map((c) => c.info.protocol);
    expect(protocols).toContain('STOMP 1.2');
    await page.close();
  });

  test('the MQTT page (mqtt over ws://.../mqtt) does the same', async () => {
    const { page, errors } = await open('mqtt.html', '/mqtt');
    await roundTrip(page, undefined);
    await page.screenshot({ path: join(shots, 'mqtt.png') });
    expect(errors).toEqual([]);
    await page.close();
  });

  test.each([
    ['index.html', '/ws'],
    ['mqtt.html', '/mqtt'],
  ])('%s reports a broker it cannot reach: the URL it tries and how to set another', async (file, path) => {
    const p = await browser.newPage();
    // Nothing listens on port 9 of the loopback address.
    const url = `ws://127.0.0.1:9${path}`;
    await p.goto(`${site.url}/${file}?ws=${url}`);
    await p.waitForSelector('#status[data-state="offline"]', { timeout: 10_000 });
    const hint = p.locator('#connection-hint');
    await hint.waitFor();
    expect(await hint.locator('code.url').textContent()).toBe(url);
    const text = (await hint.textContent()) ?? '';
    expect(text).toContain(`?ws=ws://<host>:<port>${path}`);
    expect(text).toContain('npm start');
    await p.screenshot({ path: join(shots, `offline-${file}.png`) });
    await p.close();
  });
});

test('the dashboard files the pages load are served', async () => {
  const site = await serveDashboard({ port: 0 });
  try {
    for (const path of ['/', '/mqtt.html', '/dashboard.js', '/dashboard.css', '/vendor/stomp.umd.min.js', '/vendor/mqtt.min.js']) {
      const res = await fetch(`${site.url}${path}`);
      expect([path, res.status]).toEqual([path, 200]);
    }
    expect((await fetch(`${site.url}/../package.json`)).status).toBe(404);
  } finally {
    await site.close();
  }
});

test.runIf(existsSync(SCREENSHOT))('the screenshot in examples/ is a PNG', async () => {
  const { readFile } = await import('node:fs/promises');
  const png = await readFile(SCREENSHOT);
  expect(png.subarray(1, 4).toString()).toBe('PNG');
});
