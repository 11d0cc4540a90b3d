import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import amqplib from 'amqplib';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

let dir: string;
let key: CryptoKey;
let otherKey: CryptoKey;
let tb: TestBroker;

/** A token as an OAuth 2.0 authorization server would issue it for resource server 'rabbitmq'. */
function token(opts: { sub?: string; scope?: string; expiresIn?: number | string; aud?: string; signWith?: CryptoKey; kid?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ scope: opts.scope ?? 'rabbitmq.read:*/* rabbitmq.write:*/* rabbitmq.configure:*/*' })
    .setProtectedHeader({ alg: 'ES256', ...(opts.kid === undefined ? {} : { kid: opts.kid }) })
    .setSubject(opts.sub ?? 'worker-1')
    .setAudience(opts.aud ?? 'rabbitmq')
    .setIssuedAt();
  if (opts.expiresIn !== undefined) jwt.setExpirationTime(typeof opts.expiresIn === 'number' ? Math.floor(Date.now() / 1000) + opts.expiresIn : opts.expiresIn);
  else jwt.setExpirationTime('1h');
  return jwt.sign(opts.signWith ?? key);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-jwt-'));
  const main = await generateKeyPair('ES256', { extractable: true });
  key = main.privateKey;
  otherKey = (await generateKeyPair('ES256', { extractable: true })).privateKey;
  const unrelated = (await generateKeyPair('ES256', { extractable: true })).publicKey;
  // The PEM file holds an unrelated key first: every key in it is tried.
  writeFileSync(join(dir, 'keys.pem'), `${await exportSPKI(unrelated)}${await exportSPKI(main.publicKey)}`);
  tb = await startTestBroker({ oauthKey: join(dir, 'keys.pem') });
});

afterAll(async () => {
  await tb?.stop();
  await rm(dir, { recursive: true, force: true });
});

const usersOf = (protocol: string): string[] =>
  [...tb.broker.core.connections].filter((c) => c.info.protocol.startsWith(protocol)).map((c) => c.user);

describe('token login', () => {
  test('AMQP PLAIN with a token as the password: the user is the token subject, the scopes its permissions', async () => {
    const t = await token({ sub: 'worker-1', scope: 'rabbitmq.configure:*/jobs* rabbitmq.write:*/* rabbitmq.read:*/jobs*' });
    const c = await amqplib.connect(`amqp://ignored:${t}@127.0.0.1:${tb.broker.ports.amqp}`);
    expect(usersOf('AMQP')).toContain('worker-1');
    const ch = await c.createChannel();
    await ch.assertQueue('jobs.a', { durable: false });
    ch.sendToQueue('jobs.a', Buffer.from('job'));
    const m = await waitFor(async () => (await ch.get('jobs.a', { noAck: true })) || undefined);
    expect(m.content.toString()).toBe('job');
    // No configure scope for other names: 403 ACCESS_REFUSED, as with permissions.
    const closed = new Promise<Error>((r) => ch.once('error', r));
    await expect(ch.assertQueue('other', { durable: false })).rejects.toThrow(/ACCESS_REFUSED/);
    expect(String(await closed)).toMatch(/403/);
    await c.close();
  });

  test('a token for another audience, an expired one, and one signed by an unknown key are refused', async () => {
    for (const t of [await token({ aud: 'other' }), await token({ expiresIn: -60 }), await token({ signWith: otherKey })]) {
      await expect(amqplib.connect(`amqp://x:${t}@127.0.0.1:${tb.broker.ports.amqp}`)).rejects.toThrow(/ACCESS_REFUSED|403/);
    }
  });

  test('MQTT password and STOMP passcode take a token', async () => {
    const t = await token({ sub: 'sensor-7' });
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.broker.ports.mqtt}`, { username: 'sensor-7', password: t, clientId: 'tok-mqtt' });
    expect(usersOf('MQTT')).toContain('sensor-7');
    await m.publishAsync('a/b', 'x', { qos: 1 });
    await m.endAsync();
    const s = netConnect(tb.broker.ports.stomp!, '127.0.0.1');
    const data: Buffer[] = [];
    s.on('data', (c: Buffer) => data.push(c));
    s.write(`CONNECT\naccept-version:1.2\nhost:/\nlogin:x\npasscode:${t}\n\n\0SEND\ndestination:/queue/tok\nreceipt:r1\n\nhi\0`);
    await waitFor(() => Buffer.concat(data).toString().includes('RECEIPT'));
    expect(Buffer.concat(data).toString()).toMatch(/^CONNECTED/);
    expect(usersOf('STOMP')).toContain('sensor-7');
    s.destroy();
  });

  test('HTTP Authorization: Bearer with a management tag scope', async () => {
    const admin = await token({ sub: 'ops', scope: 'rabbitmq.tag:administrator rabbitmq.read:*/*' });
    const res = await get('/api/whoami', { authorization: `Bearer ${admin}` });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ name: 'ops', tags: ['administrator'] });
    const plain = await token({ sub: 'nobody', scope: 'rabbitmq.read:*/*' });
    expect((await get('/api/whoami', { authorization: `Bearer ${plain}` })).status).toBe(401);
    expect((await get('/api/whoami', { authorization: `Bearer ${await token({ expiresIn: -5 })}` })).status).toBe(401);
  });

  test('expiry closes an AMQP connection with 320 CONNECTION_FORCED "credential expired"', async () => {
    const c = await amqplib.connect(`amqp://x:${await token({ sub: 'short', expiresIn: 2 })}@127.0.0.1:${tb.broker.ports.amqp}`);
    c.on('error', () => undefined);
    const err = await new Promise<Error>((r) => c.once('close', r));
    expect(String(err)).toMatch(/320.*credential expired/);
  });

  test('connection.update-secret renews the token: the connection outlives the first one', async () => {
    const c = await amqplib.connect(`amqp://x:${await token({ sub: 'renewer', expiresIn: 2 })}@127.0.0.1:${tb.broker.ports.amqp}`);
    let closed = false;
    c.on('close', () => (closed = true));
    await c.updateSecret(Buffer.from(await token({ sub: 'renewer', expiresIn: 3600 })), 'refresh');
    const ch = await c.createChannel();
    await new Promise((r) => setTimeout(r, 2500)); // past the first token's end
    expect(closed).toBe(false);
    const q = await ch.assertQueue('', { exclusive: true });
    ch.sendToQueue(q.queue, Buffer.from('still here'));
    expect((await waitFor(async () => (await ch.get(q.queue, { noAck: true })) || undefined)).content.toString()).toBe('still here');
    await c.close();
  });

  test('update-secret with a token for another user is refused with 530', async () => {
    const c = await amqplib.connect(`amqp://x:${await token({ sub: 'renewer-2' })}@127.0.0.1:${tb.broker.ports.amqp}`);
    c.on('error', () => undefined);
    const closed = new Promise<Error>((r) => c.once('close', r));
    // amqplib leaves the update's promise pending when the server closes instead of answering.
    void c.updateSecret(Buffer.from(await token({ sub: 'someone-else' })), 'refresh').catch(() => undefined);
    expect(String(await closed)).toMatch(/530.*Secret update failed/);
  });

  test('expiry ends an MQTT 5 connection with DISCONNECT 0xA0', async () => {
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.broker.ports.mqtt}`, {
      protocolVersion: 5,
      username: 'x',
      password: await token({ sub: 'short-mqtt', expiresIn: 2 }),
      reconnectPeriod: 0,
    });
    const code = await new Promise<number | undefined>((r) => m.once('disconnect', (p) => r(p.reasonCode)));
    expect(code).toBe(0xa0);
    await m.endAsync(true);
  });

  test('a JWKS file works as well as PEM keys (kid selects the key)', async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk] }));
    const other = await startTestBroker({ oauthJwks: join(dir, 'jwks.json'), mqttPort: 'off', stompPort: 'off', httpPort: 'off' } as never);
    const t = await token({ sub: 'jwks-user', signWith: privateKey, kid: 'k1' });
    const c = await amqplib.connect(`amqp://x:${t}@127.0.0.1:${other.broker.ports.amqp}`);
    await c.close();
    await other.stop();
  });
});

function get(path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: tb.broker.ports.http, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end();
  });
}
