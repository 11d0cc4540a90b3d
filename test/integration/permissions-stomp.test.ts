import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { mgmt, type Mgmt } from '../helpers/management.js';
import { RawStomp } from '../helpers/stomp.js';

/**
 * Permissions over STOMP, as RabbitMQ's STOMP plugin enforces them: `login`/`passcode` and `host`
 * at CONNECT, then the same configure/write/read and topic checks as AMQP, reported in an ERROR
 * frame (`message: access_refused`) that ends the connection.
 */

let tb: TestBroker;
let api: Mgmt;
let port: number;

const login = { login: 'stompy', passcode: 'pw' };

beforeAll(async () => {
  tb = await startTestBroker();
  api = mgmt(tb.broker.ports.http!);
  port = tb.broker.ports.stomp!;
  await api.put('/users/stompy', { password: 'pw', tags: '' });
  // own queues, server-named subscription queues, amq.topic
  await api.put('/permissions/%2F/stompy', {
    configure: '^(stompy\\.|stomp-subscription-|amq\\.gen-)',
    write: '^(stompy\\.|stomp-subscription-|amq\\.gen-|amq\\.topic$|amq\\.default$)',
    read: '^(stompy\\.|stomp-subscription-|amq\\.gen-|amq\\.topic$)',
  });
  await api.put('/topic-permissions/%2F/stompy', { exchange: 'amq.topic', write: '^sensors\\.{username}\\.', read: '^sensors\\.' });
  await api.put('/queues/%2F/shared.q', { durable: false });
  await api.put('/vhosts/elsewhere', {});
});
afterAll(async () => {
  await tb.stop();
});

describe('CONNECT', () => {
  test('bad credentials: ERROR "Bad CONNECT", then the connection closes', async () => {
    const c = await RawStomp.open(port);
    c.send('CONNECT', { 'accept-version': '1.2', host: '/', login: 'stompy', passcode: 'wrong' });
    const err = await c.expectError('Bad CONNECT');
    expect(err.body.toString()).toBe("Access refused for user 'stompy'");
  });

  test('a vhost without permissions: ERROR "Bad CONNECT"', async () => {
    const c = await RawStomp.open(port);
    c.send('CONNECT', { 'accept-version': '1.2', host: 'elsewhere', ...login });
    const err = await c.expectError('Bad CONNECT');
    expect(err.body.toString()).toBe("Virtual host 'elsewhere' access denied");
  });
});

describe('SEND and SUBSCRIBE', () => {
  test('allowed destinations work end to end, with receipts', async () => {
    const sub = await RawStomp.connected(port, login);
    sub.send('SUBSCRIBE', { destination: '/topic/sensors.#', id: 's1', receipt: 'r-sub' });
    expect((await sub.next('RECEIPT')).headers['receipt-id']).toBe('r-sub');
    const pub = await RawStomp.connected(port, login);
    pub.send('SEND', { destination: '/topic/sensors.stompy.temp', receipt: 'r-1' }, '21.5');
    expect((await pub.next('RECEIPT')).headers['receipt-id']).toBe('r-1');
    pub.send('SEND', { destination: '/queue/stompy.jobs', receipt: 'r-2' }, 'job');
    expect((await pub.next('RECEIPT')).headers['receipt-id']).toBe('r-2');
    const m = await sub.next('MESSAGE');
    expect(m.headers['destination']).toBe('/topic/sensors.stompy.temp');
    expect(m.body.toString()).toBe('21.5');
    pub.end();
    sub.end();
  });

  test.each([
    ['a queue it may not configure', 'SEND', { destination: '/queue/other.jobs' }, /access to queue 'other.jobs' in vhost '\/' refused for user 'stompy'/],
    ['an exchange it may not write to', 'SEND', { destination: '/exchange/amq.direct/k' }, /access to exchange 'amq.direct' in vhost '\/' refused for user 'stompy'/],
    ['a routing key the topic permission refuses', 'SEND', { destination: '/topic/sensors.mallory.temp' }, /write access to topic 'sensors.mallory.temp' in exchange 'amq.topic'/],
    ['a queue it may not read', 'SUBSCRIBE', { destination: '/amq/queue/shared.q', id: 's1' }, /access to queue 'shared.q' in vhost '\/' refused for user 'stompy'/],
    ['a binding key the topic permission refuses', 'SUBSCRIBE', { destination: '/topic/alerts.#', id: 's1' }, /read access to topic 'alerts.#' in exchange 'amq.topic'/],
  ])('%s: ERROR access_refused', async (_what, command, headers, detail) => {
    const c = await RawStomp.connected(port, login);
    c.send(command, { ...headers, receipt: 'r' }, command === 'SEND' ? 'x' : undefined);
    const err = await c.expectError('access_refused');
    expect(err.body.toString()).toMatch(detail);
    // The reply text without its `ACCESS_REFUSED - ` prefix, as RabbitMQ writes an AMQP error on STOMP.
    expect(err.body.toString()).toMatch(/^(access|write access|read access) to /);
    expect(err.headers['receipt-id']).toBe('r');
  });

  test('nothing was created or delivered by the refused frames', async () => {
    const vhost = tb.broker.core.vhosts.get('/')!;
    expect(vhost.queues.has('other.jobs')).toBe(false);
    expect(vhost.queues.get('shared.q')!.consumerCount).toBe(0);
  });
});

describe('management sees STOMP clients', () => {
  test('listed with protocol STOMP 1.2 and closable', async () => {
    const c = await RawStomp.connected(port, login);
    const row = await waitFor(async () => (await api.list('/connections')).body.find((x) => x['user'] === 'stompy'), 3000, 'listed');
    expect(row['protocol']).toBe('STOMP 1.2');
    expect((await api.del(`/connections/${encodeURIComponent(String(row['name']))}`)).status).toBe(204);
    await c.waitClosed();
  });
});
