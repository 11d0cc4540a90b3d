/**
 * MQTT state that must survive a broker restart besides queues and retained messages: per
 * persistent session its expiry deadline and QoS 2 packet ids in flight (inbound ids awaiting
 * PUBREL, outbound ids awaiting PUBCOMP), and delayed wills waiting for their delay to pass.
 * Both live in record stores of the embedded store, keyed by vhost and client id.
 */
import type { Logger } from '../../src/logger.js';
import type { RecordStore } from '../../src/store/index.js';
import { SETTLED } from '../../src/core/index.js';
import type { QoS } from './constants.js';
import type { Will } from './connection.js';
import type { PublishProperties } from './properties.js';
import { OutState, type Session } from './session.js';

const SESSION_VERSION = 1;
const WILL_VERSION = 1;

/** What a session record holds. */
export interface StoredSession {
  readonly vhost: string;
  readonly clientId: string;
  /** Seconds (SESSION_EXPIRY_NEVER = never). */
  readonly expiryInterval: number;
  /** Expiry deadline in ms since the epoch; 0 = the session was connected when last written. */
  readonly expiresAt: number;
  /** Inbound QoS 2 packet ids whose message is stored, awaiting PUBREL. */
  readonly incoming: number[];
  /** Outbound QoS 2 packet ids whose PUBREL was sent, awaiting PUBCOMP. */
  readonly pubrel: number[];
}

/** What a will record holds. */
export interface StoredWill {
  readonly vhost: string;
  readonly clientId: string;
  readonly user: string;
  readonly will: Will;
  /** When it is due, ms since the epoch. */
  readonly due: number;
}

function keyOf(vhost: string, clientId: string): string {
  return `${vhost}\u0000${clientId}`;
}

function splitKey(key: string): [string, string] {
  const sep = key.indexOf('\u0000');
  return [key.slice(0, sep), key.slice(sep + 1)];
}

function encodeSession(s: Session): Buffer {
  const inc = s.incoming;
  let nIn = 0;
  if (inc !== undefined) for (const v of inc.values()) if (v === null) nIn++;
  let nOut = 0;
  for (const e of s.outgoing.values()) if (e.state === OutState.PUBREL) nOut++;
  const b = Buffer.allocUnsafe(1 + 8 + 8 + 4 + 2 * nIn + 4 + 2 * nOut);
  let at = b.writeUInt8(SESSION_VERSION, 0);
  at = b.writeDoubleLE(s.expiryInterval, at);
  at = b.writeDoubleLE(s.expiresAt, at);
  at = b.writeUInt32LE(nIn, at);
  if (inc !== undefined) for (const [id, v] of inc) if (v === null) at = b.writeUInt16LE(id, at);
  at = b.writeUInt32LE(nOut, at);
  for (const e of s.outgoing.values()) if (e.state === OutState.PUBREL) at = b.writeUInt16LE(e.packetId, at);
  return b;
}

function decodeSession(vhost: string, clientId: string, b: Buffer): StoredSession {
  if (b.readUInt8(0) !== SESSION_VERSION) throw new Error('unknown session record version');
  const expiryInterval = b.readDoubleLE(1);
  const expiresAt = b.readDoubleLE(9);
  let at = 17;
  const ids = (): number[] => {
    const n = b.readUInt32LE(at);
    at += 4;
    if (at + 2 * n > b.length) throw new RangeError('session record truncated');
    const out: number[] = [];
    for (let i = 0; i < n; i++, at += 2) out.push(b.readUInt16LE(at));
    return out;
  };
  const incoming = ids();
  const pubrel = ids();
  return { vhost, clientId, expiryInterval, expiresAt, incoming, pubrel };
}

/** JSON with Buffers (payload, correlation data) as base64. */
export function encodeWill(user: string, will: Will, due: number): Buffer {
  const text = JSON.stringify({ v: WILL_VERSION, user, due, will }, (_k, v: unknown) => {
    if (v !== null && typeof v === 'object' && (v as { type?: unknown }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
      return { $b64: Buffer.from((v as { data: number[] }).data).toString('base64') };
    }
    return v;
  });
  return Buffer.from(text, 'utf8');
}

export function decodeWill(vhost: string, clientId: string, b: Buffer): StoredWill {
  const o = JSON.parse(b.toString('utf8'), (_k, v: unknown) => {
    if (v !== null && typeof v === 'object' && typeof (v as { $b64?: unknown }).$b64 === 'string') return Buffer.from((v as { $b64: string }).$b64, 'base64');
    return v;
  }) as { v?: unknown; user?: unknown; due?: unknown; will?: Partial<Will> };
  const w = o.will;
  if (o.v !== WILL_VERSION || typeof o.user !== 'string' || typeof o.due !== 'number' || w === undefined || w === null) throw new Error('unknown will record');
  if (typeof w.topic !== 'string' || !Buffer.isBuffer(w.payload) || (w.qos !== 0 && w.qos !== 1 && w.qos !== 2)) throw new Error('malformed will record');
  const will: Will = {
    topic: w.topic,
    payload: w.payload,
    qos: w.qos as QoS,
    retain: w.retain === true,
    properties: (w.properties ?? undefined) as PublishProperties | undefined,
    delay: typeof w.delay === 'number' ? w.delay : 0,
  };
  return { vhost, clientId, user: o.user, will, due: o.due };
}

const noop = (): void => undefined;

/**
 * Writes session state and delayed wills to their record stores. Session changes made in one
 * turn of the event loop are coalesced into one record per session; the promise of a change
 * resolves once it is on disk.
 */
export class MqttDurableState {
  private readonly dirty = new Set<Session>();
  private batch: Promise<void> | undefined;

  constructor(
    private readonly sessions: RecordStore,
    private readonly wills: RecordStore,
    private readonly log: Logger,
  ) {}

  /** Whether changes to `s` are persisted (sessions that outlive their connection). */
  static persists(s: Session): boolean {
    return s.expiryInterval > 0;
  }

  /** Records the current state of `s` (once per tick); resolves once it is on disk. */
  saveSession(s: Session): Promise<void> {
    if (!MqttDurableState.persists(s)) return SETTLED;
    this.dirty.add(s);
    if (this.batch === undefined) {
      this.batch = Promise.resolve().then(this.writeDirty);
      // The failure is logged by writeDirty; callers that only record state (no ack waits on it)
      // drop the promise, and a failed write must not become an unhandled rejection.
      this.batch.catch(noop);
    }
    return this.batch;
  }

  private readonly writeDirty = (): Promise<void> => {
    this.batch = undefined;
    const writes: Promise<void>[] = [];
    for (const s of this.dirty) writes.push(this.sessions.set(keyOf(s.vhost, s.clientId), encodeSession(s)));
    this.dirty.clear();
    const all = Promise.all(writes).then(noop);
    all.catch((err: unknown) => this.log.error({ err, protocol: 'mqtt' }, 'cannot store MQTT session state'));
    return all;
  };

  /** Forgets the stored state of a session that ended. */
  dropSession(s: Session): void {
    this.dirty.delete(s);
    this.sessions.delete(keyOf(s.vhost, s.clientId)).catch((err: unknown) => this.log.error({ err, protocol: 'mqtt', vhost: s.vhost, clientId: s.clientId }, 'cannot delete MQTT session state'));
  }

  saveWill(s: Session, user: string, will: Will, due: number): void {
    this.wills.set(keyOf(s.vhost, s.clientId), encodeWill(user, will, due)).catch((err: unknown) => this.log.error({ err, protocol: 'mqtt', vhost: s.vhost, clientId: s.clientId }, 'cannot store a delayed will'));
  }

  dropWill(s: Session): void {
    this.wills.delete(keyOf(s.vhost, s.clientId)).catch((err: unknown) => this.log.error({ err, protocol: 'mqtt', vhost: s.vhost, clientId: s.clientId }, 'cannot delete a delayed will'));
  }

  /** Everything stored, for recovery at startup; unreadable records are dropped with a log line. */
  load(): { sessions: StoredSession[]; wills: Map<string, StoredWill> } {
    const sessions: StoredSession[] = [];
    for (const [key, value] of [...this.sessions.entries()]) {
      const [vhost, clientId] = splitKey(key);
      try {
        sessions.push(decodeSession(vhost, clientId, value));
      } catch (err) {
        this.log.warn({ err, protocol: 'mqtt', vhost, clientId }, 'unreadable MQTT session state dropped');
        void this.sessions.delete(key).catch(noop);
      }
    }
    const wills = new Map<string, StoredWill>();
    for (const [key, value] of [...this.wills.entries()]) {
      const [vhost, clientId] = splitKey(key);
      try {
        wills.set(key, decodeWill(vhost, clientId, value));
      } catch (err) {
        this.log.warn({ err, protocol: 'mqtt', vhost, clientId }, 'unreadable delayed will dropped');
        void this.wills.delete(key).catch(noop);
      }
    }
    return { sessions, wills };
  }

  static key(vhost: string, clientId: string): string {
    return keyOf(vhost, clientId);
  }

  /** Resolves once the changes coalesced so far are handed to the record stores. */
  async settle(): Promise<void> {
    await this.batch?.catch(noop);
  }
}
