import { pino } from 'pino';
import { afterEach } from 'vitest';
import { joinCluster, type ClusterMembership, type JoinOptions, type MemoryEngine } from '../../src/cluster/index.js';
import { Core, type CoreChannel, type Delivery, type DeliverySink } from '../../src/core/index.js';

/** The logger the in-process cluster tests give their nodes. */
export const silentLog = pino({ level: 'silent' });

/** A delivery sink that keeps what it is given. */
export class RecordingSink implements DeliverySink {
  readonly got: Delivery[] = [];
  congested = false;
  deliver(d: Delivery): void {
    this.got.push(d);
  }
}

/** Channel 1 of a new connection of user guest on vhost `/`. */
export function testChannel(core: Core): CoreChannel {
  const conn = core.connect({ protocol: 'test', peer: { address: '127.0.0.1', port: 1 }, user: 'guest', vhost: '/' }, { forceClose: () => undefined });
  return conn.openChannel(1);
}

/** Joins a core to the cluster on an in-process engine, with the test's timing defaults. */
export type JoinNode = (engine: MemoryEngine, name: string, core?: Core, extra?: Partial<JoinOptions>) => Promise<ClusterMembership>;

export interface MemoryNodes {
  readonly join: JoinNode;
  /** A node the test stopped itself: not stopped again after the test. */
  forget(m: ClusterMembership): void;
}

/**
 * Nodes of one cluster on in-process engines, with short heartbeats. After each test every node
 * joined is stopped, and then each engine they were joined on.
 */
export function memoryNodes(cluster: string, defaults: Partial<JoinOptions> = {}): MemoryNodes {
  const members: ClusterMembership[] = [];
  const engines = new Set<MemoryEngine>();
  afterEach(async () => {
    for (const m of members.splice(0)) await m.stop();
    for (const e of engines) e.stop();
    engines.clear();
  });
  const join: JoinNode = async (engine, name, core = new Core(), extra = {}) => {
    engines.add(engine);
    const m = await joinCluster({
      cluster, nodeName: name, urls: [], version: '0.0.0', core, log: silentLog, engine: engine.connect(name), heartbeatMs: 20, ttlMs: 200, ...defaults, ...extra,
    });
    members.push(m);
    return m;
  };
  return {
    join,
    forget: (m) => {
      const i = members.indexOf(m);
      if (i >= 0) members.splice(i, 1);
    },
  };
}
