import { DeliverPolicy, jetstream, jetstreamManager, JetStreamApiError, type ConsumerMessages, type JetStreamClient } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, NoRespondersError, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  EngineError,
  NoResponderError,
  type BucketOptions,
  type BusHandler,
  type BusSubscription,
  type ClusterBus,
  type ClusterEngine,
  type ClusterKV,
  type EngineInfo,
  type KvEntry,
  type KvWatch,
} from '../engine.js';

/** JetStream's "wrong last sequence": a compare-and-set lost. */
const WRONG_LAST_SEQUENCE = 10071;
/** How often a watch checks that it keeps up with its bucket. */
const WATCH_CHECK_MS = 2000;
/** JetStream is off for the account. */
const JETSTREAM_NOT_ENABLED = 10039;

export interface NatsEngineOptions {
  /** `nats://host:port` URLs of the engine's servers. */
  servers: string[];
  /** The connection's name as the servers show it. */
  name: string;
  /** How long the first connection may take, in ms. */
  connectTimeoutMs?: number;
  /** How long to wait for a JetStream cluster that is still electing its leader, in ms. */
  jetStreamWaitMs?: number;
}

/**
 * Connects to NATS and checks that JetStream is there: without it there is nothing to replicate
 * on, and the node refuses to start (an {@link EngineError} saying so).
 */
export async function connectNats(opts: NatsEngineOptions): Promise<NatsEngine> {
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: opts.servers,
      name: opts.name,
      timeout: opts.connectTimeoutMs ?? 5000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    });
  } catch (e) {
    throw new EngineError(`cannot connect to the cluster engine at ${opts.servers.join(',')}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const info = nc.info;
  try {
    if (info?.jetstream !== true) throw new Error('the server does not offer JetStream');
    const jsm = await jetstreamManager(nc, { timeout: 5000, checkAPI: false });
    // A JetStream cluster that has just started answers only once it has elected its meta leader.
    const deadline = Date.now() + (opts.jetStreamWaitMs ?? 30_000);
    for (;;) {
      try {
        await jsm.getAccountInfo();
        break;
      } catch (e) {
        if (Date.now() > deadline || (e instanceof JetStreamApiError && e.code === JETSTREAM_NOT_ENABLED)) throw e;
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    }
  } catch (e) {
    await nc.close().catch(() => undefined);
    throw new EngineError(
      `NATS server ${info?.server_name ?? '?'} (${info?.version ?? '?'}) at ${opts.servers.join(',')} has no JetStream (${e instanceof Error ? e.message : String(e)}): ` +
        `start nats-server with -js (or a jetstream {} block in its config) to run a Warren cluster`,
    );
  }
  return new NatsEngine(nc);
}

class NatsBus implements ClusterBus {
  constructor(private readonly nc: NatsConnection) {}

  publish(subject: string, data: Uint8Array): void {
    this.nc.publish(subject, data);
  }

  subscribe(subject: string, handler: BusHandler, opts?: { queueGroup?: string }): BusSubscription {
    const sub: Subscription = this.nc.subscribe(subject, {
      queue: opts?.queueGroup,
      callback: (err, msg) => {
        if (err !== null) return;
        const reply = msg.reply;
        handler(msg.data, msg.subject, reply === undefined || reply === '' ? undefined : (data) => void msg.respond(data));
      },
    });
    return { unsubscribe: () => sub.unsubscribe() };
  }

  async request(subject: string, data: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    try {
      const m = await this.nc.request(subject, data, { timeout: timeoutMs });
      return m.data;
    } catch (e) {
      if (e instanceof NoRespondersError || (e instanceof Error && e.cause instanceof NoRespondersError)) throw new NoResponderError(subject);
      throw e;
    }
  }
}

function lostRace(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === WRONG_LAST_SEQUENCE;
}

class NatsKV implements ClusterKV {
  constructor(
    readonly bucket: string,
    private readonly kv: KV,
    private readonly js: JetStreamClient,
  ) {}

  async get(key: string): Promise<KvEntry | undefined> {
    const e = await this.kv.get(key);
    if (e === null || e.operation !== 'PUT') return undefined;
    return { key, value: e.value, revision: e.revision };
  }

  put(key: string, value: Uint8Array): Promise<number> {
    return this.kv.put(key, value);
  }

  async create(key: string, value: Uint8Array): Promise<number | undefined> {
    try {
      return await this.kv.create(key, value);
    } catch (e) {
      if (lostRace(e)) return undefined;
      throw e;
    }
  }

  async compareAndSet(key: string, value: Uint8Array, revision: number): Promise<number | undefined> {
    try {
      return await this.kv.update(key, value, revision);
    } catch (e) {
      if (lostRace(e)) return undefined;
      throw e;
    }
  }

  delete(key: string): Promise<void> {
    return this.kv.delete(key);
  }

  /**
   * An ordered consumer over the bucket's stream, last value per key first. The client's own
   * recovery of a consumer lost with its server (a NATS server of the cluster killed) can take
   * long or stall, so the watch checks itself: every {@link WATCH_CHECK_MS} it compares the
   * stream's last sequence with the last revision it delivered, and when it is behind without
   * progress since the last check, or the stream's sequence went back (a leader that had not
   * caught up), it reads the whole bucket again (every key's last value; applying one twice is
   * harmless).
   */
  async watch(onEntry: (e: KvEntry) => void): Promise<KvWatch> {
    const status = await this.kv.status();
    const prefix = `$KV.${this.bucket}.`;
    let markReady: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (markReady = resolve));
    if (status.values === 0) markReady();
    let stopped = false;
    let current: ConsumerMessages | undefined;
    let seen = 0;
    let seenAtCheck = -1;
    let reopening = false;
    const open = async (): Promise<void> => {
      const consumer = await this.js.consumers.get(`KV_${this.bucket}`, { filter_subjects: `${prefix}>`, deliver_policy: DeliverPolicy.LastPerSubject });
      const msgs = await consumer.consume({ expires: 4000 });
      if (current !== undefined) void current.close().catch(() => undefined);
      current = msgs;
      seen = 0;
      seenAtCheck = -1;
      if (stopped) {
        void msgs.close().catch(() => undefined);
        return;
      }
      void (async () => {
        for await (const m of msgs) {
          if (current !== msgs) break;
          const op = m.headers?.get('KV-Operation') ?? '';
          const gone = op === 'DEL' || op === 'PURGE';
          if (m.seq > seen) seen = m.seq;
          onEntry({ key: m.subject.slice(prefix.length), value: gone ? undefined : m.data, revision: m.seq });
          if (m.info.pending === 0) markReady();
        }
      })().catch(() => undefined);
    };
    await open();
    const check = setInterval(() => {
      if (stopped || reopening) return;
      this.kv.status().then(
        (st) => {
          const last = st.streamInfo.state.last_seq;
          const stalled = last > seen && seen === seenAtCheck;
          seenAtCheck = seen;
          if (!stalled && last >= seen) return;
          reopening = true;
          open().then(
            () => (reopening = false),
            () => (reopening = false),
          );
        },
        () => undefined,
      );
    }, WATCH_CHECK_MS);
    check.unref();
    return {
      ready,
      stop: () => {
        stopped = true;
        clearInterval(check);
        if (current !== undefined) void current.close().catch(() => undefined);
      },
    };
  }
}

/** The cluster engine on a NATS connection: core subjects for the bus, JetStream KV buckets. */
export class NatsEngine implements ClusterEngine {
  readonly bus: ClusterBus;
  readonly info: EngineInfo;
  private readonly kvm: Kvm;
  private readonly js: JetStreamClient;
  private readonly listeners: ((connected: boolean) => void)[] = [];

  constructor(private readonly nc: NatsConnection) {
    this.bus = new NatsBus(nc);
    this.js = jetstream(nc);
    this.kvm = new Kvm(this.js);
    const i = nc.info;
    this.info = {
      serverName: i?.server_name ?? '',
      version: i?.version ?? '0.0.0',
      clusterSize: Math.max(1, new Set([...(i?.connect_urls ?? [])]).size),
    };
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect') for (const l of this.listeners) l(false);
        else if (s.type === 'reconnect') for (const l of this.listeners) l(true);
      }
    })().catch(() => undefined);
  }

  async openKV(name: string, opts: BucketOptions): Promise<ClusterKV> {
    const config = { replicas: opts.replicas, history: 1, ...(opts.ttlMs !== undefined && opts.ttlMs > 0 ? { ttl: opts.ttlMs } : {}) };
    // Nodes starting together race to create a bucket, and a stream just created may not answer
    // at once: a few tries.
    for (let attempt = 1; ; attempt++) {
      try {
        return new NatsKV(name, await this.kvm.create(name, config), this.js);
      } catch (e) {
        if (attempt >= 5) throw e;
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  }

  onStatus(listener: (connected: boolean) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.nc.drain().catch(() => this.nc.close());
  }
}
