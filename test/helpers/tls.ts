import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A CA, server and client certificates made with Debian's openssl for one test file. */
export interface TestPki {
  dir: string;
  /** File paths. */
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** Another server certificate from the same CA (CN warren-2), for reloads. */
  server2Cert: string;
  server2Key: string;
  /** A CA nobody trusts, and a client certificate it signed. */
  otherCaCert: string;
  /** PEM contents. */
  ca: Buffer;
  client(name: string): { cert: Buffer; key: Buffer; certFile: string; keyFile: string };
  /** A client certificate (CN `name`) whose validity ended in 2020. */
  expiredClient(name: string): { cert: Buffer; key: Buffer };
  /** A client certificate from the untrusted CA. */
  wrongCaClient(name: string): { cert: Buffer; key: Buffer };
  cleanup(): void;
}

function openssl(cwd: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string, cn: string): void {
  openssl(dir, 'req', '-x509', ...EC, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-subj', `/O=Warren Tests/CN=${cn}`, '-days', '3');
}

function sign(dir: string, ca: string, name: string, subject: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, 'req', ...EC, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '3', '-extfile', `${name}.ext`);
}

export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'warren-pki-'));
  makeCa(dir, 'ca', 'Warren Test CA');
  makeCa(dir, 'other-ca', 'Untrusted CA');
  const serverExt = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';
  sign(dir, 'ca', 'server', '/O=Warren Tests/CN=warren', serverExt);
  sign(dir, 'ca', 'server2', '/O=Warren Tests/CN=warren-2', serverExt);
  const read = (f: string): Buffer => readFileSync(join(dir, f));
  const clientExt = (name: string): string => `subjectAltName=DNS:${name}.devices.example\nextendedKeyUsage=clientAuth\n`;
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    serverCert: join(dir, 'server.crt'),
    serverKey: join(dir, 'server.key'),
    server2Cert: join(dir, 'server2.crt'),
    server2Key: join(dir, 'server2.key'),
    otherCaCert: join(dir, 'other-ca.crt'),
    ca: read('ca.crt'),
    client(name) {
      sign(dir, 'ca', `client-${name}`, `/O=Warren Tests/CN=${name}`, clientExt(name));
      return { cert: read(`client-${name}.crt`), key: read(`client-${name}.key`), certFile: join(dir, `client-${name}.crt`), keyFile: join(dir, `client-${name}.key`) };
    },
    expiredClient(name) {
      // `openssl ca` is the one that can date a certificate in the past.
      const db = join(dir, 'index.txt');
      writeFileSync(db, '');
      writeFileSync(
        join(dir, 'ca.cnf'),
        [
          '[ca]',
          'default_ca = test',
          '[test]',
          `database = ${db}`,
          `new_certs_dir = ${dir}`,
          `certificate = ${join(dir, 'ca.crt')}`,
          `private_key = ${join(dir, 'ca.key')}`,
          `serial = ${join(dir, 'expired.srl')}`,
          'default_md = sha256',
          'policy = any',
          'unique_subject = no',
          '[any]',
          'commonName = supplied',
          'organizationName = optional',
          '',
        ].join('\n'),
      );
      writeFileSync(join(dir, 'expired.srl'), '1000\n');
      openssl(dir, 'req', ...EC, '-keyout', `expired-${name}.key`, '-out', `expired-${name}.csr`, '-subj', `/O=Warren Tests/CN=${name}`);
      openssl(dir, 'ca', '-batch', '-config', 'ca.cnf', '-in', `expired-${name}.csr`, '-out', `expired-${name}.crt`, '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-notext');
      return { cert: read(`expired-${name}.crt`), key: read(`expired-${name}.key`) };
    },
    wrongCaClient(name) {
      sign(dir, 'other-ca', `wrong-${name}`, `/O=Warren Tests/CN=${name}`, clientExt(name));
      return { cert: read(`wrong-${name}.crt`), key: read(`wrong-${name}.key`) };
    },
    cleanup() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The TLS options of a broker that uses the test PKI. */
export function tlsOptions(pki: TestPki, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { tlsCert: pki.serverCert, tlsKey: pki.serverKey, tlsCa: pki.caCert, amqpsPort: 0, mqttsPort: 0, stompsPort: 0, httpsPort: 0, ...extra };
}
