/** When the process started (ms since the epoch). */
const STARTED_AT = Date.now();

/**
 * Now, as whole milliseconds since the process started: a small integer for the first 24 days,
 * which an object keeps in place, where a Date.now() value is a boxed number in every object.
 */
export function msSinceStart(): number {
  return Math.trunc(Date.now() - STARTED_AT);
}

/** A {@link msSinceStart} reading as ms since the epoch. */
export function epochMs(sinceStart: number): number {
  return STARTED_AT + sinceStart;
}

/** Message counters a channel keeps on its hot path (plain increments). */
export interface ChannelStats {
  published: number;
  delivered: number;
  acked: number;
  redelivered: number;
  got: number;
  returned: number;
}

/** Byte and frame counters a connection's adapter keeps. */
export interface Traffic {
  recvOct: number;
  sendOct: number;
  recvCnt: number;
  sendCnt: number;
  /** Messages dropped for a client that did not keep up (MQTT QoS 0 beyond its session's bound). */
  dropped: number;
}

/**
 * A live connection's counters, plus their values at the management sampler's previous sample (it
 * turns the differences into rates; fields rather than a side table keep an idle connection small).
 */
export class ConnectionTraffic implements Traffic {
  recvOct = 0;
  sendOct = 0;
  recvCnt = 0;
  sendCnt = 0;
  dropped = 0;
  sampledRecvOct = 0;
  sampledSendOct = 0;
  sampledRecvCnt = 0;
  sampledSendCnt = 0;
}

/** Message counters as fields of their owner (a channel is its own ChannelStats). */
export class ChannelCounters implements ChannelStats {
  published = 0;
  delivered = 0;
  acked = 0;
  redelivered = 0;
  got = 0;
  returned = 0;
}

/** Everything counted for one protocol by connections and channels that have closed. */
export class ProtocolTotals extends ChannelCounters implements Traffic {
  connectionsOpened = 0;
  connectionsClosed = 0;
  channelsOpened = 0;
  channelsClosed = 0;
  recvOct = 0;
  sendOct = 0;
  recvCnt = 0;
  sendCnt = 0;
  dropped = 0;
}

/**
 * Monotonic totals per protocol. Live channels and connections count on their own objects; when
 * one closes its counters are folded in here, so "total = retired + live" never goes backwards and
 * nothing extra happens per message.
 */
export class CoreTotals {
  readonly byProtocol = new Map<string, ProtocolTotals>();

  of(protocol: string): ProtocolTotals {
    let t = this.byProtocol.get(protocol);
    if (!t) this.byProtocol.set(protocol, (t = new ProtocolTotals()));
    return t;
  }

  retireChannel(protocol: string, s: ChannelStats): void {
    const t = this.of(protocol);
    t.channelsClosed++;
    t.published += s.published;
    t.delivered += s.delivered;
    t.acked += s.acked;
    t.redelivered += s.redelivered;
    t.got += s.got;
    t.returned += s.returned;
  }

  retireConnection(protocol: string, traffic: Traffic): void {
    const t = this.of(protocol);
    t.connectionsClosed++;
    t.recvOct += traffic.recvOct;
    t.sendOct += traffic.sendOct;
    t.recvCnt += traffic.recvCnt;
    t.sendCnt += traffic.sendCnt;
    t.dropped += traffic.dropped;
  }
}
