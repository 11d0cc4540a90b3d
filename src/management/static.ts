import { readFileSync, readdirSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { extname, join } from 'node:path';
import type { Logger } from '../logger.js';
import { UI_DIR } from './package-info.js';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};

interface Asset {
  body: Buffer;
  type: string;
}

/** Files from installed packages the UI uses (served from node_modules, never a CDN). */
const VENDOR: ReadonlyArray<[string, string]> = [
  ['/vendor/uPlot.iife.min.js', 'uplot/dist/uPlot.iife.min.js'],
  ['/vendor/uPlot.min.css', 'uplot/dist/uPlot.min.css'],
];

/**
 * The web UI: plain files loaded into memory at start (a fixed set of paths, so nothing outside the
 * UI directory can be asked for).
 */
export class StaticFiles {
  private readonly assets = new Map<string, Asset>();

  constructor(log: Logger) {
    try {
      for (const name of readdirSync(UI_DIR)) {
        const file = join(UI_DIR, name);
        if (!statSync(file).isFile()) continue;
        this.assets.set(`/${name}`, { body: readFileSync(file), type: TYPES[extname(name)] ?? 'application/octet-stream' });
      }
    } catch (e) {
      log.warn({ dir: UI_DIR, err: e }, 'management UI files not found');
    }
    const index = this.assets.get('/index.html');
    if (index) this.assets.set('/', index);
    const require = createRequire(import.meta.url);
    for (const [path, spec] of VENDOR) {
      try {
        const file = require.resolve(spec);
        this.assets.set(path, { body: readFileSync(file), type: TYPES[extname(file)] ?? 'application/octet-stream' });
      } catch (e) {
        log.warn({ module: spec, err: e }, 'management UI dependency not installed');
      }
    }
  }

  /** Serves a GET/HEAD for a known path; false when there is no such file. */
  serve(req: IncomingMessage, res: ServerResponse, path: string): boolean {
    const a = this.assets.get(path);
    if (!a) return false;
    res.writeHead(200, {
      'content-type': a.type,
      'content-length': a.body.length,
      'cache-control': 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    res.end(req.method === 'HEAD' ? undefined : a.body);
    return true;
  }
}
