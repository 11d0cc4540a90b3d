import type { Duplex } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, test, vi } from 'vitest';
import { HARD_LIMIT, HIGH_WATERMARK, Link, PauseReason, SWEEP_INTERVAL_MS, SWEEP_SLICE, sweepCounts, sweptLinks, type LinkOwner } from '../../../src/transport/link.js';
import { duplexPair } from '../../helpers/duplex-pair.js';

const log = pino({ level: 'silent' });

class Owner implements LinkOwner {
  readonly input: Buffer[] = [];
  drains = 0;
  closedWith: string | undefined;
  expired: string[] = [];
  internal: unknown[] = [];
  throwOnInput = false;
  onInput(chunk: Buffer): void {
    if (this.throwOnInput) throw new Error('boom');
    this.input.push(chunk);
  }
  failInternal(err: unknown): void {
    this.internal.push(err);
  }
  linkDrained(): void {
    this.drains++;
  }
  linkClosed(reason: string): void {
    this.closedWith = reason;
  }
  linkExpired(kind: 'handshake' | 'silence'): boolean {
    this.expired.push(kind);
    return false;
  }
}

function linked(): { link: Link; owner: Owner; server: Duplex; client: Duplex } {
  const [server, client] = duplexPair();
  const owner = new Owner();
  const link = new Link(server, owner, log, 'memory');
  return { link, owner, server, client };
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await turn();
  expect(cond()).toBe(true);
}

afterEach(() => {
  vi.useRealTimers();
});

describe('Link', () => {
  test('writes of one tick are corked into one batch and counted', async () => {
    const { link, client } = linked();
    const got: Buffer[] = [];
    client.on('data', (c: Buffer) => got.push(c));
    link.traffic = { sendOct: 0, sendCnt: 0, recvOct: 0 };
    link.write(Buffer.from('ab'));
    link.write(Buffer.from('cd'));
    expect(link.buffered).toBe(4); // corked: nothing has left yet
    await until(() => Buffer.concat(got).length === 4);
    expect(Buffer.concat(got).toString()).toBe('abcd');
    expect(link.bytesOut).toBe(4);
    expect(link.framesOut).toBe(2);
    expect(link.traffic).toEqual({ sendOct: 4, sendCnt: 2, recvOct: 0 });
  });

  test('small writes of one tick reach the stream as one chunk; a large one keeps its place; end() sends what is pending', async () => {
    const { link, server, client } = linked();
    const chunks: Buffer[] = [];
    const write = server.write.bind(server);
    server.write = ((chunk: Buffer, ...rest: never[]) => {
      chunks.push(Buffer.from(chunk));
      return write(chunk, ...rest);
    }) as typeof server.write;
    const got: Buffer[] = [];
    client.on('data', (c: Buffer) => got.push(c));

    for (let i = 0; i < 100; i++) link.write(Buffer.from([i]));
    expect(chunks).toHaveLength(0);
    expect(link.buffered).toBe(100);
    await until(() => Buffer.concat(got).length === 100);
    expect(chunks).toHaveLength(1);
    expect([...Buffer.concat(got)]).toEqual(Array.from({ length: 100 }, (_, i) => i));

    chunks.length = 0;
    got.length = 0;
    const large = Buffer.alloc(64 * 1024, 7);
    link.write(Buffer.from('a'));
    link.write(Buffer.from('b'));
    link.write(large);
    link.write(Buffer.from('c'));
    await until(() => Buffer.concat(got).length === large.length + 3);
    // The two small writes before it as one chunk, the large one as it is, then the one after.
    expect(chunks.map((c) => c.length)).toEqual([2, large.length, 1]);
    const all = Buffer.concat(got);
    expect(all.subarray(0, 2).toString()).toBe('ab');
    expect(all.subarray(2, 2 + large.length).equals(large)).toBe(true);
    expect(all.subarray(-1).toString()).toBe('c');

    got.length = 0;
    let ended = false;
    client.on('end', () => (ended = true));
    link.write(Buffer.from('x'));
    link.end(Buffer.from('y'));
    client.resume();
    await until(() => ended);
    expect(Buffer.concat(got).toString()).toBe('xy');
  });

  test('an acknowledgement written after deliveries leaves after the dispatch the same turn scheduled', async () => {
    const pub = linked();
    const sub = linked();
    const order: string[] = [];
    for (const [name, l] of [['pub', pub], ['sub', sub]] as const) {
      const write = l.server.write.bind(l.server);
      l.server.write = ((chunk: Buffer, ...rest: never[]) => {
        order.push(`${name}:${Buffer.from(chunk).toString()}`);
        return write(chunk, ...rest);
      }) as typeof l.server.write;
    }
    // One turn as a publish makes it: the dispatch is scheduled first, then the ack is written.
    setImmediate(() => sub.link.write(Buffer.from('delivery')));
    pub.link.writeAfterDeliveries(Buffer.from('ack'));
    expect(pub.link.buffered).toBe(3);
    await until(() => order.length === 2);
    expect(order).toEqual(['sub:delivery', 'pub:ack']);

    // Anything else written to the link this turn takes the ack with it, in order, at the turn's flush.
    order.length = 0;
    pub.link.writeAfterDeliveries(Buffer.from('a1'));
    pub.link.write(Buffer.from('-x'));
    setImmediate(() => sub.link.write(Buffer.from('d2')));
    await until(() => order.length === 2);
    expect(order).toEqual(['pub:a1-x', 'sub:d2']);
    await turn();
    await turn();
    expect(order).toHaveLength(2);
    expect(pub.link.bytesOut).toBe(7);
  });

  test('input reaches the owner and is counted; a throw is contained by the guard', async () => {
    const { link, owner, client } = linked();
    link.traffic = { sendOct: 0, sendCnt: 0, recvOct: 0 };
    client.write(Buffer.from('hello'));
    await until(() => owner.input.length === 1);
    expect(link.bytesIn).toBe(5);
    expect(link.traffic.recvOct).toBe(5);
    owner.throwOnInput = true;
    client.write(Buffer.from('x'));
    await until(() => owner.internal.length === 1);
    expect((owner.internal[0] as Error).message).toBe('boom');
  });

  test('a client that stops reading: congested above the high watermark, drained once it reads', async () => {
    const { link, owner, client } = linked();
    client.pause();
    const chunk = Buffer.alloc(64 * 1024);
    while (!link.congested) link.write(chunk);
    expect(link.buffered).toBeGreaterThan(HIGH_WATERMARK);
    await turn();
    expect(link.congested).toBe(true);
    expect(owner.drains).toBe(0);
    client.resume();
    await until(() => owner.drains > 0);
    expect(link.congested).toBe(false);
  });

  test('beyond the hard limit the stream is destroyed as a slow consumer', async () => {
    const [server, client] = duplexPair();
    const owner = new Owner();
    const link = new Link(server, owner, log, 'memory', undefined, 1024, 512, 8 * 1024);
    server.on('error', () => undefined);
    client.pause();
    for (let i = 0; i < 100 && !server.destroyed; i++) link.write(Buffer.alloc(1024));
    expect(server.destroyed).toBe(true);
    await until(() => owner.closedWith !== undefined);
    expect(owner.closedWith).toMatch(/slow consumer/);
    expect(HARD_LIMIT).toBeGreaterThan(HIGH_WATERMARK);
  });

  test('pause reasons add up; reading resumes when none is left', () => {
    const { link, server } = linked();
    link.pause(PauseReason.ALARM);
    link.pause(PauseReason.UNSETTLED);
    expect(server.isPaused()).toBe(true);
    link.unpause(PauseReason.ALARM);
    expect(server.isPaused()).toBe(true);
    expect(link.pausedBy).toBe(PauseReason.UNSETTLED);
    link.unpause(PauseReason.HELD); // not a reason it had: nothing changes
    expect(server.isPaused()).toBe(true);
    link.unpause(PauseReason.UNSETTLED);
    expect(server.isPaused()).toBe(false);
    expect(link.pausedBy).toBe(0);
  });

  test('a reset ends the link: the owner hears once, closed resolves, the sweep forgets it', async () => {
    const { link, owner, server } = linked();
    server.on('error', () => undefined);
    link.keepAlive(1000, Buffer.from([10]), 5000);
    const before = sweptLinks();
    server.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    await link.closed;
    expect(owner.closedWith).toBe('socket error: read ECONNRESET');
    expect(link.isClosed).toBe(true);
    expect(sweptLinks()).toBe(before - 1);
    await link.closed; // resolved for later callers as well
  });

  test('the sweep writes a heartbeat when idle and expires a silent client, but not a paused one', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const { link, owner, client, server } = linked();
    const got: Buffer[] = [];
    client.on('data', (c: Buffer) => got.push(c));
    link.keepAlive(1000, Buffer.from([10]), 3000);
    vi.advanceTimersByTime(1000 + SWEEP_INTERVAL_MS);
    expect(link.framesOut).toBe(1);
    link.pause(PauseReason.ALARM);
    vi.advanceTimersByTime(10_000);
    expect(owner.expired).toEqual([]);
    link.unpause(PauseReason.ALARM);
    vi.advanceTimersByTime(3000 + SWEEP_INTERVAL_MS);
    expect(owner.expired).toEqual(['silence']);
    expect(server.destroyed).toBe(true);
    await link.closed;
  });

  test('a sweep over more links than one slice checks the rest in the next turns of the event loop', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const links = Array.from({ length: SWEEP_SLICE + 200 }, () => linked());
    for (const { link } of links) link.keepAlive(1000, Buffer.from([10]), 60_000);
    vi.advanceTimersByTime(1000 + SWEEP_INTERVAL_MS);
    const beats = (): number => links.filter(({ link }) => link.framesOut === 1).length;
    expect(beats()).toBe(SWEEP_SLICE);
    await until(() => beats() === links.length);
    for (const { server } of links) server.destroy();
    await Promise.all(links.map(({ link }) => link.closed));
    expect(sweptLinks()).toBe(0);
  });

  test('the sweep looks at an idle link when its deadline comes, not at every tick; traffic moves the deadline later', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const idle = Array.from({ length: 300 }, () => linked());
    for (const { link } of idle) link.keepAlive(0, undefined, 60_000);
    const talker = linked();
    talker.link.keepAlive(0, undefined, 60_000);
    // The first tick places them from the fake clock (earlier tests moved it): one look each.
    vi.advanceTimersByTime(SWEEP_INTERVAL_MS);
    await until(() => sweepCounts().visits > 0);
    const v0 = sweepCounts().visits;
    // 40 s: 160 ticks, and no deadline has come.
    for (let i = 0; i < 4; i++) {
      vi.advanceTimersByTime(10_000);
      talker.client.write(Buffer.from([1]));
      await until(() => talker.owner.input.length > i);
    }
    expect(sweepCounts().visits - v0).toBe(0);
    // At 60 s the silent ones expire, each looked at once; the talker, heard at 40 s, is looked at and kept.
    vi.advanceTimersByTime(20_000 + 2 * SWEEP_INTERVAL_MS);
    await until(() => idle.every(({ owner }) => owner.expired.length === 1));
    expect(idle.every(({ owner }) => owner.expired[0] === 'silence')).toBe(true);
    expect(talker.owner.expired).toEqual([]);
    expect(sweepCounts().visits - v0).toBe(idle.length + 1);
    // Silent from 40 s, it expires at 100 s.
    vi.advanceTimersByTime(40_000 + 2 * SWEEP_INTERVAL_MS);
    expect(talker.owner.expired).toEqual(['silence']);
    await Promise.all([...idle, talker].map(({ link }) => link.closed));
    expect(sweptLinks()).toBe(0);
  });

  test('a deadline set earlier than the tick a link waits for is kept', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const { link, server } = linked();
    link.keepAlive(0, undefined, 600_000);
    vi.advanceTimersByTime(5 * SWEEP_INTERVAL_MS);
    link.closeAfter(1000, Buffer.from('bye'));
    vi.advanceTimersByTime(1000 + SWEEP_INTERVAL_MS);
    expect(server.destroyed).toBe(true);
    await link.closed;
    expect(sweptLinks()).toBe(0);
  });

  test('a handshake deadline closes a client that does not authenticate; authenticated() lifts it', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const slow = linked();
    const quick = linked();
    const limits: number[] = [];
    const withControl = new Link(duplexPair()[0], new Owner(), log, 'websocket', { authenticated: (n) => limits.push(n) });
    slow.link.expectHandshake(10_000);
    quick.link.expectHandshake(10_000);
    withControl.expectHandshake(10_000);
    quick.link.authenticated(1 << 20);
    withControl.authenticated(4096);
    vi.advanceTimersByTime(10_000 + SWEEP_INTERVAL_MS);
    expect(slow.owner.expired).toEqual(['handshake']);
    expect(slow.server.destroyed).toBe(true);
    expect(quick.owner.expired).toEqual([]);
    expect(quick.server.destroyed).toBe(false);
    expect(limits).toEqual([4096]);
    await slow.link.closed;
    expect(sweptLinks()).toBe(0);
  });

  test('closeAfter ends the stream and destroys it if the client does not close in time', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    const { link, server, client } = linked();
    client.pause();
    link.closeAfter(1000, Buffer.from('bye'));
    expect(server.writableEnded).toBe(true);
    expect(server.destroyed).toBe(false);
    vi.advanceTimersByTime(1000 + SWEEP_INTERVAL_MS);
    expect(server.destroyed).toBe(true);
    await link.closed;
    expect(sweptLinks()).toBe(0);
  });
});
