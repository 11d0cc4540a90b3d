import {
  LogFullError,
  NoResponderError,
  scaledReplicas,
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
} from './engine.js';

/**
 * The engine in one process: every {@link MemoryEngine.connect} is a node's connection to the same
 * buckets and subjects. Deliveries are asynchronous (a later macrotask), as over a network, so
 * code that works here does not lean on synchronous callbacks. For unit tests.
 */

interface Stored {
  /** Undefined: a deletion, kept (as JetStream keeps a delete marker) until the entry expires. */
  value: Uint8Array | undefined;
  revision: number;
  at: number;
}

class MemoryBucket {
  revision = 0;
  readonly entries = new Map<string, Stored>();
  readonly watchers = new Set<(e: KvEntry) => void>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    readonly name: string,
    readonly ttlMs: number,
  ) {
    if (ttlMs > 0) {
      this.sweeper = setInterval(() => this.sweep(), Math.max(10, Math.floor(ttlMs / 4)));
      this.sweeper.unref();
    }
  }

  write(key: string, value: Uint8Array | undefined): number {
    const revision = ++this.revision;
    this.entries.set(key, { value, revision, at: Date.now() });
    const e: KvEntry = { key, value, revision };
    for (const w of this.watchers) setImmediate(w, e);
    return revision;
  }

  /** Expired entries go without a word, as JetStream's max age removes them (no delete marker). */
  private sweep(): void {
    const limit = Date.now() - this.ttlMs;
    for (const [key, s] of [...this.entries]) if (s.at < limit) this.entries.delete(key);
  }

  stop(): void {
    if (this.sweeper) clearInterval(this.sweeper);
  }
}

interface Sub {
  readonly pattern: string[];
  readonly handler: BusHandler;
  readonly group: string | undefined;
  readonly owner: MemoryConnection;
}

function matches(pattern: readonly string[], tokens: readonly string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p === '>') return tokens.length > i;
    if (i >= tokens.length) return false;
    if (p !== '*' && p !== tokens[i]) return false;
  }
  return pattern.length === tokens.length;
}

interface LogEntry {
  readonly seq: number;
  readonly data: Uint8Array;
  deliveries: number;
  /** Handed out and waiting for its ack (or its ack wait to pass). */
  pending: boolean;
  /** Not handed out before this time (a delayed nak). */
  dueAt: number;
  timer: NodeJS.Timeout | undefined;
  /** When it was appended (for the log's maximum age). */
  readonly at: number;
}

/**
 * A log as JetStream keeps a work-queue stream with one shared durable consumer: messages in
 * sequence order, handed to one puller at a time, due again after the ack wait or a nak (after
 * its delay), never again after `maxDeliver` deliveries (they stay stored, as JetStream keeps
 * them), removed on ack.
 */
class MemoryLogState {
  lastSeq = 0;
  /** Bytes of the messages kept. */
  private bytes = 0;
  readonly entries = new Map<number, LogEntry>();
  /** msgId → sequence, for the deduplication window (kept for the log's life here). */
  readonly ids = new Map<string, number>();
  /** Pull requests answered so far (a test reads it to see that an idle log is not polled). */
  pulls = 0;
  /** Long polls waiting for a message: each is told when one may have come (or fallen due). */
  readonly waiting = new Set<() => void>();

  constructor(
    readonly name: string,
    public opts: LogOptions,
  ) {}

  append(data: Uint8Array, msgId: string, expectedSeq: number | undefined): number {
    const dup = this.ids.get(msgId);
    if (dup !== undefined) return dup;
    if (expectedSeq !== undefined && expectedSeq !== this.lastSeq) throw new Error(`wrong last sequence: ${this.lastSeq}`);
    this.expire(Date.now());
    const { maxBytes } = this.opts;
    const over = (): boolean => this.entries.size > 0 && maxBytes !== undefined && maxBytes >= 0 && this.bytes + data.length > maxBytes;
    if (this.opts.rejectWhenFull === true && over()) throw new LogFullError(`log ${this.name} is full`);
    // Otherwise the oldest go, as JetStream's discard-old does.
    while (over()) this.drop(this.entries.keys().next().value!);
    const seq = ++this.lastSeq;
    this.ids.set(msgId, seq);
    this.entries.set(seq, { seq, data: Uint8Array.from(data), deliveries: 0, pending: false, dueAt: 0, timer: undefined, at: Date.now() });
    this.bytes += data.length;
    this.wake();
    return seq;
  }

  /** Removes a message (acked, dropped for a limit, expired). */
  drop(seq: number): void {
    const e = this.entries.get(seq);
    if (e === undefined) return;
    if (e.timer !== undefined) clearTimeout(e.timer);
    this.entries.delete(seq);
    this.bytes -= e.data.length;
  }

  /** Drops the messages older than the log's maximum age. */
  expire(now: number): void {
    const age = this.opts.maxAgeMs;
    if (age === undefined || age <= 0) return;
    for (const e of this.entries.values()) {
      if (now - e.at < age) break;
      this.drop(e.seq);
    }
  }

  private wake(): void {
    for (const w of [...this.waiting]) w();
  }

  /** When the earliest message given back with a delay falls due; undefined when none is. */
  nextDue(now: number): number | undefined {
    let at: number | undefined;
    for (const e of this.entries.values()) if (!e.pending && e.dueAt > now && (at === undefined || e.dueAt < at)) at = e.dueAt;
    return at;
  }

  pull(max: number): LogMessage[] {
    const now = Date.now();
    this.expire(now);
    const limit = this.opts.maxDeliver !== undefined && this.opts.maxDeliver > 0 ? this.opts.maxDeliver : Infinity;
    const out: LogMessage[] = [];
    for (const e of this.entries.values()) {
      if (out.length >= max) break;
      if (e.pending || e.dueAt > now || e.deliveries >= limit) continue;
      e.deliveries++;
      e.pending = true;
      this.arm(e);
      out.push({ seq: e.seq, data: e.data, deliveries: e.deliveries, appendedAt: e.at });
    }
    return out;
  }

  private arm(e: LogEntry): void {
    if (e.timer !== undefined) clearTimeout(e.timer);
    e.timer = setTimeout(() => {
      e.timer = undefined;
      e.pending = false;
      this.wake();
    }, this.opts.ackWaitMs);
    e.timer.unref();
  }

  ack(seq: number): void {
    this.drop(seq);
  }

  nak(seq: number, delayMs: number): void {
    const e = this.entries.get(seq);
    if (e === undefined || !e.pending) return;
    if (e.timer !== undefined) clearTimeout(e.timer);
    e.timer = undefined;
    e.pending = false;
    e.dueAt = Date.now() + delayMs;
    this.wake();
  }

  inProgress(seq: number): void {
    const e = this.entries.get(seq);
    if (e !== undefined && e.pending) this.arm(e);
  }

  clear(): void {
    for (const e of this.entries.values()) if (e.timer !== undefined) clearTimeout(e.timer);
    this.entries.clear();
    this.wake();
  }
}

/** The copies of a log or stream of `replicas`: the servers not marked offline are online. */
function memoryStatus(engine: MemoryEngine, replicas: number, messages: number): LogStatus {
  const members = Array.from({ length: replicas }, (_, i) => `memory-${i + 1}`);
  const online = members.filter((m) => !engine.offline.has(m));
  // Without a majority of its copies there is no leader (and a real engine would not answer).
  const leader = online.length > members.length / 2 ? online[0] : undefined;
  return { leader, members, online, messages, lag: members.map(() => 0) };
}

class MemoryLog implements ReplicatedLog {
  constructor(
    private readonly engine: MemoryEngine,
    private readonly state: MemoryLogState,
  ) {}

  get name(): string {
    return this.state.name;
  }

  private async reachable(): Promise<void> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    if (this.engine.logs.get(this.state.name) !== this.state) throw new Error(`log ${this.state.name} not found`);
  }

  async append(data: Uint8Array, opts: { msgId: string; expectedSeq?: number }): Promise<number> {
    await this.reachable();
    return this.state.append(data, opts.msgId, opts.expectedSeq);
  }

  async pull(max: number, waitMs = 0): Promise<LogMessage[]> {
    await this.reachable();
    this.state.pulls++;
    const deadline = Date.now() + waitMs;
    for (;;) {
      const got = this.state.pull(max);
      const now = Date.now();
      if (got.length > 0 || now >= deadline) return got;
      // Until something is appended or given back, a delayed message falls due, or the wait ends.
      const due = this.state.nextDue(now);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(woken, Math.min(deadline, due ?? deadline) - now);
        timer.unref();
        const state = this.state;
        function woken(): void {
          clearTimeout(timer);
          state.waiting.delete(woken);
          resolve();
        }
        state.waiting.add(woken);
      });
      await this.reachable();
    }
  }

  ack(seq: number): void {
    if (this.engine.available) this.state.ack(seq);
  }

  nak(seq: number, delayMs = 0): void {
    if (this.engine.available) this.state.nak(seq, delayMs);
  }

  inProgress(seq: number): void {
    if (this.engine.available) this.state.inProgress(seq);
  }

  async status(): Promise<LogStatus> {
    await this.reachable();
    this.state.expire(Date.now());
    return memoryStatus(this.engine, this.state.opts.replicas, this.state.entries.size);
  }

  async setReplicas(replicas: number): Promise<void> {
    await this.reachable();
    this.state.opts = { ...this.state.opts, replicas: scaledReplicas(this.state.opts.replicas, replicas, this.engine.servers) };
  }

  async ready(): Promise<number> {
    await this.reachable();
    this.state.expire(Date.now());
    let n = 0;
    for (const e of this.state.entries.values()) if (e.deliveries === 0) n++;
    return n;
  }

  async destroy(): Promise<void> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    if (this.engine.logs.get(this.state.name) === this.state) {
      this.state.clear();
      this.engine.logs.delete(this.state.name);
    }
  }
}

const later = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A stream with limits retention: every message stays until `dropBefore` (a test's retention) removes it. */
export class MemoryStreamState {
  lastSeq = 0;
  /** Messages held, oldest first (sequences without gaps, ending at `lastSeq`). */
  readonly entries: StreamEntry[] = [];
  readonly ids = new Map<string, number>();
  readonly followers = new Set<() => void>();

  constructor(
    readonly name: string,
    public opts: StreamLogOptions,
  ) {}

  get first(): number {
    return this.entries.length > 0 ? this.entries[0]!.seq : this.lastSeq + 1;
  }

  append(data: Uint8Array, msgId: string): number {
    const known = this.ids.get(msgId);
    if (known !== undefined) return known;
    const seq = ++this.lastSeq;
    this.entries.push({ seq, data });
    this.ids.set(msgId, seq);
    for (const f of this.followers) setImmediate(f);
    return seq;
  }

  /** Retention: messages below `seq` go. */
  dropBefore(seq: number): void {
    while (this.entries.length > 0 && this.entries[0]!.seq < seq) this.entries.shift();
  }

  clear(): void {
    this.entries.length = 0;
    this.followers.clear();
  }
}

class MemoryStream implements ReplicatedStream {
  constructor(
    private readonly engine: MemoryEngine,
    private readonly state: MemoryStreamState,
  ) {}

  get name(): string {
    return this.state.name;
  }

  /** After a turn, as over a network; throws when the engine is down or the stream was destroyed. */
  private async reach(): Promise<MemoryStreamState> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    if (this.engine.streams.get(this.state.name) !== this.state) throw new Error(`stream ${this.state.name} not found`);
    return this.state;
  }

  async append(data: Uint8Array, opts: { msgId: string }): Promise<number> {
    return (await this.reach()).append(data, opts.msgId);
  }

  async bounds(): Promise<StreamBounds> {
    const st = await this.reach();
    return { first: st.first, last: st.lastSeq };
  }

  async status(): Promise<LogStatus> {
    const st = await this.reach();
    return memoryStatus(this.engine, st.opts.replicas, st.entries.length);
  }

  follow(fromSeq: number, onEntry: (e: StreamEntry) => void): StreamFollow {
    const st = this.state;
    let next = fromSeq;
    let stopped = false;
    const run = (): void => {
      if (stopped || !this.engine.available) return;
      if (next < st.first) next = st.first;
      while (!stopped && next <= st.lastSeq) {
        const e = st.entries[next - st.first];
        if (e === undefined) break;
        next = e.seq + 1;
        onEntry(e);
      }
    };
    st.followers.add(run);
    setImmediate(run);
    return {
      stop: () => {
        stopped = true;
        st.followers.delete(run);
      },
    };
  }

  async destroy(): Promise<void> {
    const st = await this.reach().catch((e: unknown) => {
      if (!this.engine.available) throw e;
      return undefined;
    });
    if (st === undefined) return;
    this.engine.streams.delete(st.name);
    st.clear();
  }
}

export class MemoryEngine {
  readonly buckets = new Map<string, MemoryBucket>();
  readonly logs = new Map<string, MemoryLogState>();
  readonly streams = new Map<string, MemoryStreamState>();
  readonly subs = new Set<Sub>();
  private readonly connections = new Set<MemoryConnection>();
  /** While false, every operation of every connection fails (the engine is unreachable). */
  available = true;
  /** How many engine servers it stands for: logs get up to that many copies, `memory-1`... */
  servers = 1;
  /** The servers that are down: their copies are listed in a log's status but not online. */
  readonly offline = new Set<string>();

  connect(name = 'memory'): ClusterEngine {
    const c = new MemoryConnection(this, name);
    this.connections.add(c);
    return c;
  }

  /** @internal */
  dropped(c: MemoryConnection): void {
    this.connections.delete(c);
    for (const s of [...this.subs]) if (s.owner === c) this.subs.delete(s);
  }

  deliver(subject: string, data: Uint8Array, reply: ((data: Uint8Array) => void) | undefined): number {
    const tokens = subject.split('.');
    const groups = new Map<string, Sub[]>();
    let n = 0;
    for (const s of this.subs) {
      if (!matches(s.pattern, tokens)) continue;
      if (s.group !== undefined) {
        const g = groups.get(s.group);
        if (g) g.push(s);
        else groups.set(s.group, [s]);
        continue;
      }
      n++;
      setImmediate(() => s.handler(data, subject, reply));
    }
    for (const members of groups.values()) {
      const s = members[Math.floor(Math.random() * members.length)]!;
      n++;
      setImmediate(() => s.handler(data, subject, reply));
    }
    return n;
  }

  stop(): void {
    for (const b of this.buckets.values()) b.stop();
    for (const l of this.logs.values()) l.clear();
    for (const st of this.streams.values()) st.clear();
    for (const c of [...this.connections]) void c.close();
  }
}

class MemoryKV implements ClusterKV {
  constructor(
    private readonly engine: MemoryEngine,
    private readonly b: MemoryBucket,
  ) {}

  get bucket(): string {
    return this.b.name;
  }

  private async reachable(): Promise<void> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
  }

  async get(key: string): Promise<KvEntry | undefined> {
    await this.reachable();
    const s = this.b.entries.get(key);
    return s === undefined || s.value === undefined ? undefined : { key, value: s.value, revision: s.revision };
  }

  async put(key: string, value: Uint8Array): Promise<number> {
    await this.reachable();
    return this.b.write(key, value);
  }

  async create(key: string, value: Uint8Array): Promise<number | undefined> {
    await this.reachable();
    if (this.b.entries.get(key)?.value !== undefined) return undefined;
    return this.b.write(key, value);
  }

  async compareAndSet(key: string, value: Uint8Array, revision: number): Promise<number | undefined> {
    await this.reachable();
    if ((this.b.entries.get(key)?.revision ?? 0) !== revision) return undefined;
    return this.b.write(key, value);
  }

  async delete(key: string): Promise<void> {
    await this.reachable();
    this.b.write(key, undefined);
  }

  async watch(onEntry: (e: KvEntry) => void): Promise<KvWatch> {
    await this.reachable();
    const initial = [...this.b.entries].map(([key, s]): KvEntry => ({ key, value: s.value, revision: s.revision }));
    initial.sort((a, b) => a.revision - b.revision);
    const b = this.b;
    // Changes after this point queue behind the initial values, in order.
    const pending: KvEntry[] = [];
    let live = false;
    const w = (e: KvEntry): void => {
      if (live) onEntry(e);
      else pending.push(e);
    };
    b.watchers.add(w);
    const ready = later().then(() => {
      for (const e of initial) onEntry(e);
      live = true;
      for (const e of pending.splice(0)) onEntry(e);
    });
    return { ready, stop: () => b.watchers.delete(w) };
  }
}

class MemoryConnection implements ClusterEngine {
  get info(): EngineInfo {
    return { serverName: 'memory', version: 'memory', clusterSize: this.engine.servers };
  }
  private closed = false;
  private readonly statusListeners: ((connected: boolean) => void)[] = [];
  readonly bus: ClusterBus;

  constructor(
    private readonly engine: MemoryEngine,
    readonly name: string,
  ) {
    const self = this;
    this.bus = {
      publish(subject, data) {
        if (!self.closed && engine.available) engine.deliver(subject, data, undefined);
      },
      subscribe(subject, handler, opts): BusSubscription {
        const s: Sub = { pattern: subject.split('.'), handler, group: opts?.queueGroup, owner: self };
        engine.subs.add(s);
        return { unsubscribe: () => engine.subs.delete(s) };
      },
      request(subject, data, timeoutMs) {
        return new Promise<Uint8Array>((resolve, reject) => {
          if (self.closed || !engine.available) return reject(new Error('engine unavailable'));
          const timer = setTimeout(() => reject(new Error(`request on ${subject} timed out`)), timeoutMs);
          const n = engine.deliver(subject, data, (answer) => {
            clearTimeout(timer);
            resolve(answer);
          });
          if (n === 0) {
            clearTimeout(timer);
            reject(new NoResponderError(subject));
          }
        });
      },
    };
  }

  async openKV(name: string, opts: BucketOptions): Promise<ClusterKV> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    let b = this.engine.buckets.get(name);
    if (!b) {
      b = new MemoryBucket(name, opts.ttlMs ?? 0);
      this.engine.buckets.set(name, b);
    }
    return new MemoryKV(this.engine, b);
  }

  async openLog(name: string, opts: LogOptions): Promise<ReplicatedLog> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    let l = this.engine.logs.get(name);
    if (!l) {
      l = new MemoryLogState(name, { ...opts, replicas: Math.max(1, Math.min(opts.replicas, this.info.clusterSize)) });
      this.engine.logs.set(name, l);
    } else l.opts = { ...opts, replicas: l.opts.replicas };
    return new MemoryLog(this.engine, l);
  }

  async logNames(prefix: string): Promise<string[]> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    return [...this.engine.logs.keys()].filter((name) => name.startsWith(prefix));
  }

  async openStream(name: string, opts: StreamLogOptions): Promise<ReplicatedStream> {
    await later();
    if (!this.engine.available) throw new Error('engine unavailable');
    let st = this.engine.streams.get(name);
    if (!st) {
      st = new MemoryStreamState(name, { ...opts, replicas: Math.max(1, Math.min(opts.replicas, this.info.clusterSize)) });
      this.engine.streams.set(name, st);
    } else st.opts = { ...opts, replicas: st.opts.replicas };
    return new MemoryStream(this.engine, st);
  }

  onStatus(listener: (connected: boolean) => void): void {
    this.statusListeners.push(listener);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.engine.dropped(this);
  }
}
