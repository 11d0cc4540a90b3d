/**
 * What management shows of a cluster the node belongs to: implemented by the node's cluster
 * membership, absent on a single node.
 */
export interface ClusterView {
  readonly clusterName: string;
  readonly nodeName: string;
  /** The home node of a queue, if the cluster knows one. */
  homeOf(vhost: string, queue: string): string | undefined;
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
