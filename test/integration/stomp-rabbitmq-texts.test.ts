import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AMQPClient } from '@cloudamqp/amqp-client';
import { Client, Versions, type IFrame, type IStompSocket } from '@stomp/stompjs';
import { SignJWT, exportSPKI, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import WebSocket from 'ws';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { connectMqtt } from '../helpers/mqtt.js';
import { RawStomp, receiptFor, stompClient, wsUrl, type ReceivedFrame } from '../helpers/stomp.js';

/**
 * STOMP as RabbitMQ's STOMP plugin answers it: the ERROR texts (message header and body, byte for
 * byte where RabbitMQ's own tests pin them), frames between heart-beats and stray NULs, a 16 MiB
 * SEND, and the `host` header that stomp.py 1.2 fills with the host it connected to.
 */

const run = promisify(execFile);
const nul = '\u0000';
const MiB = 1024 * 1024;

let tb: TestBroker;
let port: number;
let httpPort: number;

beforeAll(async () => {
  tb = await startTestBroker();
  port = tb.broker.ports.stomp!;
  httpPort = tb.broker.ports.http!;
});
afterAll(async () => {
  await tb.stop();
});

/** A STOMP 1.0 session as RabbitMQ's parsing tests open it: CONNECT with login, no accept-version. */
async function connected10(): Promise<RawStomp> {
  const c = await RawStomp.open(port);
  c.write(`CONNECT\nlogin:guest\npasscode:guest\n\n${nul}`);
  expect((await c.next()).command).toBe('CONNECTED');
  return c;
}

/** The ERROR a frame provokes on a fresh 1.2 session: message header and body. */
async function errorFor(wire: string, headers: Record<string, string> = {}): Promise<ReceivedFrame> {
  const c = await RawStomp.connected(port, headers);
  c.write(wire);
  const f = await c.expectError();
  // The short text never carries a line break (the detail does, in the body).
  expect(f.headers['message']).not.toMatch(/[\r\n]/);
  expect(f.headers['content-type']).toBe('text/plain');
  expect(f.headers['version']).toBe('1.0,1.1,1.2');
  return f;
}

function text(f: ReceivedFrame): [string | undefined, string] {
  return [f.headers['message'], f.body.toString()];
}

describe('ERROR frames carry RabbitMQ texts', () => {
  test('an unknown command: the very bytes RabbitMQ sends', async () => {
    const c = await connected10();
    c.write(`WRONGCOMMAND\ndestination:a\nexchange:amq.fanout\n\n${nul}`);
    await c.waitClosed();
    expect(Buffer.concat(c.raw).toString('latin1')).toMatch(
      /\u0000ERROR\nmessage:Bad command\ncontent-type:text\/plain\nversion:1\.0,1\.1,1\.2\ncontent-length:43\n\nCould not interpret command "WRONGCOMMAND"\n\u0000$/,
    );
  });

  // RabbitMQ's errors.py: SEND to '/' + type + content.
  test.each([
    ['/queue/bah/baz', "'/bah/baz' is not a valid queue destination\n"],
    ['/queue', "'' is not a valid queue destination\n"],
    ['/topic/bah/baz', "'/bah/baz' is not a valid topic destination\n"],
    ['/topic', "'' is not a valid topic destination\n"],
    ['/exchange/bah/baz/boo', "'/bah/baz/boo' is not a valid exchange destination\n"],
    ['/exchange', "'' is not a valid exchange destination\n"],
    ['/exchange//foo', "'//foo' is not a valid exchange destination\n"],
    ['/amq/queue', "'' is not a valid amqqueue destination\n"],
  ])('SEND to %s: Invalid destination', async (dest, body) => {
    const f = await errorFor(`SEND\ndestination:${dest}\n\nx${nul}`);
    expect(text(f)).toEqual(['Invalid destination', body]);
  });

  test('an empty destination cannot be blank', async () => {
    expect(text(await errorFor(`SEND\ndestination:\n\nx${nul}`))).toEqual(['Invalid destination', 'Destination cannot be blank']);
  });

  test('an unknown destination lists the valid prefixes', async () => {
    const f = await errorFor(`SEND\ndestination:/something/interesting\n\nx${nul}`);
    expect(text(f)).toEqual([
      'Unknown destination',
      "'/something/interesting' is not a valid destination.\nValid destination types are: /exchange, /topic, /queue, /amq/queue, /temp-queue, /reply-queue/.\n",
    ]);
  });

  test.each(['SEND', 'SUBSCRIBE'])('%s without a destination: Missing destination', async (cmd) => {
    const f = await errorFor(`${cmd}\nid:1\n\n${nul}`);
    expect(text(f)).toEqual(['Missing destination', `'${cmd}' must include a 'destination' header\n`]);
  });

  test('a temp-queue destination is not valid for SEND or SUBSCRIBE', async () => {
    expect(text(await errorFor(`SEND\ndestination:/temp-queue/t\n\nx${nul}`))).toEqual([
      'Invalid destination',
      "'/temp-queue/t' is not a valid destination for 'SEND'\n",
    ]);
    expect(text(await errorFor(`SUBSCRIBE\nid:1\ndestination:/temp-queue/t\n\n${nul}`))).toEqual([
      'Invalid destination',
      "'/temp-queue/t' is not a valid destination for 'SUBSCRIBE'\n",
    ]);
  });

  test.each([
    ['a transient destination', '/exchange/amq.direct/duplicate-consumer-tag-test1', {}],
    ['a durable destination', '/queue/duplicate-consumer-tag-test2', { persistent: 'true' }],
  ])('a duplicate subscription id on %s: the consumer tag in the text, then the close', async (_what, dest, extra) => {
    const c = await RawStomp.connected(port);
    c.send('SUBSCRIBE', { destination: dest, id: '1', ...extra });
    c.send('SUBSCRIBE', { destination: dest, id: '1', ...extra });
    const f = await c.expectError();
    expect(text(f)).toEqual(['Duplicated subscription identifier', "A subscription identified by 'T_1' already exists."]);
    expect(c.frames.filter((x) => x.command === 'ERROR')).toHaveLength(1);
  });

  test('message-id on SEND is refused before the destination is looked at', async () => {
    expect(text(await errorFor(`SEND\nmessage-id:m1\n\nx${nul}`))).toEqual(['Invalid header', "'message-id' is not allowed on 'SEND'.\n"]);
  });

  test('a missing exchange: not_found and the reply text', async () => {
    const f = await errorFor(`SEND\ndestination:/exchange/no-such-exchange/k\nreceipt:r1\n\nx${nul}`);
    expect(text(f)).toEqual(['not_found', "no exchange 'no-such-exchange' in vhost '/'"]);
    expect(f.headers['receipt-id']).toBe('r1');
    const g = await errorFor(`SUBSCRIBE\nid:1\ndestination:/exchange/no-such-exchange\n\n${nul}`);
    expect(text(g)).toEqual(['not_found', "no exchange 'no-such-exchange' in vhost '/'"]);
  });

  test('durable without id, UNSUBSCRIBE of nothing, ACK without id, transactions', async () => {
    expect(text(await errorFor(`SUBSCRIBE\ndestination:/topic/t\ndurable:true\n\n${nul}`))).toEqual([
      'Missing Header',
      "Header 'id' is required for durable subscriptions",
    ]);
    expect(text(await errorFor(`UNSUBSCRIBE\nid:nope\n\n${nul}`))).toEqual([
      'No subscription found',
      `UNSUBSCRIBE must refer to an existing subscription.\nSubscription to "id='nope'" not found.\n`,
    ]);
    expect(text(await errorFor(`UNSUBSCRIBE\n\n${nul}`))).toEqual(['Missing destination or id', "UNSUBSCRIBE must include a 'destination' or 'id' header"]);
    expect(text(await errorFor(`UNSUBSCRIBE\nid:/temp-queue/x\n\n${nul}`))).toEqual(['Invalid id', "UNSUBSCRIBE 'id' may not start with /temp-queue/\n"]);
    expect(text(await errorFor(`ACK\n\n${nul}`))).toEqual(['Missing header', `'ACK' must include the "id" header\n`]);
    expect(text(await errorFor(`NACK\nid:garbage\n\n${nul}`))).toEqual(['Invalid header', `'NACK' must include a valid "id" header\n`]);
    expect(text(await errorFor(`BEGIN\n\n${nul}`))).toEqual(['Missing transaction', "'BEGIN' must include a 'transaction' header\n"]);
    expect(text(await errorFor(`COMMIT\ntransaction:tx-9\n\n${nul}`))).toEqual(['Bad transaction', 'Invalid transaction identifier: "tx-9"\n']);
  });

  test('an ack id of another session is not valid here', async () => {
    const a = await RawStomp.connected(port);
    a.send('SUBSCRIBE', { destination: '/queue/ack-other-session', id: 's', ack: 'client-individual' });
    a.send('SEND', { destination: '/queue/ack-other-session' }, 'm');
    const m = await a.next('MESSAGE');
    const b = await RawStomp.connected(port);
    b.send('SUBSCRIBE', { destination: '/queue/ack-other-session-b', id: 's', ack: 'client-individual', receipt: 'sub' });
    await b.next('RECEIPT');
    b.send('ACK', { id: m.headers['ack']! });
    expect(text(await b.expectError())).toEqual(['Invalid header', `'ACK' must include a valid "id" header\n`]);
    a.destroy();
  });

  test.each(['client', 'client-individual'])('ACK of a delivery tag never delivered (ack:%s): Message not found', async (ack) => {
    const c = await RawStomp.connected(port);
    c.send('SUBSCRIBE', { destination: `/queue/ack-unknown-${ack}`, id: 's', ack });
    c.send('SEND', { destination: `/queue/ack-unknown-${ack}` }, 'm');
    const m = await c.next('MESSAGE');
    const forged = m.headers['ack']!.replace(/@@[0-9]+$/, '@@999');
    c.send('ACK', { id: forged });
    expect(text(await c.expectError())).toEqual(['Message not found', 'unknown delivery tag 999\n']);
  });

  test('a frame before CONNECT, known or not: Illegal command', async () => {
    for (const wire of [`SEND\ndestination:/queue/x\n\nhi${nul}`, `FROBNICATE\n\n${nul}`]) {
      const c = await RawStomp.open(port);
      c.write(wire);
      expect(text(await c.expectError())).toEqual(['Illegal command', 'You must log in using CONNECT first']);
    }
  });

  test('no common version', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:2.0\n\n${nul}`);
    expect(text(await c.expectError())).toEqual(['Version mismatch', 'Supported versions are 1.0,1.1,1.2\n']);
  });

  test('bad login and a vhost without permissions: Bad CONNECT', async () => {
    const core = tb.broker.core;
    core.addVhost('texts-vh');
    core.auth.addUser('texts-user', 'pw');
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nlogin:texts-user\npasscode:wrong\n\n${nul}`);
    expect(text(await c.expectError())).toEqual(['Bad CONNECT', "Access refused for user 'texts-user'"]);
    const d = await RawStomp.open(port);
    d.write(`CONNECT\naccept-version:1.2\nlogin:texts-user\npasscode:pw\nhost:texts-vh\n\n${nul}`);
    expect(text(await d.expectError())).toEqual(['Bad CONNECT', "Virtual host 'texts-vh' access denied"]);
  });

  test('an unknown vhost: Bad CONNECT, not found', async () => {
    const c = await RawStomp.open(port);
    c.write(`CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\nhost:no-such-vhost\n\n${nul}`);
    expect(text(await c.expectError())).toEqual(['Bad CONNECT', "Virtual host 'no-such-vhost' not found"]);
  });

  test('@stomp/stompjs sees the same message header and body', async () => {
    const client = new Client({
      webSocketFactory: () => new WebSocket(wsUrl(httpPort), ['v12.stomp']) as unknown as IStompSocket,
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      debug: () => undefined,
    });
    client.stompVersions = new Versions(['1.2']);
    const error = new Promise<IFrame>((resolve) => {
      client.onStompError = resolve;
    });
    await new Promise<void>((resolve) => {
      client.onConnect = () => resolve();
      client.activate();
    });
    client.publish({ destination: '/exchange//foo', body: 'x' });
    const f = await error;
    expect([f.headers['message'], f.body]).toEqual(['Invalid destination', "'//foo' is not a valid exchange destination\n"]);
    await client.deactivate();
  });
});

describe('frames between heart-beats and stray NULs are parsed as RabbitMQ parses them', () => {
  // RabbitMQ's parsing.py test_newline_after_nul and test_newline_after_nul_and_leading_nul.
  test.each([
    [
      'EOLs after each NUL',
      `\nSUBSCRIBE\ndestination:/exchange/amq.fanout\n\n${nul}\nSEND\ncontent-type:text/plain\ndestination:/exchange/amq.fanout\n\nhello\n${nul}\n`,
    ],
    [
      'a NUL before each command',
      `\n${nul}SUBSCRIBE\ndestination:/exchange/amq.fanout\n\n${nul}\n${nul}SEND\ndestination:/exchange/amq.fanout\ncontent-type:text/plain\n\nhello\n${nul}\n`,
    ],
    [
      'CR LF heart-beats and several NULs between frames',
      `\r\n\r\n${nul}${nul}SUBSCRIBE\r\ndestination:/exchange/amq.fanout\r\n\r\n${nul}\r\n${nul}\n\r\nSEND\r\ndestination:/exchange/amq.fanout\r\ncontent-type:text/plain\r\n\r\nhello\n${nul}\r\n${nul}`,
    ],
  ])('%s', async (_what, wire) => {
    const c = await connected10();
    c.write(wire);
    const m = await c.next('MESSAGE');
    expect(m.headers['destination']).toBe('/exchange/amq.fanout');
    expect(m.headers['message-id']).toMatch(/^Q_\/exchange\/amq\.fanout@@session-/);
    expect(m.headers['content-type']).toBe('text/plain');
    expect(m.body.toString()).toBe('hello\n');
    expect(c.frames.filter((f) => f.command === 'ERROR')).toHaveLength(0);
    c.destroy();
  });

  test('the same bytes one at a time', async () => {
    const c = await connected10();
    const wire = Buffer.from(`\r\n${nul}\nSUBSCRIBE\ndestination:/exchange/amq.fanout\nreceipt:s\n\n${nul}\r\n${nul}SEND\ndestination:/exchange/amq.fanout\n\nbyte by byte${nul}\n`);
    for (const b of wire) c.write(Buffer.from([b]));
    expect((await c.next('MESSAGE')).body.toString()).toBe('byte by byte');
    c.destroy();
  });

  test('over WebSocket: heart-beats and NULs in their own messages', async () => {
    const c = await RawStomp.openWs(wsUrl(httpPort), ['v12.stomp']);
    c.write(`CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n${nul}`);
    expect((await c.next()).command).toBe('CONNECTED');
    c.write('\n');
    c.write(`${nul}`);
    c.write('\r\n');
    c.write(`SUBSCRIBE\nid:w\ndestination:/queue/ws-nul-test\nreceipt:r\n\n${nul}`);
    c.write(`${nul}\n`);
    await c.next('RECEIPT');
    c.write(`SEND\ndestination:/queue/ws-nul-test\n\nover ws${nul}`);
    expect((await c.next('MESSAGE')).body.toString()).toBe('over ws');
    c.destroy();
  });
});

describe('a 16 MiB SEND is accepted by default, and reaches AMQP, MQTT and STOMP consumers', () => {
  test('exactly 16 MiB from a raw socket, with a receipt', async () => {
    const amqp = await new AMQPClient(`amqp://guest:guest@127.0.0.1:${tb.broker.ports.amqp}`).connect();
    const ch = await amqp.channel();
    const q = await ch.queueDeclare('', { exclusive: true });
    await ch.queueBind(q.name, 'amq.topic', 'big.payload');
    const amqpGot = new Promise<Uint8Array>((resolve) => {
      void ch.basicConsume(q.name, { noAck: true }, (m) => resolve(m.body ?? new Uint8Array()));
    });
    const mq = await connectMqtt(`mqtt://127.0.0.1:${tb.broker.ports.mqtt}`, { clientId: 'big-payload-sub' });
    await mq.subscribeAsync('big/payload', { qos: 0 });
    const mqttGot = new Promise<Buffer>((resolve) => mq.on('message', (_t, p) => resolve(p)));
    const sub = await RawStomp.connected(port);
    sub.send('SUBSCRIBE', { destination: '/topic/big.payload', id: 'big', receipt: 's' });
    await sub.next('RECEIPT');

    const body = Buffer.alloc(16 * MiB);
    for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
    const c = await RawStomp.connected(port);
    c.send('SEND', { destination: '/topic/big.payload', receipt: 'big-r' }, body);
    expect((await c.next('RECEIPT', 30_000)).headers['receipt-id']).toBe('big-r');

    const [a, m, s] = await Promise.all([amqpGot, mqttGot, sub.next('MESSAGE', 30_000)]);
    expect(Buffer.from(a).equals(body)).toBe(true);
    expect(m.equals(body)).toBe(true);
    expect(s.body.equals(body)).toBe(true);
    c.destroy();
    sub.destroy();
    await mq.endAsync();
    await amqp.close();
  }, 60_000);

  test('from @stomp/stompjs over WebSocket', async () => {
    const client = await stompClient(wsUrl(httpPort));
    const body = 'z'.repeat(16 * MiB);
    const got = new Promise<string>((resolve) => client.subscribe('/queue/big-ws', (m) => resolve(m.body)));
    const receipt = receiptFor(client, 'big-ws-r');
    client.publish({ destination: '/queue/big-ws', body, headers: { receipt: 'big-ws-r' } });
    await receipt;
    expect((await got).length).toBe(16 * MiB);
    await client.deactivate();
  }, 60_000);
});

describe('--stomp-max-message-size bounds a SEND; --max-message-size still applies', () => {
  let small: TestBroker;
  beforeAll(async () => {
    small = await startTestBroker({ stompMaxMessageSize: 1000, maxMessageSize: 2000 });
  });
  afterAll(async () => {
    await small.stop();
  });

  test('a body of the limit passes; one byte more is Message too large', async () => {
    const c = await RawStomp.connected(small.broker.ports.stomp!);
    c.send('SEND', { destination: '/queue/small', receipt: 'ok' }, Buffer.alloc(1000, 0x61));
    await c.next('RECEIPT');
    c.send('SEND', { destination: '/queue/small' }, Buffer.alloc(1001, 0x61));
    expect(text(await c.expectError())).toEqual(['Message too large', 'message size 1001 is larger than configured max size 1000\n']);
  });

  test('the smaller of the two limits wins', async () => {
    const other = await startTestBroker({ stompMaxMessageSize: 5000, maxMessageSize: 1500 });
    try {
      const c = await RawStomp.connected(other.broker.ports.stomp!);
      c.write(`SEND\ndestination:/queue/small\ncontent-length:1501\n\n`);
      expect(text(await c.expectError())).toEqual(['Message too large', 'message size 1501 is larger than configured max size 1500\n']);
    } finally {
      await other.stop();
    }
  });
});

describe('host names this broker: the default vhost', () => {
  test.each(['localhost', '127.0.0.1', '::1', '[::1]:61613', hostname()])('CONNECT host:%s connects to /', async (host) => {
    const c = await RawStomp.connected(port, { host });
    c.send('SEND', { destination: '/queue/host-fallback', receipt: 'r' }, host);
    await c.next('RECEIPT');
    const conn = await waitFor(() => [...tb.broker.core.connections].find((x) => x.info.protocol === 'STOMP 1.2' && x.info.vhost === '/'));
    expect(conn.info.vhost).toBe('/');
    c.destroy();
  });

  test('a vhost named like a host of this broker wins over the fallback', async () => {
    tb.broker.core.addVhost('127.0.0.2');
    tb.broker.core.auth.setPermission('127.0.0.2', 'guest', { configure: '.*', write: '.*', read: '.*' });
    const c = await RawStomp.connected(port, { host: '127.0.0.2' });
    c.send('SEND', { destination: '/queue/in-host-named-vhost', receipt: 'r' }, 'x');
    await c.next('RECEIPT');
    expect(tb.broker.core.vhosts.get('127.0.0.2')!.queues.has('in-host-named-vhost')).toBe(true);
    expect(tb.broker.core.vhosts.get('/')!.queues.has('in-host-named-vhost')).toBe(false);
    c.destroy();
  });

  test('@stomp/stompjs with host:localhost', async () => {
    const client = await stompClient(wsUrl(httpPort), { connectHeaders: { host: 'localhost', login: 'guest', passcode: 'guest' } });
    const got = new Promise<string>((resolve) => client.subscribe('/queue/stompjs-localhost', (m) => resolve(m.body)));
    client.publish({ destination: '/queue/stompjs-localhost', body: 'via localhost' });
    expect(await got).toBe('via localhost');
    await client.deactivate();
  });

  // Debian's python3-stomp lives in the system interpreter's dist-packages.
  const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
  const script = join(import.meta.dirname, '..', 'fixtures', 'stomp', 'stomppy-roundtrip.py');

  test.each(['127.0.0.1', 'localhost'])('stomp.py 1.2 with its defaults, connected to %s', async (host) => {
    const { stdout } = await run(python, [script, host, String(port), '/queue/stomppy'], { timeout: 30_000 });
    expect(JSON.parse(stdout.trim())).toEqual({ connected: true, message: 'hello from stomp.py', error: null });
  }, 40_000);

  describe('with --stomp-host-fallback false', () => {
    let strict: TestBroker;
    beforeAll(async () => {
      strict = await startTestBroker({ stompHostFallback: false });
    });
    afterAll(async () => {
      await strict.stop();
    });

    test('host:localhost is a vhost name, and not found', async () => {
      const c = await RawStomp.open(strict.broker.ports.stomp!);
      c.write(`CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\nhost:localhost\n\n${nul}`);
      expect(text(await c.expectError())).toEqual(['Bad CONNECT', "Virtual host 'localhost' not found"]);
    });

    test('stomp.py 1.2 is refused with the same ERROR', async () => {
      const { stdout } = await run(python, [script, '127.0.0.1', String(strict.broker.ports.stomp!), '/queue/stomppy'], { timeout: 30_000 });
      expect(JSON.parse(stdout.trim())).toEqual({
        connected: false,
        error: { message: 'Bad CONNECT', body: "Virtual host '127.0.0.1' not found" },
      });
    }, 40_000);
  });
});

describe('guest from another host', () => {
  // An address of this machine that is not loopback: a client connecting to it is not local.
  const external = Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal)?.address;

  test.skipIf(external === undefined)('Bad CONNECT, non-loopback access denied', async () => {
    const wide = await startTestBroker({ bind: '0.0.0.0' });
    try {
      const c = await RawStomp.open(wide.broker.ports.stomp!, external!);
      c.write(`CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n${nul}`);
      expect(text(await c.expectError())).toEqual(['Bad CONNECT', 'non-loopback access denied']);
    } finally {
      await wide.stop();
    }
  });
});

describe('an access token that expires', () => {
  test('ERROR "Credential expired" with RabbitMQ\'s text, then the close', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-stomp-jwt-'));
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    writeFileSync(join(dir, 'key.pem'), await exportSPKI(publicKey));
    const tokens = await startTestBroker({ oauthKey: join(dir, 'key.pem') });
    try {
      const jwt = await new SignJWT({ scope: 'rabbitmq.read:*/* rabbitmq.write:*/* rabbitmq.configure:*/*' })
        .setProtectedHeader({ alg: 'ES256' })
        .setSubject('stomp-short')
        .setAudience('rabbitmq')
        .setIssuedAt()
        .setExpirationTime(Math.floor(Date.now() / 1000) + 2)
        .sign(privateKey);
      const c = await RawStomp.connected(tokens.broker.ports.stomp!, { login: 'stomp-short', passcode: jwt });
      const f = await c.next('ERROR', 10_000);
      expect(text(f)).toEqual(['Credential expired', 'The credential used to authenticate this connection has expired']);
      await c.waitClosed();
    } finally {
      await tokens.stop();
      await rm(dir, { recursive: true, force: true });
    }
  }, 20_000);
});
