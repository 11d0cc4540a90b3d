import type { Core } from '../core/index.js';
import type { Logger } from '../logger.js';
import { DefinitionsSync } from './definitions-sync.js';
import type { ClusterEngine, EngineInfo, LogStatus } from './engine.js';
import { NodeRegistry, type ClusterNodeInfo, type NodeListener } from './node-registry.js';
import { QueueForwarding } from './queue-forwarding.js';
import { RemoteConsumers, type RemoteConsumerOptions } from './remote-consumers.js';
import { ReplicatedQueues } from './replicated-queues.js';
import { ReplicatedStreams } from './replicated-streams.js';
import { ClusterPeers } from './ops.js';
import { TransientRouting } from './transient-routing.js';
import { DirectReplies } from './direct-reply.js';
import { TransientQueues } from './transient-queues.js';

export { EngineError, LogFullError, NoResponderError } from './engine.js';
export type { ClusterBus, ClusterEngine, ClusterKV, KvEntry, LogMessage, LogOptions, LogStatus, ReplicatedLog } from './engine.js';
export { MemoryEngine } from './memory-engine.js';
export { DefinitionsSync, bucketKey } from './definitions-sync.js';
export { QueueForwarding, DEFAULT_FORWARD_MAX_IN_FLIGHT_BYTES, DEFAULT_FORWARD_TIMEOUT_MS } from './queue-forwarding.js';
export { TransientRouting, encodeKey, encodeToken, interestSubjects } from './transient-routing.js';
export { DirectReplies } from './direct-reply.js';
export { TransientQueues, transientQueueKey } from './transient-queues.js';
export { RemoteConsumers, type RemoteConsumerOptions } from './remote-consumers.js';
export { ReplicatedQueues, DEFAULT_ACK_WAIT_MS } from './replicated-queues.js';
export { ReplicatedStreams, DEFAULT_STREAM_REPLICAS } from './replicated-streams.js';
export { ClusterPeers, type PeerAnswers, type PeerReply, type PeerRequest } from './ops.js';
export { NodeRegistry, NodeNameTaken, type ClusterNodeInfo, type NodeListener } from './node-registry.js';

export interface JoinOptions {
  /** The cluster's name: its buckets are named after it, so several clusters can share an engine. */
  cluster: string;
  nodeName: string;
  /** `nats://host:port` URLs; ignored when `engine` is given. */
  urls: string[];
  version: string;
  core: Core;
  log: Logger;
  /** An engine connection to use instead of connecting to `urls` (tests). */
  engine?: ClusterEngine;
  heartbeatMs?: number;
  ttlMs?: number;
  /** How long a publish forwarded to a queue's home node waits for its answer. */
  forwardTimeoutMs?: number;
  /** Bytes forwarded to one home node and not answered yet above which this node's publishers are held. */
  forwardMaxInFlightBytes?: number;
  /** Pings and silences of remote consumers (defaults: ping every second, a home gone after 3 misses, a node silent for 5 s). */
  remoteConsumers?: RemoteConsumerOptions;
  /** A replicated queue's message held by a node that stops answering is redelivered after this long. */
  ackWaitMs?: number;
}

/** A node's membership: the registry, the replicated definitions, the engine connection. */
export interface ClusterMembership {
  readonly clusterName: string;
  readonly nodeName: string;
  readonly engine: ClusterEngine;
  readonly definitions: DefinitionsSync;
  readonly registry: NodeRegistry;
  readonly forwarding: QueueForwarding;
  /** Publishes to this node's transient subscribers from every node, and from here to theirs. */
  readonly transient: TransientRouting;
  /** Direct replies to requesters on other nodes, and from other nodes to this node's. */
  readonly replies: DirectReplies;
  /** This node's non-exclusive transient queues announced to the others, and stand-ins for theirs. */
  readonly transientQueues: TransientQueues;
  /** Consumers here of queues homed elsewhere, and proxies here for consumers elsewhere. */
  readonly remoteConsumers: RemoteConsumers;
  /** The replicated queues (quorum queues, `ha-mode` policies) on the engine's logs. */
  readonly replicated: ReplicatedQueues;
  /** The stream queues, each on a replicated stream of the engine with a local read cache. */
  readonly streams: ReplicatedStreams;
  /** Requests to other nodes about their own objects (cluster-wide management listings). */
  readonly peers: ClusterPeers;
  /** Every node that has joined, running or not. */
  nodes(): ClusterNodeInfo[];
  /** The home node of a queue (where it was declared), if it is replicated. */
  homeOf(vhost: string, queue: string): string | undefined;
  /** A replicated queue's or stream's copies on the engine's servers; undefined for other queues. */
  replicationOf(vhost: string, queue: string): Promise<{ leader: string | undefined; members: string[]; online: string[]; messages: number; lag: readonly number[]; type?: ReplicatedType } | undefined>;
  /** Every replicated queue and stream on this node with its copies (`status` undefined: the engine did not answer). */
  replicatedQueues(): Promise<ReplicatedReport[]>;
  /** Records the bound listeners in the registry. */
  setListeners(listeners: NodeListener[]): Promise<void>;
  /** Leaves: the heartbeat goes (the others list this node as not running), the connection closes. */
  stop(): Promise<void>;
}

/** What a replicated queue is: a quorum queue (its messages on the engine's log) or a stream. */
export type ReplicatedType = 'quorum' | 'stream';

/** A replicated queue or stream and where its copies are (`type` absent: a quorum queue). */
export interface ReplicatedReport {
  readonly vhost: string;
  readonly name: string;
  readonly replicas: number;
  readonly type?: ReplicatedType;
  readonly status: LogStatus | undefined;
}

export const DEFAULT_HEARTBEAT_MS = 1000;
export const DEFAULT_NODE_TTL_MS = 5000;

/** nats-server 2.10 added `sync_interval`; before it, acknowledged writes may sit unsynced for minutes. */
export function durabilityWarning(info: EngineInfo): string | undefined {
  const m = /^(\d+)\.(\d+)/.exec(info.version);
  if (m === null) return undefined;
  const major = Number(m[1]);
  const minor = Number(m[2]);
  if (major > 2 || (major === 2 && minor >= 10)) return undefined;
  return (
    `NATS server ${info.serverName} is ${info.version}: before 2.10 JetStream has no sync_interval, so an acknowledged write ` +
    `may not be on disk yet and a power loss on a majority of servers loses it. Fine for development; in production use ` +
    `nats-server >= 2.10 (better >= 2.12.3) with 'jetstream { sync_interval: always }'`
  );
}

/**
 * Joins a cluster: connects to the engine (refusing one without JetStream), takes the node name
 * in the registry, and brings the node's definitions in step with the cluster's. Call before the
 * listeners open; {@link ClusterMembership.setListeners} once they are bound.
 */
export async function joinCluster(opts: JoinOptions): Promise<ClusterMembership> {
  const { log } = opts;
  let engine = opts.engine;
  if (engine === undefined) {
    const { connectNats } = await import('./nats/nats-engine.js');
    engine = await connectNats({ servers: opts.urls, name: `warren ${opts.cluster}/${opts.nodeName}` });
  }
  const info = engine.info;
  log.info({ cluster: opts.cluster, node: opts.nodeName, server: info.serverName, version: info.version, servers: info.clusterSize }, 'cluster: connected to the engine');
  const warning = durabilityWarning(info);
  if (warning !== undefined) log.warn(`cluster: WARNING: ${warning}`);
  else log.info("cluster: acknowledgements are durable only with the NATS servers' 'jetstream { sync_interval: always }'");
  const replicas = info.clusterSize >= 3 ? 3 : 1;
  const ttlMs = opts.ttlMs ?? DEFAULT_NODE_TTL_MS;
  const prefix = `warren_${opts.cluster}`;
  try {
    const [defsKv, nodesKv, aliveKv, interestKv, transientKv] = await Promise.all([
      engine.openKV(`${prefix}_definitions`, { replicas }),
      engine.openKV(`${prefix}_nodes`, { replicas }),
      engine.openKV(`${prefix}_alive`, { replicas, ttlMs }),
      engine.openKV(`${prefix}_interest`, { replicas }),
      engine.openKV(`${prefix}_transient`, { replicas }),
    ]);
    const registry = new NodeRegistry(opts.core, nodesKv, aliveKv, opts.nodeName, opts.version, { heartbeatMs: opts.heartbeatMs ?? DEFAULT_HEARTBEAT_MS, ttlMs }, log);
    await registry.start();
    const forwarding = new QueueForwarding(opts.core, engine.bus, opts.cluster, opts.nodeName, log, opts.forwardTimeoutMs, opts.forwardMaxInFlightBytes);
    forwarding.start();
    forwarding.homeRunning = (node) => registry.isRunning(node);
    const remoteConsumers = new RemoteConsumers(opts.core, engine.bus, opts.cluster, opts.nodeName, log, opts.remoteConsumers);
    remoteConsumers.start();
    const definitions = new DefinitionsSync(opts.core, opts.core.persistence, defsKv, opts.nodeName, log);
    const replicated = new ReplicatedQueues(opts.core, engine, opts.cluster, opts.nodeName, log, opts.ackWaitMs);
    replicated.others = () => registry.nodes().filter((n) => n.running && n.name !== opts.nodeName).map((n) => n.name);
    replicated.start();
    replicated.unplace = (q) => {
      forwarding.place(q, undefined);
      remoteConsumers.place(q, undefined);
    };
    const streams = new ReplicatedStreams(opts.core, engine, opts.cluster, opts.nodeName, log);
    definitions.placement = (q, home) => {
      if (replicated.attach(q)) return replicated.ready(q);
      if (streams.attach(q)) return streams.ready(q);
      forwarding.place(q, home);
      remoteConsumers.place(q, home);
      return undefined;
    };
    definitions.queueRemoved = (vhost, name) => {
      replicated.removed(vhost, name);
      streams.removed(vhost, name);
    };
    // A queue made replicated by a policy since removed is still served from its log.
    await replicated.findLogs();
    await definitions.start();
    // A policy with 'ha-mode' set or changed makes the durable classic queues it matches replicated.
    const policiesChanged = opts.core.policies.onChange;
    opts.core.policies.onChange = () => {
      policiesChanged?.();
      replicated.policiesChanged();
    };
    // Queues this node recovered from its own store that the cluster had already: replicated ones
    // are served from their logs.
    for (const vh of opts.core.vhosts.values()) for (const q of vh.queues.values()) if (!replicated.attach(q)) streams.attach(q);
    replicated.placed();
    const transientQueues = new TransientQueues(
      opts.core,
      transientKv,
      opts.nodeName,
      log,
      (q, home) => {
        forwarding.place(q, home);
        remoteConsumers.place(q, home);
      },
      (node) => registry.isRunning(node),
    );
    await transientQueues.start();
    const transient = new TransientRouting(opts.core, engine.bus, opts.cluster, opts.nodeName, log, interestKv);
    transient.shared = transientQueues;
    await transient.start();
    const replies = new DirectReplies(opts.core, engine.bus, opts.cluster, opts.nodeName, log, (node) => registry.isRunning(node));
    replies.start();
    const joined = engine;
    const peers = new ClusterPeers(engine.bus, opts.cluster, opts.nodeName, () => registry.nodes(), log);
    engine.onStatus((connected) => {
      if (connected) log.info('cluster: connection to the engine back');
      else log.warn('cluster: connection to the engine lost: definition changes fail until it is back');
    });
    log.info({ cluster: opts.cluster, node: opts.nodeName, replicas, definitions: definitions.size }, 'cluster: joined');
    let stopping: Promise<void> | undefined;
    return {
      clusterName: opts.cluster,
      nodeName: opts.nodeName,
      engine,
      definitions,
      registry,
      forwarding,
      transient,
      replies,
      transientQueues,
      remoteConsumers,
      replicated,
      streams,
      peers,
      nodes: () => registry.nodes(),
      homeOf: (vhost, queue) => definitions.homeOf(vhost, queue) ?? transientQueues.homeOf(vhost, queue),
      replicationOf: async (vhost, queue) => {
        const q = opts.core.vhosts.get(vhost)?.queues.get(queue);
        if (q === undefined) return undefined;
        if (streams.has(q)) {
          const st = await streams.status(q);
          return st === undefined ? undefined : { ...st, type: 'stream' as const };
        }
        return replicated.status(q);
      },
      replicatedQueues: async () => {
        const [queues, streamed] = await Promise.all([replicated.report(), streams.report()]);
        return [...queues, ...streamed.map((r) => ({ ...r, type: 'stream' as const }))];
      },
      setListeners: (l) => registry.setListeners(l),
      stop: () =>
        (stopping ??= (async () => {
          peers.stop();
          replies.stop();
          await transientQueues.stop();
          await transient.stop();
          definitions.stop();
          opts.core.policies.onChange = policiesChanged;
          replicated.stop();
          streams.stop();
          forwarding.stop();
          remoteConsumers.stop();
          await registry.stop();
          await joined.close();
        })()),
    };
  } catch (e) {
    if (opts.engine === undefined) await engine.close().catch(() => undefined);
    throw e;
  }
}
