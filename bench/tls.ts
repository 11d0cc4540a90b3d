/**
 * One certificate for every broker in a run (Warren and the private RabbitMQ node are configured
 * with the same files), made with openssl in a temporary directory. The client processes trust its
 * CA through NODE_EXTRA_CA_CERTS, which they inherit from the harness.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface BenchCertificate {
  ca: string;
  cert: string;
  key: string;
}

let made: BenchCertificate | undefined;

/** Creates the run's CA and server certificate (once) and makes forked clients trust the CA. */
export function benchCertificate(): BenchCertificate {
  if (made !== undefined) return made;
  const dir = mkdtempSync(join(tmpdir(), 'warren-bench-tls-'));
  const ssl = (...args: string[]): void => {
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  };
  // P-256: what both brokers and every client handle, and cheap to sign with.
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=warren bench CA', '-days', '2');
  ssl('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.pem', '-days', '2', '-extfile', 'server.ext');
  made = { ca: join(dir, 'ca.pem'), cert: join(dir, 'server.pem'), key: join(dir, 'server.key') };
  process.env['NODE_EXTRA_CA_CERTS'] = made.ca;
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return made;
}
