import { BrokerError, type User } from '../core/index.js';
import type { ManagementApi } from './api.js';
import type { PeerReply, PeerRequest } from './cluster-view.js';
import { HttpError } from './http-util.js';
import type { Row } from './listing.js';

/**
 * Cluster-wide listings. Each node answers for its own connections, channels, consumers and
 * queues (as the user who asked would see them); the node the HTTP request came to asks every
 * other running node at once, with a short timeout, and merges the answers with its own rows. Each
 * row carries the `node` it lives on. A node that does not answer in time is skipped and named in
 * the `x-nodes-not-answering` header (and `nodes_not_answering` of `/api/overview`).
 */

export const NOT_ANSWERING_HEADER = 'x-nodes-not-answering';

/** An operation another node may ask this one for. */
export type PeerOp = (user: User, req: PeerRequest) => unknown;

export interface Gathered<T> {
  /** This node's answer first, then the others' in node order. */
  readonly parts: ReadonlyArray<{ readonly node: string; readonly body: T }>;
  readonly notAnswering: readonly string[];
}

/** The user a request from another node is answered for (authenticated there). */
function peerUser(api: ManagementApi, req: PeerRequest): User {
  const tags = req.user.tags.filter((t): t is string => typeof t === 'string');
  const known = api.core.auth.users.get(req.user.name);
  if (known !== undefined) return { ...known, tags };
  return { name: req.user.name, tags, passwordHash: '', hashingAlgorithm: 'rabbit_password_hashing_sha256', loopbackOnly: false };
}

function failure(e: unknown): PeerReply {
  const err = e instanceof HttpError ? e : e instanceof BrokerError ? HttpError.fromBroker(e) : undefined;
  if (err === undefined) throw e;
  return { ok: false, status: err.status, error: err.error, reason: err.reason };
}

/** Registers the handler that answers other nodes (a no-op on a single node). */
export function servePeers(api: ManagementApi, ops: ReadonlyMap<string, PeerOp>): void {
  const peers = api.ctx.cluster?.peers;
  if (peers === undefined) return;
  peers.serve(async (req) => {
    const op = ops.get(req.op);
    if (op === undefined) return { ok: false, status: 400, error: 'bad_request', reason: `unknown operation '${req.op}'` };
    try {
      return { ok: true, body: await op(peerUser(api, req), req) };
    } catch (e) {
      return failure(e);
    }
  });
}

function request(user: User, op: string, extra: Omit<PeerRequest, 'op' | 'user'> = {}): PeerRequest {
  return { op, user: { name: user.name, tags: user.tags }, ...extra };
}

/**
 * This node's answer and every other running node's. A node whose answer is an error (it lacks
 * the vhost, say) adds nothing; one that does not answer is listed in `notAnswering`.
 */
export async function gather<T>(api: ManagementApi, user: User, op: string, local: T, extra: Omit<PeerRequest, 'op' | 'user'> = {}): Promise<Gathered<T>> {
  const peers = api.ctx.cluster?.peers;
  const parts: Array<{ node: string; body: T }> = [{ node: api.node, body: local }];
  if (peers === undefined) return { parts, notAnswering: [] };
  const { answers, notAnswering } = await peers.askAll(request(user, op, extra));
  const sorted = [...answers].sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  const missing = [...notAnswering];
  for (const a of sorted) {
    if (a.reply.ok) parts.push({ node: a.node, body: a.reply.body as T });
    else if (a.reply.status >= 500 || a.reply.status === 413) missing.push(a.node);
  }
  return { parts, notAnswering: missing.sort() };
}

/** Rows from every node, one list. */
export async function gatherRows(api: ManagementApi, user: User, op: string, local: Row[], vhost?: string): Promise<{ rows: Row[]; headers: Record<string, string> | undefined }> {
  const g = await gather(api, user, op, local, { vhost });
  const rows: Row[] = [];
  for (const p of g.parts) if (Array.isArray(p.body)) for (const r of p.body as Row[]) rows.push(r);
  return { rows, headers: notAnsweringHeaders(g.notAnswering) };
}

/**
 * Queues from every node. Replicated definitions put a copy of each durable queue on every node;
 * the row counted is the one from the queue's own node (its `node` field names the node that
 * answered), else the first seen (its node did not answer: its definition without figures).
 */
export async function gatherQueues(api: ManagementApi, user: User, local: Row[], vhost?: string): Promise<{ rows: Row[]; headers: Record<string, string> | undefined }> {
  const g = await gather(api, user, 'queues', local, { vhost });
  const byKey = new Map<string, { row: Row; own: boolean }>();
  for (const p of g.parts) {
    if (!Array.isArray(p.body)) continue;
    for (const r of p.body as Row[]) {
      const key = `${String(r['vhost'])}\u0000${String(r['name'])}`;
      const own = r['node'] === p.node;
      const had = byKey.get(key);
      if (had === undefined || (own && !had.own)) byKey.set(key, { row: r, own });
    }
  }
  return { rows: [...byKey.values()].map((e) => e.row), headers: notAnsweringHeaders(g.notAnswering) };
}

export function notAnsweringHeaders(nodes: readonly string[]): Record<string, string> | undefined {
  return nodes.length === 0 ? undefined : { [NOT_ANSWERING_HEADER]: nodes.join(',') };
}

/**
 * Asks the other nodes in turn for `op` on the object `name` until one has it: the first answer
 * that is not a 404. Undefined when none has it (or there is no cluster).
 */
export async function findOnPeers(api: ManagementApi, user: User, op: string, extra: Omit<PeerRequest, 'op' | 'user'>): Promise<PeerReply | undefined> {
  const peers = api.ctx.cluster?.peers;
  if (peers === undefined) return undefined;
  const { answers } = await peers.askAll(request(user, op, extra));
  return answers.find((a) => a.reply.ok || a.reply.status !== 404)?.reply;
}

/** A peer's error as this node's answer. */
export function peerError(reply: PeerReply): HttpError | undefined {
  return reply.ok ? undefined : new HttpError(reply.status, reply.error, reply.reason);
}

/** Adds the numbers of `src` into `dst`, through nested objects (arrays are left as they are). */
export function addNumbers(dst: Row, src: unknown): void {
  if (src === null || typeof src !== 'object' || Array.isArray(src)) return;
  for (const [k, v] of Object.entries(src as Row)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') continue;
    const cur = Object.prototype.hasOwnProperty.call(dst, k) ? dst[k] : undefined;
    if (typeof v === 'number') {
      if (typeof cur === 'number') dst[k] = cur + v;
      else if (cur === undefined) dst[k] = v;
    } else if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
      if (cur === undefined) dst[k] = {};
      const next = dst[k];
      if (next !== null && typeof next === 'object' && !Array.isArray(next)) addNumbers(next as Row, v);
    }
  }
}
