import type { ManagementApi } from './api.js';

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
