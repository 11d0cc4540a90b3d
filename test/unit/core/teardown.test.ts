import { describe, expect, test, vi } from 'vitest';
import { BrokerError, Core, Teardown, type CoreConnection, type Delivery, type DeliverySink, type TeardownWork, type VHost } from '../../../src/core/index.js';
import { waitFor } from '../../helpers/broker.js';

class Sink implements DeliverySink {
  readonly got: Delivery[] = [];
  readonly congested = false;
  deliver(d: Delivery): void {
    this.got.push(d);
  }
}

function setup(): { core: Core; vh: VHost; connect: (clientId?: string) => CoreConnection } {
  const core = new Core();
  const vh = core.vhosts.get('/')!;
  let n = 0;
  const connect = (clientId = `c${++n}`): CoreConnection =>
    core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/', clientId }, { forceClose: () => undefined });
  return { core, vh, connect };
}

const msg = (exchange: string, routingKey: string, body = 'x') => ({ exchange, routingKey, properties: {}, body: Buffer.from(body) });

/** Makes every walk over `map` throw: the code under test must not iterate it. */
function forbidWalks(map: object, what: string): () => void {
  const walks = (['values', 'keys', 'entries', 'forEach', Symbol.iterator] as const).filter((m) => typeof (map as Record<PropertyKey, unknown>)[m] === 'function');
  const spies = walks.map((m) =>
    vi.spyOn(map as unknown as Record<PropertyKey, () => unknown>, m as never).mockImplementation(() => {
      throw new Error(`walked ${what}`);
    }),
  );
  return () => spies.forEach((s) => s.mockRestore());
}

/** Ends the current event-loop turn `n` times (the teardown drains a slice per turn). */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

const OTHERS = 10_000;

describe('teardown touches only what it tears down', () => {
  test('a queue delete with 10,000 other bound queues removes only its own bindings and walks no vhost-wide map', () => {
    const { vh, connect } = setup();
    const ch = connect().openChannel(1);
    for (let i = 0; i < OTHERS; i++) {
      ch.declareQueue(`other-${i}`, {});
      ch.bindQueue(`other-${i}`, 'amq.topic', `t.${i}`);
      ch.bindQueue(`other-${i}`, 'amq.direct', `d.${i}`);
    }
    ch.declareQueue('victim', {});
    ch.bindQueue('victim', 'amq.topic', 't.*');
    ch.bindQueue('victim', 'amq.topic', 'victim.#');
    ch.bindQueue('victim', 'amq.direct', 'd.7');
    const topic = vh.getExchange('amq.topic');
    const direct = vh.getExchange('amq.direct');
    expect([topic.bindings.size, direct.bindings.size]).toEqual([OTHERS + 2, OTHERS + 1]);

    const exchanges = [...vh.exchanges.values()];
    const restore = [
      forbidWalks(vh.queues, 'the queues of the vhost'),
      forbidWalks(vh.exchanges, 'the exchanges of the vhost'),
      ...exchanges.map((x) => forbidWalks(x.bindings, `the bindings of '${x.name}'`)),
    ];
    try {
      expect(ch.deleteQueue('victim')).toBe(0);
    } finally {
      restore.forEach((r) => r());
    }

    expect([topic.bindings.size, direct.bindings.size]).toEqual([OTHERS, OTHERS]);
    expect([topic.router.size, direct.router.size]).toEqual([OTHERS, OTHERS]);
    expect(vh.queues.size).toBe(OTHERS);
    const q = vh.getQueue('other-7');
    expect(vh.bindingsTo(q).map((b) => `${b.source.name} ${b.routingKey}`)).toEqual(['amq.topic t.7', 'amq.direct d.7']);
    // The others still route as before.
    expect(ch.publish(msg('amq.topic', 't.7')).routed).toBe(1);
    expect(ch.publish(msg('amq.direct', 'd.7')).routed).toBe(1);
    expect(q.readyCount).toBe(2);
  });

  test("a connection close with 10,000 other connections' exclusive queues drops only its own", () => {
    const { core, vh, connect } = setup();
    const others: CoreConnection[] = [];
    for (let i = 0; i < OTHERS; i++) {
      const c = connect();
      const ch = c.openChannel(1);
      ch.declareQueue(`excl-${i}`, { exclusive: true });
      ch.bindQueue(`excl-${i}`, 'amq.topic', `e.${i}`);
      others.push(c);
    }
    const mine = connect();
    const ch = mine.openChannel(1);
    ch.declareQueue('mine-1', { exclusive: true });
    ch.declareQueue('mine-2', { exclusive: true, autoDelete: true });
    ch.bindQueue('mine-1', 'amq.topic', 'mine.*');
    ch.consume('mine-2', { noAck: true }, new Sink());
    const topic = vh.getExchange('amq.topic');

    const restore = [forbidWalks(vh.queues, 'the queues of the vhost'), forbidWalks(topic.bindings, 'the bindings of amq.topic')];
    try {
      mine.close();
    } finally {
      restore.forEach((r) => r());
    }
    expect(core.teardown.size).toBe(0);
    expect(vh.queues.has('mine-1') || vh.queues.has('mine-2')).toBe(false);
    expect(vh.queues.size).toBe(OTHERS);
    expect(topic.bindings.size).toBe(OTHERS);
    expect(core.connections.size).toBe(OTHERS);
    expect(vh.bindingsTo(vh.getQueue('excl-42')).map((b) => b.routingKey)).toEqual(['e.42']);
  });

  test('unbinding and rebinding keeps the per-queue index in step with the exchanges', () => {
    const { vh, connect } = setup();
    const ch = connect().openChannel(1);
    ch.declareQueue('q', {});
    ch.bindQueue('q', 'amq.topic', 'a');
    ch.bindQueue('q', 'amq.topic', 'b');
    ch.bindQueue('q', 'amq.topic', 'b'); // the same binding twice is one binding
    ch.unbindQueue('q', 'amq.topic', 'a');
    const q = vh.getQueue('q');
    expect(vh.bindingsTo(q).map((b) => b.routingKey)).toEqual(['b']);
    ch.unbindQueue('q', 'amq.topic', 'b');
    expect(vh.bindingsTo(q)).toEqual([]);
    expect(q.inbound).toBeUndefined();
  });
});

describe('Teardown', () => {
  class Work implements TeardownWork {
    runs = 0;
    constructor(
      private readonly order: number[],
      private readonly id: number,
    ) {}
    finishTeardown(): void {
      this.runs++;
      this.order.push(this.id);
    }
  }

  test('runs work at once while the turn has budget, then a slice per turn, in order', async () => {
    const t = new Teardown(() => undefined, 1000, 3);
    const order: number[] = [];
    const works = Array.from({ length: 10 }, (_, i) => new Work(order, i));
    for (const w of works) t.add(w);
    expect(order).toEqual([0, 1, 2]);
    expect(t.size).toBe(7);
    await turns(1);
    expect(order).toEqual([0, 1, 2, 3, 4, 5]);
    await waitFor(() => t.size === 0);
    expect(order).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(works.every((w) => w.runs === 1)).toBe(true);
    expect(t.finished).toBe(10);
    // A new turn has its budget back: the next close runs at once again.
    await turns(2);
    t.add(new Work(order, 10));
    expect(order.at(-1)).toBe(10);
  });

  test('flush finishes everything waiting, and a failing close is reported without stopping the others', () => {
    const errors: unknown[] = [];
    const t = new Teardown((e) => errors.push(e), 1000, 1);
    const order: number[] = [];
    t.add(new Work(order, 0));
    t.add({
      finishTeardown: () => {
        throw new Error('boom');
      },
    });
    t.add(new Work(order, 2));
    expect(t.size).toBe(2);
    t.flush();
    expect(t.size).toBe(0);
    expect(order).toEqual([0, 2]);
    expect(errors.map((e) => (e as Error).message)).toEqual(['boom']);
  });
});

/** Closes `n` connections with nothing to tear down, so the turn's budget is spent. */
function spendBudget(connect: () => CoreConnection, n = 300): void {
  for (let i = 0; i < n; i++) connect().close();
}

describe('Teardown in a storm of closes', () => {
  test('is storming while closes wait or a slice runs, and reports the quiet closes once, when nothing waits any more', async () => {
    const reports: number[] = [];
    const t = new Teardown(() => undefined, 1000, 2, (closed) => reports.push(closed));
    const seen: boolean[] = [];
    // Each close notes whether it ran in a storm and, if so, counts itself as a quiet close.
    const close = (): TeardownWork => ({
      finishTeardown: () => {
        seen.push(t.storming);
        if (t.storming) t.quietCloses++;
      },
    });
    expect(t.storming).toBe(false);
    for (let i = 0; i < 7; i++) t.add(close());
    // The first two ran at once, before anything waited: not a storm, logged on their own.
    expect(seen).toEqual([false, false]);
    expect(t.storming).toBe(true);
    await waitFor(() => t.size === 0 && !t.storming);
    expect(seen).toEqual([false, false, true, true, true, true, true]);
    expect(reports).toEqual([5]);
    expect(t.quietCloses).toBe(0);
    // A later storm is reported on its own.
    await turns(2);
    for (let i = 0; i < 4; i++) t.add(close());
    await waitFor(() => reports.length === 2);
    expect(reports).toEqual([5, 2]);
  });

  test('flush reports the quiet closes of a storm cut short (broker shutdown)', () => {
    const reports: number[] = [];
    const t = new Teardown(() => undefined, 1000, 1, (closed) => reports.push(closed));
    for (let i = 0; i < 3; i++) t.add({ finishTeardown: () => void (t.storming && t.quietCloses++) });
    t.flush();
    expect(reports).toEqual([2]);
  });
});

describe('a close that waits for its slice leaves no stale state', () => {
  test('its exclusive queues are gone at once: same names are free, nothing is routed to them', async () => {
    const { core, vh, connect } = setup();
    const closing: CoreConnection[] = [];
    for (let i = 0; i < 600; i++) {
      const c = connect();
      const ch = c.openChannel(1);
      ch.declareQueue(`session-${i}`, { exclusive: true });
      ch.bindQueue(`session-${i}`, 'amq.topic', 'storm.key');
      closing.push(c);
    }
    const topic = vh.getExchange('amq.topic');
    for (const c of closing) c.close();
    expect(core.teardown.size).toBeGreaterThan(0); // a storm: most closes wait for later turns
    expect([...vh.queues.keys()].filter((n) => n.startsWith('session-'))).toEqual([]);
    const publisher = connect().openChannel(1);
    expect(publisher.publish(msg('amq.topic', 'storm.key')).routed).toBe(0);

    // A client coming back declares the same names and binds the same keys before the old ones are torn down.
    const back = connect();
    const ch = back.openChannel(1);
    const sink = new Sink();
    for (let i = 0; i < 600; i += 100) {
      ch.declareQueue(`session-${i}`, { exclusive: true });
      ch.bindQueue(`session-${i}`, 'amq.topic', 'storm.key');
    }
    ch.consume('session-0', { noAck: true }, sink);
    expect(publisher.publish(msg('amq.topic', 'storm.key')).routed).toBe(6);
    expect(sink.got.length).toBe(0);
    await waitFor(() => sink.got.length === 1);

    await waitFor(() => core.teardown.size === 0);
    expect(topic.bindings.size).toBe(6);
    expect(topic.router.size).toBe(6);
    expect(core.connections.size).toBe(2); // the publisher and the client that came back
    expect(publisher.publish(msg('amq.topic', 'storm.key')).routed).toBe(6);
  });

  test("a new consumer finishes the pending close of the queue's old consumer first: requeued messages come back first, in order", async () => {
    const { core, vh, connect } = setup();
    const a = connect();
    const cha = a.openChannel(1);
    cha.declareQueue('durable-session', { durable: true });
    const old = new Sink();
    cha.qos(10, false);
    cha.consume('durable-session', { noAck: false, exclusive: true }, old);
    const pub = connect().openChannel(1);
    for (let i = 0; i < 3; i++) pub.publish(msg('', 'durable-session', `m${i}`));
    await waitFor(() => old.got.length === 3);
    cha.ack(old.got[0]!.deliveryTag);

    spendBudget(connect);
    a.close();
    expect(core.teardown.size).toBeGreaterThan(0);
    pub.publish(msg('', 'durable-session', 'm3'));
    const q = vh.getQueue('durable-session');
    expect(q.unackedCount + q.readyCount).toBe(3); // m1, m2 still held by the closing channel; m3 ready

    // The taker-over's exclusive consume is not refused by the departed exclusive consumer.
    const b = connect().openChannel(1);
    const fresh = new Sink();
    b.consume('durable-session', { noAck: true, exclusive: true }, fresh);
    await waitFor(() => fresh.got.length === 3);
    expect(fresh.got.map((d) => [d.message.body.toString(), d.redelivered])).toEqual([
      ['m1', true],
      ['m2', true],
      ['m3', false],
    ]);
    expect(q.consumerCount).toBe(1);
  });

  test('an if-unused delete does not count the consumers of a closing connection', () => {
    const { core, vh, connect } = setup();
    const a = connect();
    a.openChannel(1).declareQueue('shared', {});
    a.openChannel(2).consume('shared', { noAck: true }, new Sink());
    spendBudget(connect);
    a.close();
    expect(core.teardown.size).toBeGreaterThan(0);
    const other = connect().openChannel(1);
    expect(other.deleteQueue('shared', true)).toBe(0);
    expect(vh.queues.has('shared')).toBe(false);
  });

  test('an explicit delete while a close is pending is still refused for another connection when in use', () => {
    const { connect } = setup();
    const a = connect().openChannel(1);
    a.declareQueue('busy', {});
    a.consume('busy', { noAck: true }, new Sink());
    const other = connect().openChannel(1);
    expect(() => other.deleteQueue('busy', true)).toThrow(BrokerError);
  });
});
