import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { connect, type Channel, type ChannelModel, type GetMessage } from 'amqplib';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { CHROMIUM, haveChromium, launchChromium, type Browser, type Page } from '../helpers/browser.js';

/**
 * AMQP 0-9-1 from a real browser: headless Chromium (Debian's package) loads a page that imports
 * amqp-client's browser build (the one module it ships in dist/) and talks to Warren over
 * ws://.../amqp: it declares and binds a queue, publishes with confirms and consumes what an AMQP
 * service and an MQTT device send it.
 */
if (!haveChromium) console.warn(`skipping the AMQP-over-WebSocket browser test: ${CHROMIUM} is missing (apt-get install chromium)`);

const require = createRequire(import.meta.url);
/** The browser build: `dist/amqp-websocket-client.mjs` next to the package's CommonJS entry. */
const CLIENT_MODULE = join(dirname(require.resolve('@cloudamqp/amqp-client')), '../../dist/amqp-websocket-client.mjs');

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>AMQP over WebSocket</title>
<link rel="icon" href="data:,">
<pre id="status">starting</pre>
<ul id="received"></ul>
<script type="module">
import { AMQPWebSocketClient } from '/amqp-websocket-client.mjs';
const status = document.getElementById('status');
const received = document.getElementById('received');
const url = new URLSearchParams(location.search).get('ws');
try {
  const client = new AMQPWebSocketClient({ url, vhost: '/', username: 'guest', password: 'guest' });
  await client.connect();
  const ch = await client.channel();
  await ch.confirmSelect();
  const { name } = await ch.queueDeclare('', { exclusive: true });
  await ch.queueBind(name, 'amq.topic', 'to.browser.#');
  await ch.basicConsume(name, { noAck: false }, async (msg) => {
    const text = msg.bodyToString();
    const li = document.createElement('li');
    li.textContent = msg.routingKey + ' ' + text;
    received.append(li);
    await msg.ack();
    await ch.basicPublish('amq.topic', 'from.browser', 'echo: ' + text, { contentType: 'text/plain' });
  });
  await ch.basicPublish('amq.topic', 'from.browser', 'hello from chromium', { contentType: 'text/plain', headers: { agent: navigator.userAgent.includes('Chrome') ? 'chrome' : 'other' } });
  status.dataset.state = 'live';
  status.textContent = 'live ' + name;
} catch (e) {
  status.dataset.state = 'error';
  status.textContent = String((e && e.message) || e);
}
</script>
`;

describe.skipIf(!haveChromium)('AMQP over WebSocket from headless Chromium', () => {
  let tb: TestBroker;
  let site: Server;
  let siteUrl: string;
  let browser: Browser;
  let amqp: ChannelModel;
  let ch: Channel;
  let fromBrowser: string;

  beforeAll(async () => {
    tb = await startTestBroker();
    const module = await readFile(CLIENT_MODULE);
    site = createServer((req, res) => {
      if (req.url === '/amqp-websocket-client.mjs') {
        res.writeHead(200, { 'content-type': 'text/javascript' });
        res.end(module);
      } else if (req.url?.startsWith('/?') === true || req.url === '/') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        res.end(PAGE);
      } else {
        res.writeHead(404);
        res.end();
      }
    });
    await new Promise<void>((resolve) => site.listen(0, '127.0.0.1', resolve));
    const addr = site.address();
    siteUrl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    browser = await launchChromium();
    amqp = await connect(tb.amqpUrl);
    ch = await amqp.createChannel();
    fromBrowser = (await ch.assertQueue('', { exclusive: true })).queue;
    await ch.bindQueue(fromBrowser, 'amq.topic', 'from.browser');
  });

  afterAll(async () => {
    await browser?.close();
    await amqp?.close();
    await new Promise((resolve) => site?.close(resolve));
    await tb?.stop();
  });

  function next(): Promise<GetMessage> {
    return waitFor(async () => (await ch.get(fromBrowser, { noAck: true })) || undefined, 10_000, 'a message from the browser');
  }

  async function receivedInPage(page: Page, n: number): Promise<string[]> {
    await page.waitForFunction((count) => document.querySelectorAll('#received li').length >= count, n, { timeout: 10_000 });
    return page.$$eval('#received li', (items) => items.map((li) => li.textContent ?? ''));
  }

  test('the page connects, declares, publishes with confirms and consumes AMQP and MQTT messages', async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(`${siteUrl}/?ws=${encodeURIComponent(`ws://127.0.0.1:${tb.broker.ports.http}/amqp`)}`);
    await page.waitForSelector('#status[data-state]', { timeout: 15_000 });
    expect(await page.textContent('#status')).toMatch(/^live amq\.gen-/);

    const hello = await next();
    expect([hello.content.toString(), hello.properties.contentType, hello.properties.headers?.['agent']]).toEqual(['hello from chromium', 'text/plain', 'chrome']);

    ch.publish('amq.topic', 'to.browser.amqp', Buffer.from('ping from amqplib'));
    expect(await receivedInPage(page, 1)).toEqual(['to.browser.amqp ping from amqplib']);
    expect((await next()).content.toString()).toBe('echo: ping from amqplib');

    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.broker.ports.mqtt}`, { clientId: 'e2e-amqp-ws', reconnectPeriod: 0 });
    await device.publishAsync('to/browser/mqtt', 'ping from mqtt', { qos: 1 });
    await device.endAsync();
    expect(await receivedInPage(page, 2)).toEqual(['to.browser.amqp ping from amqplib', 'to.browser.mqtt ping from mqtt']);
    expect((await next()).content.toString()).toBe('echo: ping from mqtt');

    // Closing the page ends the connection on the broker.
    await page.close();
    await waitFor(() => tb.broker.adapters.get('amqp')!.connectionCount === 1, 10_000, 'the browser connection to go');
    expect(errors).toEqual([]);
  });
});
