/**
 * MQTT 3.1.1 client roles, written against the wire format directly (a few packet types only):
 * - publisher: one connection per topic, PUBLISH QoS 0 or 1 round-robin over them; QoS 1 keeps at
 *   most `inflight` PUBLISHes awaiting PUBACK per connection (publish() returns false at the limit);
 * - consumer: one connection, SUBSCRIBE to a (wildcard) filter, PUBACK for QoS 1 deliveries;
 * - idle connections for the memory scenario (CONNECT, then PINGREQ now and then);
 * - a probe (CONNECT -> CONNACK).
 * Works against any MQTT 3.1.1 broker (Warren, Mosquitto, RabbitMQ's MQTT plugin, Aedes).
 * Outgoing packets are batched per event-loop turn, incoming ones parsed without copying.
 */
import type { Socket } from 'node:net';

import type { ConsumerDriver, MqttConsumerSpec, MqttPublisherSpec, OnFatal, OnMessage, PublisherDriver } from './types.js';
import { BatchWriter, ReadBuffer, closeSocket, hostPort, openSocket } from './wire.js';

const DEFAULT_PORT = 1883;
const CONNACK_TIMEOUT_MS = 10_000;
/**
 * The idle connections' keep-alive pings go out in slices, one slice per tick. The tick is short, so
 * that a slice holds about one ping per process: pings from independent devices arrive one by one,
 * not in bursts of dozens.
 */
const PING_TICK_MS = 10;

const CONNECT = 1;
const CONNACK = 2;
const PUBLISH = 3;
const PUBACK = 4;
const SUBSCRIBE = 8;
const SUBACK = 9;
const PINGREQ = 12;
const PINGRESP = 13;
const DISCONNECT = 14;

const CONNACK_CODES: Record<number, string> = {
  1: 'unacceptable protocol version',
  2: 'identifier rejected',
  3: 'server unavailable',
  4: 'bad user name or password',
  5: 'not authorized',
};

/** Bytes of the MQTT variable-length "remaining length" encoding of `n`. */
function varintLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

function writeVarint(buf: Buffer, at: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    buf[at++] = b;
  } while (n > 0);
  return at;
}

function connectPacket(clientId: string, keepAliveS: number, username: string | null, password: string | null, clean = true): Buffer {
  const id = Buffer.from(clientId, 'utf8');
  const user = username === null ? null : Buffer.from(username, 'utf8');
  const pass = password === null ? null : Buffer.from(password, 'utf8');
  const rest = 10 + 2 + id.length + (user === null ? 0 : 2 + user.length) + (pass === null ? 0 : 2 + pass.length);
  const buf = Buffer.alloc(1 + varintLength(rest) + rest);
  let at = 0;
  buf[at++] = CONNECT << 4;
  at = writeVarint(buf, at, rest);
  at = buf.writeUInt16BE(4, at);
  at += buf.write('MQTT', at, 'latin1');
  buf[at++] = 4; // protocol level 4 = 3.1.1
  buf[at++] = (clean ? 0x02 : 0) | (user !== null ? 0x80 : 0) | (pass !== null ? 0x40 : 0); // clean session flag
  at = buf.writeUInt16BE(keepAliveS, at);
  at = buf.writeUInt16BE(id.length, at);
  at += id.copy(buf, at);
  for (const field of [user, pass]) {
    if (field === null) continue;
    at = buf.writeUInt16BE(field.length, at);
    at += field.copy(buf, at);
  }
  return buf;
}

function subscribePacket(filter: string, qos: number, packetId: number): Buffer {
  const f = Buffer.from(filter, 'utf8');
  const rest = 2 + 2 + f.length + 1;
  const buf = Buffer.alloc(1 + varintLength(rest) + rest);
  let at = 0;
  buf[at++] = (SUBSCRIBE << 4) | 0x02;
  at = writeVarint(buf, at, rest);
  at = buf.writeUInt16BE(packetId, at);
  at = buf.writeUInt16BE(f.length, at);
  at += f.copy(buf, at);
  buf[at] = qos;
  return buf;
}

const PINGREQ_PACKET = Buffer.from([PINGREQ << 4, 0]);
const DISCONNECT_PACKET = Buffer.from([DISCONNECT << 4, 0]);

interface Packet {
  type: number;
  flags: number;
  /** The packet's bytes after the fixed header: a view into the read buffer, valid during the callback. */
  body: Buffer;
}

/**
 * One MQTT connection: CONNECT/CONNACK on open, then every complete incoming packet goes to
 * `onPacket`. Outgoing bytes go through `out` (batched per turn).
 */
class MqttConnection {
  readonly out: BatchWriter;
  private readonly input = new ReadBuffer();
  private onPacket: (p: Packet) => void = () => undefined;
  private closing = false;

  private constructor(
    readonly socket: Socket,
    readonly clientId: string,
  ) {
    this.out = new BatchWriter(socket);
  }

  static async open(
    url: string,
    clientId: string,
    keepAliveS: number,
    onFatal: OnFatal | null,
    clean = true,
  ): Promise<MqttConnection> {
    const u = new URL(url);
    const secure = u.protocol === 'mqtts:';
    const { host, port } = hostPort(u, secure ? 8883 : DEFAULT_PORT);
    const socket = await openSocket(host, port, undefined, secure);
    const c = new MqttConnection(socket, clientId);
    const username = u.username === '' ? null : decodeURIComponent(u.username);
    const password = u.password === '' ? null : decodeURIComponent(u.password);
    const connack = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${clientId}: no CONNACK within ${CONNACK_TIMEOUT_MS} ms`)), CONNACK_TIMEOUT_MS);
      c.onPacket = (p) => {
        clearTimeout(timer);
        if (p.type !== CONNACK) {
          reject(new Error(`${clientId}: expected CONNACK, got packet type ${p.type}`));
          return;
        }
        const rc = p.body[1] ?? 255;
        if (rc !== 0) reject(new Error(`${clientId}: CONNACK ${rc} (${CONNACK_CODES[rc] ?? 'refused'})`));
        else resolve();
      };
      socket.once('close', () => {
        clearTimeout(timer);
        reject(new Error(`${clientId}: connection closed before CONNACK`));
      });
    });
    socket.on('data', (chunk: Buffer) => c.onData(chunk));
    socket.on('error', (err) => {
      if (!c.closing) onFatal?.(err);
    });
    socket.on('close', () => {
      if (!c.closing) onFatal?.(new Error(`${clientId}: connection closed by the broker`));
    });
    c.out.push(connectPacket(clientId, keepAliveS, username, password, clean));
    try {
      await connack;
    } catch (err) {
      c.closing = true;
      socket.destroy();
      throw err;
    }
    c.onPacket = () => undefined;
    return c;
  }

  handle(onPacket: (p: Packet) => void): void {
    this.onPacket = onPacket;
  }

  private onData(chunk: Buffer): void {
    const input = this.input;
    input.feed(chunk);
    const data = input.data;
    let at = input.offset;
    const end = data.length;
    for (;;) {
      if (end - at < 2) break;
      // Remaining length: 1..4 bytes of 7 bits each.
      let len = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      for (let n = 0; n < 4 && i < end; n++) {
        const b = data[i++]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || end - i < len) break;
      const first = data[at]!;
      this.onPacket({ type: first >> 4, flags: first & 0x0f, body: data.subarray(i, i + len) });
      at = i + len;
    }
    input.offset = at;
    this.out.flush();
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.socket.destroyed) return;
    this.out.push(DISCONNECT_PACKET);
    this.out.flush();
    await closeSocket(this.socket);
  }
}

export async function openMqttPublisher(spec: MqttPublisherSpec, onFatal: OnFatal): Promise<PublisherDriver> {
  if (spec.topics.length === 0) throw new Error('mqtt publisher: no topics');
  const conns: MqttConnection[] = [];
  const inflight: number[] = [];
  const topics: Buffer[] = spec.topics.map((t) => Buffer.from(t, 'utf8'));
  try {
    for (let i = 0; i < spec.topics.length; i++) {
      conns.push(await MqttConnection.open(spec.url, `${spec.clientIdPrefix}${i}`, 0, onFatal));
      inflight.push(0);
    }
  } catch (err) {
    await Promise.all(conns.map((c) => c.close()));
    throw err;
  }
  const qos = spec.qos;
  const maxInflight = Math.max(1, spec.inflight);
  // QoS 1: callbacks waiting for a PUBACK to free a slot.
  let ackWaiters: Array<() => void> = [];
  conns.forEach((c, i) => {
    c.handle((p) => {
      if (p.type === PUBACK) {
        inflight[i]!--;
        if (ackWaiters.length > 0 && inflight[i]! < maxInflight) {
          const ws = ackWaiters;
          ackWaiters = [];
          for (const cb of ws) cb();
        }
      } else if (p.type !== PINGRESP) {
        onFatal(new Error(`${c.clientId}: unexpected packet type ${p.type}`));
      }
    });
  });
  let next = 0;
  let packetId = 0;
  // The connection the last publish went to, and whether it refused more (window or socket).
  let lastConn = 0;
  return {
    publish: (body) => {
      const i = next;
      next = next + 1 === conns.length ? 0 : next + 1;
      lastConn = i;
      const c = conns[i]!;
      const topic = topics[i]!;
      const rest = 2 + topic.length + (qos > 0 ? 2 : 0) + body.length;
      const out = c.out;
      let at = out.reserve(1 + varintLength(rest) + rest);
      const buf = out.buf;
      buf[at++] = (PUBLISH << 4) | (qos << 1);
      at = writeVarint(buf, at, rest);
      buf[at++] = topic.length >> 8;
      buf[at++] = topic.length & 0xff;
      at += topic.copy(buf, at);
      if (qos > 0) {
        packetId = packetId === 65_535 ? 1 : packetId + 1;
        buf[at++] = packetId >> 8;
        buf[at++] = packetId & 0xff;
        inflight[i]!++;
      }
      body.copy(buf, at);
      return out.writable && (qos === 0 || inflight[i]! < maxInflight);
    },
    whenWritable: (cb) => {
      const c = conns[lastConn]!;
      if (!c.out.writable) c.out.whenWritable(cb);
      else if (qos > 0 && inflight[lastConn]! >= maxInflight) ackWaiters.push(cb);
      else setImmediate(cb);
    },
    close: async () => {
      await Promise.all(conns.map((c) => c.close()));
    },
  };
}

async function subscribe(c: MqttConnection, filter: string, qos: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${c.clientId}: no SUBACK within 10 s`)), 10_000);
    c.handle((p) => {
      if (p.type !== SUBACK) return;
      clearTimeout(timer);
      const granted = p.body[2] ?? 0x80;
      if (granted === 0x80) reject(new Error(`${c.clientId}: subscription to ${filter} refused`));
      else if (granted !== qos) reject(new Error(`${c.clientId}: asked QoS ${qos} for ${filter}, granted ${granted}`));
      else resolve();
    });
    c.out.push(subscribePacket(filter, qos, 1));
  });
}

export async function openMqttConsumer(
  spec: MqttConsumerSpec,
  onMessage: OnMessage,
  onFatal: OnFatal,
): Promise<ConsumerDriver> {
  const c = await MqttConnection.open(spec.url, spec.clientId, 0, onFatal);
  try {
    await subscribe(c, spec.filter, spec.qos);
  } catch (err) {
    await c.close();
    throw err;
  }
  c.handle((p) => {
    if (p.type !== PUBLISH) {
      if (p.type !== PINGRESP) onFatal(new Error(`${c.clientId}: unexpected packet type ${p.type}`));
      return;
    }
    const body = p.body;
    const qos = (p.flags >> 1) & 3;
    let at = 2 + ((body[0]! << 8) | body[1]!);
    if (qos > 0) {
      const hi = body[at]!;
      const lo = body[at + 1]!;
      at += 2;
      // PUBACK goes out with the rest of this turn's writes.
      const o = c.out.reserve(4);
      const buf = c.out.buf;
      buf[o] = PUBACK << 4;
      buf[o + 1] = 2;
      buf[o + 2] = hi;
      buf[o + 3] = lo;
    }
    onMessage(body.subarray(at));
  });
  return { close: () => c.close() };
}

/** Connect once (CONNECT -> CONNACK) to check that an MQTT broker answers at `url`. */
export async function probeMqtt(url: string): Promise<void> {
  const c = await MqttConnection.open(url, `warren-bench-probe-${process.pid}`, 10, null);
  await c.close();
}

/** What each idle connection subscribes to: `filter` with `%c` replaced by its client id. */
export interface IdleSubscription {
  filter: string;
  qos: 0 | 1 | 2;
}

/**
 * `count` idle connections (keep-alive `keepAliveS`; clean session unless `clean` is false), opened
 * `concurrency` at a time, each with one subscription when `subscribe` is given (deliveries are
 * counted and QoS 1 ones acknowledged). A PINGREQ goes out on each at half the keep-alive so that
 * no broker drops them. Returns how many connected, and a close function.
 */
export async function openIdleMqttConnections(o: {
  url: string;
  count: number;
  concurrency: number;
  clientIdPrefix: string;
  keepAliveS: number;
  onFatal: OnFatal;
  clean?: boolean;
  subscribe?: IdleSubscription | null;
  onDelivery?: () => void;
}): Promise<{ opened: number; errors: string[]; close(): Promise<void> }> {
  const conns: MqttConnection[] = [];
  const errors: string[] = [];
  let next = 0;
  let closing = false;
  const worker = async (): Promise<void> => {
    while (next < o.count && errors.length === 0) {
      const i = next++;
      try {
        const c = await MqttConnection.open(
          o.url,
          `${o.clientIdPrefix}${i}`,
          o.keepAliveS,
          (err) => {
            if (!closing) o.onFatal(err);
          },
          o.clean ?? true,
        );
        const sub = o.subscribe ?? null;
        if (sub !== null) await subscribe(c, sub.filter.replace('%c', c.clientId), sub.qos);
        c.handle((p) => {
          if (p.type === PUBLISH && sub !== null) {
            o.onDelivery?.();
            const qos = (p.flags >> 1) & 3;
            if (qos > 0) {
              // The packet id follows the topic: PUBACK (QoS 1) or PUBREC (QoS 2, never completed: the scenarios use QoS 1).
              const topicLen = p.body.readUInt16BE(0);
              const id = p.body.readUInt16BE(2 + topicLen);
              c.out.push(Buffer.from([(qos === 1 ? PUBACK : 5) << 4, 2, id >> 8, id & 0xff]));
            }
            return;
          }
          if (p.type !== PINGRESP) o.onFatal(new Error(`${c.clientId}: unexpected packet type ${p.type}`));
        });
        conns.push(c);
      } catch (err) {
        errors.push(err instanceof Error ? err.message : String(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, o.concurrency) }, worker));
  // Each connection sends a PINGREQ every half keep-alive, the connections spread evenly over that
  // period (as independent devices' timers are), not all 10 000 in the same instant.
  const periodMs = Math.max(1_000, (o.keepAliveS * 1000) / 2);
  const slots = Math.max(1, Math.round(periodMs / PING_TICK_MS));
  let slot = 0;
  const pinger = setInterval(() => {
    for (let i = slot; i < conns.length; i += slots) conns[i]!.out.push(PINGREQ_PACKET);
    slot = (slot + 1) % slots;
  }, PING_TICK_MS);
  pinger.unref();
  return {
    opened: conns.length,
    errors,
    close: async () => {
      closing = true;
      clearInterval(pinger);
      // Close in slices: 10 000 simultaneous FIN handshakes are fine, but keep the event loop responsive.
      for (let i = 0; i < conns.length; i += 500) {
        await Promise.all(conns.slice(i, i + 500).map((c) => c.close()));
      }
    },
  };
}

/**
 * One connection that publishes `body` to `topic` with QoS `qos`, `ratePerS` times a second, until
 * closed (the fan-out memory scenario's load). QoS 1 PUBACKs are not waited for.
 */
export async function openTickingPublisher(o: { url: string; clientId: string; topic: string; qos: 0 | 1; ratePerS: number; body: Buffer; onFatal: OnFatal }): Promise<{ sent(): number; close(): Promise<void> }> {
  const c = await MqttConnection.open(o.url, o.clientId, 0, o.onFatal);
  c.handle((p) => {
    if (p.type !== PUBACK && p.type !== PINGRESP) o.onFatal(new Error(`${c.clientId}: unexpected packet type ${p.type}`));
  });
  const topic = Buffer.from(o.topic, 'utf8');
  let packetId = 0;
  let sent = 0;
  const timer = setInterval(() => {
    const rest = 2 + topic.length + (o.qos > 0 ? 2 : 0) + o.body.length;
    const buf = Buffer.alloc(1 + varintLength(rest) + rest);
    let at = 0;
    buf[at++] = (PUBLISH << 4) | (o.qos << 1);
    at = writeVarint(buf, at, rest);
    at = buf.writeUInt16BE(topic.length, at);
    at += topic.copy(buf, at);
    if (o.qos > 0) {
      packetId = packetId === 65_535 ? 1 : packetId + 1;
      at = buf.writeUInt16BE(packetId, at);
    }
    o.body.copy(buf, at);
    c.out.push(buf);
    c.out.flush();
    sent++;
  }, Math.max(1, Math.round(1000 / o.ratePerS)));
  return {
    sent: () => sent,
    close: async () => {
      clearInterval(timer);
      await c.close();
    },
  };
}
