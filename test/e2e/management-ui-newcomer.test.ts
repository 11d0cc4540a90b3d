import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Channel, type ChannelModel } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startBroker, type Broker } from '../../src/broker.js';
import { waitFor } from '../helpers/broker.js';
import { haveChromium, launchChromium, type Browser, type Page } from '../helpers/browser.js';
import { mgmt } from '../helpers/management.js';

/**
 * What a new user meets in the management UI: charts that open with the last minutes already
 * drawn, readable time ticks, a layout that holds at phone width, an Admin tab only for those who
 * may use it, and one clear message for a refused login. Screenshots go to a temporary directory
 * (WARREN_UI_SHOTS=dir keeps them).
 */
describe.skipIf(!haveChromium)('the management UI for a newcomer', () => {
  let broker: Broker;
  let dataDir: string;
  let shots: string;
  let browser: Browser;
  let amqp: ChannelModel;
  let ch: Channel;
  let traffic: NodeJS.Timeout;
  const errors: string[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'warren-ui2-'));
    shots = process.env['WARREN_UI_SHOTS'] ?? (await mkdtemp(join(tmpdir(), 'warren-ui2-shots-')));
    broker = await startBroker({ amqpPort: 0, httpPort: 0, bind: '127.0.0.1', logLevel: 'silent', dataDir, management: { statsIntervalMs: 200 } });
    const api = mgmt(broker.ports.http!);
    await api.put('/users/watcher', { password: 'w-secret', tags: 'management' });
    await api.put('/permissions/%2F/watcher', { configure: '.*', write: '.*', read: '.*' });
    await api.put('/users/rulemaker', { password: 'r-secret', tags: 'policymaker' });
    await api.put('/permissions/%2F/rulemaker', { configure: '.*', write: '.*', read: '.*' });
    await api.put('/users/client-only', { password: 'c-secret', tags: '' });
    amqp = await connect(`amqp://guest:guest@127.0.0.1:${broker.ports.amqp}`);
    ch = await amqp.createChannel();
    await ch.assertQueue('history.q', { durable: false });
    let n = 0;
    // a growing backlog and a steady publish rate, so both charts have something to draw
    traffic = setInterval(() => {
      for (let i = 0; i < 5; i++) ch.sendToQueue('history.q', Buffer.from(`m${n++}`));
    }, 50);
    // the history builds up before any page is opened: four samples 5 s apart, as the UI asks for them
    await waitFor(async () => {
      const q = (await api.get(`/queues/%2F/history.q?lengths_age=600&lengths_incr=5&msg_rates_age=600&msg_rates_incr=5`)).body;
      return ((q['messages_ready_details'] as { samples?: unknown[] } | undefined)?.samples?.length ?? 0) >= 4;
    }, 30_000, 'four samples of the queue');
    browser = await launchChromium();
  }, 60_000);

  afterAll(async () => {
    clearInterval(traffic);
    await browser?.close();
    await amqp?.close();
    await broker?.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
    if (shots && process.env['WARREN_UI_SHOTS'] === undefined) await rm(shots, { recursive: true, force: true });
  });

  const base = (): string => `http://127.0.0.1:${broker.ports.http}`;

  async function open(width: number, height = 900): Promise<Page> {
    const page = await browser.newPage({ viewport: { width, height } });
    page.on('pageerror', (e) => errors.push(e.message));
    return page;
  }

  async function login(page: Page, user: string, password: string): Promise<void> {
    await page.goto(`${base()}/`);
    await page.fill('#login-username', user);
    await page.fill('#login-password', password);
    await page.click('#login-submit');
  }

  test('a refused login says why in one message, the same for an unknown user and a wrong password', async () => {
    const page = await open(1280);
    const message = async (user: string, password: string): Promise<string> => {
      await login(page, user, password);
      await page.waitForFunction(() => (document.getElementById('login-error')?.textContent ?? '') !== '');
      const text = (await page.textContent('#login-error')) ?? '';
      await page.evaluate(() => ((document.getElementById('login-error') as HTMLElement).textContent = ''));
      return text;
    };
    const wrong = await message('guest', 'not-the-password');
    expect(wrong).toBe('Login failed: unknown user or wrong password.');
    expect(await message('nobody-here', 'x')).toBe(wrong);
    const untagged = await message('client-only', 'c-secret');
    expect(untagged).toMatch(/^Not management user: /);
    expect(untagged).toContain('management, policymaker, monitoring or administrator');
    for (const t of [wrong, untagged]) expect(t).not.toMatch(/Login failed.*Login failed/);
    expect(await page.isVisible('#app')).toBe(false);
    await page.close();
  });

  test('the queue page opens with its history drawn, on time ticks a person can read', async () => {
    const page = await open(1360);
    await login(page, 'guest', 'guest');
    await page.waitForSelector('#overview-cards .card');
    await page.selectOption('#refresh', '0');
    // the overview charts are full on their first draw
    await page.waitForSelector('#chart-rates .uplot');
    expect(Number(await page.getAttribute('#chart-queued', 'data-points'))).toBeGreaterThanOrEqual(3);
    await page.goto(`${base()}/#/queues/%2F/history.q`);
    await page.waitForSelector('h1:has-text("Queue history.q")');
    await page.waitForSelector('.chart .uplot');
    // no second refresh has happened (refresh is off): the points came from the server's history
    const points = await page.$$eval('.chart', (els) => els.map((e) => Number((e as HTMLElement).dataset['points'] ?? 0)));
    expect(points.length).toBe(2);
    for (const p of points) expect(p).toBeGreaterThanOrEqual(3);
    const ticks = ((await page.getAttribute('.chart', 'data-ticks')) ?? '').split(' ').filter((t) => t !== '');
    expect(ticks.length).toBeGreaterThanOrEqual(2);
    for (const t of ticks) expect(t).toMatch(/^\d{2}:\d{2}(:\d{2})?$/);
    expect(new Set(ticks).size).toBe(ticks.length);
    await page.screenshot({ path: join(shots, 'queue-1360.png'), fullPage: true });
    await page.close();
  });

  test.each([1360, 1000, 420])('at %i px the overview tiles leave no tile alone on a row, and nothing is cut off', async (width) => {
    const page = await open(width, 900);
    await login(page, 'guest', 'guest');
    await page.waitForSelector('#overview-cards .card');
    await page.waitForSelector('#chart-rates .uplot');
    const rows = await page.$$eval('#overview-cards .card', (cards) => {
      const byTop = new Map<number, number>();
      for (const c of cards) {
        const top = Math.round(c.getBoundingClientRect().top);
        byTop.set(top, (byTop.get(top) ?? 0) + 1);
      }
      return [...byTop.values()];
    });
    expect(rows.reduce((a, b) => a + b, 0)).toBe(10);
    expect(new Set(rows).size).toBe(1); // every row holds as many tiles as the first
    expect(rows[0]).toBeGreaterThan(1);
    const nav = await page.$$eval('#nav a', (as) => as.filter((a) => !(a as HTMLElement).hidden).map((a) => a.getBoundingClientRect().toJSON() as DOMRect));
    expect(nav.length).toBe(6);
    for (const r of nav) {
      expect(r.left).toBeGreaterThanOrEqual(0);
      expect(r.right).toBeLessThanOrEqual(width);
      expect(r.width).toBeGreaterThan(0);
    }
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(width);
    await page.screenshot({ path: join(shots, `overview-${width}.png`), fullPage: true });
    await page.close();
  });

  test('a user without the administrator tag sees no Admin tab, and the Admin pages say what they need', async () => {
    const page = await open(1280);
    await login(page, 'watcher', 'w-secret');
    await page.waitForSelector('#overview-cards .card');
    expect(await page.isVisible('#nav a[data-nav="admin"]')).toBe(false);
    expect(await page.isVisible('#nav a[data-nav="queues"]')).toBe(true);
    await page.goto(`${base()}/#/admin/users`);
    await page.waitForSelector('#not-permitted');
    expect(await page.textContent('#not-permitted')).toContain('needs the administrator tag');
    expect(await page.$$('table')).toHaveLength(0);
    await page.close();
  });

  test('a policymaker gets the Admin tab with Policies only', async () => {
    const page = await open(1280);
    await login(page, 'rulemaker', 'r-secret');
    await page.waitForSelector('#overview-cards .card');
    expect(await page.isVisible('#nav a[data-nav="admin"]')).toBe(true);
    await page.click('#nav a[data-nav="admin"]');
    await page.waitForSelector('#add-policy-name');
    expect(await page.$$eval('.subnav a', (as) => as.map((a) => a.textContent))).toEqual(['Policies']);
    await page.goto(`${base()}/#/admin/definitions`);
    await page.waitForSelector('#not-permitted');
    await page.close();
    expect(errors).toEqual([]);
  });
});
