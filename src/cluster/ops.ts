import type { Logger } from '../logger.js';
import { decodeJson, encodeJson, type BusSubscription, type ClusterBus } from './engine.js';
import type { ClusterNodeInfo } from './node-registry.js';

/**
 * Operations across nodes: a node answers requests about its own objects (connections, channels,
 * consumers, queues, its overview and node figures, closing one of its connections) on a subject
 * of its own, `warren.<cluster>.ops.<node>`, and asks every other running node the same when a
 * listing must be cluster-wide. What a request means is up to the handler (management); this
 * module only carries JSON there and back, with a short timeout per node.
 */

/** A request to one node: the operation, on behalf of an already authenticated user. */
export interface PeerRequest {
  readonly op: string;
  readonly user: { readonly name: string; readonly tags: readonly string[] };
  readonly vhost?: string | undefined;
  readonly name?: string | undefined;
  readonly reason?: string | undefined;
}

/** What a node answered: a body, or an HTTP-style error. */
export type PeerReply = { readonly ok: true; readonly body: unknown } | { readonly ok: false; readonly status: number; readonly error: string; readonly reason: string };

export interface PeerAnswers {
  readonly answers: ReadonlyArray<{ readonly node: string; readonly reply: PeerReply }>;
  /** Running nodes (by the registry) that did not answer in time. */
  readonly notAnswering: readonly string[];
}

export type PeerHandler = (req: PeerRequest) => Promise<PeerReply>;

/** How long a node waits for another's answer before it lists it as not answering. */
export const DEFAULT_PEER_TIMEOUT_MS = 1500;

/** Under NATS's default 1 MiB max_payload, with room for headers. */
const MAX_REPLY_BYTES = 1_000_000;

export function opsSubject(cluster: string, node: string): string {
  // Cluster and node names are [A-Za-z0-9_-]: safe as subject tokens.
  return `warren.${cluster}.ops.${node}`;
}

export class ClusterPeers {
  private sub: BusSubscription | undefined;
  private handler: PeerHandler | undefined;

  constructor(
    private readonly bus: ClusterBus,
    private readonly clusterName: string,
    private readonly nodeName: string,
    private readonly nodes: () => ClusterNodeInfo[],
    private readonly log: Logger,
    private readonly timeoutMs = DEFAULT_PEER_TIMEOUT_MS,
  ) {}

  /** Answers other nodes' requests with `handler` (one handler; a second call replaces it). */
  serve(handler: PeerHandler): void {
    this.handler = handler;
    this.sub ??= this.bus.subscribe(opsSubject(this.clusterName, this.nodeName), (data, _subject, reply) => {
      if (reply === undefined) return;
      this.answer(data).then(
        (r) => {
          const out = encodeJson(r);
          reply(out.length <= MAX_REPLY_BYTES ? out : encodeJson({ ok: false, status: 413, error: 'too_large', reason: `answer of ${out.length} bytes is over the engine's message limit` }));
        },
        (err: unknown) => {
          this.log.warn({ err }, 'cluster: a request from another node failed');
          reply(encodeJson({ ok: false, status: 500, error: 'internal_server_error', reason: err instanceof Error ? err.message : String(err) }));
        },
      );
    });
  }

  private async answer(data: Uint8Array): Promise<PeerReply> {
    const h = this.handler;
    if (h === undefined) return { ok: false, status: 503, error: 'not_ready', reason: 'node not ready' };
    const req = decodeJson(data) as PeerRequest;
    if (typeof req !== 'object' || req === null || typeof req.op !== 'string' || typeof req.user?.name !== 'string' || !Array.isArray(req.user.tags)) {
      return { ok: false, status: 400, error: 'bad_request', reason: 'malformed request' };
    }
    return h(req);
  }

  /** The other running nodes' names. */
  others(): string[] {
    return this.nodes()
      .filter((n) => n.running && n.name !== this.nodeName)
      .map((n) => n.name);
  }

  /** Asks one node; undefined when it does not answer in time (or is not there). */
  async ask(node: string, req: PeerRequest): Promise<PeerReply | undefined> {
    try {
      const data = await this.bus.request(opsSubject(this.clusterName, node), encodeJson(req), this.timeoutMs);
      return decodeJson(data) as PeerReply;
    } catch (err) {
      this.log.debug({ err, node, op: req.op }, 'cluster: node did not answer');
      return undefined;
    }
  }

  /** Asks every other running node at once. */
  async askAll(req: PeerRequest): Promise<PeerAnswers> {
    const names = this.others();
    const replies = await Promise.all(names.map((n) => this.ask(n, req)));
    const answers: Array<{ node: string; reply: PeerReply }> = [];
    const notAnswering: string[] = [];
    names.forEach((node, i) => {
      const reply = replies[i];
      if (reply === undefined) notAnswering.push(node);
      else answers.push({ node, reply });
    });
    return { answers, notAnswering };
  }

  stop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.handler = undefined;
  }
}
