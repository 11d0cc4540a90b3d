import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportSPKI, generateKeyPair, type CryptoKey } from 'jose';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { Auth } from '../../../src/core/auth.js';
import { BrokerError } from '../../../src/core/errors.js';
import { TokenVerifier, grantCoversVhost, grantPermits } from '../../../src/core/token-auth.js';

let dir: string;
let key: CryptoKey;
let verifier: TokenVerifier;

const sign = (claims: Record<string, unknown>, aud = 'rabbitmq'): Promise<string> =>
  new SignJWT(claims).setProtectedHeader({ alg: 'ES256' }).setSubject('u1').setAudience(aud).setExpirationTime('1h').sign(key);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-token-unit-'));
  const pair = await generateKeyPair('ES256', { extractable: true });
  key = pair.privateKey;
  writeFileSync(join(dir, 'k.pem'), await exportSPKI(pair.publicKey));
  verifier = new TokenVerifier({ resourceServerId: 'rabbitmq', keyFile: join(dir, 'k.pem'), usernameClaim: 'sub', verifyAud: true });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('TokenVerifier', () => {
  test('reads RabbitMQ scopes: access, vhost and name wildcards, tags; other resource servers ignored', async () => {
    const g = await verifier.verify(await sign({ scope: 'rabbitmq.read:*/q.* rabbitmq.write:%2F/amq.topic other.configure:*/* rabbitmq.tag:monitoring' }));
    expect(g.user).toBe('u1');
    expect(g.tags).toEqual(['monitoring']);
    expect(grantPermits(g, 'prod', 'read', 'q.orders')).toBe(true);
    expect(grantPermits(g, 'prod', 'read', 'x.q.orders')).toBe(false);
    expect(grantPermits(g, '/', 'write', 'amq.topic')).toBe(true);
    expect(grantPermits(g, 'prod', 'write', 'amq.topic')).toBe(false);
    expect(grantPermits(g, 'prod', 'configure', 'anything')).toBe(false);
    expect(grantCoversVhost(g, 'prod')).toBe(true);
    expect(g.expiresAt).toBeGreaterThan(Date.now());
  });

  test('a scope list given as an array works too, and regex characters in names are literal', async () => {
    const g = await verifier.verify(await sign({ scope: ['rabbitmq.read:v/a+b'] }));
    expect(grantPermits(g, 'v', 'read', 'a+b')).toBe(true);
    expect(grantPermits(g, 'v', 'read', 'aab')).toBe(false);
    expect(grantCoversVhost(g, 'w')).toBe(false);
  });

  test('the wrong audience and a token without the username claim are refused with 403', async () => {
    await expect(verifier.verify(await sign({}, 'elsewhere'))).rejects.toSatisfy((e: unknown) => e instanceof BrokerError && e.code === 403 && /aud/.test(e.text));
    const noSub = await new SignJWT({}).setProtectedHeader({ alg: 'ES256' }).setAudience('rabbitmq').sign(key);
    await expect(verifier.verify(noSub)).rejects.toThrow(/no 'sub' claim/);
  });

  test('only JWT-shaped secrets are taken for tokens', () => {
    expect(TokenVerifier.looksLikeToken('guest')).toBe(false);
    expect(TokenVerifier.looksLikeToken('a.b.c')).toBe(false);
    expect(TokenVerifier.looksLikeToken('eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln')).toBe(true);
  });
});

describe('Auth with token grants', () => {
  test('a token user is permitted by its scopes, not by the permission table', async () => {
    const auth = new Auth();
    auth.setPermission('/', 'u1', { configure: '.*', write: '.*', read: '.*' });
    const user = auth.grantToken(await verifier.verify(await sign({ scope: 'rabbitmq.read:%2F/jobs' })));
    expect(user).toMatchObject({ name: 'u1', passwordHash: '' });
    expect(auth.permitted('u1', '/', 'read', 'jobs')).toBe(true);
    expect(auth.permitted('u1', '/', 'configure', 'jobs')).toBe(false);
    expect(auth.canAccessVhost('u1', '/')).toBe(true);
    expect(auth.canAccessVhost('u1', 'other')).toBe(false);
  });

  test('certificate login needs an existing user and keeps the loopback rule', () => {
    const auth = new Auth();
    auth.putUser('dev', { passwordHash: '' });
    auth.putUser('guest', { passwordHash: '' });
    expect(auth.authenticateCertificate('dev', '10.0.0.1').name).toBe('dev');
    expect(() => auth.authenticateCertificate('nobody', '127.0.0.1')).toThrow(/EXTERNAL/);
    expect(() => auth.authenticateCertificate('guest', '10.0.0.1')).toThrow(/localhost/);
    // A user without a password cannot log in with one, not even an empty one.
    expect(() => auth.authenticate('dev', '', '127.0.0.1')).toThrow(BrokerError);
  });
});
