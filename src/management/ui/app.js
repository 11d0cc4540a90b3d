// @ts-check
// Warren's management UI: plain DOM, the management HTTP API, uPlot for charts.

/** @typedef {Record<string, any>} Obj */

const AUTH_KEY = 'warren-auth';
const RATE_WINDOW_S = 600;

// ---- small DOM helpers ------------------------------------------------------------------------

/**
 * @param {string} tag
 * @param {Obj | null} [attrs]
 * @param {...(Node | string | number | null | undefined | false)} children
 * @returns {HTMLElement}
 */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = String(v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    el.append(typeof c === 'string' || typeof c === 'number' ? String(c) : c);
  }
  return el;
}

/** @param {Element} el @param {...(Node | string)} nodes */
function replace(el, ...nodes) {
  el.replaceChildren(...nodes);
}

/** @param {number | undefined | null} n */
function fmtNum(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return '';
  return Number(n).toLocaleString('en-US', { maximumFractionDigits: 2 });
}

/** @param {number | undefined} r */
function fmtRate(r) {
  return `${fmtNum(r ?? 0)}/s`;
}

/** @param {number | undefined} b */
function fmtBytes(b) {
  if (b === undefined || b === null) return '';
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = b;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toLocaleString('en-US', { maximumFractionDigits: i === 0 ? 0 : 1 })} ${units[i]}`;
}

/** @param {number} ms */
function fmtDuration(ms) {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${hh}h`;
  if (hh > 0) return `${hh}h ${mm}m`;
  return `${mm}m ${s % 60}s`;
}

/** @param {string} protocol */
function protoTag(protocol) {
  const p = protocol.toLowerCase();
  const cls = p.startsWith('amqp') ? 'proto-amqp' : p.startsWith('mqtt') ? 'proto-mqtt' : p.startsWith('stomp') ? 'proto-stomp' : 'proto-other';
  return h('span', { class: `tag ${cls}` }, protocol);
}

const enc = encodeURIComponent;

/** The exchange name as URLs write it. @param {string} name */
function exUrl(name) {
  return name === '' ? 'amq.default' : name;
}

/** @param {string} name */
function exLabel(name) {
  return name === '' ? '(AMQP default)' : name;
}

// ---- API ----------------------------------------------------------------------------------------

class ApiError extends Error {
  /** @param {number} status @param {string} reason */
  constructor(status, reason) {
    super(reason);
    this.status = status;
  }
}

/**
 * @param {string} path
 * @param {{ method?: string, body?: unknown, raw?: boolean }} [opts]
 * @returns {Promise<any>}
 */
async function api(path, opts = {}) {
  const auth = sessionStorage.getItem(AUTH_KEY);
  /** @type {Record<string, string>} */
  const headers = { 'x-requested-with': 'XMLHttpRequest' };
  if (auth) headers['authorization'] = `Basic ${auth}`;
  let body;
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json';
    body = typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body);
  }
  const res = await fetch(`/api${path}`, { method: opts.method ?? 'GET', headers, body });
  const text = await res.text();
  if (!res.ok) {
    let reason = res.statusText;
    try {
      reason = JSON.parse(text).reason ?? reason;
    } catch {
      // not JSON
    }
    if (res.status === 401 && path === '/whoami') throw new ApiError(401, reason);
    if (res.status === 401 && /Login failed|Not management user|localhost/.test(reason)) {
      logout(loginMessage(reason));
    }
    throw new ApiError(res.status, reason);
  }
  if (opts.raw) return text;
  return text === '' ? undefined : JSON.parse(text);
}

/** @param {string} text @param {boolean} [bad] */
function flash(text, bad = false) {
  const el = /** @type {HTMLElement} */ (document.getElementById('flash'));
  el.textContent = text;
  el.className = `flash ${bad ? 'bad' : 'ok'}`;
  el.hidden = false;
  clearTimeout(Number(el.dataset['timer'] ?? 0));
  el.dataset['timer'] = String(setTimeout(() => (el.hidden = true), bad ? 8000 : 3000));
}

/** Runs an action, reporting success or the API's reason. @param {() => Promise<unknown>} fn @param {string} ok */
async function act(fn, ok) {
  try {
    await fn();
    flash(ok);
    await refresh();
    return true;
  } catch (e) {
    flash(e instanceof Error ? e.message : String(e), true);
    return false;
  }
}

// ---- session --------------------------------------------------------------------------------------

/** @type {{ name: string, tags: string[] } | null} */
let me = null;
/** A node of a cluster: lists show the node each object lives on (as RabbitMQ's do when clustered). */
let clustered = false;
/** @type {Column} */
const NODE_COLUMN = { title: 'Node', value: (r) => r.node };
/** @param {Column[]} cols @param {number} [at] @returns {Column[]} */
const withNode = (cols, at = 1) => (clustered ? [...cols.slice(0, at), NODE_COLUMN, ...cols.slice(at)] : cols);

function isAdmin() {
  return !!me && me.tags.includes('administrator');
}

/** Policymakers (and administrators) manage policies; the rest of Admin is for administrators. */
function isPolicymaker() {
  return !!me && (me.tags.includes('policymaker') || isAdmin());
}

/** The Admin pages this user may use: [key, label]. Empty: no Admin tab. */
function adminPages() {
  if (isAdmin()) {
    return [
      ['users', 'Users and permissions'],
      ['vhosts', 'Virtual hosts'],
      ['policies', 'Policies'],
      ['definitions', 'Definitions'],
    ];
  }
  return isPolicymaker() ? [['policies', 'Policies']] : [];
}

/**
 * What the login form says for a refused login, in RabbitMQ's words: a wrong password and an
 * unknown user get the same answer (so the form does not tell which users exist); a user that
 * exists but has no management tag is told so only once its password was right.
 * @param {string} reason the API's reason
 */
function loginMessage(reason) {
  if (reason === 'Login failed') return 'Login failed: unknown user or wrong password.';
  if (reason === 'Not management user') {
    return 'Not management user: this user has none of the tags management, policymaker, monitoring or administrator, so it may not use the management UI.';
  }
  if (/localhost/.test(reason)) return `${reason}.`;
  return /^Login failed/.test(reason) ? reason : `Login failed: ${reason}`;
}

/** @param {string} [reason] */
function logout(reason) {
  sessionStorage.removeItem(AUTH_KEY);
  me = null;
  stopTimer();
  /** @type {HTMLElement} */ (document.getElementById('app')).hidden = true;
  /** @type {HTMLElement} */ (document.getElementById('login')).hidden = false;
  /** @type {HTMLElement} */ (document.getElementById('login-error')).textContent = reason ?? '';
}

async function startSession() {
  me = await api('/whoami');
  const ov = await api('/overview?columns=product_name,product_version,node,cluster_name');
  clustered = ov.cluster_name !== ov.node;
  /** @type {HTMLElement} */ (document.getElementById('login')).hidden = true;
  /** @type {HTMLElement} */ (document.getElementById('app')).hidden = false;
  /** @type {HTMLElement} */ (document.getElementById('whoami')).textContent = `${me?.name} (${me?.tags.join(', ') || 'no tags'})`;
  const adminLink = /** @type {HTMLAnchorElement} */ (document.querySelector('#nav a[data-nav="admin"]'));
  const pages = adminPages();
  adminLink.hidden = pages.length === 0;
  adminLink.href = `#/admin/${pages[0]?.[0] ?? 'users'}`;
  /** @type {HTMLElement} */ (document.getElementById('product')).textContent = `${ov.product_name} ${ov.product_version} on ${ov.node}`;
  await route();
}

// ---- charts -------------------------------------------------------------------------------------

/* global uPlot */
/** @type {any} */
const UPLOT = /** @type {any} */ (globalThis)['uPlot'];

const SERIES_COLORS = ['#2f5d50', '#d97706', '#6a2fb0', '#1f4fb8', '#b42318'];

/** Tick steps for the time axis, in seconds: whole seconds and minutes only. */
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];

/** @param {number} n */
const pad2 = (n) => String(n).padStart(2, '0');

/**
 * Time axis labels: 24-hour local clock time, `HH:MM` when every tick falls on a whole minute,
 * `HH:MM:SS` otherwise (never fractions of a second, never am/pm glued to the next label).
 * @param {number[]} splits seconds
 */
function timeLabels(splits) {
  const seconds = splits.some((t) => Math.round(t) % 60 !== 0);
  return splits.map((t) => {
    const d = new Date(Math.round(t) * 1000);
    const hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
    return seconds ? `${hm}:${pad2(d.getSeconds())}` : hm;
  });
}

/**
 * A time series chart of the server's samples (the last 10 minutes, replaced on every refresh).
 */
class Chart {
  /** @param {HTMLElement} el @param {string[]} names @param {(v: number) => string} fmt */
  constructor(el, names, fmt) {
    this.el = el;
    this.names = names;
    /** @type {number[][]} */
    this.data = [[], ...names.map(() => [])];
    this.plot = null;
    /** @type {HTMLElement | null} */
    this.note = null;
    this.fmt = fmt;
  }

  /** Replaces the points. @param {number[]} times (seconds) @param {number[][]} series */
  set(times, series) {
    this.data = [times, ...series];
    this.draw();
  }

  draw() {
    const points = this.data[0]?.length ?? 0;
    this.el.dataset['points'] = String(points);
    if (!this.note) {
      this.note = h('div', { class: 'legend-note' }, 'Collecting samples…');
      this.el.append(this.note);
    }
    this.note.hidden = points >= 2;
    if (!UPLOT) return;
    const width = Math.max(300, this.el.clientWidth || 600);
    if (!this.plot) {
      const fmt = this.fmt;
      this.plot = new UPLOT(
        {
          width,
          height: 220,
          series: [{ value: (/** @type {any} */ _u, /** @type {number|null} */ t) => (t === null ? '-' : (timeLabels([t])[0] ?? '-')) }, ...this.names.map((n, i) => ({ label: n, stroke: SERIES_COLORS[i % SERIES_COLORS.length], width: 2, value: (/** @type {any} */ _u, /** @type {number|null} */ v) => (v === null ? '-' : fmt(v)) }))],
          axes: [
            {
              space: 90,
              incrs: TIME_INCRS,
              values: (/** @type {any} */ _u, /** @type {number[]} */ splits) => {
                const labels = timeLabels(splits);
                this.el.dataset['ticks'] = labels.join(' ');
                return labels;
              },
            },
            { values: (/** @type {any} */ _u, /** @type {number[]} */ vals) => vals.map((v) => fmt(v)), size: 70 },
          ],
          scales: { y: { range: (/** @type {any} */ _u, /** @type {number} */ min, /** @type {number} */ max) => [0, Math.max(1, max * 1.1, min)] } },
          cursor: { drag: { x: false, y: false } },
        },
        this.data,
        this.el,
      );
    } else {
      if (Math.abs(this.plot.width - width) > 4) this.plot.setSize({ width, height: 220 });
      this.plot.setData(this.data);
    }
  }
}

/**
 * Rates from RabbitMQ-style `samples` (cumulative counts, newest first).
 * @param {{ sample: number, timestamp: number }[] | undefined} samples
 * @returns {[number[], number[]]} times (s) and rates (/s), oldest first
 */
function ratesFromSamples(samples) {
  const s = (samples ?? []).slice().reverse();
  /** @type {number[]} */ const times = [];
  /** @type {number[]} */ const rates = [];
  for (let i = 1; i < s.length; i++) {
    const a = /** @type {{sample: number, timestamp: number}} */ (s[i - 1]);
    const b = /** @type {{sample: number, timestamp: number}} */ (s[i]);
    const dt = (b.timestamp - a.timestamp) / 1000;
    if (dt <= 0) continue;
    times.push(b.timestamp / 1000);
    rates.push(Math.max(0, (b.sample - a.sample) / dt));
  }
  return [times, rates];
}

/** The history a chart asks the API for: RabbitMQ's parameters, the last 10 minutes. */
const HISTORY_QUERY = `lengths_age=${RATE_WINDOW_S}&lengths_incr=5&msg_rates_age=${RATE_WINDOW_S}&msg_rates_incr=5`;

/**
 * Rates charted from several counters' samples (the same timestamps).
 * @param {Chart} chart @param {Array<{ sample: number, timestamp: number }[] | undefined>} series
 */
function setRates(chart, series) {
  const parts = series.map(ratesFromSamples);
  const n = Math.min(...parts.map(([t]) => t.length));
  chart.set(last(parts[0]?.[0] ?? [], n), parts.map(([, r]) => last(r, n)));
}

/** The last `n` items (none for 0, unlike `slice(-0)`). @template T @param {T[]} a @param {number} n */
function last(a, n) {
  return a.slice(a.length - n);
}

/**
 * Depths charted as they were sampled.
 * @param {Chart} chart @param {{ sample: number, timestamp: number }[] | undefined} ready @param {{ sample: number, timestamp: number }[] | undefined} unacked
 */
function setDepths(chart, ready, unacked) {
  const rs = (ready ?? []).slice().reverse();
  const us = (unacked ?? []).slice().reverse();
  const n = Math.min(rs.length, us.length);
  chart.set(
    last(rs, n).map((s) => s.timestamp / 1000),
    [last(rs, n).map((s) => s.sample), last(us, n).map((s) => s.sample)],
  );
}

// ---- tables -------------------------------------------------------------------------------------

/**
 * @typedef {{ title: string, value: (row: Obj) => Node | string | number | null | undefined, num?: boolean }} Column
 */

/** @param {Column[]} columns @param {Obj[]} rows @param {string} [empty] @param {string} [id] */
function table(columns, rows, empty = 'Nothing here yet.', id) {
  if (rows.length === 0) return h('div', { class: 'empty' }, empty);
  return h(
    'table',
    { class: 'list', id },
    h('thead', null, h('tr', null, ...columns.map((c) => h('th', { class: c.num ? 'num' : null }, c.title)))),
    h(
      'tbody',
      null,
      ...rows.map((r) =>
        h(
          'tr',
          null,
          ...columns.map((c) => {
            const v = c.value(r);
            return h('td', { class: c.num ? 'num' : null }, v === null || v === undefined ? '' : typeof v === 'number' ? fmtNum(v) : v);
          }),
        ),
      ),
    ),
  );
}

/** @param {Array<[string, Node | string | number | null | undefined]>} pairs */
function kv(pairs) {
  return h('table', { class: 'kv' }, h('tbody', null, ...pairs.map(([k, v]) => h('tr', null, h('td', null, k), h('td', null, v === null || v === undefined ? '' : typeof v === 'number' ? fmtNum(v) : v)))));
}

/** @param {Obj} q */
function queueFeatures(q) {
  const tags = [];
  if (q.durable) tags.push(h('span', { class: 'tag', title: 'durable' }, 'D'));
  if (q.auto_delete) tags.push(h('span', { class: 'tag', title: 'auto-delete' }, 'AD'));
  if (q.exclusive) tags.push(h('span', { class: 'tag', title: 'exclusive' }, 'Excl'));
  if (q.internal) tags.push(h('span', { class: 'tag', title: 'internal' }, 'I'));
  for (const k of Object.keys(q.arguments ?? {})) tags.push(h('span', { class: 'tag', title: `${k}: ${JSON.stringify(q.arguments[k])}` }, k.replace(/^x-/, '')));
  if (q.policy) tags.push(h('span', { class: 'tag', title: 'policy' }, `policy: ${q.policy}`));
  return h('span', null, ...tags);
}

// ---- forms --------------------------------------------------------------------------------------

/**
 * @typedef {{ name: string, label: string, type?: string, options?: string[], value?: string, placeholder?: string, required?: boolean }} Field
 */

/**
 * @param {string} id
 * @param {Field[]} fields
 * @param {string} submit
 * @param {(values: Record<string, string>, form: HTMLFormElement) => Promise<unknown>} onSubmit
 */
function form(id, fields, submit, onSubmit) {
  const f = /** @type {HTMLFormElement} */ (h('form', { class: 'inline', id }));
  for (const fd of fields) {
    const fid = `${id}-${fd.name}`;
    let input;
    if (fd.options) {
      input = h('select', { id: fid, name: fd.name }, ...fd.options.map((o) => h('option', { value: o, selected: o === fd.value }, o)));
    } else if (fd.type === 'textarea') {
      input = h('textarea', { id: fid, name: fd.name, placeholder: fd.placeholder }, fd.value ?? '');
    } else if (fd.type === 'checkbox') {
      input = h('input', { id: fid, name: fd.name, type: 'checkbox', checked: fd.value === 'true' });
    } else {
      input = h('input', { id: fid, name: fd.name, type: fd.type ?? 'text', value: fd.value ?? '', placeholder: fd.placeholder, required: fd.required });
    }
    f.append(h('label', { for: fid }, fd.label), input);
  }
  f.append(h('div', { class: 'full' }, h('button', { type: 'submit', id: `${id}-submit` }, submit)));
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    /** @type {Record<string, string>} */
    const values = {};
    for (const fd of fields) {
      const el = /** @type {HTMLInputElement} */ (f.elements.namedItem(fd.name));
      values[fd.name] = fd.type === 'checkbox' ? String(el.checked) : el.value;
    }
    void onSubmit(values, f);
  });
  return f;
}

/** @param {string} text @param {string} what */
function parseJsonField(text, what) {
  if (text.trim() === '') return {};
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not valid JSON`);
  }
}

async function vhostNames() {
  /** @type {Obj[]} */
  const vs = await api('/vhosts?columns=name');
  return vs.map((v) => String(v.name));
}

/**
 * @param {string} title
 * @param {HTMLElement} body
 * @param {boolean} [open]
 * @param {string} [id]
 */
function section(title, body, open = false, id) {
  return h('details', { class: 'panel', open, id }, h('summary', null, title), body);
}

// ---- views --------------------------------------------------------------------------------------

/**
 * A page: `mount` builds it once (forms keep what the user typed), `refresh` reloads its data.
 * @typedef {{ mount(el: HTMLElement, params: string[]): Promise<void>, refresh(): Promise<void> }} View
 */

/** @returns {View} */
function overviewView() {
  /** @type {HTMLElement} */ let cards;
  /** @type {HTMLElement} */ let protocols;
  /** @type {HTMLElement} */ let listeners;
  /** @type {HTMLElement} */ let nodeBox;
  /** @type {Chart} */ let rates;
  /** @type {Chart} */ let depths;
  return {
    async mount(el) {
      cards = h('div', { class: 'cards', id: 'overview-cards' });
      const rateEl = h('div', { class: 'chart', id: 'chart-rates' });
      const depthEl = h('div', { class: 'chart', id: 'chart-queued' });
      protocols = h('div');
      listeners = h('div');
      nodeBox = h('div');
      replace(
        el,
        h('h1', null, 'Overview'),
        cards,
        h('div', { class: 'grid2' }, h('div', { class: 'panel' }, h('h2', null, 'Message rates'), rateEl), h('div', { class: 'panel' }, h('h2', null, 'Queued messages'), depthEl)),
        h('div', { class: 'grid2' }, h('div', { class: 'panel' }, h('h2', null, 'Connections by protocol'), protocols), h('div', { class: 'panel' }, h('h2', null, 'Node'), nodeBox)),
        h('div', { class: 'panel' }, h('h2', null, 'Listeners'), listeners),
      );
      rates = new Chart(rateEl, ['publish', 'deliver / get', 'ack'], fmtRate);
      depths = new Chart(depthEl, ['ready', 'unacked'], fmtNum);
    },
    async refresh() {
      const o = await api(`/overview?${HISTORY_QUERY}`);
      const t = o.object_totals ?? {};
      const qt = o.queue_totals ?? {};
      const ms = o.message_stats ?? {};
      replace(
        cards,
        ...[
          ['Connections', t.connections],
          ['Channels', t.channels],
          ['Exchanges', t.exchanges],
          ['Queues', t.queues],
          ['Consumers', t.consumers],
          ['Ready', qt.messages_ready],
          ['Unacked', qt.messages_unacknowledged],
          ['Publish', fmtRate(ms.publish_details?.rate)],
          ['Deliver / get', fmtRate(ms.deliver_get_details?.rate)],
          ['Ack', fmtRate(ms.ack_details?.rate)],
        ].map(([label, value]) => h('div', { class: 'card' }, h('div', { class: 'label' }, String(label)), h('div', { class: 'value' }, typeof value === 'number' ? fmtNum(value) : String(value ?? 0)))),
      );
      setRates(rates, [ms.publish_details?.samples, ms.deliver_get_details?.samples, ms.ack_details?.samples]);
      setDepths(depths, qt.messages_ready_details?.samples, qt.messages_unacknowledged_details?.samples);
      const byProto = Object.entries(o.connections_by_protocol ?? {}).map(([protocol, count]) => ({ protocol, count }));
      replace(protocols, table([{ title: 'Protocol', value: (r) => protoTag(r.protocol) }, { title: 'Connections', value: (r) => r.count, num: true }], byProto, 'No client connections.', 'protocols-table'));
      replace(
        listeners,
        table(
          withNode([
            { title: 'Protocol', value: (r) => r.protocol },
            { title: 'Bound to', value: (r) => r.ip_address },
            { title: 'Port', value: (r) => String(r.port), num: true },
          ], 0),
          o.listeners ?? [],
        ),
      );
      if (me && (me.tags.includes('monitoring') || isAdmin())) {
        /** @type {Obj[]} */
        const nodes = await api('/nodes');
        const nd = nodes.find((n) => n.name === o.node) ?? nodes[0] ?? {};
        /** @param {Obj} n */
        const alarmsOf = (n) => (n.mem_alarm || n.disk_free_alarm ? h('span', { class: 'error' }, [n.mem_alarm && 'memory', n.disk_free_alarm && 'disk'].filter(Boolean).join(', ')) : 'none');
        if (nodes.length > 1) {
          replace(
            nodeBox,
            table(
              [
                { title: 'Name', value: (n) => (n.name === o.node ? h('strong', null, n.name) : n.name) },
                { title: 'State', value: (n) => (!n.running ? h('span', { class: 'error' }, 'not running') : n.answering === false ? h('span', { class: 'error' }, 'not answering') : 'running') },
                { title: 'Uptime', value: (n) => (n.running ? fmtDuration(n.uptime ?? 0) : '') },
                { title: 'Memory', value: (n) => `${fmtBytes(n.mem_used)} of ${fmtBytes(n.mem_limit)}` },
                { title: 'Alarms', value: alarmsOf },
                { title: 'Connections', value: (n) => n.sockets_used, num: true },
              ],
              nodes,
              'No nodes.',
              'nodes-table',
            ),
          );
          return;
        }
        replace(
          nodeBox,
          kv([
            ['Name', nd.name],
            ['Uptime', fmtDuration(nd.uptime ?? 0)],
            ['Memory', `${fmtBytes(nd.mem_used)} of ${fmtBytes(nd.mem_limit)} high watermark`],
            ['Alarms', alarmsOf(nd)],
            ['Disk free', fmtBytes(nd.disk_free)],
            ['Cores', nd.processors],
            ['Version', `${o.product_name} ${o.product_version}`],
          ]),
        );
      } else replace(nodeBox, kv([['Node', o.node], ['Version', `${o.product_name} ${o.product_version}`]]));
    },
  };
}

/** @param {Obj} c */
function clientOf(c) {
  const p = c.client_properties ?? {};
  const product = [p.product, p.version].filter(Boolean).join(' ');
  if (c.client_id) return product ? `${c.client_id} (${product})` : c.client_id;
  return product || p.platform || '';
}

/** @returns {View} */
function connectionsView() {
  /** @type {HTMLElement} */ let box;
  return {
    async mount(el) {
      box = h('div', { class: 'panel' });
      replace(el, h('h1', null, 'Connections'), h('p', { class: 'sub' }, 'Every client, whatever its protocol: AMQP 0-9-1, MQTT and STOMP, over TCP or WebSocket.'), box);
    },
    async refresh() {
      /** @type {Obj[]} */
      const rows = await api('/connections');
      replace(
        box,
        table(
          withNode([
            { title: 'Name', value: (r) => h('span', { class: 'mono' }, r.user_provided_name ? `${r.name} (${r.user_provided_name})` : r.name) },
            { title: 'Protocol', value: (r) => protoTag(r.protocol) },
            { title: 'Client', value: (r) => clientOf(r) },
            { title: 'User', value: (r) => r.user },
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Channels', value: (r) => r.channels, num: true },
            { title: 'From client', value: (r) => `${fmtBytes(r.recv_oct_details?.rate)}/s`, num: true },
            { title: 'To client', value: (r) => `${fmtBytes(r.send_oct_details?.rate)}/s`, num: true },
            { title: 'Connected', value: (r) => fmtDuration(Date.now() - r.connected_at) },
            {
              title: '',
              value: (r) =>
                isAdmin() || r.user === me?.name
                  ? h('button', { class: 'danger small', onclick: () => confirm(`Close connection ${r.name}?`) && act(() => api(`/connections/${enc(r.name)}`, { method: 'DELETE' }), 'Connection closed') }, 'Close')
                  : '',
            },
          ]),
          rows,
          'No client connections.',
          'connections-table',
        ),
      );
    },
  };
}

/** @returns {View} */
function channelsView() {
  /** @type {HTMLElement} */ let box;
  return {
    async mount(el) {
      box = h('div', { class: 'panel' });
      replace(el, h('h1', null, 'Channels'), h('p', { class: 'sub' }, 'AMQP channels, MQTT sessions and STOMP sessions.'), box);
    },
    async refresh() {
      /** @type {Obj[]} */
      const rows = await api('/channels');
      replace(
        box,
        table(
          withNode([
            { title: 'Channel', value: (r) => h('span', { class: 'mono' }, r.name) },
            { title: 'User', value: (r) => r.user },
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Consumers', value: (r) => r.consumer_count, num: true },
            { title: 'Prefetch', value: (r) => r.prefetch_count, num: true },
            { title: 'Unacked', value: (r) => r.messages_unacknowledged, num: true },
            { title: 'Publish', value: (r) => fmtRate(r.message_stats?.publish_details?.rate), num: true },
            { title: 'Deliver / get', value: (r) => fmtRate(r.message_stats?.deliver_get_details?.rate), num: true },
            { title: 'Ack', value: (r) => fmtRate(r.message_stats?.ack_details?.rate), num: true },
          ]),
          rows,
          'No channels.',
          'channels-table',
        ),
      );
    },
  };
}

/** @returns {View} */
function exchangesView() {
  /** @type {HTMLElement} */ let box;
  return {
    async mount(el) {
      box = h('div', { class: 'panel' });
      const vhosts = await vhostNames();
      const add = form(
        'add-exchange',
        [
          { name: 'vhost', label: 'Virtual host', options: vhosts },
          { name: 'name', label: 'Name', required: true },
          { name: 'type', label: 'Type', options: ['direct', 'fanout', 'topic', 'headers', 'x-delayed-message'] },
          { name: 'durable', label: 'Durable', type: 'checkbox', value: 'true' },
          { name: 'auto_delete', label: 'Auto delete', type: 'checkbox' },
          { name: 'internal', label: 'Internal', type: 'checkbox' },
          { name: 'arguments', label: 'Arguments (JSON)', type: 'textarea', placeholder: '{"alternate-exchange": "unrouted"}' },
        ],
        'Add exchange',
        (v, f) =>
          act(async () => {
            await api(`/exchanges/${enc(v['vhost'] ?? '/')}/${enc(v['name'] ?? '')}`, {
              method: 'PUT',
              body: { type: v['type'], durable: v['durable'] === 'true', auto_delete: v['auto_delete'] === 'true', internal: v['internal'] === 'true', arguments: parseJsonField(v['arguments'] ?? '', 'Arguments') },
            });
            f.reset();
          }, `Exchange ${v['name']} declared`),
      );
      replace(el, h('h1', null, 'Exchanges'), box, section('Add a new exchange', add));
    },
    async refresh() {
      /** @type {Obj[]} */
      const rows = await api('/exchanges');
      replace(
        box,
        table(
          [
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Name', value: (r) => h('a', { href: `#/exchanges/${enc(r.vhost)}/${enc(exUrl(r.name))}` }, exLabel(r.name)) },
            { title: 'Type', value: (r) => r.type },
            { title: 'Features', value: (r) => queueFeatures(r) },
            { title: 'Rate in', value: (r) => fmtRate(r.message_stats?.publish_in_details?.rate), num: true },
            { title: 'Rate out', value: (r) => fmtRate(r.message_stats?.publish_out_details?.rate), num: true },
            { title: 'Delayed', value: (r) => r.messages_delayed ?? 0, num: true },
          ],
          rows,
          'No exchanges.',
          'exchanges-table',
        ),
      );
    },
  };
}

/** Publish form, shared by the exchange and queue pages. @param {string} id @param {string} vhost @param {string} exchange @param {string} routingKey */
function publishForm(id, vhost, exchange, routingKey) {
  const out = h('div');
  const f = form(
    id,
    [
      { name: 'routing_key', label: 'Routing key', value: routingKey },
      { name: 'delivery_mode', label: 'Delivery mode', options: ['1 - non-persistent', '2 - persistent'] },
      { name: 'headers', label: 'Headers (JSON)', type: 'textarea', placeholder: '{"x-source": "ui"}' },
      { name: 'properties', label: 'Properties (JSON)', type: 'textarea', placeholder: '{"content_type": "text/plain"}' },
      { name: 'payload', label: 'Payload', type: 'textarea' },
    ],
    'Publish message',
    (v) =>
      act(async () => {
        const props = parseJsonField(v['properties'] ?? '', 'Properties');
        const headers = parseJsonField(v['headers'] ?? '', 'Headers');
        if (Object.keys(headers).length > 0) props.headers = headers;
        props.delivery_mode = (v['delivery_mode'] ?? '1').startsWith('2') ? 2 : 1;
        const r = await api(`/exchanges/${enc(vhost)}/${enc(exUrl(exchange))}/publish`, {
          method: 'POST',
          body: { routing_key: v['routing_key'], payload: v['payload'], payload_encoding: 'string', properties: props },
        });
        replace(out, h('p', { id: `${id}-result` }, r.routed ? 'Message published.' : 'Message published, but not routed to any queue.'));
      }, 'Message published'),
  );
  return h('div', null, f, out);
}

/** @returns {View} */
function exchangeView() {
  /** @type {HTMLElement} */ let info;
  /** @type {HTMLElement} */ let bindings;
  let vhost = '/';
  let name = '';
  return {
    async mount(el, params) {
      vhost = decodeURIComponent(params[0] ?? '%2F');
      const urlName = decodeURIComponent(params[1] ?? '');
      name = urlName === 'amq.default' ? '' : urlName;
      info = h('div', { class: 'panel' });
      bindings = h('div');
      const bind = form(
        'add-exchange-binding',
        [
          { name: 'type', label: 'To', options: ['queue', 'exchange'] },
          { name: 'destination', label: 'Name', required: true },
          { name: 'routing_key', label: 'Routing key' },
          { name: 'arguments', label: 'Arguments (JSON)', type: 'textarea' },
        ],
        'Bind',
        (v) =>
          act(
            () =>
              api(`/bindings/${enc(vhost)}/e/${enc(exUrl(name))}/${v['type'] === 'queue' ? 'q' : 'e'}/${enc(v['destination'] ?? '')}`, {
                method: 'POST',
                body: { routing_key: v['routing_key'], arguments: parseJsonField(v['arguments'] ?? '', 'Arguments') },
              }),
            'Binding added',
          ),
      );
      const del = h(
        'button',
        {
          class: 'danger',
          onclick: async () => {
            if (!confirm(`Delete exchange ${name}?`)) return;
            if (await act(() => api(`/exchanges/${enc(vhost)}/${enc(exUrl(name))}`, { method: 'DELETE' }), 'Exchange deleted')) location.hash = '#/exchanges';
          },
        },
        'Delete this exchange',
      );
      replace(
        el,
        h('h1', null, `Exchange ${exLabel(name)}`),
        h('p', { class: 'sub' }, `in virtual host ${vhost}`),
        info,
        h('div', { class: 'panel' }, h('h2', null, 'Bindings from this exchange'), bindings),
        section('Add binding from this exchange', bind),
        section('Publish message', publishForm('exchange-publish', vhost, name, '')),
        name === '' || name.startsWith('amq.') ? h('span') : section('Delete', h('div', { class: 'actions' }, del)),
      );
    },
    async refresh() {
      const x = await api(`/exchanges/${enc(vhost)}/${enc(exUrl(name))}`);
      replace(
        info,
        kv([
          ['Type', x.type],
          ['Features', queueFeatures(x)],
          ['Policy', x.policy ?? ''],
          ['Rate in', fmtRate(x.message_stats?.publish_in_details?.rate)],
          ['Rate out', fmtRate(x.message_stats?.publish_out_details?.rate)],
          ['Published in', x.message_stats?.publish_in],
          ['Delayed messages', x.messages_delayed ?? 0],
        ]),
      );
      /** @type {Obj[]} */
      const rows = await api(`/exchanges/${enc(vhost)}/${enc(exUrl(name))}/bindings/source`);
      replace(
        bindings,
        table(
          [
            { title: 'To', value: (r) => h('a', { href: r.destination_type === 'queue' ? `#/queues/${enc(vhost)}/${enc(r.destination)}` : `#/exchanges/${enc(vhost)}/${enc(r.destination)}` }, r.destination) },
            { title: 'Type', value: (r) => r.destination_type },
            { title: 'Routing key', value: (r) => h('span', { class: 'mono' }, r.routing_key) },
            { title: 'Arguments', value: (r) => h('span', { class: 'mono' }, Object.keys(r.arguments).length ? JSON.stringify(r.arguments) : '') },
            {
              title: '',
              value: (r) =>
                name === ''
                  ? ''
                  : h('button', { class: 'danger small', onclick: () => act(() => api(`/bindings/${enc(vhost)}/e/${enc(exUrl(name))}/${r.destination_type === 'queue' ? 'q' : 'e'}/${enc(r.destination)}/${enc(r.properties_key)}`, { method: 'DELETE' }), 'Binding removed') }, 'Unbind'),
            },
          ],
          rows,
          'No bindings.',
        ),
      );
    },
  };
}

/** @returns {View} */
function queuesView() {
  /** @type {HTMLElement} */ let box;
  return {
    async mount(el) {
      box = h('div', { class: 'panel' });
      const vhosts = await vhostNames();
      const add = form(
        'add-queue',
        [
          { name: 'vhost', label: 'Virtual host', options: vhosts },
          { name: 'name', label: 'Name', required: true },
          { name: 'durable', label: 'Durable', type: 'checkbox', value: 'true' },
          { name: 'auto_delete', label: 'Auto delete', type: 'checkbox' },
          { name: 'arguments', label: 'Arguments (JSON)', type: 'textarea', placeholder: '{"x-message-ttl": 60000, "x-max-length": 1000}' },
        ],
        'Add queue',
        (v, f) =>
          act(async () => {
            await api(`/queues/${enc(v['vhost'] ?? '/')}/${enc(v['name'] ?? '')}`, {
              method: 'PUT',
              body: { durable: v['durable'] === 'true', auto_delete: v['auto_delete'] === 'true', arguments: parseJsonField(v['arguments'] ?? '', 'Arguments') },
            });
            f.reset();
          }, `Queue ${v['name']} declared`),
      );
      replace(el, h('h1', null, 'Queues'), box, section('Add a new queue', add, false, 'add-queue-section'));
    },
    async refresh() {
      /** @type {Obj[]} */
      const rows = await api('/queues');
      replace(
        box,
        table(
          withNode([
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Name', value: (r) => h('a', { href: `#/queues/${enc(r.vhost)}/${enc(r.name)}` }, r.name) },
            { title: 'Features', value: (r) => queueFeatures(r) },
            { title: 'Replicas', value: (r) => replicasCell(r) },
            { title: 'Consumers', value: (r) => r.consumers, num: true },
            { title: 'Ready', value: (r) => r.messages_ready, num: true },
            { title: 'Unacked', value: (r) => r.messages_unacknowledged, num: true },
            { title: 'Total', value: (r) => r.messages, num: true },
            { title: 'Incoming', value: (r) => fmtRate(r.message_stats?.publish_details?.rate), num: true },
            { title: 'Deliver / get', value: (r) => fmtRate(r.message_stats?.deliver_get_details?.rate), num: true },
            { title: 'Ack', value: (r) => fmtRate(r.message_stats?.ack_details?.rate), num: true },
          ], 2),
          rows,
          'No queues.',
          'queues-table',
        ),
      );
    },
  };
}

/**
 * A replicated queue's copies online of its members, flagged when some are missing.
 * @param {Obj} r
 * @returns {string}
 */
function replicasCell(r) {
  if (!Array.isArray(r.members)) return '';
  const online = Array.isArray(r.online) ? r.online.length : 0;
  const flag = r.below_majority === true ? ' below majority' : r.under_replicated === true ? ' under-replicated' : '';
  return `${online}/${r.members.length}${flag}`;
}

/**
 * A replicated queue's copies: each engine server, whether it leads, is online, and how far behind
 * the leader it is.
 * @param {Obj[]} copies
 * @returns {string}
 */
function copiesText(copies) {
  return copies.map((c) => `${c.server}${c.leader ? ' (leader)' : ''}: ${c.online ? 'online' : 'offline'}, lag ${c.lag}`).join('; ');
}

/** @returns {View} */
function queueView() {
  /** @type {HTMLElement} */ let info;
  /** @type {HTMLElement} */ let consumers;
  /** @type {HTMLElement} */ let bindings;
  /** @type {Chart} */ let depth;
  /** @type {Chart} */ let rates;
  let vhost = '/';
  let name = '';
  return {
    async mount(el, params) {
      vhost = decodeURIComponent(params[0] ?? '%2F');
      name = decodeURIComponent(params[1] ?? '');
      info = h('div');
      consumers = h('div');
      bindings = h('div');
      const depthEl = h('div', { class: 'chart' });
      const rateEl = h('div', { class: 'chart' });
      const got = h('div', { id: 'get-results' });
      const getForm = form(
        'get-messages',
        [
          { name: 'ackmode', label: 'Ack mode', options: ['ack_requeue_true', 'ack_requeue_false', 'reject_requeue_true', 'reject_requeue_false'] },
          { name: 'encoding', label: 'Encoding', options: ['auto', 'base64'] },
          { name: 'count', label: 'Messages', value: '1', type: 'number' },
        ],
        'Get messages',
        (v) =>
          act(async () => {
            /** @type {Obj[]} */
            const msgs = await api(`/queues/${enc(vhost)}/${enc(name)}/get`, { method: 'POST', body: { count: Number(v['count'] || 1), ackmode: v['ackmode'], encoding: v['encoding'] } });
            if (msgs.length === 0) {
              replace(got, h('p', { class: 'empty' }, 'Queue is empty.'));
              return;
            }
            replace(
              got,
              ...msgs.map((m, i) =>
                h(
                  'div',
                  { class: 'msg' },
                  h('strong', null, `Message ${i + 1}`),
                  kv([
                    ['Exchange', exLabel(m.exchange)],
                    ['Routing key', m.routing_key],
                    ['Redelivered', String(m.redelivered)],
                    ['Properties', h('span', { class: 'mono' }, JSON.stringify(m.properties))],
                    ['Payload', `${m.payload_bytes} bytes, encoding ${m.payload_encoding}`],
                    ['Remaining', m.message_count],
                  ]),
                  h('pre', { class: 'payload' }, m.payload),
                ),
              ),
            );
          }, 'Messages fetched'),
      );
      const bind = form(
        'add-queue-binding',
        [
          { name: 'source', label: 'From exchange', required: true },
          { name: 'routing_key', label: 'Routing key' },
          { name: 'arguments', label: 'Arguments (JSON)', type: 'textarea' },
        ],
        'Bind',
        (v) =>
          act(
            () => api(`/bindings/${enc(vhost)}/e/${enc(v['source'] ?? '')}/q/${enc(name)}`, { method: 'POST', body: { routing_key: v['routing_key'], arguments: parseJsonField(v['arguments'] ?? '', 'Arguments') } }),
            'Binding added',
          ),
      );
      const danger = h(
        'div',
        { class: 'actions' },
        h('button', { class: 'danger', id: 'purge-queue', onclick: () => confirm(`Purge all ready messages of ${name}?`) && act(() => api(`/queues/${enc(vhost)}/${enc(name)}/contents`, { method: 'DELETE' }), 'Queue purged') }, 'Purge messages'),
        h(
          'button',
          {
            class: 'danger',
            id: 'delete-queue',
            onclick: async () => {
              if (!confirm(`Delete queue ${name}?`)) return;
              if (await act(() => api(`/queues/${enc(vhost)}/${enc(name)}`, { method: 'DELETE' }), 'Queue deleted')) location.hash = '#/queues';
            },
          },
          'Delete queue',
        ),
      );
      replace(
        el,
        h('h1', null, `Queue ${name}`),
        h('p', { class: 'sub' }, `in virtual host ${vhost}`),
        h('div', { class: 'panel' }, info),
        h('div', { class: 'grid2' }, h('div', { class: 'panel' }, h('h2', null, 'Queued messages'), depthEl), h('div', { class: 'panel' }, h('h2', null, 'Message rates'), rateEl)),
        h('div', { class: 'panel' }, h('h2', null, 'Consumers'), consumers),
        h('div', { class: 'panel' }, h('h2', null, 'Bindings'), bindings),
        section('Add binding to this queue', bind),
        section('Publish message', publishForm('queue-publish', vhost, '', name), false, 'publish-section'),
        section('Get messages', h('div', null, h('p', { class: 'legend-note' }, 'Getting messages is destructive unless the ack mode requeues them.'), getForm, got), false, 'get-section'),
        section('Purge or delete', danger),
      );
      depth = new Chart(depthEl, ['ready', 'unacked'], fmtNum);
      rates = new Chart(rateEl, ['publish', 'deliver / get', 'ack'], fmtRate);
    },
    async refresh() {
      const q = await api(`/queues/${enc(vhost)}/${enc(name)}?${HISTORY_QUERY}`);
      const ms = q.message_stats ?? {};
      replace(
        info,
        kv([
          ['Features', queueFeatures(q)],
          ['State', q.state],
          ['Ready', q.messages_ready],
          ['Unacked', q.messages_unacknowledged],
          ['Total', q.messages],
          ['Bytes ready', fmtBytes(q.message_bytes_ready)],
          ['Consumers', q.consumers],
          ['Incoming', fmtRate(ms.publish_details?.rate)],
          ['Deliver / get', fmtRate(ms.deliver_get_details?.rate)],
          ['Ack', fmtRate(ms.ack_details?.rate)],
          ['Policy', q.policy ?? ''],
          ...(Array.isArray(q.replica_details)
            ? [
                ['Leader', q.leader || 'none'],
                ['Copies', h('span', { id: 'queue-copies' }, copiesText(q.replica_details))],
              ]
            : []),
          ...(q.type === 'stream'
            ? [
                ['First offset', q.first_offset],
                ['Last offset', q.last_offset],
                ['Size on disk', fmtBytes(q.disk_size)],
                ['Segments', q.segments],
                ['Read', h('a', { href: `#/streams/${enc(vhost)}/${enc(name)}`, id: 'read-stream' }, 'Read messages from an offset')],
              ]
            : []),
        ]),
      );
      setDepths(depth, q.messages_ready_details?.samples, q.messages_unacknowledged_details?.samples);
      setRates(rates, [ms.publish_details?.samples, ms.deliver_get_details?.samples, ms.ack_details?.samples]);
      replace(
        consumers,
        table(
          [
            { title: 'Tag', value: (r) => h('span', { class: 'mono' }, r.consumer_tag) },
            { title: 'Channel', value: (r) => h('span', { class: 'mono' }, r.channel_details?.name) },
            { title: 'Ack required', value: (r) => String(r.ack_required) },
            { title: 'Exclusive', value: (r) => String(r.exclusive) },
            { title: 'Prefetch', value: (r) => r.prefetch_count, num: true },
            { title: 'Stream offset', value: (r) => r.stream_offset ?? '', num: true },
          ],
          q.consumer_details ?? [],
          'No consumers.',
        ),
      );
      /** @type {Obj[]} */
      const bs = await api(`/queues/${enc(vhost)}/${enc(name)}/bindings`);
      replace(
        bindings,
        table(
          [
            { title: 'From', value: (r) => (r.source === '' ? '(AMQP default)' : h('a', { href: `#/exchanges/${enc(vhost)}/${enc(r.source)}` }, r.source)) },
            { title: 'Routing key', value: (r) => h('span', { class: 'mono' }, r.routing_key) },
            { title: 'Arguments', value: (r) => h('span', { class: 'mono' }, Object.keys(r.arguments).length ? JSON.stringify(r.arguments) : '') },
            {
              title: '',
              value: (r) =>
                r.source === ''
                  ? ''
                  : h('button', { class: 'danger small', onclick: () => act(() => api(`/bindings/${enc(vhost)}/e/${enc(r.source)}/q/${enc(name)}/${enc(r.properties_key)}`, { method: 'DELETE' }), 'Binding removed') }, 'Unbind'),
            },
          ],
          bs,
        ),
      );
    },
  };
}

/**
 * Reads a stream from an offset without consuming it: no consumer, no acks, no cursor kept.
 * @returns {View}
 */
function streamView() {
  /** @type {HTMLElement} */ let out;
  let vhost = '/';
  let name = '';
  return {
    async mount(el, params) {
      vhost = decodeURIComponent(params[0] ?? '%2F');
      name = decodeURIComponent(params[1] ?? '');
      out = h('div', { id: 'stream-messages' });
      const read = form(
        'read-stream',
        [
          { name: 'offset', label: 'From offset', value: '0', type: 'number' },
          { name: 'count', label: 'Messages', value: '20', type: 'number' },
        ],
        'Read',
        (v) =>
          act(async () => {
            /** @type {Obj} */
            const r = await api(`/streams/${enc(vhost)}/${enc(name)}/messages?offset=${enc(v['offset'] || '0')}&count=${enc(v['count'] || '20')}`);
            /** @type {Obj[]} */
            const msgs = r.messages;
            replace(
              out,
              h('p', { class: 'sub' }, `offsets ${r.first_offset} to ${r.committed_offset - 1} are kept`),
              ...(msgs.length === 0
                ? [h('p', { class: 'empty' }, 'Nothing at or after this offset.')]
                : msgs.map((m) =>
                    h(
                      'div',
                      { class: 'msg' },
                      h('strong', null, `Offset ${m.offset}`),
                      kv([
                        ['Routing key', m.routing_key],
                        ['Filter value', m.filter_value ?? ''],
                        ['Properties', h('span', { class: 'mono' }, JSON.stringify(m.properties))],
                        ['Payload', `${m.payload_bytes} bytes, encoding ${m.payload_encoding}`],
                      ]),
                      h('pre', { class: 'payload' }, m.payload),
                    ),
                  )),
            );
          }, 'Messages read'),
      );
      replace(el, h('h1', null, `Stream ${name}`), h('p', { class: 'sub' }, h('a', { href: `#/queues/${enc(vhost)}/${enc(name)}` }, `queue ${name} in virtual host ${vhost}`)), h('div', { class: 'panel' }, read, out));
    },
    async refresh() {},
  };
}

// ---- admin --------------------------------------------------------------------------------------

/** @param {string} active */
function adminNav(active) {
  const items = adminPages();
  return h('div', { class: 'subnav' }, ...items.map(([k, label]) => h('a', { href: `#/admin/${k}`, class: k === active ? 'active' : null }, label ?? '')));
}

/** @returns {View} */
function usersView() {
  /** @type {HTMLElement} */ let users;
  /** @type {HTMLElement} */ let perms;
  /** @type {HTMLElement} */ let topics;
  return {
    async mount(el) {
      users = h('div');
      perms = h('div');
      topics = h('div');
      const vhosts = await vhostNames();
      const addUser = form(
        'add-user',
        [
          { name: 'name', label: 'Username', required: true },
          { name: 'password', label: 'Password', type: 'password' },
          { name: 'tags', label: 'Tags', placeholder: 'administrator, monitoring, policymaker, management' },
        ],
        'Add / update user',
        (v, f) =>
          act(async () => {
            /** @type {Obj} */
            const body = { tags: v['tags'] ?? '' };
            if (v['password']) body.password = v['password'];
            await api(`/users/${enc(v['name'] ?? '')}`, { method: 'PUT', body });
            f.reset();
          }, `User ${v['name']} saved`),
      );
      const setPerm = form(
        'set-permission',
        [
          { name: 'user', label: 'User', required: true },
          { name: 'vhost', label: 'Virtual host', options: vhosts },
          { name: 'configure', label: 'Configure regexp', value: '.*' },
          { name: 'write', label: 'Write regexp', value: '.*' },
          { name: 'read', label: 'Read regexp', value: '.*' },
        ],
        'Set permission',
        (v) => act(() => api(`/permissions/${enc(v['vhost'] ?? '/')}/${enc(v['user'] ?? '')}`, { method: 'PUT', body: { configure: v['configure'], write: v['write'], read: v['read'] } }), 'Permission set'),
      );
      const setTopic = form(
        'set-topic-permission',
        [
          { name: 'user', label: 'User', required: true },
          { name: 'vhost', label: 'Virtual host', options: vhosts },
          { name: 'exchange', label: 'Exchange', value: 'amq.topic' },
          { name: 'write', label: 'Write regexp', value: '.*' },
          { name: 'read', label: 'Read regexp', value: '.*' },
        ],
        'Set topic permission',
        (v) => act(() => api(`/topic-permissions/${enc(v['vhost'] ?? '/')}/${enc(v['user'] ?? '')}`, { method: 'PUT', body: { exchange: v['exchange'], write: v['write'], read: v['read'] } }), 'Topic permission set'),
      );
      replace(
        el,
        h('h1', null, 'Admin'),
        adminNav('users'),
        h('div', { class: 'panel' }, h('h2', null, 'Users'), users),
        section('Add or update a user', addUser),
        h('div', { class: 'panel' }, h('h2', null, 'Permissions'), perms),
        section('Set permission', setPerm),
        h('div', { class: 'panel' }, h('h2', null, 'Topic permissions'), h('p', { class: 'legend-note' }, 'Regular expressions over routing keys of a topic exchange; MQTT topics use dots here (a/b is a.b). {username}, {vhost} and {client_id} are substituted.'), topics),
        section('Set topic permission', setTopic),
      );
    },
    async refresh() {
      /** @type {Obj[]} */
      const us = await api('/users');
      /** @type {Obj[]} */
      const ps = await api('/permissions');
      /** @type {Obj[]} */
      const ts = await api('/topic-permissions');
      replace(
        users,
        table(
          [
            { title: 'Name', value: (r) => r.name },
            { title: 'Tags', value: (r) => h('span', null, ...(r.tags ?? []).map((/** @type {string} */ t) => h('span', { class: 'tag' }, t))) },
            { title: 'Can access virtual hosts', value: (r) => ps.filter((p) => p.user === r.name).map((p) => p.vhost).join(', ') || 'none' },
            { title: 'Has password', value: (r) => (r.password_hash ? 'yes' : 'no') },
            { title: '', value: (r) => h('button', { class: 'danger small', onclick: () => confirm(`Delete user ${r.name}?`) && act(() => api(`/users/${enc(r.name)}`, { method: 'DELETE' }), 'User deleted') }, 'Delete') },
          ],
          us,
          'No users.',
          'users-table',
        ),
      );
      replace(
        perms,
        table(
          [
            { title: 'User', value: (r) => r.user },
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Configure', value: (r) => h('span', { class: 'mono' }, r.configure) },
            { title: 'Write', value: (r) => h('span', { class: 'mono' }, r.write) },
            { title: 'Read', value: (r) => h('span', { class: 'mono' }, r.read) },
            { title: '', value: (r) => h('button', { class: 'danger small', onclick: () => act(() => api(`/permissions/${enc(r.vhost)}/${enc(r.user)}`, { method: 'DELETE' }), 'Permission cleared') }, 'Clear') },
          ],
          ps,
          'No permissions.',
          'permissions-table',
        ),
      );
      replace(
        topics,
        table(
          [
            { title: 'User', value: (r) => r.user },
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Exchange', value: (r) => r.exchange },
            { title: 'Write', value: (r) => h('span', { class: 'mono' }, r.write) },
            { title: 'Read', value: (r) => h('span', { class: 'mono' }, r.read) },
            { title: '', value: (r) => h('button', { class: 'danger small', onclick: () => act(() => api(`/topic-permissions/${enc(r.vhost)}/${enc(r.user)}?exchange=${enc(r.exchange)}`, { method: 'DELETE' }), 'Topic permission cleared') }, 'Clear') },
          ],
          ts,
          'No topic permissions: publishing and binding to topic exchanges is limited only by the permissions above.',
        ),
      );
    },
  };
}

/** @returns {View} */
function vhostsView() {
  /** @type {HTMLElement} */ let box;
  return {
    async mount(el) {
      box = h('div', { class: 'panel' });
      const add = form(
        'add-vhost',
        [
          { name: 'name', label: 'Name', required: true },
          { name: 'description', label: 'Description' },
          { name: 'tags', label: 'Tags' },
        ],
        'Add virtual host',
        (v, f) =>
          act(async () => {
            await api(`/vhosts/${enc(v['name'] ?? '')}`, { method: 'PUT', body: { description: v['description'], tags: v['tags'] } });
            f.reset();
          }, `Virtual host ${v['name']} added`),
      );
      replace(el, h('h1', null, 'Admin'), adminNav('vhosts'), box, section('Add a virtual host', add));
    },
    async refresh() {
      /** @type {Obj[]} */
      const rows = await api('/vhosts');
      replace(
        box,
        table(
          [
            { title: 'Name', value: (r) => r.name },
            { title: 'Description', value: (r) => r.description },
            { title: 'Ready', value: (r) => r.messages_ready, num: true },
            { title: 'Unacked', value: (r) => r.messages_unacknowledged, num: true },
            { title: 'Publish', value: (r) => fmtRate(r.message_stats?.publish_details?.rate), num: true },
            { title: 'Deliver / get', value: (r) => fmtRate(r.message_stats?.deliver_get_details?.rate), num: true },
            { title: '', value: (r) => h('button', { class: 'danger small', onclick: () => confirm(`Delete virtual host ${r.name} and everything in it?`) && act(() => api(`/vhosts/${enc(r.name)}`, { method: 'DELETE' }), 'Virtual host deleted') }, 'Delete') },
          ],
          rows,
        ),
      );
    },
  };
}

/** @returns {View} */
function policiesView() {
  /** @type {HTMLElement} */ let box;
  return {
    async mount(el) {
      box = h('div', { class: 'panel' });
      const vhosts = await vhostNames();
      const add = form(
        'add-policy',
        [
          { name: 'vhost', label: 'Virtual host', options: vhosts },
          { name: 'name', label: 'Name', required: true },
          { name: 'pattern', label: 'Pattern', placeholder: '^orders\\.', required: true },
          { name: 'apply-to', label: 'Apply to', options: ['all', 'queues', 'exchanges'] },
          { name: 'priority', label: 'Priority', type: 'number', value: '0' },
          { name: 'definition', label: 'Definition (JSON)', type: 'textarea', placeholder: '{"max-length": 10000, "dead-letter-exchange": "dlx"}' },
        ],
        'Add / update policy',
        (v, f) =>
          act(async () => {
            await api(`/policies/${enc(v['vhost'] ?? '/')}/${enc(v['name'] ?? '')}`, {
              method: 'PUT',
              body: { pattern: v['pattern'], 'apply-to': v['apply-to'], priority: Number(v['priority'] || 0), definition: parseJsonField(v['definition'] ?? '', 'Definition') },
            });
            f.reset();
          }, `Policy ${v['name']} saved`),
      );
      replace(el, h('h1', null, 'Admin'), adminNav('policies'), box, section('Add or update a policy', add, true));
    },
    async refresh() {
      /** @type {Obj[]} */
      const rows = await api('/policies');
      replace(
        box,
        table(
          [
            { title: 'Vhost', value: (r) => r.vhost },
            { title: 'Name', value: (r) => r.name },
            { title: 'Pattern', value: (r) => h('span', { class: 'mono' }, r.pattern) },
            { title: 'Apply to', value: (r) => r['apply-to'] },
            { title: 'Definition', value: (r) => h('span', { class: 'mono' }, JSON.stringify(r.definition)) },
            { title: 'Priority', value: (r) => r.priority, num: true },
            { title: '', value: (r) => h('button', { class: 'danger small', onclick: () => act(() => api(`/policies/${enc(r.vhost)}/${enc(r.name)}`, { method: 'DELETE' }), 'Policy cleared') }, 'Clear') },
          ],
          rows,
          'No policies.',
          'policies-table',
        ),
      );
    },
  };
}

/** @returns {View} */
function definitionsView() {
  return {
    async mount(el) {
      const exportBtn = h(
        'button',
        {
          id: 'export-definitions',
          onclick: () =>
            act(async () => {
              const text = await api('/definitions', { raw: true });
              const url = URL.createObjectURL(new Blob([text], { type: 'application/json' }));
              const a = h('a', { href: url, download: `warren-definitions-${new Date().toISOString().slice(0, 10)}.json` });
              document.body.append(a);
              /** @type {HTMLAnchorElement} */ (a).click();
              a.remove();
              setTimeout(() => URL.revokeObjectURL(url), 1000);
            }, 'Definitions exported'),
        },
        'Download definitions',
      );
      const file = /** @type {HTMLInputElement} */ (h('input', { type: 'file', id: 'import-file', accept: 'application/json,.json' }));
      const text = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: 'import-text', placeholder: 'or paste definitions JSON here' }));
      const importBtn = h(
        'button',
        {
          id: 'import-definitions',
          onclick: () =>
            act(async () => {
              const body = file.files && file.files[0] ? await file.files[0].text() : text.value;
              JSON.parse(body);
              await api('/definitions', { method: 'POST', body });
              file.value = '';
              text.value = '';
            }, 'Definitions imported'),
        },
        'Upload definitions',
      );
      replace(
        el,
        h('h1', null, 'Admin'),
        adminNav('definitions'),
        h('div', { class: 'panel' }, h('h2', null, 'Export'), h('p', { class: 'legend-note' }, "Users, virtual hosts, permissions, policies, exchanges, queues and bindings, in RabbitMQ's definitions format."), exportBtn),
        h('div', { class: 'panel' }, h('h2', null, 'Import'), h('p', { class: 'legend-note' }, 'Definitions from Warren or RabbitMQ are merged into what exists.'), h('div', { class: 'actions' }, file), text, h('div', { class: 'actions' }, importBtn)),
      );
    },
    async refresh() {},
  };
}

// ---- routing ------------------------------------------------------------------------------------

/**
 * An Admin page only for users whose tags allow it; the others get a page that says so instead of
 * empty tables. @param {string} page @param {() => View} make @returns {() => View}
 */
function guarded(page, make) {
  return () => {
    if (adminPages().some(([k]) => k === page)) return make();
    return {
      async mount(el) {
        const need = page === 'policies' ? 'the policymaker or administrator tag' : 'the administrator tag';
        replace(el, h('h1', null, 'Admin'), h('p', { class: 'empty', id: 'not-permitted' }, `This page needs ${need}; ${me?.name ?? 'this user'} has ${me?.tags.join(', ') || 'no tags'}.`));
      },
      async refresh() {},
    };
  };
}

/** @type {Array<[RegExp, string, () => View]>} */
const ROUTES = [
  [/^#?\/?$/, 'overview', overviewView],
  [/^#\/connections$/, 'connections', connectionsView],
  [/^#\/channels$/, 'channels', channelsView],
  [/^#\/exchanges$/, 'exchanges', exchangesView],
  [/^#\/exchanges\/([^/]+)\/([^/]+)$/, 'exchanges', exchangeView],
  [/^#\/queues$/, 'queues', queuesView],
  [/^#\/queues\/([^/]+)\/([^/]+)$/, 'queues', queueView],
  [/^#\/streams\/([^/]+)\/([^/]+)$/, 'queues', streamView],
  [/^#\/admin(?:\/users)?$/, 'admin', guarded('users', usersView)],
  [/^#\/admin\/vhosts$/, 'admin', guarded('vhosts', vhostsView)],
  [/^#\/admin\/policies$/, 'admin', guarded('policies', policiesView)],
  [/^#\/admin\/definitions$/, 'admin', guarded('definitions', definitionsView)],
];

/** @type {View | null} */
let current = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let timer;
let generation = 0;

function stopTimer() {
  if (timer !== undefined) clearTimeout(timer);
  timer = undefined;
}

function schedule() {
  stopTimer();
  const ms = Number(/** @type {HTMLSelectElement} */ (document.getElementById('refresh')).value);
  if (ms > 0) timer = setTimeout(() => void refresh().finally(schedule), ms);
}

async function refresh() {
  const view = current;
  const gen = generation;
  if (!view || !me) return;
  try {
    await view.refresh();
  } catch (e) {
    if (gen === generation && !(e instanceof ApiError && e.status === 401 && !me)) flash(e instanceof Error ? e.message : String(e), true);
  }
}

async function route() {
  if (!me) return;
  const hash = location.hash || '#/';
  const found = ROUTES.find(([re]) => re.test(hash));
  const el = /** @type {HTMLElement} */ (document.getElementById('view'));
  generation++;
  stopTimer();
  if (!found) {
    current = null;
    replace(el, h('h1', null, 'Not found'), h('p', null, h('a', { href: '#/' }, 'Back to the overview')));
    return;
  }
  const [re, nav, make] = found;
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.getAttribute('data-nav') === nav);
  const params = (re.exec(hash) ?? []).slice(1);
  const view = make();
  current = view;
  try {
    await view.mount(el, params);
    await refresh();
  } catch (e) {
    flash(e instanceof Error ? e.message : String(e), true);
  }
  schedule();
}

// ---- start --------------------------------------------------------------------------------------

/** @type {HTMLFormElement} */ (document.getElementById('login-form')).addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const user = /** @type {HTMLInputElement} */ (document.getElementById('login-username')).value;
  const pass = /** @type {HTMLInputElement} */ (document.getElementById('login-password')).value;
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  sessionStorage.setItem(AUTH_KEY, btoa(String.fromCharCode(...bytes)));
  try {
    await startSession();
  } catch (e) {
    logout(e instanceof ApiError && e.status === 401 ? loginMessage(e.message) : String(e));
  }
});
/** @type {HTMLElement} */ (document.getElementById('logout')).addEventListener('click', () => logout());
/** @type {HTMLElement} */ (document.getElementById('refresh')).addEventListener('change', schedule);
window.addEventListener('hashchange', () => void route());

if (sessionStorage.getItem(AUTH_KEY)) startSession().catch(() => logout());
else logout();
