import type { ClusterView, ReplicatedQueueReport } from './cluster-view.js';
import type { Row } from './listing.js';

/** How many copies of a group of `size` must be up for it to accept writes. */
export function majorityOf(size: number): number {
  return Math.floor(size / 2) + 1;
}

/** A replicated queue's copies judged: how many there should be, how many are up. */
export interface ReplicationHealth {
  /** Copies the queue should have: its replica count, or more if the engine lists more. */
  readonly size: number;
  readonly online: number;
  /** Fewer copies up and current than it has. */
  readonly underReplicated: boolean;
  /** Fewer than a majority up (or the engine did not answer): the queue takes no writes. */
  readonly belowMajority: boolean;
}

export function assess(r: ReplicatedQueueReport): ReplicationHealth {
  const size = Math.max(r.replicas, r.status?.members.length ?? 0);
  const online = r.status?.online.length ?? 0;
  return { size, online, underReplicated: online < size, belowMajority: online < majorityOf(size) };
}

/**
 * `GET /api/health/checks/node-is-quorum-critical`. A Warren node holds no copy of a replicated
 * queue (the engine's servers do), so stopping it never takes a queue below its quorum; what is
 * reported is every replicated queue already below a majority of its copies online, which
 * stopping anything else would leave unavailable for longer. 200 on a single node.
 */
export async function quorumCritical(cluster: ClusterView | undefined): Promise<{ status: number; body: Row }> {
  if (cluster?.replicatedQueues === undefined) return { status: 200, body: { status: 'ok' } };
  const critical = (await cluster.replicatedQueues()).filter((r) => assess(r).belowMajority);
  if (critical.length === 0) return { status: 200, body: { status: 'ok' } };
  return {
    status: 503,
    body: {
      status: 'failed',
      reason: 'There are quorum queues that have lost the majority of their replicas',
      queues: critical.map((r) => ({ name: r.name, readable_name: `queue '${r.name}' in vhost '${r.vhost}'`, virtual_host: r.vhost, type: r.type ?? 'quorum' })),
    },
  };
}

/**
 * A replicated queue's copies, one row each (a Warren addition to RabbitMQ's fields): the engine
 * server, whether it leads, whether it is online, and its lag behind the leader (the stream's
 * entries it has yet to apply).
 */
export function replicaDetails(status: { leader: string | undefined; members: readonly string[]; online: readonly string[]; lag?: readonly number[] } | undefined): Row[] {
  if (status === undefined) return [];
  return status.members.map((server, i) => ({
    server,
    leader: server === status.leader,
    online: status.online.includes(server),
    lag: status.lag?.[i] ?? 0,
  }));
}

/**
 * Adds to the listing's rows of replicated queues their copies (`leader`, `members`, `online`,
 * `replica_details`) and the flags `under_replicated` and `below_majority`.
 */
export async function flagReplicated(cluster: ClusterView | undefined, rows: Row[]): Promise<Row[]> {
  if (cluster?.replicatedQueues === undefined) return rows;
  const reports = await cluster.replicatedQueues();
  if (reports.length === 0) return rows;
  const byKey = new Map<string, ReplicatedQueueReport>();
  for (const r of reports) byKey.set(`${r.vhost}\u0000${r.name}`, r);
  return rows.map((row) => {
    const r = byKey.get(`${String(row['vhost'])}\u0000${String(row['name'])}`);
    if (r === undefined) return row;
    const h = assess(r);
    return {
      ...row,
      type: r.type ?? 'quorum',
      leader: r.status?.leader ?? '',
      members: r.status?.members ?? [],
      online: r.status?.online ?? [],
      replica_details: replicaDetails(r.status),
      under_replicated: h.underReplicated,
      below_majority: h.belowMajority,
    };
  });
}
