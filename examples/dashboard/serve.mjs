#!/usr/bin/env node
// Serves the dashboard pages and the two browser libraries they load from node_modules
// (@stomp/stompjs and mqtt), so nothing comes from a CDN and nothing is bundled.
//
//   npm start                                   # the broker: WebSockets on ws://127.0.0.1:15672/ws
//   node examples/dashboard/serve.mjs           # http://127.0.0.1:8080/ (STOMP) and /mqtt.html (MQTT)
//   node examples/dashboard/serve.mjs --port 9000
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const TYPES = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

/** URL path -> file. The vendor files are resolved where npm installed them. */
function routes() {
  // The CommonJS entry of @stomp/stompjs is its UMD bundle; the minified one sits next to it.
  const stompBundles = dirname(require.resolve('@stomp/stompjs'));
  const mqtt = dirname(require.resolve('mqtt/package.json'));
  return new Map([
    ['/', join(here, 'index.html')],
    ['/index.html', join(here, 'index.html')],
    ['/mqtt.html', join(here, 'mqtt.html')],
    ['/dashboard.js', join(here, 'dashboard.js')],
    ['/dashboard.css', join(here, 'dashboard.css')],
    ['/screenshot.png', join(here, 'screenshot.png')],
    ['/vendor/stomp.umd.min.js', join(stompBundles, 'stomp.umd.min.js')],
    ['/vendor/mqtt.min.js', join(mqtt, 'dist', 'mqtt.min.js')],
  ]);
}

/**
 * Starts the static server. Resolves with its URL and a close function.
 * @param {{ port?: number, host?: string }} [opts]
 * @returns {Promise<{ url: string, port: number, close: () => Promise<void> }>}
 */
export async function serveDashboard(opts = {}) {
  const files = routes();
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const file = files.get(path);
    if (req.method !== 'GET' || file === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    readFile(file).then(
      (body) => res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' }).end(body),
      () => res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n'),
    );
  });
  const host = opts.host ?? '127.0.0.1';
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8080, host, () => resolve(undefined));
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : (opts.port ?? 8080);
  return {
    url: `http://${host}:${port}`,
    port,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const i = process.argv.indexOf('--port');
  const port = i > 0 ? Number(process.argv[i + 1]) : Number(process.env.PORT ?? 8080);
  const { url } = await serveDashboard({ port, host: process.env.HOST ?? '127.0.0.1' });
  console.log(`dashboard (STOMP over WebSocket): ${url}/`);
  console.log(`dashboard (MQTT over WebSocket):  ${url}/mqtt.html`);
  console.log('the pages connect to ws://<this host>:15672 by default; add ?ws=ws://host:port/ws to change it');
}
