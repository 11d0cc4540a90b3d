import { connect as amqpConnect } from 'amqplib';
import mqtt, { type MqttClient } from 'mqtt';
import { connect, type Socket } from 'node:net';
import type { Ports } from './case.js';

/**
 * One well-behaved client per protocol, connected for the whole run. A health check has each of
 * them send a message to itself through the broker; a bystander that cannot do so within the
 * bound, or whose connection was closed, means the fuzzed clients harmed another client.
 */
interface Bystander {
  name: string;
  /** Why the connection is gone, if it is. */
  lost: string | undefined;
  roundTrip(token: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Pending round trips by token; resolved when the token comes back. */
class Waiters {
  private readonly map = new Map<string, () => void>();

  wait(token: string, timeoutMs: number, what: string, send: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.map.delete(token);
        reject(new Error(`${what}: no round trip within ${timeoutMs} ms`));
      }, timeoutMs);
      this.map.set(token, () => {
        clearTimeout(t);
        resolve();
      });
      try {
        send();
      } catch (e) {
        clearTimeout(t);
        this.map.delete(token);
        reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
  }

  arrived(token: string): void {
    const fn = this.map.get(token);
    if (fn) {
      this.map.delete(token);
      fn();
    }
  }
}

async function amqpBystander(ports: Ports, sink: boolean): Promise<Bystander> {
  // amqplib: @cloudamqp/amqp-client 4.1.1 misreads a frame header that arrives split over three or
  // more reads (its issue #206), which a busy broker's socket produces now and then.
  const conn = await amqpConnect(`amqp://guest:guest@127.0.0.1:${ports.amqp}`);
  const ch = await conn.createChannel();
  const waiters = new Waiters();
  const q = await ch.assertQueue('fuzz-bystander-amqp', { exclusive: true });
  const b: Bystander = {
    name: 'amqp',
    lost: undefined,
    roundTrip(token, timeoutMs) {
      return waiters.wait(token, timeoutMs, 'amqp bystander', () => {
        ch.sendToQueue(q.queue, Buffer.from(token));
      });
    },
    close: () => conn.close(),
  };
  conn.on('error', (e: Error) => (b.lost ??= `connection error: ${e.message}`));
  conn.on('close', () => (b.lost ??= 'connection closed'));
  ch.on('error', (e: Error) => (b.lost ??= `channel error: ${e.message}`));
  await ch.consume(q.queue, (msg) => msg && waiters.arrived(msg.content.toString()), { noAck: true });
  if (sink) {
    // receive everything published to amq.topic, as an AMQP consumer, so that messages from every
    // other protocol must be encodable as AMQP deliveries
    const s = await ch.assertQueue('', { exclusive: true, arguments: { 'x-max-length': 1000 } });
    await ch.bindQueue(s.queue, 'amq.topic', '#');
    await ch.consume(s.queue, () => undefined, { noAck: true });
  }
  return b;
}

async function mqttBystander(ports: Ports): Promise<Bystander> {
  const client: MqttClient = await mqtt.connectAsync(`mqtt://127.0.0.1:${ports.mqtt}`, {
    clientId: 'fuzz-bystander-mqtt',
    username: 'guest',
    password: 'guest',
    clean: true,
    reconnectPeriod: 0,
    keepalive: 0,
    protocolVersion: 5,
  });
  const waiters = new Waiters();
  const topic = 'fuzz-bystander/mqtt';
  const b: Bystander = {
    name: 'mqtt',
    lost: undefined,
    roundTrip(token, timeoutMs) {
      return waiters.wait(token, timeoutMs, 'mqtt bystander', () => {
        client.publishAsync(topic, token, { qos: 1 }).catch((e: unknown) => (b.lost ??= `publish failed: ${String(e)}`));
      });
    },
    close: () => client.endAsync(),
  };
  client.on('message', (_t, payload) => waiters.arrived(payload.toString()));
  client.on('close', () => (b.lost ??= 'connection closed'));
  client.on('error', (e) => (b.lost ??= `error: ${e.message}`));
  await client.subscribeAsync(topic, { qos: 1 });
  // a sink: everything on amq.topic, whatever protocol published it, must reach an MQTT 5 client
  // as packets it can parse (a parse failure is an 'error', and the bystander is lost)
  await client.subscribeAsync('#', { qos: 0 });
  return b;
}

async function stompBystander(ports: Ports): Promise<Bystander> {
  const sock: Socket = await new Promise((resolve, reject) => {
    const s = connect({ port: ports.stomp, host: '127.0.0.1' }, () => resolve(s));
    s.once('error', reject);
  });
  const waiters = new Waiters();
  const dest = '/queue/fuzz-bystander-stomp';
  let buf: Buffer = Buffer.alloc(0);
  let connected: (() => void) | undefined;
  const b: Bystander = {
    name: 'stomp',
    lost: undefined,
    roundTrip(token, timeoutMs) {
      return waiters.wait(token, timeoutMs, 'stomp bystander', () => {
        sock.write(`SEND\ndestination:${dest}\ncontent-type:text/plain\n\n${token}\0`);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        sock.end('DISCONNECT\n\n\0', () => resolve());
        setTimeout(() => {
          sock.destroy();
          resolve();
        }, 1000).unref();
      }),
  };
  sock.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    for (;;) {
      let start = 0;
      while (start < buf.length && (buf[start] === 0x0a || buf[start] === 0x0d)) start++; // heart-beats
      const sep = buf.indexOf('\n\n', start);
      if (sep < 0) break;
      const head = buf.subarray(start, sep).toString('utf8').split('\n');
      const command = head[0]!.replace(/\r$/, '');
      const lengthHeader = head.find((h) => h.startsWith('content-length:'));
      const length = lengthHeader === undefined ? -1 : Number(lengthHeader.slice('content-length:'.length));
      const end = length >= 0 ? sep + 2 + length : buf.indexOf(0, sep + 2);
      if (end < 0 || end >= buf.length) break; // the body (and its NUL) is not all here yet
      if (buf[end] !== 0) b.lost ??= `${command} frame whose content-length is not followed by NUL`;
      const body = buf.subarray(sep + 2, end).toString('utf8');
      buf = buf.subarray(end + 1);
      if (command === 'CONNECTED') connected?.();
      else if (command === 'MESSAGE') waiters.arrived(body);
      else b.lost ??= `${command} frame: ${head.join(' ').slice(0, 300)} ${body.slice(0, 200)}`;
    }
  });
  sock.on('close', () => (b.lost ??= 'connection closed'));
  sock.on('error', (e) => (b.lost ??= `error: ${e.message}`));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('stomp bystander: no CONNECTED')), 10_000);
    connected = () => {
      clearTimeout(t);
      resolve();
    };
    sock.write('CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\nheart-beat:0,0\n\n\0');
  });
  sock.write(`SUBSCRIBE\ndestination:${dest}\nid:0\nack:auto\n\n\0`);
  // a sink, as for MQTT: everything on amq.topic delivered as STOMP frames
  sock.write('SUBSCRIBE\ndestination:/topic/#\nid:1\nack:auto\n\n\0');
  return b;
}

/** The three bystanders of a run. */
export class Bystanders {
  private counter = 0;

  private constructor(private readonly all: Bystander[]) {}

  static async connect(ports: Ports, sink: boolean): Promise<Bystanders> {
    return new Bystanders(await Promise.all([amqpBystander(ports, sink), mqttBystander(ports), stompBystander(ports)]));
  }

  /** Resolves when every bystander round-tripped; rejects with the first that did not. */
  async check(timeoutMs: number): Promise<void> {
    for (const b of this.all) if (b.lost !== undefined) throw new Error(`${b.name} bystander lost its connection: ${b.lost}`);
    const n = ++this.counter;
    await Promise.all(this.all.map((b) => b.roundTrip(`rt-${b.name}-${n}`, timeoutMs)));
    for (const b of this.all) if (b.lost !== undefined) throw new Error(`${b.name} bystander lost its connection: ${b.lost}`);
  }

  /** Closes every bystander, giving up after 2 s (the broker may be gone). */
  async close(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, 2000)));
    await Promise.race([Promise.allSettled(this.all.map((b) => b.close())), timeout]);
    clearTimeout(timer);
  }
}
