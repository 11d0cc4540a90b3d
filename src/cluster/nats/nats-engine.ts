import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstream,
  jetstreamManager,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type StreamInfo,
} from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { connect, createInbox, headers, nanos, NoRespondersError, type Msg, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import {
  EngineError,
  LogFullError,
  NoResponderError,
  scaledReplicas,
  unknownSubjectPauseMs,
  type BucketOptions,
  type BusHandler,
  type BusSubscription,
  type ClusterBus,
  type ClusterEngine,
  type ClusterKV,
  type EngineInfo,
  type KvEntry,
  type KvWatch,
  type LogMessage,
  type LogOptions,
  type LogStatus,
  type ReplicatedLog,
  type ReplicatedStream,
  type StreamBounds,
  type StreamEntry,
  type StreamFollow,
  type StreamLogOptions,
} from '../engine.js';

/** JetStream's "wrong last sequence": a compare-and-set lost. */
const WRONG_LAST_SEQUENCE = 10071;
/** How often a watch checks that it keeps up with its bucket. */
const WATCH_CHECK_MS = 2000;
/** How often the connection pings its server. */
const PING_INTERVAL_MS = 4000;
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
      // A server cut off by a partition answers nothing: noticed after a few missed pings (the
      // client's default takes minutes), then the client moves to a server it can reach.
      pingInterval: PING_INTERVAL_MS,
      maxPingOut: 3,
      // Otherwise every request (each append to a log or stream) builds two errors up front for
      // their stack traces, in case it fails: about a fifth of a publishing node's CPU. Failures
      // are reported with the same error types, without the caller's stack.
      noAsyncTraces: true,
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
      if (noResponders(e)) throw new NoResponderError(subject);
      throw e;
    }
  }
}

/** Whether `e`, or an error it wraps, says that nobody listens on the subject. */
function noResponders(e: unknown): boolean {
  for (let c = e, depth = 0; c instanceof Error && depth < 4; c = c.cause, depth++) {
    if (c instanceof NoRespondersError) return true;
  }
  return false;
}

/**
 * Tries of a write to a bucket that nothing answers for (about 6 s in all: a NATS server that has
 * just restarted can take longer than a second and a half to learn the cluster's streams).
 */
const UNKNOWN_BUCKET_ATTEMPTS = 12;

/**
 * A write to a bucket, tried again for a few seconds while nothing answers on its subject: a
 * NATS server that has just restarted (or joined) takes clients before it knows the cluster's
 * streams, and a write it passes on reaches nobody. Nothing was written, so trying again is safe.
 */
async function whenKnown<T>(write: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await write();
    } catch (e) {
      if (attempt >= UNKNOWN_BUCKET_ATTEMPTS || !(noResponders(e) || (e instanceof Error && e.name === 'JetStreamNotEnabled'))) throw e;
      await new Promise((resolve) => setTimeout(resolve, unknownSubjectPauseMs(attempt)));
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
    return whenKnown(() => this.kv.put(key, value));
  }

  async create(key: string, value: Uint8Array): Promise<number | undefined> {
    try {
      return await whenKnown(() => this.kv.create(key, value));
    } catch (e) {
      if (lostRace(e)) return undefined;
      throw e;
    }
  }

  async compareAndSet(key: string, value: Uint8Array, revision: number): Promise<number | undefined> {
    try {
      return await whenKnown(() => this.kv.update(key, value, revision));
    } catch (e) {
      if (lostRace(e)) return undefined;
      throw e;
    }
  }

  delete(key: string): Promise<void> {
    return whenKnown(() => this.kv.delete(key));
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

/** The durable consumer every node shares. */
const SHARED_CONSUMER = 'shared';
/**
 * A pull that does not wait still asks the server to end it after this long, for the case where
 * a `no_wait` pull gets no status answer at once (messages stored but none due).
 */
const PULL_EXPIRES_MS = 250;
/** How long a pull waits for the server's answer past its expiry before giving up on it. */
const PULL_TIMEOUT_MS = 3000;
/**
 * A pull that may wait this long or more asks the server for a heartbeat every
 * {@link PULL_HEARTBEAT_MS} while it holds the request; after {@link PULL_HEARTBEATS_MISSED}
 * missed ones the request is taken as lost on the server (seen with consumers just created on a
 * loaded cluster) and the pull ends, so that the next one is asked at once.
 */
const PULL_HEARTBEAT_MS = 1000;
const PULL_HEARTBEATS_MISSED = 3;
/** The status of a heartbeat on a waiting pull. */
const STATUS_HEARTBEAT = 100;
const ACK = new TextEncoder().encode('+ACK');
const WORKING = new TextEncoder().encode('+WPI');
const NAK = new TextEncoder().encode('-NAK');
const ENC = new TextEncoder();

/**
 * The stream, delivery count and stream sequence from an ack subject:
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (9 tokens), or the
 * newer form with domain and account hash after `$JS.ACK` (12 or more tokens).
 */
function parseAckSubject(reply: string): { stream: string; deliveries: number; seq: number; appendedAt: number } | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const at = t.length === 9 ? 4 : t.length >= 11 ? 6 : -1;
  if (at < 0) return undefined;
  const deliveries = Number(t[at]);
  const seq = Number(t[at + 1]);
  // The stream's timestamp, in nanoseconds.
  const appendedAt = Math.floor(Number(t[at + 3]) / 1e6);
  return Number.isFinite(deliveries) && Number.isFinite(seq) ? { stream: t[at - 2]!, deliveries, seq, appendedAt: Number.isFinite(appendedAt) ? appendedAt : Date.now() } : undefined;
}

/** How long an append waits for the engine's acknowledgement (as the client library's requests). */
const APPEND_TIMEOUT_MS = 5000;
/** How often appends past {@link APPEND_TIMEOUT_MS} are failed. */
const APPEND_SWEEP_MS = 250;
/** The status the server answers a request with when nothing listens on its subject. */
const STATUS_NO_RESPONDERS = 503;
const SEQ_KEY = Buffer.from('"seq":');
const ERROR_KEY = Buffer.from('"error"');
/** How JetStream describes an append refused over a stream's limit (discard new). */
const STREAM_FULL = ['maximum messages exceeded', 'maximum bytes exceeded'];
const DEC = new TextDecoder();

/** An append waiting for the engine's acknowledgement. */
class PendingAppend {
  constructor(
    readonly at: number,
    readonly subject: string,
    readonly resolve: (seq: number) => void,
    readonly reject: (e: Error) => void,
  ) {}
}

/**
 * Appends to JetStream streams, acknowledged on one subscription on a wildcard inbox (each append
 * its own subject under it). The client library's request makes a timer and, whatever the
 * outcome, an error object with its stack per request; on a publishing node that was a quarter of
 * its CPU. Here an append is a publish with its message id header, its acknowledgement is read for
 * its sequence without a JSON parse, and appends not acknowledged in time fail together on a
 * sweep (the caller retries them with the same message id, which the stream deduplicates).
 */
class AppendInbox {
  private readonly prefix = createInbox();
  private readonly pending = new Map<string, PendingAppend>();
  private next = 0;
  private readonly sweeper: NodeJS.Timeout;
  private capturedResolve: ((seq: number) => void) | undefined = undefined;
  private capturedReject: ((e: Error) => void) | undefined = undefined;
  private readonly capture = (resolve: (seq: number) => void, reject: (e: Error) => void): void => {
    this.capturedResolve = resolve;
    this.capturedReject = reject;
  };

  constructor(private readonly nc: NatsConnection) {
    nc.subscribe(`${this.prefix}.*`, { callback: (err, m) => this.received(err, m) });
    this.sweeper = setInterval(() => this.sweep(), APPEND_SWEEP_MS);
    this.sweeper.unref();
    void nc.closed().then(() => {
      clearInterval(this.sweeper);
      this.failAll(new EngineError('the connection to the cluster engine closed'));
    });
  }

  append(subject: string, data: Uint8Array, msgId: string): Promise<number> {
    if (this.nc.isClosed()) return Promise.reject(new EngineError('the connection to the cluster engine closed'));
    const p = new Promise<number>(this.capture);
    const id = (this.next++).toString(36);
    this.pending.set(id, new PendingAppend(Date.now(), subject, this.capturedResolve!, this.capturedReject!));
    const h = headers();
    h.set('Nats-Msg-Id', msgId);
    this.nc.publish(subject, data, { reply: `${this.prefix}.${id}`, headers: h });
    return p;
  }

  private received(err: Error | null, m: Msg): void {
    if (err !== null) return this.failAll(err);
    const id = m.subject.slice(this.prefix.length + 1);
    const a = this.pending.get(id);
    // Answered after it timed out: its retry (same message id) has its own answer.
    if (a === undefined) return;
    this.pending.delete(id);
    const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
    if (data.length === 0) {
      if (m.headers?.code === STATUS_NO_RESPONDERS) return a.reject(new NoResponderError(a.subject));
      return a.reject(new EngineError(`append to ${a.subject}: status ${m.headers?.code ?? 0} ${m.headers?.description ?? ''}`));
    }
    if (data.indexOf(ERROR_KEY) >= 0) {
      const text = DEC.decode(data);
      return a.reject(STREAM_FULL.some((f) => text.includes(f)) ? new LogFullError(`${a.subject} is full`) : new EngineError(`append to ${a.subject}: ${text}`));
    }
    const at = data.indexOf(SEQ_KEY);
    let seq = 0;
    let i = at + SEQ_KEY.length;
    for (; at >= 0 && i < data.length; i++) {
      const c = data[i]!;
      if (c < 48 || c > 57) break;
      seq = seq * 10 + (c - 48);
    }
    if (at < 0 || i === at + SEQ_KEY.length) return a.reject(new EngineError(`append to ${a.subject}: unexpected answer ${DEC.decode(data)}`));
    a.resolve(seq);
  }

  private sweep(): void {
    const before = Date.now() - APPEND_TIMEOUT_MS;
    // Appends are in the map in the order they were made, so the old ones are first.
    for (const [id, a] of this.pending) {
      if (a.at > before) break;
      this.pending.delete(id);
      a.reject(new EngineError(`append to ${a.subject}: no acknowledgement within ${APPEND_TIMEOUT_MS} ms`));
    }
  }

  private failAll(e: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const a of all) a.reject(e);
  }
}

/** One pull in flight: what it asked for, what came, and its timers. */
class PullRequest {
  readonly out: LogMessage[] = [];
  timer: NodeJS.Timeout | undefined = undefined;
  watchdog: NodeJS.Timeout | undefined = undefined;

  constructor(
    readonly id: string,
    readonly max: number,
    readonly log: NatsLog,
    readonly resolve: (msgs: LogMessage[]) => void,
  ) {}
}

/**
 * Where the answers to every pull of a connection arrive: one subscription on a wildcard inbox,
 * each pull its own subject under it. A pull costs the request alone: no subscription made and
 * removed (which the NATS servers of a cluster pass to each other) per pull. The server ends a
 * pull with a status on the pull's own subject; the messages it hands out come with their own
 * subject, so they are matched to a pull of their log by the stream in their ack subject: to the
 * oldest one in flight, as the server serves a log's pulls in the order they came (so a node
 * takes a log's messages in the order they were handed out). A message that comes when its log
 * has no pull waiting (the pull's timer gave up on it before the server did) goes back to the log
 * at once, for any node, instead of waiting out the ack wait.
 */
class PullInbox {
  private readonly prefix = createInbox();
  private readonly byId = new Map<string, PullRequest>();
  /** Each log's pulls in flight, oldest first. */
  private readonly byLog = new Map<string, PullRequest[]>();
  private next = 0;

  constructor(private readonly nc: NatsConnection) {
    nc.subscribe(`${this.prefix}.*`, { callback: (err, m) => this.received(err, m) });
  }

  request(log: NatsLog, subject: string, max: number, waitMs: number, resolve: (msgs: LogMessage[]) => void): void {
    const id = (this.next++).toString(36);
    const r = new PullRequest(id, max, log, resolve);
    this.byId.set(id, r);
    const queue = this.byLog.get(log.name);
    if (queue === undefined) this.byLog.set(log.name, [r]);
    else queue.push(r);
    const expires = waitMs > 0 ? waitMs : PULL_EXPIRES_MS;
    r.timer = setTimeout(endPull, expires + PULL_TIMEOUT_MS, this, r);
    const heartbeat = expires >= 2 * PULL_HEARTBEAT_MS;
    if (heartbeat) r.watchdog = setTimeout(endPull, PULL_HEARTBEAT_MS * PULL_HEARTBEATS_MISSED, this, r);
    const body = heartbeat
      ? { batch: max, no_wait: true, expires: nanos(expires), idle_heartbeat: nanos(PULL_HEARTBEAT_MS) }
      : { batch: max, no_wait: true, expires: nanos(expires) };
    this.nc.publish(subject, ENC.encode(JSON.stringify(body)), { reply: `${this.prefix}.${id}` });
  }

  end(r: PullRequest): void {
    if (this.byId.get(r.id) !== r) return;
    this.byId.delete(r.id);
    const queue = this.byLog.get(r.log.name);
    if (queue !== undefined) {
      const at = queue.indexOf(r);
      if (at >= 0) queue.splice(at, 1);
      if (queue.length === 0) this.byLog.delete(r.log.name);
    }
    if (r.timer !== undefined) clearTimeout(r.timer);
    if (r.watchdog !== undefined) clearTimeout(r.watchdog);
    r.resolve(r.out);
  }

  /** Every pull in flight ends with what it has (the connection moved to another server, or closed). */
  endAll(): void {
    for (const r of [...this.byId.values()]) this.end(r);
  }

  private received(err: Error | null, m: Msg): void {
    if (err !== null) return this.endAll();
    const reply = m.reply;
    if (reply === undefined || reply === '') {
      // A status on a pull's own subject: a heartbeat, or the end (404 no messages, 408 fewer than asked).
      const r = this.byId.get(m.subject.slice(this.prefix.length + 1));
      if (r === undefined) return;
      r.watchdog?.refresh();
      if (m.headers?.code !== STATUS_HEARTBEAT) this.end(r);
      return;
    }
    const info = parseAckSubject(reply);
    if (info === undefined) return;
    const r = this.byLog.get(info.stream)?.[0];
    if (r === undefined) {
      if (!this.nc.isClosed()) this.nc.publish(reply, NAK);
      return;
    }
    r.watchdog?.refresh();
    r.log.delivered(info.seq, reply);
    r.out.push({ seq: info.seq, data: m.data, deliveries: info.deliveries, appendedAt: info.appendedAt });
    if (r.out.length >= r.max) this.end(r);
  }
}

function endPull(inbox: PullInbox, r: PullRequest): void {
  inbox.end(r);
}

/**
 * A replicated log as a JetStream stream (work-queue retention, file storage) with one durable
 * pull consumer shared by every node. Pulls are `no_wait` requests with an expiry: the server
 * answers at once with what is there, and when nothing is, it holds the request until the first
 * message comes (then ends it with a status) or the expiry passes (a long poll). The request ends
 * on the server before the puller stops listening, and what still comes for a pull that ended goes
 * back at once (see {@link PullInbox}); a pull in flight when the connection moves to another
 * server ends at once (that server does not know the request), and one whose heartbeats stop (the
 * request was lost on the server) ends after a few seconds. Appends go through {@link AppendInbox}.
 * Acks go to the ack subject of the delivery, kept per sequence by the connection that pulled it.
 */
class NatsLog implements ReplicatedLog {
  private readonly replies = new Map<number, string>();
  private readonly subject: string;
  private readonly next: string;

  constructor(
    readonly name: string,
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly serverName: string,
    private readonly inbox: PullInbox,
    private readonly appends: AppendInbox,
    private readonly info: EngineInfo,
  ) {
    this.subject = logSubject(name);
    this.next = `$JS.API.CONSUMER.MSG.NEXT.${name}.${SHARED_CONSUMER}`;
  }

  async append(data: Uint8Array, opts: { msgId: string; expectedSeq?: number }): Promise<number> {
    if (opts.expectedSeq === undefined) return this.appends.append(this.subject, data, opts.msgId);
    try {
      const ack = await this.js.publish(this.subject, data, {
        msgID: opts.msgId,
        ...(opts.expectedSeq !== undefined ? { expect: { lastSequence: opts.expectedSeq } } : {}),
      });
      return ack.seq;
    } catch (e) {
      // A stream created through another server a moment ago: this server may not know its
      // subject yet (the client library reports it as JetStream not being enabled).
      if (noResponders(e)) throw new NoResponderError(this.subject);
      throw e;
    }
  }

  pull(max: number, waitMs = 0): Promise<LogMessage[]> {
    return new Promise<LogMessage[]>((resolve) => this.inbox.request(this, this.next, max, waitMs, resolve));
  }

  /** @internal a message a pull of this log received, and the subject its ack goes to. */
  delivered(seq: number, reply: string): void {
    this.replies.set(seq, reply);
  }

  private take(seq: number): string | undefined {
    const r = this.replies.get(seq);
    if (r !== undefined) this.replies.delete(seq);
    return r;
  }

  ack(seq: number): void {
    const r = this.take(seq);
    if (r !== undefined && !this.nc.isClosed()) this.nc.publish(r, ACK);
  }

  nak(seq: number, delayMs = 0): void {
    const r = this.take(seq);
    if (r === undefined || this.nc.isClosed()) return;
    this.nc.publish(r, delayMs > 0 ? ENC.encode(`-NAK ${JSON.stringify({ delay: nanos(delayMs) })}`) : NAK);
  }

  inProgress(seq: number): void {
    const r = this.replies.get(seq);
    if (r !== undefined && !this.nc.isClosed()) this.nc.publish(r, WORKING);
  }

  status(): Promise<LogStatus> {
    return replicationStatus(this.jsm, this.name, this.serverName);
  }

  async ready(): Promise<number> {
    const [si, ci] = await Promise.all([this.jsm.streams.info(this.name), this.jsm.consumers.info(this.name, SHARED_CONSUMER)]);
    return Math.max(0, si.state.messages - ci.num_ack_pending);
  }

  async setReplicas(replicas: number): Promise<void> {
    const si = await this.jsm.streams.info(this.name);
    const want = scaledReplicas(si.config.num_replicas, replicas, this.info.clusterSize);
    // The consumer follows its stream's replicas (it was made without a count of its own).
    if (want !== si.config.num_replicas) await this.jsm.streams.update(this.name, { ...si.config, num_replicas: want });
  }

  async destroy(): Promise<void> {
    try {
      await this.jsm.streams.delete(this.name);
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === STREAM_NOT_FOUND)) throw e;
    }
  }
}

/** Where a JetStream stream's replicas are: its leader first, then the others; online = up and current. */
async function replicationStatus(jsm: JetStreamManager, name: string, serverName: string): Promise<LogStatus> {
  const si = await jsm.streams.info(name);
  const c = si.cluster;
  // A server outside a cluster reports no leader: it holds the only copy.
  const leader = c?.leader !== undefined && c.leader !== '' ? c.leader : (c?.replicas ?? []).length === 0 ? (c?.name ?? serverName) : undefined;
  const members: string[] = [];
  const online: string[] = [];
  const lag: number[] = [];
  if (leader !== undefined) {
    members.push(leader);
    online.push(leader);
    lag.push(0);
  }
  for (const r of c?.replicas ?? []) {
    members.push(r.name);
    lag.push(typeof r.lag === 'number' && r.lag > 0 ? r.lag : 0);
    if (r.offline !== true && r.current) online.push(r.name);
  }
  return { leader, members, online, messages: si.state.messages, lag };
}

/** After a follow ended without being stopped (its stream not there yet, an error): the next try. */
const FOLLOW_RETRY_MS = 1000;
/**
 * A follow that received nothing for this long asks the stream whether it has more: if it does,
 * the consumer is made again from the next sequence (an ordered consumer has been seen to stay
 * silent after its server restarted).
 */
const FOLLOW_WATCH_MS = 3000;

function streamSubject(name: string): string {
  return `warren_stream.${name}`;
}

/**
 * A replicated stream as a JetStream stream with limits retention (file storage). Each follower
 * is an ordered consumer of the client library: a flow-controlled push consumer that the
 * library recreates from the last sequence it delivered when it misses a message, the
 * connection moves or the server loses it, so the follower sees every sequence once, in order.
 */
class NatsStream implements ReplicatedStream {
  private readonly subject: string;

  constructor(
    readonly name: string,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly serverName: string,
    private readonly appends: AppendInbox,
  ) {
    this.subject = streamSubject(name);
  }

  append(data: Uint8Array, opts: { msgId: string }): Promise<number> {
    return this.appends.append(this.subject, data, opts.msgId);
  }

  async bounds(): Promise<StreamBounds> {
    const st = (await this.jsm.streams.info(this.name)).state;
    return { first: st.messages === 0 ? st.last_seq + 1 : st.first_seq, last: st.last_seq };
  }

  status(): Promise<LogStatus> {
    return replicationStatus(this.jsm, this.name, this.serverName);
  }

  follow(fromSeq: number, onEntry: (e: StreamEntry) => void): StreamFollow {
    let next = fromSeq;
    let stopped = false;
    let messages: ConsumerMessages | undefined;
    let timer: NodeJS.Timeout | undefined;
    let received = 0;
    let checked = -1;
    const watch = setInterval(() => {
      if (stopped || messages === undefined) return;
      if (received !== checked) {
        checked = received;
        return;
      }
      const silent = messages;
      this.bounds().then(
        (b) => {
          if (!stopped && received === checked && b.last >= next && messages === silent) silent.stop();
        },
        () => undefined,
      );
    }, FOLLOW_WATCH_MS);
    watch.unref();
    const run = async (): Promise<void> => {
      try {
        const c = await this.js.consumers.get(this.name, { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, next) });
        if (stopped) return;
        messages = await c.consume();
        if (stopped) {
          messages.stop();
          return;
        }
        for await (const m of messages) {
          if (stopped) break;
          received++;
          if (m.seq < next) continue;
          next = m.seq + 1;
          onEntry({ seq: m.seq, data: m.data });
        }
      } catch {
        // the stream is not known there yet, or the consumer could not be made: tried again
      }
      if (stopped) return;
      timer = setTimeout(() => void run(), FOLLOW_RETRY_MS);
      timer.unref();
    };
    void run();
    return {
      stop: () => {
        stopped = true;
        clearInterval(watch);
        if (timer !== undefined) clearTimeout(timer);
        messages?.stop();
      },
    };
  }

  async destroy(): Promise<void> {
    try {
      await this.jsm.streams.delete(this.name);
    } catch (e) {
      if (!(e instanceof JetStreamApiError && e.code === STREAM_NOT_FOUND)) throw e;
    }
  }
}

const STREAM_NOT_FOUND = 10059;
const CONSUMER_NOT_FOUND = 10014;

/** A stream's info; undefined when there is no such stream. */
function streamInfo(jsm: JetStreamManager, name: string): Promise<StreamInfo | undefined> {
  return jsm.streams.info(name).catch((e: unknown) => {
    if (e instanceof JetStreamApiError && e.code === STREAM_NOT_FOUND) return undefined;
    throw e;
  });
}

/** Nodes opening the same stream together race to create it, and one just made may not answer at once: a few tries. */
async function retried<T>(f: (attempt: number) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await f(attempt);
    } catch (e) {
      if (attempt >= attempts) throw e;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

/**
 * The JetStream API requests that open a log (stream and consumer info, creation) give up after
 * this long (times the attempt, up to the usual 5 s) and are tried again: a stream or consumer another node is creating at the same moment
 * answers only once it has elected its leader, and a request asked before that is never answered.
 * With the default timeout (5 s) the consuming node of a queue just declared elsewhere started
 * pulling only seconds after the first publishes.
 */
const OPEN_REQUEST_TIMEOUT_MS = 1000;
/** Tries to open a log (each after a longer pause, see {@link retried}): about a minute in all. */
const OPEN_LOG_ATTEMPTS = 10;
/** How long opening a log waits for its new consumer to have a leader, at most. */
const CONSUMER_LEADER_WAIT_MS = 15_000;
const CONSUMER_LEADER_POLL_MS = 50;

/**
 * Resolves once the shared consumer of a replicated stream has a leader (or after
 * {@link CONSUMER_LEADER_WAIT_MS}: pulls then find it when it comes). A consumer just created
 * elects its leader on its own, seconds later on a loaded cluster; a pull asked before that
 * reaches nobody and ends only when its heartbeats are missed, and a consumer's first pull on
 * another node waits for the same election in its own open. Waiting here keeps that out of the
 * declare's answer: a client that consumes right after it is served at once.
 */
async function consumerLed(jsm: JetStreamManager, stream: string, info: ConsumerInfo): Promise<void> {
  const deadline = Date.now() + CONSUMER_LEADER_WAIT_MS;
  for (let ci = info; ; ) {
    const leader = ci.cluster?.leader;
    if (leader !== undefined && leader !== '') return;
    if (Date.now() > deadline) return;
    await new Promise((resolve) => setTimeout(resolve, CONSUMER_LEADER_POLL_MS));
    ci = await jsm.consumers.info(stream, SHARED_CONSUMER).catch(() => ci);
  }
}

function logSubject(name: string): string {
  return `warren_log.${name}`;
}

/** The cluster engine on a NATS connection: core subjects for the bus, JetStream KV buckets. */
export class NatsEngine implements ClusterEngine {
  readonly bus: ClusterBus;
  readonly info: EngineInfo;
  private readonly kvm: Kvm;
  private readonly js: JetStreamClient;
  private jsm: JetStreamManager | undefined;
  private readonly listeners: ((connected: boolean) => void)[] = [];
  private readonly inbox: PullInbox;
  private readonly appends: AppendInbox;

  constructor(private readonly nc: NatsConnection) {
    this.appends = new AppendInbox(nc);
    this.bus = new NatsBus(nc);
    const inbox = new PullInbox(nc);
    this.inbox = inbox;
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
        else if (s.type === 'reconnect') {
          inbox.endAll();
          for (const l of this.listeners) l(true);
        }
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

  /**
   * The stream and its consumer are created with the same configuration by whichever node comes
   * first; JetStream answers an identical create with the existing one, so nodes opening a log
   * together do not conflict. A log that exists keeps its replicas; its limits follow `opts`.
   */
  async openLog(name: string, opts: LogOptions): Promise<ReplicatedLog> {
    const jsm = await this.manager();
    const replicas = Math.max(1, Math.min(opts.replicas, this.info.clusterSize));
    const limits = {
      max_bytes: opts.maxBytes ?? -1,
      max_age: opts.maxAgeMs !== undefined && opts.maxAgeMs > 0 ? nanos(opts.maxAgeMs) : 0,
      discard: opts.rejectWhenFull === true ? DiscardPolicy.New : DiscardPolicy.Old,
    };
    return retried(async (attempt) => {
      // A cluster that is merely slow gets longer each try, up to the usual timeout.
      const quick = await jetstreamManager(this.nc, { timeout: Math.min(OPEN_REQUEST_TIMEOUT_MS * attempt, 5000), checkAPI: false });
      const existing = await streamInfo(quick, name);
      if (existing === undefined) {
        await quick.streams.add({
          name,
          subjects: [logSubject(name)],
          storage: StorageType.File,
          retention: RetentionPolicy.Workqueue,
          num_replicas: replicas,
          ...limits,
        });
      } else if (
        existing.config.max_msgs !== -1 ||
        existing.config.max_bytes !== limits.max_bytes ||
        existing.config.max_age !== limits.max_age ||
        existing.config.discard !== limits.discard
      ) {
        // (A log made by an earlier version may still have a message limit: x-max-length is the nodes'.)
        await quick.streams.update(name, { ...existing.config, ...limits, max_msgs: -1 });
      }
      const consumer = await quick.consumers.info(name, SHARED_CONSUMER).catch((e: unknown) => {
        if (e instanceof JetStreamApiError && e.code === CONSUMER_NOT_FOUND) return undefined;
        throw e;
      });
      const made =
        consumer ??
        (await quick.consumers.add(name, {
          durable_name: SHARED_CONSUMER,
          ack_policy: AckPolicy.Explicit,
          ack_wait: nanos(opts.ackWaitMs),
          max_deliver: opts.maxDeliver !== undefined && opts.maxDeliver > 0 ? opts.maxDeliver : -1,
          max_ack_pending: -1,
        }));
      if (replicas > 1) await consumerLed(quick, name, made);
      return new NatsLog(name, this.nc, this.js, jsm, this.info.serverName, this.inbox, this.appends, this.info);
    }, OPEN_LOG_ATTEMPTS);
  }

  async logNames(prefix: string): Promise<string[]> {
    const jsm = await this.manager();
    const names: string[] = [];
    for await (const name of jsm.streams.names()) if (name.startsWith(prefix)) names.push(name);
    return names;
  }

  /**
   * Created by whichever node comes first (an identical create answers with the existing stream);
   * a stream that exists keeps its replicas and takes the limits asked for.
   */
  async openStream(name: string, opts: StreamLogOptions): Promise<ReplicatedStream> {
    const jsm = await this.manager();
    const replicas = Math.max(1, Math.min(opts.replicas, this.info.clusterSize));
    const limits = { max_bytes: opts.maxBytes ?? -1, max_age: opts.maxAgeMs !== undefined ? nanos(opts.maxAgeMs) : 0 };
    return retried(async () => {
      const existing = await streamInfo(jsm, name);
      if (existing === undefined) {
        await jsm.streams.add({
          name,
          subjects: [streamSubject(name)],
          storage: StorageType.File,
          retention: RetentionPolicy.Limits,
          num_replicas: replicas,
          ...limits,
        });
      } else if (existing.config.max_bytes !== limits.max_bytes || existing.config.max_age !== limits.max_age) {
        await jsm.streams.update(name, { ...existing.config, ...limits });
      }
      return new NatsStream(name, this.js, jsm, this.info.serverName, this.appends);
    });
  }

  private async manager(): Promise<JetStreamManager> {
    return (this.jsm ??= await jetstreamManager(this.nc, { timeout: 5000, checkAPI: false }));
  }

  onStatus(listener: (connected: boolean) => void): void {
    this.listeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.nc.isClosed()) return;
    await this.nc.drain().catch(() => this.nc.close());
  }
}
