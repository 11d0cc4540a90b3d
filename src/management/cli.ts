import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { Command, Option } from 'commander';

/**
 * The `warren` admin subcommands: thin clients of the management HTTP API (`--url`, `--user`,
 * `--password`, or WARREN_URL / WARREN_USER / WARREN_PASSWORD).
 */

interface ConnOpts {
  url: string;
  user: string;
  password: string;
  vhost: string;
  json?: boolean;
}

type Obj = Record<string, unknown>;

/** An error the CLI reports in one line. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

const enc = encodeURIComponent;

/** Adds the connection options every admin command takes. */
function conn(cmd: Command, json = false): Command {
  cmd
    .addOption(new Option('--url <url>', 'management API base URL').env('WARREN_URL').default('http://127.0.0.1:15672'))
    .addOption(new Option('--user <name>', 'user name').env('WARREN_USER').default('guest'))
    .addOption(new Option('--password <password>', 'password').env('WARREN_PASSWORD').default('guest'))
    .addOption(new Option('--vhost <vhost>', 'virtual host').env('WARREN_VHOST').default('/'));
  if (json) cmd.option('--json', 'print JSON instead of a table');
  return cmd;
}

const CONNECTION_FLAGS: ReadonlySet<string> = new Set(['--url', '--user', '--password', '--vhost']);

/**
 * Lets the connection options (`--url`, `--user`, `--password`, `--vhost`) come before the
 * subcommand as well as after it, as `rabbitmqadmin` and most CLIs allow: those met while walking
 * down the command names are moved to just after the innermost command, where it declares them.
 * Everything else is left where it was, so an option the command does not know is still an error.
 */
export function hoistConnectionOptions(program: Command, argv: readonly string[]): string[] {
  const path: string[] = [];
  const hoisted: string[] = [];
  let cmd = program;
  let i = 0;
  while (i < argv.length) {
    const t = argv[i]!;
    const flag = t.startsWith('--') ? t.split('=', 1)[0]! : '';
    if (CONNECTION_FLAGS.has(flag)) {
      hoisted.push(t);
      if (!t.includes('=') && i + 1 < argv.length) hoisted.push(argv[++i]!);
      i++;
      continue;
    }
    const sub = t.startsWith('-') ? undefined : cmd.commands.find((c) => c.name() === t || c.aliases().includes(t));
    if (!sub) break;
    path.push(t);
    cmd = sub;
    i++;
  }
  if (hoisted.length === 0) return [...argv];
  return [...path, ...hoisted, ...argv.slice(i)];
}

class Client {
  private readonly base: string;
  private readonly auth: string;

  constructor(private readonly o: ConnOpts) {
    this.base = o.url.replace(/\/+$/, '');
    this.auth = `Basic ${Buffer.from(`${o.user}:${o.password}`).toString('base64')}`;
  }

  async request(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<unknown> {
    let url: URL;
    try {
      url = new URL(`${this.base}/api${path}`);
    } catch {
      throw new CliError(`invalid --url '${this.o.url}'`);
    }
    const payload = body === undefined ? undefined : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
    const h: Record<string, string> = { authorization: this.auth, ...headers };
    if (payload) {
      h['content-type'] = 'application/json';
      h['content-length'] = String(payload.length);
    }
    let res: IncomingMessage;
    let text: string;
    try {
      ({ res, text } = await send(url, method, h, payload));
    } catch (e) {
      throw new CliError(`cannot reach ${this.base}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const status = res.statusCode ?? 0;
    if (status < 200 || status >= 300) {
      let reason = res.statusMessage ?? '';
      try {
        const j = JSON.parse(text) as Obj;
        if (typeof j['reason'] === 'string') reason = j['reason'];
      } catch {
        // not JSON
      }
      throw new CliError(`${method} ${path}: ${status} ${reason.split('\n').filter((l) => l !== '').join(' ')}`);
    }
    if (text === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      return text;
    }
  }

  get(path: string): Promise<unknown> {
    return this.request('GET', path);
  }

  get vhost(): string {
    return enc(this.o.vhost);
  }
}

/** One HTTP(S) request with node's own client (quicker to load than fetch, for a short-lived CLI). */
function send(url: URL, method: string, headers: Record<string, string>, payload: Buffer | undefined): Promise<{ res: IncomingMessage; text: string }> {
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, timeout: 30_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ res, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(payload);
  });
}

// ---- output -------------------------------------------------------------------------------------

function cell(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v.join(',');
  return JSON.stringify(v);
}

function pick(row: Obj, path: string): unknown {
  let cur: unknown = row;
  for (const p of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Obj)[p];
  }
  return cur;
}

/** A plain aligned table: a header line, then one line per row. */
export function formatTable(rows: Obj[], columns: ReadonlyArray<[string, string]>): string {
  if (rows.length === 0) return '(none)\n';
  const cells = rows.map((r) => columns.map(([path]) => cell(pick(r, path))));
  const widths = columns.map(([, title], i) => Math.max(title.length, ...cells.map((c) => c[i]!.length)));
  const line = (vals: string[]): string => vals.map((v, i) => (i === vals.length - 1 ? v : v.padEnd(widths[i]!))).join('  ').trimEnd();
  return `${[line(columns.map(([, t]) => t)), ...cells.map(line)].join('\n')}\n`;
}

function out(text: string): void {
  process.stdout.write(text);
}

function printList(rows: unknown, columns: ReadonlyArray<[string, string]>, json: boolean | undefined): void {
  if (json) out(`${JSON.stringify(rows, null, 2)}\n`);
  else out(formatTable(rows as Obj[], columns));
}

function parseJson(text: string | undefined, what: string): Obj {
  if (text === undefined || text === '') return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Obj;
  } catch {
    throw new CliError(`${what} must be a JSON object, got '${text}'`);
  }
}

function parseIntArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n)) throw new CliError(`'${v}' is not an integer`);
  return n;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Runs an action: one line on stderr and exit code 1 on failure. */
function action<A extends unknown[]>(fn: (...args: A) => Promise<void>): (...args: A) => Promise<void> {
  return async (...args: A) => {
    try {
      await fn(...args);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      process.stderr.write(`warren: ${msg.split('\n').join(' ')}\n`);
      process.exitCode = 1;
    }
  };
}

/** The options of the command an action belongs to (commander passes the command last). */
function optsOf<T>(cmd: Command): T {
  return cmd.opts<T & Obj>();
}

// ---- lists --------------------------------------------------------------------------------------

interface ListSpec {
  path: (vhost: string) => string;
  columns: ReadonlyArray<[string, string]>;
  help: string;
  /** Lists for the given --vhost only when the option was given explicitly. */
  perVhost: boolean;
}

const LISTS: Record<string, ListSpec> = {
  queues: {
    help: 'queues with their depths and consumers',
    perVhost: true,
    path: (v) => `/queues${v}`,
    columns: [['vhost', 'vhost'], ['name', 'name'], ['messages', 'messages'], ['messages_ready', 'ready'], ['messages_unacknowledged', 'unacked'], ['consumers', 'consumers'], ['message_stats.publish_details.rate', 'publish/s'], ['message_stats.deliver_get_details.rate', 'deliver/s']],
  },
  exchanges: {
    help: 'exchanges',
    perVhost: true,
    path: (v) => `/exchanges${v}`,
    columns: [['vhost', 'vhost'], ['name', 'name'], ['type', 'type'], ['durable', 'durable'], ['auto_delete', 'auto_delete'], ['internal', 'internal']],
  },
  bindings: {
    help: 'bindings',
    perVhost: true,
    path: (v) => `/bindings${v}`,
    columns: [['vhost', 'vhost'], ['source', 'source'], ['destination', 'destination'], ['destination_type', 'type'], ['routing_key', 'routing_key'], ['properties_key', 'properties_key']],
  },
  connections: {
    help: 'client connections of every protocol',
    perVhost: false,
    path: () => '/connections',
    columns: [['name', 'name'], ['protocol', 'protocol'], ['user', 'user'], ['vhost', 'vhost'], ['channels', 'channels'], ['client_id', 'client_id']],
  },
  channels: {
    help: 'channels and sessions',
    perVhost: false,
    path: () => '/channels',
    columns: [['name', 'name'], ['user', 'user'], ['vhost', 'vhost'], ['consumer_count', 'consumers'], ['messages_unacknowledged', 'unacked'], ['prefetch_count', 'prefetch']],
  },
  consumers: {
    help: 'consumers',
    perVhost: true,
    path: (v) => `/consumers${v}`,
    columns: [['queue.vhost', 'vhost'], ['queue.name', 'queue'], ['consumer_tag', 'consumer_tag'], ['channel_details.connection_name', 'connection'], ['ack_required', 'ack_required'], ['prefetch_count', 'prefetch']],
  },
  users: {
    help: 'users and their tags',
    perVhost: false,
    path: () => '/users',
    columns: [['name', 'name'], ['tags', 'tags']],
  },
  vhosts: {
    help: 'virtual hosts',
    perVhost: false,
    path: () => '/vhosts',
    columns: [['name', 'name'], ['description', 'description'], ['messages', 'messages']],
  },
  permissions: {
    help: 'vhost permissions (configure / write / read regexes)',
    perVhost: false,
    path: () => '/permissions',
    columns: [['vhost', 'vhost'], ['user', 'user'], ['configure', 'configure'], ['write', 'write'], ['read', 'read']],
  },
  'topic-permissions': {
    help: 'topic permissions (write / read regexes over routing keys)',
    perVhost: false,
    path: () => '/topic-permissions',
    columns: [['vhost', 'vhost'], ['user', 'user'], ['exchange', 'exchange'], ['write', 'write'], ['read', 'read']],
  },
  policies: {
    help: 'policies',
    perVhost: true,
    path: (v) => `/policies${v}`,
    columns: [['vhost', 'vhost'], ['name', 'name'], ['pattern', 'pattern'], ['apply-to', 'apply-to'], ['priority', 'priority'], ['definition', 'definition']],
  },
  nodes: {
    help: 'the broker nodes (every node of a cluster, running or not)',
    perVhost: false,
    path: () => '/nodes',
    columns: [['name', 'name'], ['running', 'running'], ['type', 'type'], ['mem_used', 'mem_used'], ['uptime', 'uptime_ms']],
  },
};

// ---- commands -----------------------------------------------------------------------------------

/** Registers the admin subcommands on the `warren` program. */
export function registerAdminCommands(program: Command): void {
  conn(program.command('status').description('show the broker: version, listeners, connections per protocol, totals and rates'), true).action(
    action(async (...args: unknown[]) => {
      const o = optsOf<ConnOpts>(args[args.length - 1] as Command);
      const c = new Client(o);
      const ov = (await c.get('/overview')) as Obj;
      if (o.json) {
        out(`${JSON.stringify(ov, null, 2)}\n`);
        return;
      }
      const t = (ov['object_totals'] ?? {}) as Obj;
      const q = (ov['queue_totals'] ?? {}) as Obj;
      const alarms = (await c.request('GET', '/health/checks/alarms').then(
        () => [],
        (e: unknown) => [e instanceof Error ? e.message : String(e)],
      )) as string[];
      const lines = [
        `${cell(ov['product_name'])} ${cell(ov['product_version'])} on ${cell(ov['node'])}`,
        `listeners:   ${((ov['listeners'] ?? []) as Obj[]).map((l) => `${cell(l['protocol'])}=${cell(l['port'])}`).join(' ')}`,
        `connections: ${cell(t['connections'])} (${Object.entries((ov['connections_by_protocol'] ?? {}) as Obj).map(([p, n]) => `${p}: ${cell(n)}`).join(', ') || 'none'})`,
        `channels:    ${cell(t['channels'])}   consumers: ${cell(t['consumers'])}`,
        `queues:      ${cell(t['queues'])}   exchanges: ${cell(t['exchanges'])}`,
        `messages:    ${cell(q['messages'])} (ready ${cell(q['messages_ready'])}, unacked ${cell(q['messages_unacknowledged'])})`,
        `rates:       publish ${cell(pick(ov, 'message_stats.publish_details.rate') ?? 0)}/s, deliver ${cell(pick(ov, 'message_stats.deliver_get_details.rate') ?? 0)}/s, ack ${cell(pick(ov, 'message_stats.ack_details.rate') ?? 0)}/s`,
        `alarms:      ${alarms.length === 0 ? 'none' : alarms.join('; ')}`,
      ];
      out(`${lines.join('\n')}\n`);
    }),
  );

  const cluster = program.command('cluster').description('the cluster this broker belongs to');
  conn(cluster.command('status').description('show the cluster: every node, running or not, its memory, alarms, uptime and listeners'), true).action(
    action(async (...args: unknown[]) => {
      const o = optsOf<ConnOpts>(args[args.length - 1] as Command);
      const c = new Client(o);
      const ov = (await c.get('/overview')) as Obj;
      const nodes = (await c.get('/nodes')) as Obj[];
      // Replicated queues and streams missing copies: under-replicated, or below a majority (no writes).
      const degraded = ((await c.get('/queues')) as Obj[])
        .filter((q) => q['under_replicated'] === true || q['below_majority'] === true)
        .map((q) => ({
          vhost: q['vhost'],
          name: q['name'],
          type: q['type'],
          state: q['below_majority'] === true ? 'below-majority' : 'under-replicated',
          leader: q['leader'],
          members: q['members'],
          online: q['online'],
        }));
      if (o.json) {
        out(`${JSON.stringify({ cluster_name: ov['cluster_name'], node: ov['node'], nodes, degraded_queues: degraded }, null, 2)}\n`);
        return;
      }
      const running = nodes.filter((n) => n['running'] === true).length;
      const rows = nodes.map((n) => {
        const alarms = [n['mem_alarm'] === true ? 'memory' : '', n['disk_free_alarm'] === true ? 'disk' : ''].filter((a) => a !== '').join(',');
        const listeners = ((n['listeners'] ?? []) as Obj[]).map((l) => `${cell(l['protocol'])}=${cell(l['port'])}`).join(' ');
        return [
          `${cell(n['name'])}${n['name'] === ov['node'] ? ' *' : ''}`,
          n['running'] === true ? 'running' : 'stopped',
          n['running'] === true ? `${Math.round(Number(n['mem_used'] ?? 0) / 1048576)} MiB` : '-',
          alarms === '' ? 'none' : alarms,
          n['running'] === true ? `${Math.round(Number(n['uptime'] ?? 0) / 1000)} s` : '-',
          listeners,
        ];
      });
      const head = ['node', 'state', 'memory', 'alarms', 'uptime', 'listeners'];
      const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
      const line = (r: string[]): string => r.map((x, i) => (i === r.length - 1 ? x : x.padEnd(widths[i]!))).join('  ');
      const queueLines =
        degraded.length === 0
          ? 'replicated queues: all copies online\n'
          : `replicated queues missing copies:\n${degraded
              .map((q) => {
                const online = Array.isArray(q.online) ? q.online.length : 0;
                const members = Array.isArray(q.members) ? q.members.length : 0;
                return `  ${cell(q.vhost)} ${cell(q.name)}${q.type === 'stream' ? ' (stream)' : ''}: ${q.state}, ${online} of ${members} online (leader ${cell(q.leader) || 'none'})`;
              })
              .join('\n')}\n`;
      out(
        `cluster ${cell(ov['cluster_name'])}: ${running} of ${nodes.length} nodes running (* = the node answering)\n` +
          `${[line(head), ...rows.map(line)].join('\n')}\n` +
          queueLines,
      );
    }),
  );

  conn(program.command('reload').description('load the TLS certificate files again (new connections use them; open ones keep theirs)')).action(
    action(async (o: ConnOpts) => {
      const r = (await new Client(o).request('POST', '/reload')) as Obj;
      const failed = Object.entries((r['failed'] ?? {}) as Obj);
      out(`reloaded: ${((r['reloaded'] ?? []) as string[]).join(' ') || 'nothing'}\n`);
      if (failed.length > 0) throw new CliError(`refused, old certificates kept: ${failed.map(([k, v]) => `${k}: ${cell(v)}`).join('; ')}`);
    }),
  );

  const list = program.command('list').description('list objects (a table, or JSON with --json)');
  for (const [kind, spec] of Object.entries(LISTS)) {
    conn(list.command(kind).description(`list ${spec.help}`), true).action(
      action(async (...args: unknown[]) => {
        const cmd = args[args.length - 1] as Command;
        const o = optsOf<ConnOpts>(cmd);
        const c = new Client(o);
        const explicit = cmd.getOptionValueSource('vhost') !== 'default';
        const rows = await c.get(spec.path(spec.perVhost && explicit ? `/${c.vhost}` : ''));
        printList(rows, spec.columns, o.json);
      }),
    );
  }

  // ---- declare / delete / purge ----------------------------------------------------------------

  const declare = program.command('declare').description('declare a queue, exchange or binding');
  conn(declare.command('queue').description('declare a queue').argument('<name>', 'queue name'))
    .option('--no-durable', 'a transient queue')
    .option('--auto-delete', 'delete when the last consumer goes')
    .option('--arguments <json>', 'queue arguments, e.g. {"x-message-ttl": 60000}')
    .action(
      action(async (name: string, o: ConnOpts & { durable: boolean; autoDelete?: boolean; arguments?: string }) => {
        const c = new Client(o);
        await c.request('PUT', `/queues/${c.vhost}/${enc(name)}`, { durable: o.durable, auto_delete: o.autoDelete ?? false, arguments: parseJson(o.arguments, '--arguments') });
        out(`queue ${name} declared\n`);
      }),
    );
  conn(declare.command('exchange').description('declare an exchange').argument('<name>', 'exchange name'))
    .addOption(new Option('--type <type>', 'exchange type').choices(['direct', 'fanout', 'topic', 'headers']).default('direct'))
    .option('--no-durable', 'a transient exchange')
    .option('--auto-delete', 'delete when the last binding goes')
    .option('--internal', 'clients cannot publish to it')
    .option('--arguments <json>', 'exchange arguments, e.g. {"alternate-exchange": "ae"}')
    .action(
      action(async (name: string, o: ConnOpts & { type: string; durable: boolean; autoDelete?: boolean; internal?: boolean; arguments?: string }) => {
        const c = new Client(o);
        await c.request('PUT', `/exchanges/${c.vhost}/${enc(name)}`, {
          type: o.type,
          durable: o.durable,
          auto_delete: o.autoDelete ?? false,
          internal: o.internal ?? false,
          arguments: parseJson(o.arguments, '--arguments'),
        });
        out(`exchange ${name} declared\n`);
      }),
    );
  conn(declare.command('binding').description('bind a queue (or exchange) to an exchange'))
    .requiredOption('--source <exchange>', 'source exchange')
    .requiredOption('--destination <name>', 'destination queue or exchange')
    .addOption(new Option('--destination-type <type>', 'queue or exchange').choices(['queue', 'exchange']).default('queue'))
    .option('--routing-key <key>', 'routing (binding) key', '')
    .option('--arguments <json>', 'binding arguments (headers exchanges)')
    .action(
      action(async (o: ConnOpts & { source: string; destination: string; destinationType: string; routingKey: string; arguments?: string }) => {
        const c = new Client(o);
        const d = o.destinationType === 'exchange' ? 'e' : 'q';
        await c.request('POST', `/bindings/${c.vhost}/e/${enc(o.source)}/${d}/${enc(o.destination)}`, { routing_key: o.routingKey, arguments: parseJson(o.arguments, '--arguments') });
        out(`binding ${o.source} -> ${o.destination} (${o.routingKey}) declared\n`);
      }),
    );

  const del = program.command('delete').description('delete a queue, exchange, binding, user or vhost');
  conn(del.command('queue').description('delete a queue').argument('<name>', 'queue name'))
    .option('--if-empty', 'only if it has no ready messages')
    .option('--if-unused', 'only if it has no consumers')
    .action(
      action(async (name: string, o: ConnOpts & { ifEmpty?: boolean; ifUnused?: boolean }) => {
        const c = new Client(o);
        const qs = new URLSearchParams();
        if (o.ifEmpty) qs.set('if-empty', 'true');
        if (o.ifUnused) qs.set('if-unused', 'true');
        const q = qs.toString();
        await c.request('DELETE', `/queues/${c.vhost}/${enc(name)}${q === '' ? '' : `?${q}`}`);
        out(`queue ${name} deleted\n`);
      }),
    );
  conn(del.command('exchange').description('delete an exchange').argument('<name>', 'exchange name'))
    .option('--if-unused', 'only if it has no bindings')
    .action(
      action(async (name: string, o: ConnOpts & { ifUnused?: boolean }) => {
        const c = new Client(o);
        await c.request('DELETE', `/exchanges/${c.vhost}/${enc(name)}${o.ifUnused ? '?if-unused=true' : ''}`);
        out(`exchange ${name} deleted\n`);
      }),
    );
  conn(del.command('binding').description('delete a binding (by routing key, or by the properties key `list bindings` shows)'))
    .requiredOption('--source <exchange>', 'source exchange')
    .requiredOption('--destination <name>', 'destination queue or exchange')
    .addOption(new Option('--destination-type <type>', 'queue or exchange').choices(['queue', 'exchange']).default('queue'))
    .option('--routing-key <key>', 'routing key of the binding', '')
    .option('--properties-key <key>', 'properties key of the binding (for bindings with arguments)')
    .action(
      action(async (o: ConnOpts & { source: string; destination: string; destinationType: string; routingKey: string; propertiesKey?: string }) => {
        const c = new Client(o);
        const d = o.destinationType === 'exchange' ? 'e' : 'q';
        const base = `/bindings/${c.vhost}/e/${enc(o.source)}/${d}/${enc(o.destination)}`;
        let key = o.propertiesKey;
        if (key === undefined) {
          const rows = (await c.get(base)) as Obj[];
          const found = rows.find((r) => r['routing_key'] === o.routingKey);
          if (!found) throw new CliError(`no binding from ${o.source} to ${o.destination} with routing key '${o.routingKey}'`);
          key = String(found['properties_key']);
        }
        await c.request('DELETE', `${base}/${enc(key)}`);
        out('binding deleted\n');
      }),
    );
  conn(del.command('user').description('delete a user').argument('<name>', 'user name')).action(
    action(async (name: string, o: ConnOpts) => {
      await new Client(o).request('DELETE', `/users/${enc(name)}`);
      out(`user ${name} deleted\n`);
    }),
  );
  conn(del.command('vhost').description('delete a virtual host and everything in it').argument('<name>', 'vhost name')).action(
    action(async (name: string, o: ConnOpts) => {
      await new Client(o).request('DELETE', `/vhosts/${enc(name)}`);
      out(`vhost ${name} deleted\n`);
    }),
  );

  conn(program.command('purge').description('purge a queue').argument('<kind>', "'queue'").argument('<name>', 'queue name')).action(
    action(async (kind: string, name: string, o: ConnOpts) => {
      if (kind !== 'queue') throw new CliError(`can only purge a queue, not '${kind}'`);
      const c = new Client(o);
      await c.request('DELETE', `/queues/${c.vhost}/${enc(name)}/contents`);
      out(`queue ${name} purged\n`);
    }),
  );

  // ---- messages ----------------------------------------------------------------------------

  conn(program.command('publish').description('publish a message (the payload comes from --payload or stdin)'))
    .option('--exchange <name>', 'exchange (default: the default exchange)', 'amq.default')
    .requiredOption('--routing-key <key>', 'routing key (a queue name for the default exchange)')
    .option('--payload <text>', 'message body; read from stdin when absent')
    .option('--properties <json>', 'AMQP properties, e.g. {"content_type": "text/plain", "headers": {"a": 1}}')
    .option('--persistent', 'delivery mode 2')
    .action(
      action(async (o: ConnOpts & { exchange: string; routingKey: string; payload?: string; properties?: string; persistent?: boolean }) => {
        const c = new Client(o);
        const props = parseJson(o.properties, '--properties');
        if (o.persistent) props['delivery_mode'] = 2;
        const body =
          o.payload !== undefined
            ? { payload: o.payload, payload_encoding: 'string' }
            : { payload: (await readStdin()).toString('base64'), payload_encoding: 'base64' };
        const exchange = o.exchange === '' ? 'amq.default' : o.exchange;
        const r = (await c.request('POST', `/exchanges/${c.vhost}/${enc(exchange)}/publish`, { routing_key: o.routingKey, properties: props, ...body })) as Obj;
        out(r['routed'] ? 'message published\n' : 'message published but NOT routed\n');
        if (!r['routed']) process.exitCode = 3;
      }),
    );

  conn(program.command('get').description('get messages from a queue').argument('<queue>', 'queue name'), true)
    .option('--count <n>', 'how many messages', '1')
    .addOption(
      new Option('--ackmode <mode>', 'what happens to the messages').choices(['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'reject_requeue_false']).default('ack_requeue_true'),
    )
    .action(
      action(async (queue: string, o: ConnOpts & { count: string; ackmode: string }) => {
        const c = new Client(o);
        const rows = (await c.request('POST', `/queues/${c.vhost}/${enc(queue)}/get`, { count: parseIntArg(o.count), ackmode: o.ackmode, encoding: 'auto' })) as Obj[];
        printList(
          rows,
          [['routing_key', 'routing_key'], ['exchange', 'exchange'], ['message_count', 'remaining'], ['redelivered', 'redelivered'], ['payload_bytes', 'bytes'], ['payload_encoding', 'encoding'], ['payload', 'payload']],
          o.json,
        );
      }),
    );

  const close = program.command('close').description('close a client connection');
  conn(close.command('connection').description('close a client connection (by the name `list connections` shows)').argument('<name>', 'connection name'))
    .option('--reason <text>', 'reason given to the client', 'Closed via warren CLI')
    .action(
      action(async (name: string, o: ConnOpts & { reason: string }) => {
        await new Client(o).request('DELETE', `/connections/${enc(name)}`, undefined, { 'x-reason': o.reason });
        out(`connection ${name} closed\n`);
      }),
    );

  // ---- users, vhosts, permissions, policies -------------------------------------------------

  const add = program.command('add').description('add a user or a virtual host');
  conn(add.command('user').description('add (or replace) a user').argument('<name>', 'user name').argument('<password>', 'password'))
    .option('--tags <tags>', 'comma-separated: administrator, monitoring, policymaker, management', '')
    .action(
      action(async (name: string, password: string, o: ConnOpts & { tags: string }) => {
        await new Client(o).request('PUT', `/users/${enc(name)}`, { password, tags: o.tags });
        out(`user ${name} added\n`);
      }),
    );
  conn(add.command('vhost').description('add a virtual host').argument('<name>', 'vhost name'))
    .option('--description <text>', 'description', '')
    .action(
      action(async (name: string, o: ConnOpts & { description: string }) => {
        await new Client(o).request('PUT', `/vhosts/${enc(name)}`, { description: o.description });
        out(`vhost ${name} added\n`);
      }),
    );

  const change = program.command('change').description("change a user's password");
  conn(change.command('password').description("change a user's password").argument('<user>', 'user name').argument('<password>', 'new password')).action(
    action(async (user: string, password: string, o: ConnOpts) => {
      const c = new Client(o);
      const u = (await c.get(`/users/${enc(user)}`)) as Obj;
      await c.request('PUT', `/users/${enc(user)}`, { password, tags: u['tags'] });
      out(`password of ${user} changed\n`);
    }),
  );

  const set = program.command('set').description('set permissions, topic permissions or a policy');
  conn(
    set
      .command('permissions')
      .description("set a user's permissions in a vhost (--vhost), as regular expressions")
      .argument('<user>', 'user name')
      .argument('<configure>', 'configure regex, e.g. ".*"')
      .argument('<write>', 'write regex')
      .argument('<read>', 'read regex'),
  ).action(
    action(async (user: string, configure: string, write: string, read: string, o: ConnOpts) => {
      const c = new Client(o);
      await c.request('PUT', `/permissions/${c.vhost}/${enc(user)}`, { configure, write, read });
      out(`permissions of ${user} in ${o.vhost} set\n`);
    }),
  );
  conn(
    set
      .command('topic-permissions')
      .description("set a user's topic permissions on a topic exchange in a vhost (--vhost)")
      .argument('<user>', 'user name')
      .argument('<exchange>', 'topic exchange, e.g. amq.topic')
      .argument('<write>', 'write regex over routing keys')
      .argument('<read>', 'read regex over binding keys'),
  ).action(
    action(async (user: string, exchange: string, write: string, read: string, o: ConnOpts) => {
      const c = new Client(o);
      await c.request('PUT', `/topic-permissions/${c.vhost}/${enc(user)}`, { exchange, write, read });
      out(`topic permissions of ${user} on ${exchange} in ${o.vhost} set\n`);
    }),
  );
  conn(
    set
      .command('policy')
      .description('set a policy in a vhost (--vhost)')
      .argument('<name>', 'policy name')
      .argument('<pattern>', 'regex over queue / exchange names')
      .argument('<definition>', 'JSON, e.g. {"max-length": 1000}'),
  )
    .option('--priority <n>', 'higher wins when several match', '0')
    .addOption(new Option('--apply-to <what>', 'what it applies to').choices(['all', 'queues', 'exchanges', 'classic_queues', 'quorum_queues', 'streams']).default('all'))
    .action(
      action(async (name: string, pattern: string, definition: string, o: ConnOpts & { priority: string; applyTo: string }) => {
        const c = new Client(o);
        await c.request('PUT', `/policies/${c.vhost}/${enc(name)}`, { pattern, definition: parseJson(definition, 'definition'), priority: parseIntArg(o.priority), 'apply-to': o.applyTo });
        out(`policy ${name} set\n`);
      }),
    );

  const clear = program.command('clear').description('clear permissions or a policy');
  conn(clear.command('permissions').description("clear a user's permissions in a vhost (--vhost)").argument('<user>', 'user name')).action(
    action(async (user: string, o: ConnOpts) => {
      const c = new Client(o);
      await c.request('DELETE', `/permissions/${c.vhost}/${enc(user)}`);
      out(`permissions of ${user} in ${o.vhost} cleared\n`);
    }),
  );
  conn(clear.command('policy').description('clear a policy in a vhost (--vhost)').argument('<name>', 'policy name')).action(
    action(async (name: string, o: ConnOpts) => {
      const c = new Client(o);
      await c.request('DELETE', `/policies/${c.vhost}/${enc(name)}`);
      out(`policy ${name} cleared\n`);
    }),
  );

  // ---- definitions -------------------------------------------------------------------------

  conn(program.command('export').description("export definitions (RabbitMQ's JSON) to a file, or stdout with '-'").argument('[file]', 'output file', '-')).action(
    action(async (file: string, o: ConnOpts) => {
      const defs = await new Client(o).get('/definitions');
      const text = `${JSON.stringify(defs, null, 2)}\n`;
      if (file === '-') out(text);
      else {
        await writeFile(file, text);
        out(`definitions exported to ${file}\n`);
      }
    }),
  );
  conn(program.command('import').description("import definitions (RabbitMQ's JSON) from a file, or stdin with '-'").argument('<file>', 'input file')).action(
    action(async (file: string, o: ConnOpts) => {
      let text: string;
      try {
        text = file === '-' ? (await readStdin()).toString('utf8') : await readFile(file, 'utf8');
      } catch (e) {
        throw new CliError(`cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
      }
      try {
        JSON.parse(text);
      } catch (e) {
        throw new CliError(`${file} is not JSON: ${e instanceof Error ? e.message : String(e)}`);
      }
      await new Client(o).request('POST', '/definitions', text);
      out(`definitions imported from ${file}\n`);
    }),
  );
}
