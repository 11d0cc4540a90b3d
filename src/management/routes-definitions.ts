import { exportDefinitions, importDefinitions, type Definitions } from '../core/index.js';
import type { ManagementApi } from './api.js';
import { HttpError, checkJsonType, readBody } from './http-util.js';
import { VERSION } from './package-info.js';
import { parseTags } from './routes-admin.js';
import { RABBITMQ_COMPAT_VERSION } from './routes-broker.js';

type Obj = Record<string, unknown>;

const VHOST_SCOPED = ['queues', 'exchanges', 'bindings', 'policies', 'parameters'] as const;

async function readDefinitions(req: Parameters<ManagementApi['authenticate']>[0]): Promise<Obj> {
  const raw = await readBody(req);
  checkJsonType(req, raw);
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw.toString('utf8'));
  } catch (e) {
    throw HttpError.badRequest(`failed to decode JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw HttpError.badRequest('definitions must be a JSON object');
  return parsed as Obj;
}

/** GET/POST /api/definitions[/{vhost}]: RabbitMQ's definitions JSON, via the core's definitions module. */
export function registerDefinitionRoutes(api: ManagementApi): void {
  const r = api.router;
  const core = api.core;

  const exportAll = (): Definitions & Obj => {
    const d = exportDefinitions(core, VERSION) as Definitions & Obj;
    // Vhost descriptions and tags are kept by management.
    for (const v of d.vhosts) {
      const m = api.vhostMeta(v.name);
      v.metadata = { description: m.description, tags: m.tags };
    }
    return { rabbit_version: RABBITMQ_COMPAT_VERSION, rabbitmq_version: RABBITMQ_COMPAT_VERSION, ...d };
  };

  const finishImport = async (defs: Obj, by: string): Promise<void> => {
    const report = importDefinitions(core, defs);
    for (const v of Array.isArray(defs['vhosts']) ? (defs['vhosts'] as Obj[]) : []) {
      if (typeof v?.['name'] !== 'string') continue;
      const meta = (typeof v['metadata'] === 'object' && v['metadata'] !== null ? v['metadata'] : v) as Obj;
      const prev = api.vhostMeta(v['name']);
      api.setVhostMeta(v['name'], {
        description: typeof meta['description'] === 'string' ? meta['description'] : prev.description,
        tags: meta['tags'] !== undefined ? parseTags(meta['tags']) : prev.tags,
        defaultQueueType: typeof v['default_queue_type'] === 'string' ? v['default_queue_type'] : prev.defaultQueueType,
      });
    }
    const settled = core.persistence.definitionsChanged();
    api.ctx.log.info({ by, ...report, warnings: report.warnings.length }, 'definitions imported');
    for (const w of report.warnings) api.ctx.log.warn({ by }, `definitions import: ${w}`);
    await api.durable(settled);
  };

  r.on('GET', '/api/definitions', (req) => {
    api.requireAdmin(req.user);
    const headers: Record<string, string> = {};
    if (req.query.get('download') !== null) headers['content-disposition'] = `attachment; filename="${req.query.get('download')!.replace(/[^\w.-]/g, '_')}"`;
    return { status: 200, body: exportAll(), headers };
  });
  r.on('POST', '/api/definitions', async (req) => {
    api.requireAdmin(req.user);
    const defs = await readDefinitions(req.req);
    await finishImport(defs, req.user.name);
    return { status: 204 };
  });

  r.on('GET', '/api/definitions/:vhost', (req) => {
    api.requireAdmin(req.user);
    const vhost = req.params['vhost']!;
    if (!core.vhosts.has(vhost)) throw HttpError.notFound();
    const all = exportAll() as unknown as Obj;
    const out: Obj = { rabbit_version: RABBITMQ_COMPAT_VERSION, rabbitmq_version: RABBITMQ_COMPAT_VERSION, product_name: all['product_name'], product_version: all['product_version'] };
    for (const key of VHOST_SCOPED) {
      out[key] = ((all[key] ?? []) as Obj[])
        .filter((e) => e['vhost'] === vhost)
        .map((e) => {
          const { vhost: _v, ...rest } = e;
          return rest;
        });
    }
    return { status: 200, body: out };
  });
  r.on('POST', '/api/definitions/:vhost', async (req) => {
    api.requireAdmin(req.user);
    const vhost = req.params['vhost']!;
    if (!core.vhosts.has(vhost)) throw HttpError.notFound();
    const defs = await readDefinitions(req.req);
    const scoped: Obj = {};
    for (const key of VHOST_SCOPED) {
      const list = defs[key];
      if (list === undefined) continue;
      if (!Array.isArray(list)) throw HttpError.badRequest(`'${key}' must be a list`);
      scoped[key] = list.map((e: unknown) => (typeof e === 'object' && e !== null ? { ...(e as Obj), vhost } : e));
    }
    await finishImport(scoped, req.user.name);
    return { status: 204 };
  });
}
