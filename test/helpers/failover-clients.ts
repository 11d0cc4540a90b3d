import amqp from 'amqplib';
import { deliveredWithin, type Delivery } from './delivery-check.js';

/**
 * AMQP clients that keep going through failures, for failover tests: each works against a list
 * of nodes, starting with the first; when its connection fails it moves to the next node of the
 * list and carries on. They record what they saw for {@link checkDeliveries}.
 */

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves when the connection closes (a killed node, or closed by the broker). */
function closed(c: amqp.ChannelModel): Promise<void> {
  return new Promise((resolve) => {
    c.once('close', () => resolve());
    c.on('error', () => undefined);
  });
}

abstract class FailoverClient {
  protected running = false;
  private loop: Promise<void> | undefined;
  private current: amqp.ChannelModel | undefined;
  /** Index in `urls` of the node in use. */
  node = 0;
  /** Connections made (the first one included). */
  connections = 0;

  constructor(
    protected readonly urls: string[],
    protected readonly queue: string,
  ) {}

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      let c: amqp.ChannelModel | undefined;
      try {
        c = await amqp.connect(this.urls[this.node]!);
        this.current = c;
        this.connections++;
        const gone = closed(c);
        await this.session(c, gone);
        await gone;
      } catch {
        // The next node of the list.
      }
      this.current = undefined;
      if (c !== undefined) await c.close().catch(() => undefined);
      if (!this.running) break;
      this.node = (this.node + 1) % this.urls.length;
      await sleep(200);
    }
  }

  /** Works on `c` until it is closed or the client stops. */
  protected abstract session(c: amqp.ChannelModel, gone: Promise<void>): Promise<void>;

  /** Stops after what is in flight settles (at most `settleMs`), then closes the connection. */
  async stop(settleMs = 10_000): Promise<void> {
    this.running = false;
    await this.settled(settleMs);
    await this.current?.close().catch(() => undefined);
    await this.loop;
  }

  protected async settled(_ms: number): Promise<void> {}
}

/**
 * Publishes `<prefix>-<n>` (body and message id) to `queue` with confirms, at most `window`
 * unconfirmed, one every `intervalMs`: every id sent is in {@link published} before it goes out,
 * then in {@link confirmed} or {@link nacked} (an id whose connection died first is in neither).
 */
export class ConfirmingPublisher extends FailoverClient {
  readonly published: string[] = [];
  readonly confirmed = new Set<string>();
  readonly nacked = new Set<string>();
  /** Milliseconds from send to the broker's answer, per answered id. */
  readonly answeredAfter = new Map<string, number>();
  private inFlight = 0;
  private n = 0;
  /** Published ids are taken from this point on only (see {@link mark}). */
  private marks = new Map<string, number>();

  constructor(
    urls: string[],
    queue: string,
    private readonly prefix: string,
    private readonly opts: { window?: number; intervalMs?: number } = {},
  ) {
    super(urls, queue);
  }

  /** The number of ids published so far, remembered as `name`; {@link since} lists those after it. */
  mark(name: string): void {
    this.marks.set(name, this.published.length);
  }

  /** The ids published after the mark `name` (and before the mark `until`, when given). */
  since(name: string, until?: string): string[] {
    return this.published.slice(this.marks.get(name) ?? 0, until === undefined ? undefined : this.marks.get(until));
  }

  protected async session(c: amqp.ChannelModel, gone: Promise<void>): Promise<void> {
    const ch = await c.createConfirmChannel();
    ch.on('error', () => undefined);
    let open = true;
    void gone.then(() => (open = false));
    ch.once('close', () => (open = false));
    const window = this.opts.window ?? 20;
    while (this.running && open) {
      if (this.inFlight >= window) {
        await sleep(5);
        continue;
      }
      const id = `${this.prefix}-${++this.n}`;
      this.published.push(id);
      this.inFlight++;
      const at = Date.now();
      try {
        ch.sendToQueue(this.queue, Buffer.from(id), { persistent: true, messageId: id }, (err) => {
          this.inFlight--;
          // amqplib fails every pending confirm when the channel closes: no answer from the broker.
          if (err === null || err === undefined) this.confirmed.add(id);
          else if (open) this.nacked.add(id);
          if (open) this.answeredAfter.set(id, Date.now() - at);
        });
      } catch {
        this.inFlight--;
        break;
      }
      await sleep(this.opts.intervalMs ?? 10);
    }
  }

  protected override async settled(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.inFlight > 0 && Date.now() < deadline) await sleep(10);
  }

  /** Waits until `count` more ids than now are confirmed, or `ms` passes; resolves with whether they were. */
  async confirmsGrowBy(count: number, ms: number): Promise<boolean> {
    const target = this.confirmed.size + count;
    const deadline = Date.now() + ms;
    while (this.confirmed.size < target && Date.now() < deadline) await sleep(20);
    return this.confirmed.size >= target;
  }
}

/** Consumes `queue` with manual acks and prefetch `prefetch`, recording every delivery in order. */
export class RecordingConsumer extends FailoverClient {
  readonly deliveries: Delivery[] = [];
  /** Distinct ids delivered. */
  readonly ids = new Set<string>();

  constructor(
    urls: string[],
    queue: string,
    private readonly prefetch = 50,
  ) {
    super(urls, queue);
  }

  protected async session(c: amqp.ChannelModel): Promise<void> {
    const ch = await c.createChannel();
    ch.on('error', () => undefined);
    await ch.prefetch(this.prefetch);
    await ch.consume(this.queue, (m) => {
      if (m === null) return;
      const id = m.content.toString();
      this.deliveries.push({ id, redelivered: m.fields.redelivered });
      this.ids.add(id);
      ch.ack(m);
    });
  }

  /** Waits until every id of `ids` was delivered, or `ms` passes; resolves with whether they were. */
  received(ids: Iterable<string>, ms: number): Promise<boolean> {
    return deliveredWithin(this.ids, ids, ms);
  }
}
