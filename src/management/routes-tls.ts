import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ManagementApi } from './api.js';
import { HttpError } from './http-util.js';

const UNIT_MS: Record<string, number> = { days: 86_400_000, weeks: 7 * 86_400_000, months: 30 * 86_400_000, years: 365 * 86_400_000 };

/**
 * RabbitMQ's certificate-expiration health check: 503 when a configured certificate (the TLS
 * chain, the CA file) expires within `within` `unit` (days, weeks, months, years).
 */
export function certificateExpiration(api: ManagementApi, within: string, unit: string): { status: number; body: Record<string, unknown> } {
  const n = Number(within);
  const ms = UNIT_MS[unit];
  if (!Number.isInteger(n) || n < 0 || ms === undefined) throw HttpError.badRequest(`expected /<non-negative integer>/<days|weeks|months|years>, got /${within}/${unit}`);
  const limit = Date.now() + n * ms;
  const expired: Array<{ file: string; subject: string; valid_to: string }> = [];
  const { tlsCert, tlsCa } = api.ctx.options;
  for (const file of [tlsCert, tlsCa]) {
    if (file === undefined) continue;
    let pem: string;
    try {
      pem = readFileSync(file, 'utf8');
    } catch (e) {
      return { status: 503, body: { status: 'failed', reason: `cannot read ${file}: ${e instanceof Error ? e.message : String(e)}` } };
    }
    for (const block of pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
      const cert = new X509Certificate(block);
      if (Date.parse(cert.validTo) <= limit) expired.push({ file, subject: cert.subject.replaceAll('\n', ', '), valid_to: new Date(cert.validTo).toISOString() });
    }
  }
  if (expired.length === 0) return { status: 200, body: { status: 'ok' } };
  return { status: 503, body: { status: 'failed', reason: `Certificates expiring within ${n} ${unit}`, expired } };
}

/**
 * `POST /api/reload` (administrators): the TLS certificate files are read again, as on SIGHUP.
 * Answers the listeners that switched; a listener whose new files are unusable keeps its old
 * certificate and is named in `failed` with the reason.
 */
export function registerReloadRoutes(api: ManagementApi): void {
  api.router.on('POST', '/api/reload', (req) => {
    api.requireAdmin(req.user);
    const r = api.ctx.reloadTls?.() ?? { reloaded: [], failed: {} };
    return { status: 200, body: r };
  });
}
