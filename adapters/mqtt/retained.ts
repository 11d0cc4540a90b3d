/**
 * Retained messages: the last message published with RETAIN to each topic, per vhost. Replayed on
 * SUBSCRIBE to every matching filter, wildcard filters included. `MemoryRetainedStore` matches;
 * `DurableRetainedStore` wraps it and keeps every change in a record store of the data directory.
 */
import type { MessageProperties } from '../../src/core/index.js';
import type { Logger } from '../../src/logger.js';
import { ByteReader, ByteWriter, readProperties, writeProperties, type RecordStore } from '../../src/store/index.js';
import type { QoS } from './constants.js';

export interface RetainedMessage {
  /** MQTT topic name (with `/`). */
  readonly topic: string;
  readonly qos: QoS;
  /** The AMQP properties the publish was mapped to (v5 properties included). */
  readonly properties: MessageProperties;
  readonly body: Buffer;
  /** Absolute expiry in ms since the epoch (v5 message expiry); 0 = never. */
  readonly expiresAt: number;
}

export interface RetainedStore {
  /**
   * Stores the retained message of `topic`, or deletes it when `msg` is null. A store that
   * replicates returns a promise that resolves once the change is replicated (the publish is
   * acknowledged after it) and rejects when it cannot be.
   */
  set(vhost: string, topic: string, msg: RetainedMessage | null): void | Promise<void>;
  get(vhost: string, topic: string): RetainedMessage | undefined;
  /** The unexpired retained messages whose topic matches the MQTT `filter` (`$` topics need a literal first level). */
  match(vhost: string, filter: string): RetainedMessage[];
  /** Number of retained messages in a vhost. */
  count(vhost: string): number;
}

class Node {
  children: Map<string, Node> | undefined;
  msg: RetainedMessage | undefined;
}

/** One vhost's retained messages: a tree over topic levels, pruned on delete. */
class TopicTree {
  readonly root = new Node();
  size = 0;

  set(topic: string, msg: RetainedMessage | null): void {
    const levels = topic.split('/');
    if (msg === null) {
      this.delete(this.root, levels, 0);
      return;
    }
    let node = this.root;
    for (const l of levels) {
      node.children ??= new Map();
      let next = node.children.get(l);
      if (next === undefined) {
        next = new Node();
        node.children.set(l, next);
      }
      node = next;
    }
    if (node.msg === undefined) this.size++;
    node.msg = msg;
  }

  /** Removes the message at `levels`; true when `node` is now empty and may be pruned. */
  private delete(node: Node, levels: string[], i: number): boolean {
    if (i === levels.length) {
      if (node.msg !== undefined) {
        node.msg = undefined;
        this.size--;
      }
    } else {
      const child = node.children?.get(levels[i]!);
      if (child !== undefined && this.delete(child, levels, i + 1)) {
        node.children!.delete(levels[i]!);
        if (node.children!.size === 0) node.children = undefined;
      }
    }
    return node.msg === undefined && node.children === undefined;
  }

  get(topic: string): RetainedMessage | undefined {
    let node: Node | undefined = this.root;
    for (const l of topic.split('/')) {
      node = node.children?.get(l);
      if (node === undefined) return undefined;
    }
    return node.msg;
  }

  match(filter: string[], out: RetainedMessage[]): void {
    this.walk(this.root, filter, 0, out, true);
  }

  private walk(node: Node, f: string[], i: number, out: RetainedMessage[], atRoot: boolean): void {
    if (i === f.length) {
      if (node.msg !== undefined) out.push(node.msg);
      return;
    }
    const level = f[i]!;
    if (level === '#') {
      // `a/#` matches `a` itself and everything below it.
      if (!atRoot && node.msg !== undefined) out.push(node.msg);
      this.collect(node, out, atRoot);
      return;
    }
    const children = node.children;
    if (children === undefined) return;
    if (level === '+') {
      for (const [name, child] of children) {
        if (atRoot && name.startsWith('$')) continue; // [MQTT-4.7.2-1]
        this.walk(child, f, i + 1, out, false);
      }
      return;
    }
    const child = children.get(level);
    if (child !== undefined) this.walk(child, f, i + 1, out, false);
  }

  private collect(node: Node, out: RetainedMessage[], atRoot: boolean): void {
    if (node.children === undefined) return;
    for (const [name, child] of node.children) {
      if (atRoot && name.startsWith('$')) continue;
      if (child.msg !== undefined) out.push(child.msg);
      this.collect(child, out, false);
    }
  }
}

/** Retained messages in memory (lost on restart until the store persists them). */
export class MemoryRetainedStore implements RetainedStore {
  private readonly vhosts = new Map<string, TopicTree>();

  set(vhost: string, topic: string, msg: RetainedMessage | null): void {
    let tree = this.vhosts.get(vhost);
    if (tree === undefined) {
      if (msg === null) return;
      tree = new TopicTree();
      this.vhosts.set(vhost, tree);
    }
    tree.set(topic, msg);
    if (tree.size === 0) this.vhosts.delete(vhost);
  }

  get(vhost: string, topic: string): RetainedMessage | undefined {
    const m = this.vhosts.get(vhost)?.get(topic);
    if (m !== undefined && m.expiresAt !== 0 && m.expiresAt <= Date.now()) {
      this.set(vhost, topic, null);
      return undefined;
    }
    return m;
  }

  match(vhost: string, filter: string): RetainedMessage[] {
    const tree = this.vhosts.get(vhost);
    if (tree === undefined) return [];
    const found: RetainedMessage[] = [];
    tree.match(filter.split('/'), found);
    const now = Date.now();
    const out: RetainedMessage[] = [];
    for (const m of found) {
      if (m.expiresAt !== 0 && m.expiresAt <= now) this.set(vhost, m.topic, null);
      else out.push(m);
    }
    return out;
  }

  count(vhost: string): number {
    return this.vhosts.get(vhost)?.size ?? 0;
  }
}

/** Format version of a stored retained message (the first byte of each record). */
const RECORD_VERSION = 1;

/**
 * One retained message as a record: version u8, QoS u8, expiry f64 (ms since the epoch, 0 =
 * never), the properties prefixed by their u32 length, the body prefixed by its u32 length.
 */
export function encodeRetained(m: RetainedMessage): Buffer {
  const w = new ByteWriter(64 + m.body.length);
  w.u8(RECORD_VERSION);
  w.u8(m.qos);
  w.f64(m.expiresAt);
  const at = w.pos;
  w.u32(0);
  writeProperties(w, m.properties);
  w.buf.writeUInt32LE(w.pos - at - 4, at);
  w.bytes32(m.body);
  return w.toBuffer();
}

/** Reads a record written by `encodeRetained`; throws on an unknown version or a bad QoS. */
export function decodeRetained(topic: string, b: Buffer): RetainedMessage {
  const r = new ByteReader().reset(b);
  if (r.u8() !== RECORD_VERSION) throw new Error('unknown retained record version');
  const qos = r.u8();
  if (qos > 2) throw new Error(`bad QoS ${qos}`);
  const expiresAt = r.f64();
  const len = r.u32();
  const end = r.end;
  r.end = r.pos + len;
  const properties = readProperties(r);
  r.end = end;
  const body = r.bytes32();
  return { topic, qos: qos as QoS, properties, body, expiresAt };
}

/** Record key of a retained message: vhost, NUL, topic. */
function recordKey(vhost: string, topic: string): string {
  return `${vhost}\u0000${topic}`;
}

/**
 * Retained messages that survive restarts: matching stays with the in-memory store it wraps, every
 * change is also written to a record store (`records/retained.log` in the data directory), and the
 * in-memory store is refilled from it when this is made (expired and unreadable records are
 * dropped then).
 */
export class DurableRetainedStore implements RetainedStore {
  constructor(
    private readonly inner: RetainedStore,
    private readonly records: RecordStore,
    private readonly log: Logger,
  ) {
    const now = Date.now();
    let loaded = 0;
    for (const [key, value] of [...records.entries()]) {
      const sep = key.indexOf('\u0000');
      const vhost = key.slice(0, sep);
      const topic = key.slice(sep + 1);
      let m: RetainedMessage;
      try {
        m = decodeRetained(topic, value);
      } catch (err) {
        log.warn({ protocol: 'mqtt', err, vhost, topic }, 'unreadable retained message dropped');
        this.forget(key);
        continue;
      }
      if (m.expiresAt !== 0 && m.expiresAt <= now) {
        this.forget(key);
        continue;
      }
      void inner.set(vhost, topic, m);
      loaded++;
    }
    if (loaded > 0) log.info({ protocol: 'mqtt', retained: loaded }, 'retained messages recovered');
  }

  private forget(key: string): void {
    this.records.delete(key).catch(() => undefined);
  }

  set(vhost: string, topic: string, msg: RetainedMessage | null): void {
    void this.inner.set(vhost, topic, msg);
    const key = recordKey(vhost, topic);
    const done = msg === null ? this.records.delete(key) : this.records.set(key, encodeRetained(msg));
    done.catch((err: unknown) => this.log.error({ protocol: 'mqtt', err, vhost, topic }, 'cannot store a retained message'));
  }

  get(vhost: string, topic: string): RetainedMessage | undefined {
    return this.inner.get(vhost, topic);
  }

  match(vhost: string, filter: string): RetainedMessage[] {
    return this.inner.match(vhost, filter);
  }

  count(vhost: string): number {
    return this.inner.count(vhost);
  }
}

/**
 * The cluster's copy of the retained messages, as records (`encodeRetained`): written by the node
 * that receives a retained publish, passed on to every node.
 */
export interface RetainedReplica {
  /**
   * Writes the record of a topic (null deletes it); resolves once the cluster has it. Throws at
   * once when the record cannot be replicated (too large).
   */
  write(vhost: string, topic: string, record: Uint8Array | null): Promise<void>;
  /** Passes on every record the cluster holds, then every change made on any node. */
  listen(onChange: (vhost: string, topic: string, record: Uint8Array | undefined) => void): void;
}

/**
 * Retained messages of a cluster node: the same on every node. A retained publish updates the
 * in-memory store at once and is written to the replica; changes made on other nodes arrive
 * through the replica. The replica is the durable copy: nothing is kept in the data directory.
 */
export class ReplicatedRetainedStore implements RetainedStore {
  constructor(
    private readonly inner: RetainedStore,
    private readonly replica: RetainedReplica,
    private readonly log: Logger,
  ) {
    replica.listen((vhost, topic, record) => {
      if (record === undefined) {
        void inner.set(vhost, topic, null);
        return;
      }
      let m: RetainedMessage;
      try {
        m = decodeRetained(topic, Buffer.from(record.buffer, record.byteOffset, record.byteLength));
      } catch (err) {
        log.warn({ protocol: 'mqtt', err, vhost, topic }, 'unreadable replicated retained message ignored');
        return;
      }
      if (m.expiresAt !== 0 && m.expiresAt <= Date.now()) void inner.set(vhost, topic, null);
      else void inner.set(vhost, topic, m);
    });
  }

  set(vhost: string, topic: string, msg: RetainedMessage | null): Promise<void> {
    let written: Promise<void>;
    try {
      written = this.replica.write(vhost, topic, msg === null ? null : encodeRetained(msg));
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error(String(e)));
    }
    void this.inner.set(vhost, topic, msg);
    return written.catch((err: unknown) => {
      this.log.error({ protocol: 'mqtt', err, vhost, topic }, 'retained message not replicated');
      throw err;
    });
  }

  get(vhost: string, topic: string): RetainedMessage | undefined {
    return this.inner.get(vhost, topic);
  }

  match(vhost: string, filter: string): RetainedMessage[] {
    return this.inner.match(vhost, filter);
  }

  count(vhost: string): number {
    return this.inner.count(vhost);
  }
}
