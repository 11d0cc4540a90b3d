import type { Core, CoreChannel, CoreConnection, Exchange, Queue, VHost } from '../core/index.js';
import { latencyTrace, traceNow, TraceSpan } from '../core/index.js';

/** Cumulative message counters, broker-wide or per vhost. */
export interface MessageTotals {
  publish: number;
  deliver: number;
  get: number;
  ack: number;
  redeliver: number;
  returned: number;
  unroutable: number;
  recvOct: number;
  sendOct: number;
}

/** Queue depths, broker-wide or per vhost. */
export interface Depths {
  messages: number;
  ready: number;
  unacked: number;
}

/** One point of the broker-wide history kept for charts (`samples` in /api/overview). */
export interface GlobalSample extends MessageTotals, Depths {
  timestamp: number;
}

interface Track {
  readonly prev: readonly number[];
  readonly rates: readonly number[];
  readonly at: number;
}

const HISTORY = 720;
/** Objects (connections, channels, queues, exchanges) one slice of a timed sample visits. */
const SLICE = 500;
/** Samples kept per queue, exchange and vhost: 10 minutes at the default 5 s interval. */
export const OBJECT_HISTORY = 120;

/**
 * One object's recent samples. While its values stay as they were when first seen (an idle queue),
 * only `last` is kept and every sample since `first` reads as `last`; the ring of
 * OBJECT_HISTORY x width numbers is allocated the first time a value changes. Objects first seen
 * with all values zero share one read-only record per sample (`last` is a frozen zero array) until
 * their values first change, so an idle object costs no history of its own.
 */
interface History {
  /** The sample number this object was first seen at. */
  readonly first: number;
  readonly last: Float64Array | readonly number[];
  ring: Float64Array | undefined;
}

/** One sample of an object: when, and its tracked values (indexed by Q, X or G). */
export interface ObjectSample {
  timestamp: number;
  values: ArrayLike<number>;
}
const ZERO: readonly number[] = Object.freeze([0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/** Read-only zero values of each width tracked (queues 8, exchanges 2, channels 6, vhosts 12). */
const ZEROS: readonly (readonly number[])[] = Array.from({ length: 13 }, (_, n) => Object.freeze(new Array<number>(n).fill(0)));

function allZero(values: readonly number[]): boolean {
  for (const v of values) if (v !== 0) return false;
  return true;
}

/** Queue values tracked: cumulative counters, then depths. */
export const Q = { publish: 0, deliver: 1, get: 2, ack: 3, redeliver: 4, messages: 5, ready: 6, unacked: 7 } as const;
const Q_WIDTH = 8;
export const X = { publishIn: 0, publishOut: 1 } as const;
export const C = { recvOct: 0, sendOct: 1, recvCnt: 2, sendCnt: 3 } as const;
export const CH = { publish: 0, deliver: 1, get: 2, ack: 3, redeliver: 4, returned: 5 } as const;
export const G = {
  publish: 0,
  deliver: 1,
  get: 2,
  ack: 3,
  redeliver: 4,
  returned: 5,
  unroutable: 6,
  recvOct: 7,
  sendOct: 8,
  messages: 9,
  ready: 10,
  unacked: 11,
} as const;

/**
 * Turns the core's cumulative counters into per-second rates, on a timer and never per message:
 * every `intervalMs` it walks queues, exchanges, connections and channels once and keeps, per
 * object, the previous values and the rates between the last two samples (weakly held, so nothing
 * leaks when an object goes away). It also keeps a broker-wide history for the overview charts.
 */
export class Sampler {
  private readonly tracks = new WeakMap<object, Track>();
  /** Rates of the connections that had traffic in the last interval (the others' are all zero). */
  private readonly connectionRateTable = new WeakMap<CoreConnection, number[]>();
  private readonly vhostTracks = new Map<string, Track>();
  private global: Track | undefined;
  private readonly history: GlobalSample[] = [];
  private timer: NodeJS.Timeout | undefined;
  /** The timer's sample while it runs in slices. */
  private pending: Generator<void, void, void> | undefined;
  lastSampleAt = 0;
  /** Per-object history (queues, exchanges; vhosts by name), a ring of OBJECT_HISTORY samples. */
  private readonly histories = new WeakMap<object, History>();
  private readonly vhostHistories = new Map<string, History>();
  /** When each of the last OBJECT_HISTORY samples was taken, by sample number modulo the ring. */
  private readonly tickTimes = new Float64Array(OBJECT_HISTORY);
  /** Samples taken so far; the one being taken now has this number. */
  private tick = 0;
  /**
   * The record every object whose values are all zero shares in the sample being taken: its
   * previous values are zeros as of this sample, its rates zeros. Replaced, never changed.
   */
  private idleTrack: Track = Object.freeze({ prev: ZERO, rates: ZERO, at: 0 });
  /** The history records shared by objects first seen idle in this sample, by width. */
  private readonly idleHistories = new Map<number, History>();

  constructor(
    private readonly core: Core,
    readonly intervalMs: number,
  ) {}

  start(): void {
    this.sample();
    this.timer = setInterval(this.onTimer, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  /** Takes one sample of everything now (finishing one in progress first). */
  sample(): void {
    this.finishPending();
    const steps = this.steps();
    while (!steps.next().done);
  }

  /**
   * The timer's sample runs in slices of SLICE objects, one slice per turn of the event loop, so
   * ten thousand connections or queues never hold up message traffic for one long task.
   */
  private readonly onTimer = (): void => {
    this.finishPending();
    this.pending = this.steps();
    this.runSlice();
  };

  private readonly runSlice = (): void => {
    const steps = this.pending;
    if (steps === undefined) return;
    const trace = latencyTrace;
    const t0 = trace !== null ? traceNow() : 0;
    const done = steps.next().done === true;
    if (trace !== null) trace.span(TraceSpan.STATS_SAMPLE, t0);
    if (done) this.pending = undefined;
    else setImmediate(this.runSlice);
  };

  private finishPending(): void {
    const steps = this.pending;
    this.pending = undefined;
    if (steps !== undefined) while (!steps.next().done);
  }

  /**
   * One sample, yielding after every SLICE objects. All of it is taken as of its start (`now`);
   * totals are summed on the way, so no object is visited twice. Connections first: their bytes
   * and their channels' counters go into the vhost and broker-wide totals.
   */
  private *steps(): Generator<void, void, void> {
    const now = Date.now();
    const previousAt = this.lastSampleAt;
    this.lastSampleAt = now;
    this.idleTrack = Object.freeze({ prev: ZERO, rates: ZERO, at: now });
    this.idleHistories.clear();
    const core = this.core;
    // Closed connections' and channels' counters, as of the start (live ones are added below).
    const g = globalTotals(core, false);
    const perVhost = new Map<VHost, { recvOct: number; sendOct: number; returned: number }>();
    let n = 0;
    for (const c of core.connections) {
      this.sampleConnection(c, now, previousAt);
      const tr = c.traffic;
      g.recvOct += tr.recvOct;
      g.sendOct += tr.sendOct;
      let pv = perVhost.get(c.vhost);
      if (pv === undefined) perVhost.set(c.vhost, (pv = { recvOct: 0, sendOct: 0, returned: 0 }));
      pv.recvOct += tr.recvOct;
      pv.sendOct += tr.sendOct;
      for (const ch of c.channels) {
        this.trackChannel(ch, now, previousAt);
        addChannel(g, ch);
        pv.returned += ch.stats.returned;
        n++;
      }
      if (++n >= SLICE) {
        n = 0;
        yield;
      }
    }
    const gd: Depths = { messages: 0, ready: 0, unacked: 0 };
    for (const v of core.vhosts.values()) {
      const t: MessageTotals = { publish: 0, deliver: 0, get: 0, ack: 0, redeliver: 0, returned: 0, unroutable: 0, recvOct: 0, sendOct: 0 };
      const d: Depths = { messages: 0, ready: 0, unacked: 0 };
      for (const q of v.queues.values()) {
        const values = queueValues(q);
        this.trackQueue(q, values, now, previousAt);
        this.recordQueue(q, values);
        const qs = q.stats;
        t.deliver += qs.delivered;
        t.get += qs.got;
        t.ack += qs.acked;
        t.redeliver += qs.redelivered;
        d.ready += q.readyCount;
        d.unacked += q.unackedCount;
        if (++n >= SLICE) {
          n = 0;
          yield;
        }
      }
      for (const x of v.exchanges.values()) {
        const values = [x.stats.publishIn, x.stats.publishOut];
        this.track(x, values, now);
        this.record(this.histories, x, values);
        t.publish += x.stats.publishIn;
        if (++n >= SLICE) {
          n = 0;
          yield;
        }
      }
      // A vhost deleted while its objects were sampled is not recorded (the sweep below drops it).
      if (core.vhosts.get(v.name) !== v) continue;
      const pv = perVhost.get(v);
      if (pv !== undefined) {
        t.recvOct = pv.recvOct;
        t.sendOct = pv.sendOct;
        t.returned = pv.returned;
      }
      d.messages = d.ready + d.unacked;
      gd.ready += d.ready;
      gd.unacked += d.unacked;
      const values = [t.publish, t.deliver, t.get, t.ack, t.redeliver, t.returned, t.unroutable, t.recvOct, t.sendOct, d.messages, d.ready, d.unacked];
      this.trackIn(this.vhostTracks, v.name, values, now);
      this.record(this.vhostHistories, v.name, values);
    }
    for (const name of this.vhostTracks.keys()) if (!core.vhosts.has(name)) this.vhostTracks.delete(name);
    for (const name of this.vhostHistories.keys()) if (!core.vhosts.has(name)) this.vhostHistories.delete(name);
    this.tickTimes[this.tick % OBJECT_HISTORY] = now;
    this.tick++;
    gd.messages = gd.ready + gd.unacked;
    const values = [g.publish, g.deliver, g.get, g.ack, g.redeliver, g.returned, g.unroutable, g.recvOct, g.sendOct, gd.messages, gd.ready, gd.unacked];
    this.global = this.advance(this.global, values, now);
    this.history.push({ timestamp: now, ...g, ...gd });
    if (this.history.length > HISTORY) this.history.shift();
  }

  /** Stores `values` as this sample of an object's history. */
  private record<K>(map: { get(k: K): History | undefined; set(k: K, h: History): unknown }, key: K, values: readonly number[]): void {
    const tick = this.tick;
    const h = map.get(key);
    if (!h) {
      map.set(key, allZero(values) ? this.idleHistory(values.length) : { first: tick, last: Float64Array.from(values), ring: undefined });
      return;
    }
    const width = h.last.length;
    let ring = h.ring;
    if (!ring) {
      let same = true;
      for (let i = 0; i < width; i++) if (h.last[i] !== values[i]) same = false;
      if (same) return;
      ring = new Float64Array(width * OBJECT_HISTORY);
      for (let t = Math.max(h.first, tick - OBJECT_HISTORY + 1); t < tick; t++) ring.set(h.last, (t % OBJECT_HISTORY) * width);
    }
    let last = h.last;
    if (!(last instanceof Float64Array)) {
      // A shared idle record is left as it is: this object gets its own from its first change on.
      last = new Float64Array(width);
      map.set(key, { first: h.first, last, ring });
    } else h.ring = ring;
    for (let i = 0; i < width; i++) last[i] = values[i] ?? 0;
    ring.set(last, (tick % OBJECT_HISTORY) * width);
  }

  /**
   * A queue's history. One whose values have stayed zero since it was declared keeps no entry (ten
   * thousand idle queues cost nothing here): it reads as zeros since the first sample taken after
   * its declaration, and that is where its own history starts from once its values change.
   */
  private recordQueue(q: Queue, values: readonly number[]): void {
    if (!this.histories.has(q)) {
      if (allZero(values)) return;
      const first = this.firstSampleAfter(q.declaredAt);
      if (first < this.tick) this.histories.set(q, { first, last: ZEROS[values.length]!, ring: undefined });
    }
    this.record(this.histories, q, values);
  }

  /** The first of the samples kept that was taken after `at` (ms since the epoch); `tick` when none was. */
  private firstSampleAfter(at: number): number {
    let t = this.tick;
    const oldest = Math.max(0, this.tick - OBJECT_HISTORY);
    while (t > oldest && this.tickTimes[(t - 1) % OBJECT_HISTORY]! > at) t--;
    return t;
  }

  /** The history record shared by the objects of `width` values first seen, all zero, in this sample. */
  private idleHistory(width: number): History {
    let h = this.idleHistories.get(width);
    if (h === undefined) this.idleHistories.set(width, (h = Object.freeze({ first: this.tick, last: ZEROS[width] ?? new Array<number>(width).fill(0), ring: undefined })));
    return h;
  }

  /**
   * An object's samples newer than `ageMs`, at least `incrMs` apart, newest first: what RabbitMQ
   * serves as `samples` for `lengths_age` / `msg_rates_age`. Values are indexed by Q (queues), X
   * (exchanges) or G (vhosts, by name). Empty for an object not sampled yet.
   */
  objectSamples(obj: Queue | Exchange | string, ageMs: number, incrMs: number): ObjectSample[] {
    const h = typeof obj === 'string' ? this.vhostHistories.get(obj) : (this.histories.get(obj) ?? this.idleQueueHistory(obj));
    const out: ObjectSample[] = [];
    if (!h) return out;
    const width = h.last.length;
    const since = Date.now() - ageMs;
    const oldest = Math.max(h.first, this.tick - OBJECT_HISTORY);
    let last = Number.POSITIVE_INFINITY;
    for (let t = this.tick - 1; t >= oldest; t--) {
      const slot = t % OBJECT_HISTORY;
      const timestamp = this.tickTimes[slot]!;
      if (timestamp < since) break;
      if (last - timestamp < incrMs - this.intervalMs / 2) continue;
      last = timestamp;
      out.push({ timestamp, values: h.ring ? h.ring.subarray(slot * width, slot * width + width) : h.last });
    }
    return out;
  }

  /** What a queue without a history entry reads as: zeros since the first sample after its declaration. */
  private idleQueueHistory(obj: Queue | Exchange): History | undefined {
    if (!('declaredAt' in obj)) return undefined;
    const first = this.firstSampleAfter(obj.declaredAt);
    return first < this.tick ? { first, last: ZEROS[Q_WIDTH]!, ring: undefined } : undefined;
  }

  private advance(prev: Track | undefined, values: number[], now: number): Track {
    if (!prev) return allZero(values) ? this.idleTrack : { prev: values, rates: values.map(() => 0), at: now };
    // Still all zero since the previous sample: rates zero, nothing of its own to keep.
    if (prev.prev === ZERO && allZero(values)) return this.idleTrack;
    const dt = (now - prev.at) / 1000;
    if (dt <= 0) return prev;
    const rates = values.map((v, i) => round((v - (prev.prev[i] ?? 0)) / dt));
    return { prev: values, rates, at: now };
  }

  /**
   * A connection keeps its previous counters itself (ConnectionTraffic), and only one with traffic
   * since the previous sample gets a rates entry here: ten thousand idle connections cost nothing
   * per sample. Its first rates are over the time since it connected.
   */
  private sampleConnection(c: CoreConnection, now: number, previousAt: number): void {
    const t = c.traffic;
    const dRecvOct = t.recvOct - t.sampledRecvOct;
    const dSendOct = t.sendOct - t.sampledSendOct;
    const dRecvCnt = t.recvCnt - t.sampledRecvCnt;
    const dSendCnt = t.sendCnt - t.sampledSendCnt;
    if (dRecvOct === 0 && dSendOct === 0 && dRecvCnt === 0 && dSendCnt === 0) {
      this.connectionRateTable.delete(c);
      return;
    }
    const dt = (now - Math.max(previousAt, c.connectedAt)) / 1000;
    if (dt <= 0) return;
    let r = this.connectionRateTable.get(c);
    if (r === undefined) this.connectionRateTable.set(c, (r = [0, 0, 0, 0]));
    r[C.recvOct] = round(dRecvOct / dt);
    r[C.sendOct] = round(dSendOct / dt);
    r[C.recvCnt] = round(dRecvCnt / dt);
    r[C.sendCnt] = round(dSendCnt / dt);
    t.sampledRecvOct = t.recvOct;
    t.sampledSendOct = t.sendOct;
    t.sampledRecvCnt = t.recvCnt;
    t.sampledSendCnt = t.sendCnt;
  }

  /**
   * A queue whose values have stayed zero since it was declared keeps no entry: its rates read as
   * zeros. Its first rates are over the time since the previous sample if it existed then (as they
   * would be from a zero entry of that sample), zeros if it is newer.
   */
  private trackQueue(q: Queue, values: number[], now: number, previousAt: number): void {
    const prev = this.tracks.get(q);
    if (prev !== undefined) {
      this.tracks.set(q, this.advance(prev, values, now));
      return;
    }
    if (allZero(values)) return;
    const dt = (now - previousAt) / 1000;
    const seen = previousAt > 0 && q.declaredAt <= previousAt && dt > 0;
    this.tracks.set(q, { prev: values, rates: values.map((v) => (seen ? round(v / dt) : 0)), at: now });
  }

  private track(obj: object, values: number[], now: number): void {
    this.tracks.set(obj, this.advance(this.tracks.get(obj), values, now));
  }

  /**
   * A channel whose counters are still all zero keeps no entry: ten thousand idle channels cost
   * nothing. Its first rates are over the time since the previous sample or since it opened,
   * whichever is later (as a connection's are).
   */
  private trackChannel(ch: CoreChannel, now: number, previousAt: number): void {
    const values = channelValues(ch);
    const prev = this.tracks.get(ch);
    if (prev !== undefined) {
      this.tracks.set(ch, this.advance(prev, values, now));
      return;
    }
    if (allZero(values)) return;
    const dt = (now - Math.max(previousAt, ch.openedAt)) / 1000;
    if (dt <= 0) return;
    this.tracks.set(ch, { prev: values, rates: values.map((v) => round(v / dt)), at: now });
  }

  private trackIn(map: Map<string, Track>, key: string, values: number[], now: number): void {
    map.set(key, this.advance(map.get(key), values, now));
  }

  /**
   * Rates (per second) between the last two samples of an object; a queue's or exchange's are zeros
   * before its second sample, a channel's first are over the time since it opened (or since the
   * previous sample, if later).
   */
  rates(obj: Queue | Exchange | CoreChannel): readonly number[] {
    return this.tracks.get(obj)?.rates ?? ZERO;
  }

  /** A connection's rates (per second, indexed by C) over the last sample interval. */
  connectionRates(c: CoreConnection): readonly number[] {
    return this.connectionRateTable.get(c) ?? ZERO;
  }

  vhostRates(name: string): readonly number[] {
    return this.vhostTracks.get(name)?.rates ?? ZERO;
  }

  globalRates(): readonly number[] {
    return this.global?.rates ?? ZERO;
  }

  /** Broker-wide samples newer than `ageMs`, at least `incrMs` apart, newest first. */
  samples(ageMs: number, incrMs: number): GlobalSample[] {
    const out: GlobalSample[] = [];
    const since = Date.now() - ageMs;
    let last = Number.POSITIVE_INFINITY;
    for (let i = this.history.length - 1; i >= 0; i--) {
      const s = this.history[i]!;
      if (s.timestamp < since) break;
      if (last - s.timestamp >= incrMs - this.intervalMs / 2) {
        out.push(s);
        last = s.timestamp;
      }
    }
    return out;
  }
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

export function queueValues(q: Queue): number[] {
  const s = q.stats;
  return [s.published, s.delivered, s.got, s.acked, s.redelivered, q.readyCount + q.unackedCount, q.readyCount, q.unackedCount];
}

export function channelValues(ch: CoreChannel): number[] {
  const s = ch.stats;
  return [s.published, s.delivered, s.got, s.acked, s.redelivered, s.returned];
}

/** Broker-wide cumulative counters: closed channels' totals plus (unless `live` is false) every live channel's. */
export function globalTotals(core: Core, live = true): MessageTotals {
  const t: MessageTotals = { publish: 0, deliver: 0, get: 0, ack: 0, redeliver: 0, returned: 0, unroutable: core.counters.unroutable, recvOct: 0, sendOct: 0 };
  for (const p of core.totals.byProtocol.values()) {
    t.publish += p.published;
    t.deliver += p.delivered;
    t.get += p.got;
    t.ack += p.acked;
    t.redeliver += p.redelivered;
    t.returned += p.returned;
    t.recvOct += p.recvOct;
    t.sendOct += p.sendOct;
  }
  if (!live) return t;
  for (const c of core.connections) {
    t.recvOct += c.traffic.recvOct;
    t.sendOct += c.traffic.sendOct;
    for (const ch of c.channels) addChannel(t, ch);
  }
  return t;
}

function addChannel(t: MessageTotals, ch: CoreChannel): void {
  const s = ch.stats;
  t.publish += s.published;
  t.deliver += s.delivered;
  t.get += s.got;
  t.ack += s.acked;
  t.redeliver += s.redelivered;
  t.returned += s.returned;
}

/**
 * Per-vhost counters: publishes counted at the exchanges (what entered the vhost), deliveries and
 * acks at the queues, bytes at the vhost's live connections.
 */
export function vhostTotals(core: Core, v: VHost): MessageTotals {
  const t: MessageTotals = { publish: 0, deliver: 0, get: 0, ack: 0, redeliver: 0, returned: 0, unroutable: 0, recvOct: 0, sendOct: 0 };
  for (const x of v.exchanges.values()) t.publish += x.stats.publishIn;
  for (const q of v.queues.values()) {
    t.deliver += q.stats.delivered;
    t.get += q.stats.got;
    t.ack += q.stats.acked;
    t.redeliver += q.stats.redelivered;
  }
  for (const c of core.connections) {
    if (c.vhost !== v) continue;
    t.recvOct += c.traffic.recvOct;
    t.sendOct += c.traffic.sendOct;
    for (const ch of c.channels) t.returned += ch.stats.returned;
  }
  return t;
}

export function vhostDepths(v: VHost): Depths {
  const d: Depths = { messages: 0, ready: 0, unacked: 0 };
  for (const q of v.queues.values()) {
    d.ready += q.readyCount;
    d.unacked += q.unackedCount;
  }
  d.messages = d.ready + d.unacked;
  return d;
}

export function globalDepths(core: Core): Depths {
  const d: Depths = { messages: 0, ready: 0, unacked: 0 };
  for (const v of core.vhosts.values()) {
    const x = vhostDepths(v);
    d.ready += x.ready;
    d.unacked += x.unacked;
  }
  d.messages = d.ready + d.unacked;
  return d;
}
