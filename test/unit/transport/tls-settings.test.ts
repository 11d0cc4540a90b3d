import { describe, expect, test } from 'vitest';
import { ConfigError, withDefaults } from '../../../src/config.js';
import { certificateUser, tlsSettingsFor } from '../../../src/transport/tls.js';

describe('TLS settings', () => {
  test('no certificate: TLS is off for every listener', () => {
    expect(tlsSettingsFor(withDefaults({}), 'amqps')).toBeUndefined();
  });

  test('the shared options apply to every listener; --tls-listeners overrides one', () => {
    const o = withDefaults({
      tlsCert: 'c.pem',
      tlsKey: 'k.pem',
      tlsVerifyPeer: true,
      tlsListeners: JSON.stringify({ https: { verifyPeer: false, cert: 'web.pem', key: 'web.key' }, mqtts: { minVersion: '1.3' } }),
    });
    expect(tlsSettingsFor(o, 'amqps')).toMatchObject({ cert: 'c.pem', key: 'k.pem', verifyPeer: true, minVersion: '1.2', handshakeTimeout: 10000 });
    expect(tlsSettingsFor(o, 'https')).toMatchObject({ cert: 'web.pem', key: 'web.key', verifyPeer: false });
    expect(tlsSettingsFor(o, 'mqtts')).toMatchObject({ cert: 'c.pem', minVersion: '1.3' });
  });

  test.each([
    ['not json', /not JSON/],
    ['{"amqp":{}}', /unknown listener 'amqp'/],
    ['{"mqtts":{"verify":true}}', /unknown field 'mqtts.verify'/],
    ['{"mqtts":{"verifyPeer":"yes"}}', /verifyPeer must be true or false/],
    ['{"mqtts":{"minVersion":"1.1"}}', /minVersion/],
  ])('--tls-listeners %s is refused', (json, reason) => {
    const o = withDefaults({ tlsCert: 'c.pem', tlsListeners: json });
    expect(() => tlsSettingsFor(o, 'mqtts')).toThrow(ConfigError);
    expect(() => tlsSettingsFor(o, 'mqtts')).toThrow(reason);
  });

  test('--tls-min-version and --tls-cert-login-from take only the values they know', () => {
    expect(() => withDefaults({ tlsMinVersion: '1.1' })).toThrow(/tls-min-version: expected one of 1.2, 1.3/);
    expect(() => withDefaults({ tlsCertLoginFrom: 'email' })).toThrow(/tls-cert-login-from/);
  });

  test('the certificate user: CN, first DNS SAN, or DN; none unless the certificate verified', () => {
    const peer = {
      protocol: 'TLSv1.3',
      cipher: 'x',
      authorized: true,
      certificate: {
        commonName: 'dev-1',
        distinguishedName: 'CN=dev-1,O=Example',
        subjectAltNames: [{ type: 'email', value: 'a@b' }, { type: 'DNS', value: 'dev-1.example' }],
        validTo: '',
      },
    };
    expect(certificateUser(peer, 'common_name')).toBe('dev-1');
    expect(certificateUser(peer, 'subject_alternative_name')).toBe('dev-1.example');
    expect(certificateUser(peer, 'distinguished_name')).toBe('CN=dev-1,O=Example');
    expect(certificateUser({ ...peer, authorized: false }, 'common_name')).toBeUndefined();
    expect(certificateUser(undefined, 'common_name')).toBeUndefined();
  });
});

describe('TLS options in a config file', () => {
  test('tlsListeners may be an object there', async () => {
    const { mkdtemp, rm, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { resolveOptions } = await import('../../../src/config.js');
    const dir = await mkdtemp(join(tmpdir(), 'warren-cfg-'));
    const file = join(dir, 'warren.json');
    await writeFile(file, JSON.stringify({ tlsCert: 'c.pem', tlsListeners: { mqtts: { failIfNoPeerCert: true } } }));
    const o = resolveOptions({}, {}, file);
    expect(tlsSettingsFor(o, 'mqtts')).toMatchObject({ failIfNoPeerCert: true });
    expect(tlsSettingsFor(o, 'amqps')).toMatchObject({ failIfNoPeerCert: false });
    await rm(dir, { recursive: true, force: true });
  });
});
