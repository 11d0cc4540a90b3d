import { connect as tcpConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { waitFor } from '../helpers/broker.js';
import { RawStomp, startLoggedBroker, wsUrl, type LoggedBroker } from '../helpers/stomp.js';

let lb: LoggedBroker;
let port: number;
let httpPort: number;
/** A well-behaved subscriber that must not notice anything the bad peers do. */
let bystander: RawStomp;
let bystanderSeq = 0;

beforeAll(async () => {
  lb = await startLoggedBroker();
  port = lb.broker.ports.stomp!;
  httpPort = lb.broker.ports.http!;
  bystander = await RawStomp.connected(port);
  bystander.send('SUBSCRIBE', { destination: '/queue/wire-bystander', id: 'b', receipt: 'b' });
  await bystander.next('RECEIPT');
});
afterAll(async () => {
  bystander.destroy();
  await lb.stop();
});

async function bystanderStillWorks(): Promise<void> {
  const body = `still here ${++bystanderSeq}`;
  bystander.send('SEND', { destination: '/queue/wire-bystander' }, body);
  const m = await bystander.next('MESSAGE');
  expect(m.body.toString()).toBe(body);
}

/** The ERROR, the close, a protocol-error log line and an unaffected bystander. */
async function expectFatal(c: RawStomp, message: string | RegExp): Promise<void> {
  const before = lb.logs.length;
  const f = await c.expectError(message);
  expect(f.headers['content-type']).toBe('text/plain');
  expect(f.body.length).toBeGreaterThan(0);
  await waitFor(() => lb.logs.slice(before).some((l) => l.msg.startsWith('protocol error:') && l['protocol'] === 'stomp'), 2000, 'a log line');
  await bystanderStillWorks();
}

const nul = '\u0000';

describe('CONNECT and version negotiation', () => {
  test('no accept-version means STOMP 1.0; CONNECTED carries version, server, session and heart-beat', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\nlogin:guest\npasscode:guest\n\n${nul}`);
    const f = await c.next();
    expect(f.command).toBe('CONNECTED');
    expect(f.headers['version']).toBe('1.0');
    expect(f.headers['server']).toMatch(/^Warren\//);
    expect(f.headers['session']).toMatch(/^session-/);
    expect(f.headers['heart-beat']).toBe('0,0');
    const conn = await waitFor(() => [...lb.broker.core.connections].find((x) => x.info.protocol === 'STOMP 1.0'));
    expect([conn.info.user, conn.info.vhost]).toEqual(['guest', '/']);
    c.destroy();
  });

  test.each([
    ['1.0,1.1,1.2', '1.2'],
    ['1.1,1.0', '1.1'],
    ['1.2', '1.2'],
    ['1.0', '1.0'],
  ])('accept-version:%s negotiates %s, shown in core.connections', async (offered, chosen) => {
    const c = await RawStomp.open(port);
    c.send('CONNECT', { 'accept-version': offered, host: '/' });
    const f = await c.next();
    expect(f.headers['version']).toBe(chosen);
    await waitFor(() => [...lb.broker.core.connections].some((x) => x.info.protocol === `STOMP ${chosen}`));
    c.destroy();
  });

  test('the STOMP command works like CONNECT', async () => {
    const c = await RawStomp.open(port);
    c.write(`STOMP\naccept-version:1.2\nhost:/\n\n${nul}`);
    expect((await c.next()).command).toBe('CONNECTED');
    c.destroy();
  });

  test('no common version: ERROR with the supported versions, connection closed', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:2.0,3.1\n\n${nul}`);
    const before = lb.logs.length;
    const f = await c.expectError('Version mismatch');
    expect(f.headers['version']).toBe('1.0,1.1,1.2');
    expect(lb.logs.slice(before).some((l) => l.msg.includes('Version mismatch'))).toBe(true);
  });

  test('wrong passcode: ERROR Bad CONNECT', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nlogin:guest\npasscode:nope\n\n${nul}`);
    const f = await c.expectError('Bad CONNECT');
    expect(f.body.toString()).toContain("Access refused for user 'guest'");
  });

  test('login/passcode authenticate a user and host selects the vhost', async () => {
    const core = lb.broker.core;
    core.addVhost('stomp-vh');
    core.auth.addUser('alice', 's3cret');
    core.auth.setPermission('stomp-vh', 'alice', { configure: '.*', write: '.*', read: '.*' });
    const c = await RawStomp.connected(port, { login: 'alice', passcode: 's3cret', host: 'stomp-vh' });
    const conn = await waitFor(() => [...core.connections].find((x) => x.info.user === 'alice'));
    expect([conn.info.vhost, conn.info.protocol]).toEqual(['stomp-vh', 'STOMP 1.2']);
    c.send('SEND', { destination: '/queue/in-other-vhost', receipt: 'r' }, 'x');
    await c.next('RECEIPT');
    expect(core.vhosts.get('stomp-vh')!.queues.has('in-other-vhost')).toBe(true);
    expect(core.vhosts.get('/')!.queues.has('in-other-vhost')).toBe(false);
    c.destroy();
    // alice has no permissions on the default vhost.
    const d = await RawStomp.open(port);
    d.send('CONNECT', { 'accept-version': '1.2', login: 'alice', passcode: 's3cret' });
    expect((await d.expectError('Bad CONNECT')).body.toString()).toContain("Virtual host '/' access denied");
  });

  test('host selects the vhost: an unknown one is refused as not found', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nhost:no-such-vhost\n\n${nul}`);
    const f = await c.expectError('Bad CONNECT');
    expect(f.body.toString()).toBe("Virtual host 'no-such-vhost' not found");
  });

  test('a frame before CONNECT is refused', async () => {
    const c = await RawStomp.open(port);
    c.write(`SEND\ndestination:/queue/x\n\nhi${nul}`);
    await expectFatal(c, 'Illegal command');
  });

  test('a second CONNECT is refused', async () => {
    const c = await RawStomp.connected(port);
    c.send('CONNECT', { 'accept-version': '1.2' });
    await expectFatal(c, 'Illegal command');
  });
});

describe('heart-beating', () => {
  test('the server sends EOLs when the client asks for them', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nheart-beat:0,100\n\n${nul}`);
    const f = await c.next();
    // The server never beats faster than its minimum, and says so.
    expect(f.headers['heart-beat']).toBe('500,0');
    const start = Date.now();
    await waitFor(() => c.raw.map((b) => b.toString()).join('').endsWith('\n\n'), 3000, 'two heart-beats');
    expect(Date.now() - start).toBeLessThan(2500);
    c.destroy();
  });

  test('a client that promised heart-beats and stays silent is disconnected', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nheart-beat:500,0\n\n${nul}`);
    expect((await c.next()).headers['heart-beat']).toBe('0,500');
    const before = lb.logs.length;
    const start = Date.now();
    await c.waitClosed(4000);
    expect(Date.now() - start).toBeGreaterThanOrEqual(900);
    expect(lb.logs.slice(before).some((l) => l.msg.includes('missed heart-beats'))).toBe(true);
  });

  test('a client that keeps beating stays connected', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nheart-beat:500,0\n\n${nul}`);
    await c.next();
    const beat = setInterval(() => c.write('\n'), 150);
    // Longer than the silent client above needed to be dropped.
    await new Promise((r) => setTimeout(r, 2200));
    clearInterval(beat);
    expect(c.closed).toBe(false);
    c.send('SUBSCRIBE', { destination: '/queue/hb', id: '1', receipt: 'alive' });
    expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('alive');
    c.destroy();
  });
});

describe('frames on the wire', () => {
  test('STOMP 1.0: header values travel unescaped, a backslash is just a backslash', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\nlogin:guest\npasscode:guest\n\n${nul}`);
    await c.next();
    c.write(`SUBSCRIBE\ndestination:/queue/esc10\nid:s\nreceipt:r\n\n${nul}`);
    await c.next('RECEIPT');
    c.write(`SEND\ndestination:/queue/esc10\nx:a\\cb:c\n\n${nul}`);
    await c.next('MESSAGE');
    const wire = Buffer.concat(c.raw).toString();
    expect(wire).toContain('\nx:a\\cb:c\n');
    c.destroy();
  });

  test('STOMP 1.1: colon, newline and backslash are escaped both ways', async () => {
    const c = await RawStomp.connected(port, { 'accept-version': '1.1' });
    c.write(`SUBSCRIBE\ndestination:/queue/esc11\nid:s\nreceipt:r\n\n${nul}`);
    await c.next('RECEIPT');
    c.write(`SEND\ndestination:/queue/esc11\nk\\cey:a\\cb\\nc\\\\d\n\n${nul}`);
    const m = await c.next('MESSAGE');
    expect(m.headers['k:ey']).toBe('a:b\nc\\d');
    expect(Buffer.concat(c.raw).toString()).toContain('\nk\\cey:a\\cb\\nc\\\\d\n');
    c.destroy();
  });

  test('STOMP 1.1 has no \\r escape: using one is fatal', async () => {
    const c = await RawStomp.connected(port, { 'accept-version': '1.1' });
    c.write(`SEND\ndestination:/queue/x\nv:a\\rb\n\n${nul}`);
    await expectFatal(c, 'Invalid header');
  });

  test('STOMP 1.2: \\r round-trips and CRLF line endings are accepted', async () => {
    const c = await RawStomp.connected(port, { 'accept-version': '1.2' });
    c.write(`SUBSCRIBE\r\ndestination:/queue/esc12\r\nid:s\r\nreceipt:r\r\n\r\n${nul}`);
    await c.next('RECEIPT');
    c.write(`SEND\r\ndestination:/queue/esc12\r\nv:a\\rb\r\n\r\nbody${nul}`);
    const m = await c.next('MESSAGE');
    expect(m.headers['v']).toBe('a\rb');
    expect(m.body.toString()).toBe('body');
    expect(Buffer.concat(c.raw).toString()).toContain('\nv:a\\rb\n');
    c.destroy();
  });

  test('an undefined escape sequence is fatal', async () => {
    const c = await RawStomp.connected(port);
    c.write(`SEND\ndestination:/queue/x\nv:a\\tb\n\n${nul}`);
    await expectFatal(c, 'Invalid header');
  });

  test('content-length bodies carry NUL bytes; frames without it end at the NUL', async () => {
    const c = await RawStomp.connected(port);
    c.send('SUBSCRIBE', { destination: '/queue/nul', id: 's', receipt: 'r' });
    await c.next('RECEIPT');
    const binary = Buffer.from([0, 1, 0, 2, 0xff, 0, 0]);
    c.write(Buffer.concat([Buffer.from(`SEND\ndestination:/queue/nul\ncontent-length:${binary.length}\n\n`), binary, Buffer.from([0])]));
    c.write(`SEND\ndestination:/queue/nul\n\nplain text${nul}`);
    const a = await c.next('MESSAGE');
    const b = await c.next('MESSAGE');
    expect(Buffer.compare(a.body, binary)).toBe(0);
    expect(a.headers['content-length']).toBe(String(binary.length));
    expect(b.body.toString()).toBe('plain text');
    c.destroy();
  });

  test('EOLs between frames are optional and ignored', async () => {
    const c = await RawStomp.connected(port);
    c.write(`\n\nSUBSCRIBE\ndestination:/queue/eols\nid:s\n\n${nul}\n\r\n\nSEND\ndestination:/queue/eols\n\none${nul}SEND\ndestination:/queue/eols\n\ntwo${nul}\n`);
    expect((await c.next('MESSAGE')).body.toString()).toBe('one');
    expect((await c.next('MESSAGE')).body.toString()).toBe('two');
    c.destroy();
  });

  test.each([1, 2, 3, 5, 8, 13])('frames split every %i bytes over TCP work as if sent whole', async (step) => {
    const q = `/queue/split-${step}`;
    const stream = Buffer.from(
      `CONNECT\r\naccept-version:1.2\r\nhost:/\r\n\r\n${nul}\n` +
        `SUBSCRIBE\ndestination:${q}\nid:s\nack:client-individual\n\n${nul}` +
        `SEND\ndestination:${q}\ncontent-length:5\nh:x\\cy\n\na${nul}b${nul}c${nul}\n` +
        `SEND\ndestination:${q}\n\nsecond${nul}`,
    );
    const c = await RawStomp.open(port);
    for (let i = 0; i < stream.length; i += step) {
      c.write(stream.subarray(i, i + step));
      await new Promise((r) => setImmediate(r));
    }
    const first = await c.next('MESSAGE');
    expect(first.body.toString('latin1')).toBe(`a${nul}b${nul}c`);
    expect(first.headers['h']).toBe('x:y');
    expect((await c.next('MESSAGE')).body.toString()).toBe('second');
    c.destroy();
  });

  test('over WebSocket: several frames in one message, one frame across several messages, text and binary', async () => {
    const c = await RawStomp.openWs(wsUrl(httpPort), ['v12.stomp'], { text: true });
    c.write(`CONNECT\naccept-version:1.2\nhost:/\n\n${nul}SUBSCRIBE\ndestination:/queue/wsframes\nid:s\n\n${nul}SEND\ndestination:/queue/wsframes\n\none${nul}`);
    expect((await c.next()).command).toBe('CONNECTED');
    expect((await c.next('MESSAGE')).body.toString()).toBe('one');
    const frame = `SEND\ndestination:/queue/wsframes\ncontent-length:3\n\ntwo${nul}`;
    for (const piece of [frame.slice(0, 4), frame.slice(4, 20), frame.slice(20, 40), frame.slice(40)]) c.write(piece);
    expect((await c.next('MESSAGE')).body.toString()).toBe('two');
    c.destroy();

    const b = await RawStomp.openWs(wsUrl(httpPort, '/stomp'), [], { text: false });
    b.write(Buffer.from(`CONNECT\naccept-version:1.1\n\n${nul}`));
    expect((await b.next()).headers['version']).toBe('1.1');
    b.destroy();
  });

  test('on /ws the highest STOMP subprotocol offered is chosen', async () => {
    const ws = new WebSocket(wsUrl(httpPort), ['v10.stomp', 'v11.stomp', 'v12.stomp']);
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    expect(ws.protocol).toBe('v12.stomp');
    ws.close();
    const old = new WebSocket(wsUrl(httpPort), ['v10.stomp', 'v11.stomp']);
    await new Promise((resolve, reject) => old.once('open', resolve).once('error', reject));
    expect(old.protocol).toBe('v11.stomp');
    old.close();
  });

  test('DISCONNECT with a receipt: RECEIPT, then the server closes', async () => {
    const c = await RawStomp.connected(port);
    c.send('DISCONNECT', { receipt: 'bye' });
    expect((await c.next()).headers['receipt-id']).toBe('bye');
    await c.waitClosed();
  });
});

describe('flow control', () => {
  test('while a resource alarm is raised, a publishing connection is not read', async () => {
    const alarms = lb.broker.core.alarms;
    const c = await RawStomp.connected(port);
    c.send('SUBSCRIBE', { destination: '/queue/alarm', id: 's', receipt: 'r' });
    await c.next('RECEIPT');
    alarms.set('test-alarm', true);
    try {
      c.send('SEND', { destination: '/queue/alarm' }, 'first');
      expect((await c.next('MESSAGE')).body.toString()).toBe('first');
      c.send('SEND', { destination: '/queue/alarm', receipt: 'second' }, 'second');
      // Absence can only be shown by waiting a little: the second SEND must stay unread.
      await new Promise((r) => setTimeout(r, 300));
      expect(c.frames.filter((f) => f.command === 'MESSAGE' || f.command === 'RECEIPT')).toHaveLength(2);
    } finally {
      alarms.set('test-alarm', false);
    }
    expect((await c.next('RECEIPT')).headers['receipt-id']).toBe('second');
    expect((await c.next('MESSAGE')).body.toString()).toBe('second');
    c.destroy();
  });
});

describe('limits and bad input: ERROR, a log line, the connection closed, nothing else affected', () => {
  test('a body larger than 16 MiB is refused as soon as its content-length is read', async () => {
    const c = await RawStomp.connected(port);
    c.write(`SEND\ndestination:/queue/big\ncontent-length:${16 * 1024 * 1024 + 1}\n\n`);
    await expectFatal(c, 'Message too large');
  });

  test('a body without content-length that outgrows the limit is refused while it arrives', async () => {
    const c = await RawStomp.connected(port);
    c.write(`SEND\ndestination:/queue/big\n\n`);
    const chunk = Buffer.alloc(256 * 1024, 0x61);
    for (let i = 0; i < 65 && !c.closed; i++) c.write(chunk);
    await expectFatal(c, 'Message too large');
  });

  test('before CONNECT the limit is much smaller', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\ncontent-length:${100 * 1024}\n\n`);
    await expectFatal(c, 'Frame too large');
  });

  test('too many headers', async () => {
    const c = await RawStomp.connected(port);
    let frame = 'SEND\ndestination:/queue/x\n';
    for (let i = 0; i < 1001; i++) frame += `h${i}:v\n`;
    c.write(`${frame}\n${nul}`);
    await expectFatal(c, 'Too many headers');
  });

  test('a header line that is too long', async () => {
    const c = await RawStomp.connected(port);
    c.write(`SEND\ndestination:/queue/x\nlong:${'x'.repeat(70 * 1024)}\n\n${nul}`);
    await expectFatal(c, 'Header too long');
  });

  test('an unknown command', async () => {
    const c = await RawStomp.connected(port);
    c.write(`FROBNICATE\n\n${nul}`);
    await expectFatal(c, 'Bad command');
  });

  test.each([
    ['SEND', 'destination', `SEND\n\nbody${nul}`],
    ['SUBSCRIBE', 'destination', `SUBSCRIBE\nid:1\n\n${nul}`],
    ['ACK', 'id', `ACK\n\n${nul}`],
    ['BEGIN', 'transaction', `BEGIN\n\n${nul}`],
  ])('%s without its required %s header', async (_cmd, header, wire) => {
    const c = await RawStomp.connected(port);
    c.write(wire);
    const before = lb.logs.length;
    const f = await c.expectError(/^Missing/);
    expect(f.body.toString()).toContain(header);
    await waitFor(() => lb.logs.slice(before).some((l) => l.msg.startsWith('protocol error:')), 2000, 'a log line');
    await bystanderStillWorks();
  });

  test('a non-numeric content-length', async () => {
    const c = await RawStomp.connected(port);
    c.write(`SEND\ndestination:/queue/x\ncontent-length:ten\n\n0123456789${nul}`);
    await expectFatal(c, 'Invalid header');
  });

  test('a body longer than its content-length', async () => {
    const c = await RawStomp.connected(port);
    c.write(`SEND\ndestination:/queue/x\ncontent-length:3\n\n0123456789${nul}`);
    await expectFatal(c, 'Invalid frame');
  });

  test('SEND to an unknown destination prefix', async () => {
    const c = await RawStomp.connected(port);
    c.send('SEND', { destination: '/nowhere/x', receipt: 'r-unknown' }, 'x');
    const before = lb.logs.length;
    const f = await c.expectError('Unknown destination');
    expect(f.headers['receipt-id']).toBe('r-unknown');
    expect(lb.logs.slice(before).some((l) => l.msg.includes('Unknown destination'))).toBe(true);
    await bystanderStillWorks();
  });

  test('SUBSCRIBE with an id already in use', async () => {
    const c = await RawStomp.connected(port);
    c.send('SUBSCRIBE', { destination: '/queue/dup-a', id: 'same' });
    c.send('SUBSCRIBE', { destination: '/queue/dup-b', id: 'same' });
    await expectFatal(c, 'Duplicated subscription identifier');
  });

  test('garbage that is not STOMP at all (before CONNECT: Illegal command, as RabbitMQ)', async () => {
    const c = await RawStomp.open(port);
    c.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await expectFatal(c, 'Illegal command');
  });

  test('a peer that vanishes mid-frame harms nobody', async () => {
    await new Promise<void>((resolve) => {
      const s = tcpConnect({ port, host: '127.0.0.1' }, () => {
        s.write(`CONNECT\naccept-version:1.2\n\n${nul}SEND\ndestination:/queue/x\ncontent-length:100\n\nhalf`);
        s.destroy();
        resolve();
      });
    });
    await bystanderStillWorks();
  });
});
