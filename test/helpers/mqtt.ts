import { connect as netConnect, type Socket } from 'node:net';
import mqtt, { type IClientOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import { generate, parser as createParser, type Packet } from 'mqtt-packet';
import type { TestBroker } from './broker.js';
import { waitFor } from './broker.js';

export type Transport = 'tcp' | 'ws' | 'ws-mqtt';

/** The broker's MQTT URL: TCP, WebSocket on `/ws` (subprotocol `mqtt`), or WebSocket on `/mqtt`. */
export function mqttUrl(tb: TestBroker, transport: Transport = 'tcp'): string {
  const p = tb.broker.ports;
  if (transport === 'tcp') return `mqtt://127.0.0.1:${p.mqtt}`;
  return `ws://127.0.0.1:${p.http}/${transport === 'ws' ? 'ws' : 'mqtt'}`;
}

/** Connects an mqtt.js client that never reconnects by itself; rejects on a refused CONNACK. */
export async function connectMqtt(url: string, opts: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
}

/**
 * Connects an mqtt.js client that collects messages from the very first packet (a resumed session
 * may deliver right after CONNACK) and reports the CONNACK.
 */
export function connectCollecting(url: string, opts: IClientOptions = {}): Promise<{ client: MqttClient; connack: IConnackPacket; received: Received[] }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 5000, ...opts });
  const received = collect(client);
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve({ client, connack, received }));
    client.once('error', reject);
  });
}

/** A received message, as the test sees it. */
export interface Received {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

/** Collects every message a client receives. */
export function collect(client: MqttClient): Received[] {
  const out: Received[] = [];
  client.on('message', (topic, payload, packet) => out.push({ topic, payload: payload.toString(), packet }));
  return out;
}

/** Waits until `list` holds at least `n` items and returns them. */
export async function waitForCount<T>(list: T[], n: number, timeoutMs = 5000): Promise<T[]> {
  await waitFor(() => list.length >= n, timeoutMs, `${n} items (have ${list.length})`);
  return list;
}

/** Resolves after the event loop has had `ms` to deliver anything unexpected (for "nothing arrives" checks). */
export function settle(ms = 150): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * A raw MQTT client over a plain socket: writes whatever bytes or packets a test wants and parses
 * what the broker answers, so bad input and exact packet sequences can be tested.
 */
export class RawMqtt {
  readonly packets: Packet[] = [];
  readonly closed: Promise<void>;
  isClosed = false;
  private readonly parser;

  private constructor(
    readonly socket: Socket,
    readonly version: 3 | 4 | 5,
  ) {
    this.parser = createParser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => this.packets.push(p));
    this.parser.on('error', () => undefined);
    socket.on('data', (b: Buffer) => this.parser.parse(b));
    socket.on('error', () => undefined);
    this.closed = new Promise((r) =>
      socket.on('close', () => {
        this.isClosed = true;
        r();
      }),
    );
  }

  static async open(port: number, version: 3 | 4 | 5 = 4): Promise<RawMqtt> {
    const socket = netConnect({ port, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.setNoDelay(true);
    return new RawMqtt(socket, version);
  }

  /** Opens a socket and completes CONNECT/CONNACK. */
  static async connected(port: number, version: 3 | 4 | 5, connect: Partial<Extract<Packet, { cmd: 'connect' }>> = {}): Promise<RawMqtt> {
    const r = await RawMqtt.open(port, version);
    r.send({
      cmd: 'connect',
      protocolId: version === 3 ? 'MQIsdp' : 'MQTT',
      protocolVersion: version,
      clientId: `raw-${Math.random().toString(36).slice(2)}`,
      clean: true,
      keepalive: 0,
      ...connect,
    } as Packet);
    const ack = await r.next('connack');
    const code = version === 5 ? ack.reasonCode : ack.returnCode;
    if (code !== 0) throw new Error(`CONNACK ${code}`);
    return r;
  }

  encode(p: Packet): Buffer {
    return generate(p, { protocolVersion: this.version });
  }

  send(p: Packet | Buffer): void {
    this.socket.write(Buffer.isBuffer(p) ? p : this.encode(p));
  }

  /** Waits for the next packet of a type that has not been taken yet, and takes it. */
  async next<C extends Packet['cmd']>(cmd: C, timeoutMs = 3000): Promise<Extract<Packet, { cmd: C }>> {
    const found = await waitFor(() => this.packets.find((p) => p.cmd === cmd), timeoutMs, `${cmd} packet`);
    this.packets.splice(this.packets.indexOf(found), 1);
    return found as Extract<Packet, { cmd: C }>;
  }

  /** Waits until the broker closes the connection. */
  async waitClosed(timeoutMs = 3000): Promise<void> {
    await waitFor(() => this.isClosed, timeoutMs, 'connection close');
  }

  end(): void {
    this.socket.destroy();
  }
}

/** Hand-built CONNECT bytes (3.1/3.1.1 layout) for cases mqtt-packet refuses to encode. */
export function connectBytes(level: number, clientId: string, clean: boolean, protocolName = level === 3 ? 'MQIsdp' : 'MQTT'): Buffer {
  const name = Buffer.from(protocolName, 'latin1');
  const id = Buffer.from(clientId, 'utf8');
  const body = Buffer.concat([
    Buffer.from([0, name.length]),
    name,
    Buffer.from([level, clean ? 0x02 : 0x00, 0, 0]),
    Buffer.from([id.length >> 8, id.length & 0xff]),
    id,
  ]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}
