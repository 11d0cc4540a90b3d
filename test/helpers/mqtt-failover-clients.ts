import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { deliveredWithin, type Delivery } from './delivery-check.js';

/**
 * MQTT clients that keep going through failures, for failover tests: each works against a list of
 * nodes (a function, so a node started again on a new port is found), starting with the first;
 * when its connection fails it moves to the next node and carries on. They record what they saw
 * for {@link checkDeliveries}.
 */

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Connects without automatic reconnects; resolves with the client and its CONNACK's session flag, or rejects. */
function open(url: string, opts: IClientOptions, attach: (c: MqttClient) => void): Promise<{ client: MqttClient; sessionPresent: boolean }> {
  const client = mqtt.connect(url, { reconnectPeriod: 0, connectTimeout: 3000, keepalive: 5, ...opts });
  // A resumed session may deliver in the same read as the CONNACK.
  attach(client);
  return new Promise((resolve, reject) => {
    client.once('connect', (connack) => resolve({ client, sessionPresent: connack.sessionPresent }));
    client.once('error', (e) => {
      client.end(true);
      reject(e);
    });
    client.once('close', () => reject(new Error(`closed before CONNACK (${url})`)));
  });
}

/** Resolves when the client's connection closes. */
function closed(c: MqttClient): Promise<void> {
  return new Promise((resolve) => {
    if (!c.connected) resolve();
    c.once('close', () => resolve());
  });
}

abstract class MqttFailoverClient {
  protected running = false;
  private loop: Promise<void> | undefined;
  protected current: MqttClient | undefined;
  /** Index in `urls()` of the node in use. */
  node = 0;
  /** Connections made (the first one included). */
  connections = 0;

  constructor(protected readonly urls: () => string[]) {}

  start(): Promise<void> {
    this.running = true;
    let first: () => void = () => undefined;
    const connected = new Promise<void>((resolve) => (first = resolve));
    this.loop = this.run(first);
    return connected;
  }

  private async run(connected: () => void): Promise<void> {
    while (this.running) {
      let c: MqttClient | undefined;
      try {
        const opened = await open(this.urls()[this.node]!, this.options(this.connections === 0), (client) => this.attach(client));
        c = opened.client;
        c.on('error', () => undefined);
        this.current = c;
        this.connections++;
        const gone = closed(c);
        await this.session(c, opened.sessionPresent, gone);
        connected();
        await gone;
      } catch {
        // The next node of the list.
      }
      this.current = undefined;
      c?.end(true);
      this.lost();
      if (!this.running) break;
      this.node = (this.node + 1) % this.urls().length;
      await sleep(200);
    }
  }

  /** CONNECT options; `first` for the first connection of the client. */
  protected abstract options(first: boolean): IClientOptions;
  /** Sets up, or works on, `c` until it is closed or the client stops. */
  protected abstract session(c: MqttClient, sessionPresent: boolean, gone: Promise<void>): Promise<void>;
  /** Adds listeners to a client before it connects. */
  protected attach(_c: MqttClient): void {}
  /** Called after a connection is gone. */
  protected lost(): void {}

  async stop(settleMs = 10_000): Promise<void> {
    this.running = false;
    await this.settled(settleMs);
    this.current?.end();
    await this.loop;
  }

  protected async settled(_ms: number): Promise<void> {}
}

/**
 * Publishes `<prefix>-<n>` at QoS 1 to `topic`, at most `window` without PUBACK, one every
 * `intervalMs`. When its connection dies, what was sent and not PUBACKed is sent again (first) on
 * the next node, and its ids are in {@link resent}: their repeats are new publishes, without DUP.
 */
export class QosOnePublisher extends MqttFailoverClient {
  readonly published: string[] = [];
  readonly acked = new Set<string>();
  readonly resent = new Set<string>();
  /** Sent on the current connection, not PUBACKed yet. */
  private unanswered = new Set<string>();
  /** To send again on the next connection. */
  private again: string[] = [];
  private n = 0;

  constructor(
    urls: () => string[],
    private readonly topic: string,
    private readonly prefix: string,
    private readonly opts: { window?: number; intervalMs?: number } = {},
  ) {
    super(urls);
  }

  protected options(): IClientOptions {
    return { protocolVersion: 4, clean: true, clientId: `${this.prefix}-${this.connections}-${Math.random().toString(36).slice(2, 8)}` };
  }

  protected override lost(): void {
    this.again.push(...this.unanswered);
    this.unanswered = new Set();
  }

  private send(c: MqttClient, id: string): void {
    const sentOn = this.unanswered;
    sentOn.add(id);
    c.publish(this.topic, id, { qos: 1 }, (err) => {
      // Only an answer on the connection it was sent on counts; a client that is ended fails its pending publishes.
      if (!sentOn.has(id)) return;
      if (err === undefined || err === null) {
        sentOn.delete(id);
        this.acked.add(id);
      }
    });
  }

  protected async session(c: MqttClient, _present: boolean, gone: Promise<void>): Promise<void> {
    let open = true;
    void gone.then(() => (open = false));
    const again = this.again;
    this.again = [];
    for (const id of again) {
      this.resent.add(id);
      this.send(c, id);
    }
    const window = this.opts.window ?? 20;
    while (this.running && open) {
      if (this.unanswered.size >= window) {
        await sleep(5);
        continue;
      }
      const id = `${this.prefix}-${++this.n}`;
      this.published.push(id);
      this.send(c, id);
      await sleep(this.opts.intervalMs ?? 10);
    }
  }

  protected override async settled(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while ((this.unanswered.size > 0 || this.again.length > 0) && Date.now() < deadline) await sleep(10);
  }

  /** Waits until `count` more ids than now are PUBACKed, or `ms` passes; resolves with whether they were. */
  async acksGrowBy(count: number, ms: number): Promise<boolean> {
    const target = this.acked.size + count;
    const deadline = Date.now() + ms;
    while (this.acked.size < target && Date.now() < deadline) await sleep(20);
    return this.acked.size >= target;
  }
}

/**
 * A subscriber with a persistent session (`version` 4: clean session false; 5: session expiry
 * `expirySeconds`, a clean start on the first connection only), subscribed at QoS 1 to `filter`
 * until the broker grants it (on the first connection, normally); it resumes the session on the
 * next node when its node dies. It records every delivery in order, `redelivered` being the
 * packet's DUP flag.
 */
export class SessionSubscriber extends MqttFailoverClient {
  readonly deliveries: Delivery[] = [];
  readonly ids = new Set<string>();
  /** The CONNACK session-present flag of every connection after the subscription was granted. */
  readonly resumedWithSession: boolean[] = [];
  private subscribed = false;

  constructor(
    urls: () => string[],
    private readonly clientId: string,
    private readonly filter: string,
    private readonly version: 4 | 5,
    private readonly expirySeconds = 300,
  ) {
    super(urls);
  }

  protected options(first: boolean): IClientOptions {
    return this.version === 4
      ? { protocolVersion: 4, clientId: this.clientId, clean: false }
      : { protocolVersion: 5, clientId: this.clientId, clean: first, properties: { sessionExpiryInterval: this.expirySeconds } };
  }

  protected override attach(c: MqttClient): void {
    c.on('message', (_topic, payload, packet) => {
      const id = payload.toString();
      this.deliveries.push({ id, redelivered: packet.dup });
      this.ids.add(id);
    });
  }

  protected async session(c: MqttClient, sessionPresent: boolean): Promise<void> {
    if (this.subscribed) {
      this.resumedWithSession.push(sessionPresent);
      return;
    }
    const granted = await c.subscribeAsync(this.filter, { qos: 1 });
    if (granted.some((g) => g.qos !== 1)) throw new Error(`subscription to ${this.filter} refused`);
    this.subscribed = true;
  }

  /** Waits until every id of `ids` was delivered, or `ms` passes; resolves with whether they were. */
  received(ids: Iterable<string>, ms: number): Promise<boolean> {
    return deliveredWithin(this.ids, ids, ms);
  }
}
