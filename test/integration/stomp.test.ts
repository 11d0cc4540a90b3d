import type { Client } from '@stomp/stompjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { NO_PERSISTENCE, type Persistence } from '../../src/core/index.js';
import type { QueueStore } from '../../src/core/persistence.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { RawStomp, collect, receiptFor, stompClient, wsUrl } from '../helpers/stomp.js';

let tb: TestBroker;
let url: string;
let port: number;
const clients: Client[] = [];

beforeAll(async () => {
  tb = await startTestBroker();
  url = wsUrl(tb.broker.ports.http!);
  port = tb.broker.ports.stomp!;
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.deactivate()));
  await tb.stop();
});

async function client(opts: Parameters<typeof stompClient>[1] = {}): Promise<Client> {
  const c = await stompClient(url, opts);
  clients.push(c);
  return c;
}

const vhost = () => tb.broker.core.vhosts.get('/')!;

/** A store whose writes complete when the test says so: durable queues created meanwhile use it. */
function slowPersistence(write: () => Promise<void>): Persistence {
  const store: QueueStore = {
    memoryBudget: 0,
    frontier: Number.MAX_SAFE_INTEGER,
    enqueue: write,
    remove: () => undefined,
    delivering: () => undefined,
    pageIn: () => undefined,
    dropPaged: () => undefined,
    deleted: () => undefined,
  };
  return { ...NO_PERSISTENCE, openQueue: () => store };
}

/** Subscribes and waits until the server has set the subscription up. */
async function subscribed(c: Client, destination: string, headers: Record<string, string> = {}): Promise<ReturnType<typeof collect>> {
  const receipt = `sub-${Math.random()}`;
  const done = receiptFor(c, receipt);
  const s = collect(c, destination, { ...headers, receipt });
  await done;
  return s;
}

describe('@stomp/stompjs over WebSocket', () => {
  test('connects on /ws with the v12.stomp subprotocol and on /stomp, in every version', async () => {
    for (const versions of [['1.2'], ['1.1'], ['1.0']]) {
      const c = await client({ versions });
      expect(c.connectedVersion).toBe(versions[0]);
      await c.deactivate();
    }
    const plain = await stompClient(wsUrl(tb.broker.ports.http!, '/stomp'));
    expect(plain.connected).toBe(true);
    await plain.deactivate();
  });

  test('SEND and SUBSCRIBE on /queue/: the queue is declared durable, body and headers arrive', async () => {
    const c = await client();
    const s = await subscribed(c, '/queue/orders');
    const q = vhost().queues.get('orders')!;
    expect([q.durable, q.exclusive, q.autoDelete]).toEqual([true, false, false]);
    c.publish({ destination: '/queue/orders', body: 'order #1', headers: { 'content-type': 'text/plain', priority: '4', 'x-shop': 'berlin' } });
    const [m] = await waitFor(() => (s.messages.length === 1 ? s.messages : undefined));
    expect(m!.body).toBe('order #1');
    expect(m!.headers['destination']).toBe('/queue/orders');
    expect(m!.headers['content-type']).toBe('text/plain');
    expect(m!.headers['priority']).toBe('4');
    expect(m!.headers['x-shop']).toBe('berlin');
    expect(m!.headers['redelivered']).toBe('false');
    s.unsubscribe();
  });

  test('SEND to /queue/ alone declares the queue, so messages wait for a later subscriber', async () => {
    const c = await client();
    const r = receiptFor(c, 'sent');
    c.publish({ destination: '/queue/later', body: 'kept', headers: { receipt: 'sent' } });
    await r;
    expect(vhost().queues.get('later')?.readyCount).toBe(1);
    const s = await subscribed(c, '/queue/later');
    await waitFor(() => s.messages.length === 1);
    expect(s.messages[0]!.body).toBe('kept');
  });

  test('/amq/queue/ consumes an existing queue and refuses a missing one', async () => {
    const c = await client();
    const raw = await RawStomp.connected(port);
    raw.send('SEND', { destination: '/queue/pre-existing', receipt: 'r' }, 'via amq/queue');
    await raw.next('RECEIPT');
    const s = await subscribed(c, '/amq/queue/pre-existing');
    await waitFor(() => s.messages.length === 1);
    expect(s.messages[0]!.body).toBe('via amq/queue');
    raw.send('SUBSCRIBE', { destination: '/amq/queue/does-not-exist', id: 'x' });
    const err = await raw.expectError('not_found');
    expect(err.body.toString()).toContain("no queue 'does-not-exist'");
  });

  test('/topic/ subscriptions get a private auto-delete queue; * and # work', async () => {
    const c = await client();
    const star = await subscribed(c, '/topic/sensors.*.temp');
    const hash = await subscribed(c, '/topic/sensors.#');
    const before = [...vhost().queues.values()].filter((q) => q.name.startsWith('stomp-subscription-'));
    expect(before.length).toBeGreaterThanOrEqual(2);
    for (const q of before) expect([q.durable, q.exclusive, q.autoDelete]).toEqual([false, true, true]);
    c.publish({ destination: '/topic/sensors.kitchen.temp', body: '21.5' });
    c.publish({ destination: '/topic/sensors.kitchen.humidity', body: '40' });
    await waitFor(() => star.messages.length === 1 && hash.messages.length === 2);
    expect(star.messages[0]!.headers['destination']).toBe('/topic/sensors.kitchen.temp');
    expect(hash.messages.map((m) => m.body).sort()).toEqual(['21.5', '40']);
    star.unsubscribe();
    hash.unsubscribe();
    await waitFor(() => before.every((q) => !vhost().queues.has(q.name)), 2000, 'subscription queues to go');
  });

  test('/exchange/<x>/<key> binds to any exchange; a missing exchange is not_found', async () => {
    const c = await client();
    const s = await subscribed(c, '/exchange/amq.direct/jobs');
    c.publish({ destination: '/exchange/amq.direct/jobs', body: 'job' });
    c.publish({ destination: '/exchange/amq.direct/other', body: 'not for us' });
    await waitFor(() => s.messages.length === 1);
    expect(s.messages[0]!.headers['destination']).toBe('/exchange/amq.direct/jobs');
    const raw = await RawStomp.connected(port);
    raw.send('SUBSCRIBE', { destination: '/exchange/no-such-exchange/k', id: '1' });
    expect((await raw.expectError('not_found')).body.toString()).toContain('no-such-exchange');
  });

  test('a durable topic subscription keeps messages while its subscriber is away; UNSUBSCRIBE durable:true removes it', async () => {
    const a = await client({ connectHeaders: { 'client-id': 'dash' } });
    const headers = { id: 'durable-1', durable: 'true', ack: 'client' };
    const s1 = await subscribed(a, '/topic/alerts.#', headers);
    const named = [...vhost().queues.values()].find((q) => q.durable && q.name.startsWith('stomp-subscription-'))!;
    expect([named.exclusive, named.autoDelete]).toEqual([false, false]);
    s1.unsubscribe();
    await a.deactivate();

    const pub = await client();
    const r = receiptFor(pub, 'alert');
    pub.publish({ destination: '/topic/alerts.fire', body: 'while away', headers: { receipt: 'alert' } });
    await r;
    expect(named.readyCount).toBe(1);

    const b = await client();
    const s2 = await subscribed(b, '/topic/alerts.#', headers);
    await waitFor(() => s2.messages.length === 1);
    expect(s2.messages[0]!.body).toBe('while away');
    s2.messages[0]!.ack();
    const gone = receiptFor(b, 'unsub');
    b.unsubscribe('durable-1', { durable: 'true', receipt: 'unsub' });
    await gone;
    expect(vhost().queues.has(named.name)).toBe(false);
  });

  test('x-queue-name names the subscription queue and x-* headers become queue arguments', async () => {
    const c = await client();
    await subscribed(c, '/topic/named.key', { 'x-queue-name': 'my-named-sub', 'x-max-length': '5', 'x-message-ttl': '60000' });
    const q = vhost().queues.get('my-named-sub')!;
    expect(q.args).toEqual({ 'x-max-length': 5, 'x-message-ttl': 60000 });
    expect(q.limits.maxLength).toBe(5);
  });

  test('every STOMP connection is in core.connections with its protocol version', async () => {
    await client({ versions: ['1.1'] });
    const protocols = [...tb.broker.core.connections].map((c) => c.info.protocol);
    expect(protocols).toContain('STOMP 1.1');
    expect(protocols).toContain('STOMP 1.2');
  });
});

describe('acknowledgement modes and flow', () => {
  test('ack:client is cumulative: one ACK settles everything before it on that subscription', async () => {
    const c = await client();
    const s = await subscribed(c, '/queue/ack-client', { ack: 'client' });
    for (let i = 0; i < 3; i++) c.publish({ destination: '/queue/ack-client', body: `m${i}` });
    await waitFor(() => s.messages.length === 3);
    const q = vhost().queues.get('ack-client')!;
    expect(q.unackedCount).toBe(3);
    s.messages[1]!.ack();
    await waitFor(() => q.unackedCount === 1);
    s.messages[2]!.ack();
    await waitFor(() => q.unackedCount === 0);
  });

  test('ack:client-individual settles one message; unacknowledged ones come back redelivered', async () => {
    const a = await client();
    const s = await subscribed(a, '/queue/ack-individual', { ack: 'client-individual' });
    for (let i = 0; i < 3; i++) a.publish({ destination: '/queue/ack-individual', body: `m${i}` });
    await waitFor(() => s.messages.length === 3);
    s.messages[1]!.ack();
    const q = vhost().queues.get('ack-individual')!;
    await waitFor(() => q.unackedCount === 2);
    await a.deactivate();
    await waitFor(() => q.readyCount === 2);
    const b = await client();
    const again = await subscribed(b, '/queue/ack-individual', { ack: 'client-individual' });
    await waitFor(() => again.messages.length === 2);
    expect(again.messages.map((m) => [m.body, m.headers['redelivered']])).toEqual([
      ['m0', 'true'],
      ['m2', 'true'],
    ]);
    for (const m of again.messages) m.ack();
    await waitFor(() => q.unackedCount === 0 && q.readyCount === 0);
  });

  test('NACK requeues by default; requeue:false dead-letters', async () => {
    const c = await client();
    const dead = await subscribed(c, '/queue/nack-dead');
    const s = await subscribed(c, '/queue/nack-src', {
      ack: 'client-individual',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': 'nack-dead',
    });
    c.publish({ destination: '/queue/nack-src', body: 'poison' });
    await waitFor(() => s.messages.length === 1);
    s.messages[0]!.nack();
    await waitFor(() => s.messages.length === 2);
    expect(s.messages[1]!.headers['redelivered']).toBe('true');
    s.messages[1]!.nack({ requeue: 'false' });
    await waitFor(() => dead.messages.length === 1);
    expect(dead.messages[0]!.body).toBe('poison');
  });

  test('prefetch-count bounds the unacknowledged messages of a subscription', async () => {
    const c = await client();
    for (let i = 0; i < 5; i++) c.publish({ destination: '/queue/prefetch', body: `m${i}` });
    const s = await subscribed(c, '/queue/prefetch', { ack: 'client-individual', 'prefetch-count': '2' });
    await waitFor(() => s.messages.length === 2);
    const q = vhost().queues.get('prefetch')!;
    expect(q.readyCount).toBe(3);
    s.messages[0]!.ack();
    await waitFor(() => s.messages.length === 3);
    expect(q.readyCount).toBe(2);
  });
});

describe('transactions and receipts', () => {
  test('SEND, ACK and NACK inside BEGIN/COMMIT happen at COMMIT; ABORT discards; two transactions at once', async () => {
    const c = await client();
    const out = await subscribed(c, '/queue/tx-out');
    const inq = await subscribed(c, '/queue/tx-in', { ack: 'client-individual' });
    c.publish({ destination: '/queue/tx-in', body: 'to ack' });
    await waitFor(() => inq.messages.length === 1);
    const q = vhost().queues.get('tx-in')!;

    const t1 = c.begin('t1');
    const t2 = c.begin('t2');
    c.publish({ destination: '/queue/tx-out', body: 'from t1', headers: { transaction: t1.id } });
    c.publish({ destination: '/queue/tx-out', body: 'from t2', headers: { transaction: t2.id } });
    inq.messages[0]!.ack({ transaction: t1.id });
    const flushed = receiptFor(c, 'after');
    c.publish({ destination: '/queue/tx-out', body: 'outside', headers: { receipt: 'after' } });
    await flushed;
    await waitFor(() => out.messages.length === 1);
    expect(out.messages[0]!.body).toBe('outside');
    expect(q.unackedCount).toBe(1);

    t2.abort();
    t1.commit();
    await waitFor(() => out.messages.length === 2);
    expect(out.messages[1]!.body).toBe('from t1');
    await waitFor(() => q.unackedCount === 0);
    const r = receiptFor(c, 'last');
    c.publish({ destination: '/queue/tx-out', body: 'last', headers: { receipt: 'last' } });
    await r;
    await waitFor(() => out.messages.length === 3);
    expect(out.messages.map((m) => m.body)).toEqual(['outside', 'from t1', 'last']);
  });

  test('COMMIT or ABORT of an unknown transaction, and a SEND into one, are errors', async () => {
    for (const wire of ['COMMIT\ntransaction:nope\n\n\u0000', 'ABORT\ntransaction:nope\n\n\u0000', 'SEND\ndestination:/queue/x\ntransaction:nope\n\nx\u0000']) {
      const c = await RawStomp.connected(port);
      c.write(wire);
      await c.expectError('Bad transaction');
    }
  });

  test('the RECEIPT of a SEND waits until the core has settled the publish; receipts stay in order', async () => {
    let release!: () => void;
    const pending = new Promise<void>((r) => (release = r));
    const fake = slowPersistence(() => pending);
    const real = tb.broker.core.persistence;
    tb.broker.core.persistence = fake;
    try {
      const c = await RawStomp.connected(port);
      c.send('SUBSCRIBE', { destination: '/queue/fsync-probe', id: 'probe', receipt: 'sub' });
      await c.next('RECEIPT');
      c.send('SEND', { destination: '/queue/settle-durable', persistent: 'true', receipt: 'durable' }, 'x');
      c.send('SEND', { destination: '/queue/fsync-probe' }, 'processed after');
      c.send('SUBSCRIBE', { destination: '/queue/other', id: 'o', receipt: 'later' });
      // The probe message proves the server went past both frames; no receipt may have come yet.
      expect((await c.next()).command).toBe('MESSAGE');
      expect(c.frames.filter((f) => f.command === 'RECEIPT')).toHaveLength(1);
      release();
      expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('durable');
      expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('later');
      c.send('UNSUBSCRIBE', { id: 'probe' });
      c.send('DISCONNECT', { receipt: 'bye' });
      await c.next('RECEIPT');
      const gone = await RawStomp.connected(port);
      gone.send('SUBSCRIBE', { destination: '/queue/settle-durable', id: 'drain', receipt: 'x' });
      await gone.next('RECEIPT');
      await gone.next('MESSAGE');
      gone.destroy();
      vhost().deleteQueue('settle-durable', false, false, 0);
    } finally {
      tb.broker.core.persistence = real;
    }
  });

  test('a publish the core rejects gets an ERROR carrying the receipt-id', async () => {
    const fake = slowPersistence(() => Promise.reject(new Error('disk on fire')));
    const real = tb.broker.core.persistence;
    tb.broker.core.persistence = fake;
    try {
      const c = await RawStomp.connected(port);
      c.send('SEND', { destination: '/queue/settle-reject', persistent: 'true', receipt: 'doomed' }, 'x');
      const f = await c.expectError('Message rejected');
      expect(f.headers['receipt-id']).toBe('doomed');
      vhost().deleteQueue('settle-reject', false, false, 0);
    } finally {
      tb.broker.core.persistence = real;
    }
  });
});

describe('MESSAGE headers', () => {
  test('server-owned headers win over what a publisher put in the message', async () => {
    const c = await client();
    const s = await subscribed(c, '/queue/forgery', { id: 'real-sub' });
    c.publish({
      destination: '/queue/forgery',
      body: 'x',
      headers: { subscription: 'evil', redelivered: 'true', ack: 'evil', 'x-fine': 'ok' },
    });
    await waitFor(() => s.messages.length === 1);
    const h = s.messages[0]!.headers;
    expect(h['subscription']).toBe('real-sub');
    expect(h['redelivered']).toBe('false');
    expect(h['destination']).toBe('/queue/forgery');
    expect(h['message-id']).toMatch(/^T_real-sub@@session-/);
    expect(h['x-fine']).toBe('ok');
  });

  test('the AMQP properties a STOMP publisher sets come back as headers', async () => {
    const c = await client();
    const s = await subscribed(c, '/queue/props');
    const headers = {
      'content-type': 'application/json',
      'content-encoding': 'identity',
      'correlation-id': 'corr-1',
      'reply-to': '/queue/answers',
      expiration: '60000',
      priority: '7',
      persistent: 'true',
      'amqp-message-id': 'm-42',
      timestamp: '1700000000',
      type: 'reading',
      'user-id': 'guest',
      'app-id': 'thermo',
    };
    c.publish({ destination: '/queue/props', body: '{}', headers });
    await waitFor(() => s.messages.length === 1);
    const h = s.messages[0]!.headers;
    for (const [k, v] of Object.entries(headers)) expect([k, h[k]]).toEqual([k, v]);
  });

  test('a user-id other than the authenticated user is refused', async () => {
    const c = await RawStomp.connected(port);
    c.send('SEND', { destination: '/queue/x', 'user-id': 'mallory' }, 'x');
    expect((await c.expectError('precondition_failed')).body.toString()).toContain('mallory');
  });

  test('a queue deleted under a subscription: ERROR naming the subscription, the connection stays', async () => {
    const c = await RawStomp.connected(port);
    c.send('SUBSCRIBE', { destination: '/queue/doomed', id: 'd', receipt: 'r' });
    await c.next('RECEIPT');
    vhost().deleteQueue('doomed', false, false, 0);
    const f = await c.next('ERROR');
    expect(f.headers['message']).toBe('Server cancelled subscription');
    expect(f.headers['subscription']).toBe('d');
    c.send('SUBSCRIBE', { destination: '/queue/doomed', id: 'd', receipt: 'again' });
    expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('again');
    c.destroy();
  });

  test('the ready line names the STOMP port; with the listener off, STOMP over WebSocket still works', async () => {
    expect(tb.broker.readyLine).toContain(`stomp=${port}`);
    const noTcp = await startTestBroker({ stompPort: null });
    try {
      expect(noTcp.broker.readyLine).not.toContain('stomp=');
      expect(noTcp.broker.ports.stomp).toBeUndefined();
      const c = await stompClient(wsUrl(noTcp.broker.ports.http!));
      expect(c.connected).toBe(true);
      await c.deactivate();
    } finally {
      await noTcp.stop();
    }
  });

  test('broker shutdown closes STOMP connections with an ERROR', async () => {
    const other = await startTestBroker();
    const c = await RawStomp.connected(other.broker.ports.stomp!);
    const stopping = other.stop();
    expect((await c.expectError('connection_forced')).body.toString()).toContain('shutdown');
    await stopping;
  });
});
