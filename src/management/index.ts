import type { IncomingMessage, ServerResponse } from 'node:http';
import type { BrokerOptions } from '../config.js';
import type { Core } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ManagementApi, type ListenerPorts } from './api.js';
import type { ClusterView } from './cluster-view.js';
import { servePeers } from './cluster-wide.js';
import { HttpError, sendJson } from './http-util.js';
import { renderMetrics } from './metrics.js';
import { registerAdminRoutes } from './routes-admin.js';
import { registerBrokerRoutes } from './routes-broker.js';
import { registerDefinitionRoutes } from './routes-definitions.js';
import { registerObjectRoutes } from './routes-objects.js';
import { registerReloadRoutes } from './routes-tls.js';
import { Sampler } from './sampler.js';
import { StaticFiles } from './static.js';

export interface ManagementOptions {
  /** How often rates are sampled, in ms (RabbitMQ's collect_statistics_interval); default 5000. */
  statsIntervalMs?: number;
  /** Require HTTP basic auth (a user with a management tag) on /metrics; default false. */
  metricsAuth?: boolean;
  /** Serve the web UI at `/`; default true. */
  ui?: boolean;
}

export interface ManagementContext {
  readonly core: Core;
  readonly log: Logger;
  readonly options: BrokerOptions;
  readonly ports: ListenerPorts;
  /** Loads the TLS certificates again (`POST /api/reload`, `warren reload`). */
  readonly reloadTls?: () => { reloaded: string[]; failed: Record<string, string> };
  /** The cluster this node belongs to, if any. */
  readonly cluster?: ClusterView | undefined;
}

/**
 * Management on the HTTP port: the RabbitMQ-compatible API under `/api`, Prometheus metrics at
 * `/metrics`, and the web UI at `/`. Rates come from a sampler that runs on a timer.
 */
export class Management {
  readonly api: ManagementApi;
  readonly sampler: Sampler;
  private readonly files: StaticFiles | undefined;
  private readonly metricsAuth: boolean;
  readonly startedAt = Date.now();

  constructor(
    private readonly ctx: ManagementContext,
    opts: ManagementOptions = {},
  ) {
    this.sampler = new Sampler(ctx.core, opts.statsIntervalMs ?? 5000);
    this.api = new ManagementApi({ ...ctx, sampler: this.sampler, startedAt: this.startedAt });
    registerBrokerRoutes(this.api);
    registerObjectRoutes(this.api);
    registerAdminRoutes(this.api);
    registerDefinitionRoutes(this.api);
    registerReloadRoutes(this.api);
    servePeers(this.api, this.api.peerOps);
    this.files = opts.ui === false ? undefined : new StaticFiles(ctx.log);
    this.metricsAuth = opts.metricsAuth ?? false;
  }

  start(): void {
    this.sampler.start();
  }

  stop(): void {
    this.sampler.stop();
  }

  /** The HTTP request handler (`HttpServer.setHandler`). */
  readonly handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q < 0 ? url : url.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
    if (path === '/api' || path.startsWith('/api/')) {
      this.api.handle(req, res, path, query).catch((err: unknown) => {
        // handle() answers every error itself; this is only if even that failed.
        this.ctx.log.error({ err, method: req.method, url: req.url }, 'management request failed');
        res.destroy();
      });
      return;
    }
    if (path === '/metrics' || path === '/metrics/per-object') {
      this.metrics(req, res, path === '/metrics/per-object');
      return;
    }
    if ((req.method === 'GET' || req.method === 'HEAD') && this.files?.serve(req, res, path)) return;
    sendJson(res, 404, { error: 'Object Not Found', reason: 'Not Found' });
  };

  /**
   * `/metrics`: aggregates only, no vhost or queue names (credentials required only with
   * `metricsAuth`). `/metrics/per-object`: a series per vhost and queue, always behind
   * credentials of a monitoring or administrator user, as they name every vhost's queues.
   */
  private metrics(req: IncomingMessage, res: ServerResponse, perObject: boolean): void {
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') throw HttpError.methodNotAllowed();
      if (perObject) {
        if (!this.api.isMonitor(this.api.authenticate(req))) throw HttpError.notAuthorised('Not monitor user');
      } else if (this.metricsAuth) this.api.authenticate(req);
      const text = renderMetrics(this.ctx.core, this.startedAt, perObject);
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(text) });
      res.end(req.method === 'HEAD' ? undefined : text);
    } catch (e) {
      this.api.fail(req, res, e);
    }
  }
}
