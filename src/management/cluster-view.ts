/** A request to another node, on behalf of a user this node authenticated. */
export interface PeerRequest {
  readonly op: string;
  readonly user: { readonly name: string; readonly tags: readonly string[] };
  readonly vhost?: string | undefined;
  readonly name?: string | undefined;
  readonly reason?: string | undefined;
}

export type PeerReply = { readonly ok: true; readonly body: unknown } | { readonly ok: false; readonly status: number; readonly error: string; readonly reason: string };

/** Asking the other nodes about their own objects, and answering them about ours. */
export interface PeerLink {
  serve(handler: (req: PeerRequest) => Promise<PeerReply>): void;
  /** Every other running node at once: the answers, and the running nodes that did not answer in time. */
  askAll(req: PeerRequest): Promise<{
    readonly answers: ReadonlyArray<{ readonly node: string; readonly reply: PeerReply }>;
    readonly notAnswering: readonly string[];
  }>;
  /** One node; undefined when it does not answer in time. */
  ask(node: string, req: PeerRequest): Promise<PeerReply | undefined>;
}

/**
 * What management shows of a cluster the node belongs to: implemented by the node's cluster
 * membership, absent on a single node.
 */
export interface ClusterView {
  readonly clusterName: string;
  readonly nodeName: string;
  /** The other nodes, for cluster-wide listings (absent: this node's objects only). */
  readonly peers?: PeerLink | undefined;
  /** The home node of a queue, if the cluster knows one. */
  homeOf(vhost: string, queue: string): string | undefined;
  /**
   * Where a replicated queue's copies are (engine servers); undefined for a queue that is not
   * replicated.
   */
  replicationOf?(vhost: string, queue: string): Promise<{ leader: string | undefined; members: string[]; online: string[]; messages: number; lag: readonly number[]; type?: ReplicatedType } | undefined>;
  /**
   * Every replicated queue this node serves with its copies; `status` undefined when the engine
   * did not answer (no leader elected, engine unreachable).
   */
  replicatedQueues?(): Promise<ReplicatedQueueReport[]>;
  nodes(): ReadonlyArray<{
    name: string;
    running: boolean;
    host: string;
    pid: number;
    version: string;
    startedAt: number;
    uptime: number;
    memUsed: number;
    memLimit: number;
    alarms: string[];
    connections: number;
    listeners: ReadonlyArray<{ protocol: string; port: number }>;
  }>;
}

/** What a replicated queue is: a quorum queue (its messages on the engine's log) or a stream. */
export type ReplicatedType = 'quorum' | 'stream';

/** A replicated queue and where its copies are, as the node's engine reports them. */
export interface ReplicatedQueueReport {
  readonly vhost: string;
  readonly name: string;
  /** The replica count it was created with. */
  readonly replicas: number;
  /** A quorum queue (absent: one) or a stream. */
  readonly type?: ReplicatedType;
  readonly status: { leader: string | undefined; members: string[]; online: string[]; messages: number; lag?: readonly number[] } | undefined;
}
