import { replyNode, type Core, type Message, type ReplyRelay, type VHost } from '../core/index.js';
import type { Logger } from '../logger.js';
import { ByteReader, ByteWriter } from '../store/index.js';
import type { BusSubscription, ClusterBus } from './engine.js';
import { encodeToken, readCarried, writeCarried } from './transient-routing.js';

/**
 * Direct reply-to across nodes. Every token a node makes names it (`<random>.<node>`, see
 * `replyToken`); a reply published on another node to `amq.rabbitmq.reply-to.<token>` is sent
 * on core NATS straight to the subject of the node it names, `warren.<cluster>.d.<node>`, and
 * delivered there to the requester's channel as a local reply is. At most once, as RabbitMQ's
 * direct reply-to: nothing is queued, a reply in flight when a node dies is lost, and the
 * receiving node drops a reply whose requester has gone.
 *
 * Wire: u8 version | the message as transient routing carries it (vhost, exchange, routing key,
 * properties in the store's codec, body).
 */

const VERSION = 1;

export class DirectReplies implements ReplyRelay {
  private readonly w = new ByteWriter(4096);
  private readonly r = new ByteReader();
  private sub: BusSubscription | undefined;
  /** Subjects by node name. */
  private readonly subjects = new Map<string, string>();
  readonly stats = { sent: 0, failed: 0, received: 0, delivered: 0, dropped: 0 };

  constructor(
    private readonly core: Core,
    private readonly bus: ClusterBus,
    private readonly cluster: string,
    readonly nodeName: string,
    private readonly log: Logger,
    /** Whether a node is running (a reply to a stopped node's token is not sent). */
    private readonly running: (node: string) => boolean = () => true,
  ) {}

  /** The subject a node takes its replies on. */
  subject(node: string): string {
    let s = this.subjects.get(node);
    if (s === undefined) {
      s = `warren.${this.cluster}.d.${encodeToken(node)}`;
      if (this.subjects.size >= 1000) this.subjects.clear();
      this.subjects.set(node, s);
    }
    return s;
  }

  /** Listens for this node's replies and makes its tokens name it. */
  start(): void {
    this.sub = this.bus.subscribe(this.subject(this.nodeName), (data) => this.received(data));
    this.core.replies = this;
  }

  stop(): void {
    if (this.core.replies === this) this.core.replies = undefined;
    this.sub?.unsubscribe();
    this.sub = undefined;
  }

  send(vhost: VHost, msg: Message): boolean {
    const node = replyNode(msg.routingKey);
    if (node === undefined || !this.running(node)) return false;
    const w = this.w.reset();
    w.u8(VERSION);
    writeCarried(w, vhost.name, msg.exchange, msg);
    try {
      this.bus.publish(this.subject(node), Buffer.from(w.buf.subarray(0, w.pos)));
      this.stats.sent++;
      return true;
    } catch {
      // The engine's connection is closed: the reply is lost, as one in flight would be.
      this.stats.failed++;
      return false;
    }
  }

  private received(data: Uint8Array): void {
    this.stats.received++;
    try {
      const r = this.r.reset(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      if (r.u8() !== VERSION) return;
      const vhost = this.core.vhosts.get(r.str16());
      if (vhost !== undefined && vhost.replyHere(readCarried(r), 0)) this.stats.delivered++;
      else this.stats.dropped++;
    } catch (e) {
      this.stats.dropped++;
      this.log.warn({ err: e instanceof Error ? e.message : String(e) }, 'cluster: a direct reply from another node could not be read');
    }
  }
}
