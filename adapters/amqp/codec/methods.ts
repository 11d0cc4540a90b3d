import { isUtf8 } from 'node:buffer';
import { BrokerError, ReplyCode, type FieldTable } from '../../../src/core/index.js';
import {
  AccessMethod,
  BasicMethod,
  ChannelMethod,
  ClassId,
  ConfirmMethod,
  ConnectionMethod,
  ExchangeMethod,
  FRAME_END,
  FrameType,
  QueueMethod,
  TxMethod,
} from './constants.js';
import { WireReader, WireWriter, trailing } from './field-table.js';

/**
 * Every AMQP 0-9-1 method with RabbitMQ's extensions, from one table: the table drives the
 * decoder and encoder at run time, and the method types are derived from it, so the two cannot
 * drift apart. Argument names are the spec's in camelCase (`no-wait` -> `noWait`); reserved
 * arguments (`ticket`, `insist`, `out-of-band`, ...) are written as zero and dropped on decode.
 */

/** Wire types of method arguments, AMQP 0-9-1 §4.2.5. `bytes` is a longstr kept as a Buffer. */
type ArgType = 'bit' | 'octet' | 'short' | 'long' | 'longlong' | 'shortstr' | 'longstr' | 'bytes' | 'table';

/** [name, type]; a null name marks a reserved argument. */
type ArgSpec = readonly [name: string | null, type: ArgType];

interface MethodSpec {
  readonly id: readonly [classId: number, methodId: number];
  readonly args: readonly ArgSpec[];
  /** Followed by a content header and body frames. */
  readonly content?: true;
}

const R = null; // a reserved argument

const SPECS = {
  'connection.start': {
    id: [ClassId.CONNECTION, ConnectionMethod.START],
    args: [
      ['versionMajor', 'octet'],
      ['versionMinor', 'octet'],
      ['serverProperties', 'table'],
      ['mechanisms', 'longstr'],
      ['locales', 'longstr'],
    ],
  },
  'connection.start-ok': {
    id: [ClassId.CONNECTION, ConnectionMethod.START_OK],
    args: [
      ['clientProperties', 'table'],
      ['mechanism', 'shortstr'],
      ['response', 'bytes'],
      ['locale', 'shortstr'],
    ],
  },
  'connection.secure': { id: [ClassId.CONNECTION, ConnectionMethod.SECURE], args: [['challenge', 'bytes']] },
  'connection.secure-ok': {
    id: [ClassId.CONNECTION, ConnectionMethod.SECURE_OK],
    args: [['response', 'bytes']],
  },
  'connection.tune': {
    id: [ClassId.CONNECTION, ConnectionMethod.TUNE],
    args: [['channelMax', 'short'], ['frameMax', 'long'], ['heartbeat', 'short']],
  },
  'connection.tune-ok': {
    id: [ClassId.CONNECTION, ConnectionMethod.TUNE_OK],
    args: [['channelMax', 'short'], ['frameMax', 'long'], ['heartbeat', 'short']],
  },
  'connection.open': {
    id: [ClassId.CONNECTION, ConnectionMethod.OPEN],
    args: [['virtualHost', 'shortstr'], [R, 'shortstr'], [R, 'bit']],
  },
  'connection.open-ok': { id: [ClassId.CONNECTION, ConnectionMethod.OPEN_OK], args: [[R, 'shortstr']] },
  'connection.close': {
    id: [ClassId.CONNECTION, ConnectionMethod.CLOSE],
    args: [['replyCode', 'short'], ['replyText', 'shortstr'], ['classId', 'short'], ['methodId', 'short']],
  },
  'connection.close-ok': { id: [ClassId.CONNECTION, ConnectionMethod.CLOSE_OK], args: [] },
  'connection.blocked': {
    id: [ClassId.CONNECTION, ConnectionMethod.BLOCKED],
    args: [['reason', 'shortstr']],
  },
  'connection.unblocked': { id: [ClassId.CONNECTION, ConnectionMethod.UNBLOCKED], args: [] },
  'connection.update-secret': {
    id: [ClassId.CONNECTION, ConnectionMethod.UPDATE_SECRET],
    args: [['newSecret', 'bytes'], ['reason', 'shortstr']],
  },
  'connection.update-secret-ok': { id: [ClassId.CONNECTION, ConnectionMethod.UPDATE_SECRET_OK], args: [] },

  'channel.open': { id: [ClassId.CHANNEL, ChannelMethod.OPEN], args: [[R, 'shortstr']] },
  'channel.open-ok': { id: [ClassId.CHANNEL, ChannelMethod.OPEN_OK], args: [[R, 'longstr']] },
  'channel.flow': { id: [ClassId.CHANNEL, ChannelMethod.FLOW], args: [['active', 'bit']] },
  'channel.flow-ok': { id: [ClassId.CHANNEL, ChannelMethod.FLOW_OK], args: [['active', 'bit']] },
  'channel.close': {
    id: [ClassId.CHANNEL, ChannelMethod.CLOSE],
    args: [['replyCode', 'short'], ['replyText', 'shortstr'], ['classId', 'short'], ['methodId', 'short']],
  },
  'channel.close-ok': { id: [ClassId.CHANNEL, ChannelMethod.CLOSE_OK], args: [] },

  'access.request': {
    id: [ClassId.ACCESS, AccessMethod.REQUEST],
    args: [
      ['realm', 'shortstr'],
      ['exclusive', 'bit'],
      ['passive', 'bit'],
      ['active', 'bit'],
      ['write', 'bit'],
      ['read', 'bit'],
    ],
  },
  'access.request-ok': { id: [ClassId.ACCESS, AccessMethod.REQUEST_OK], args: [['ticket', 'short']] },

  'exchange.declare': {
    id: [ClassId.EXCHANGE, ExchangeMethod.DECLARE],
    args: [
      [R, 'short'],
      ['exchange', 'shortstr'],
      ['type', 'shortstr'],
      ['passive', 'bit'],
      ['durable', 'bit'],
      ['autoDelete', 'bit'],
      ['internal', 'bit'],
      ['noWait', 'bit'],
      ['arguments', 'table'],
    ],
  },
  'exchange.declare-ok': { id: [ClassId.EXCHANGE, ExchangeMethod.DECLARE_OK], args: [] },
  'exchange.delete': {
    id: [ClassId.EXCHANGE, ExchangeMethod.DELETE],
    args: [[R, 'short'], ['exchange', 'shortstr'], ['ifUnused', 'bit'], ['noWait', 'bit']],
  },
  'exchange.delete-ok': { id: [ClassId.EXCHANGE, ExchangeMethod.DELETE_OK], args: [] },
  'exchange.bind': {
    id: [ClassId.EXCHANGE, ExchangeMethod.BIND],
    args: [
      [R, 'short'],
      ['destination', 'shortstr'],
      ['source', 'shortstr'],
      ['routingKey', 'shortstr'],
      ['noWait', 'bit'],
      ['arguments', 'table'],
    ],
  },
  'exchange.bind-ok': { id: [ClassId.EXCHANGE, ExchangeMethod.BIND_OK], args: [] },
  'exchange.unbind': {
    id: [ClassId.EXCHANGE, ExchangeMethod.UNBIND],
    args: [
      [R, 'short'],
      ['destination', 'shortstr'],
      ['source', 'shortstr'],
      ['routingKey', 'shortstr'],
      ['noWait', 'bit'],
      ['arguments', 'table'],
    ],
  },
  'exchange.unbind-ok': { id: [ClassId.EXCHANGE, ExchangeMethod.UNBIND_OK], args: [] },

  'queue.declare': {
    id: [ClassId.QUEUE, QueueMethod.DECLARE],
    args: [
      [R, 'short'],
      ['queue', 'shortstr'],
      ['passive', 'bit'],
      ['durable', 'bit'],
      ['exclusive', 'bit'],
      ['autoDelete', 'bit'],
      ['noWait', 'bit'],
      ['arguments', 'table'],
    ],
  },
  'queue.declare-ok': {
    id: [ClassId.QUEUE, QueueMethod.DECLARE_OK],
    args: [['queue', 'shortstr'], ['messageCount', 'long'], ['consumerCount', 'long']],
  },
  'queue.bind': {
    id: [ClassId.QUEUE, QueueMethod.BIND],
    args: [
      [R, 'short'],
      ['queue', 'shortstr'],
      ['exchange', 'shortstr'],
      ['routingKey', 'shortstr'],
      ['noWait', 'bit'],
      ['arguments', 'table'],
    ],
  },
  'queue.bind-ok': { id: [ClassId.QUEUE, QueueMethod.BIND_OK], args: [] },
  'queue.purge': {
    id: [ClassId.QUEUE, QueueMethod.PURGE],
    args: [[R, 'short'], ['queue', 'shortstr'], ['noWait', 'bit']],
  },
  'queue.purge-ok': { id: [ClassId.QUEUE, QueueMethod.PURGE_OK], args: [['messageCount', 'long']] },
  'queue.delete': {
    id: [ClassId.QUEUE, QueueMethod.DELETE],
    args: [[R, 'short'], ['queue', 'shortstr'], ['ifUnused', 'bit'], ['ifEmpty', 'bit'], ['noWait', 'bit']],
  },
  'queue.delete-ok': { id: [ClassId.QUEUE, QueueMethod.DELETE_OK], args: [['messageCount', 'long']] },
  'queue.unbind': {
    id: [ClassId.QUEUE, QueueMethod.UNBIND],
    args: [
      [R, 'short'],
      ['queue', 'shortstr'],
      ['exchange', 'shortstr'],
      ['routingKey', 'shortstr'],
      ['arguments', 'table'],
    ],
  },
  'queue.unbind-ok': { id: [ClassId.QUEUE, QueueMethod.UNBIND_OK], args: [] },

  'basic.qos': {
    id: [ClassId.BASIC, BasicMethod.QOS],
    args: [['prefetchSize', 'long'], ['prefetchCount', 'short'], ['global', 'bit']],
  },
  'basic.qos-ok': { id: [ClassId.BASIC, BasicMethod.QOS_OK], args: [] },
  'basic.consume': {
    id: [ClassId.BASIC, BasicMethod.CONSUME],
    args: [
      [R, 'short'],
      ['queue', 'shortstr'],
      ['consumerTag', 'shortstr'],
      ['noLocal', 'bit'],
      ['noAck', 'bit'],
      ['exclusive', 'bit'],
      ['noWait', 'bit'],
      ['arguments', 'table'],
    ],
  },
  'basic.consume-ok': { id: [ClassId.BASIC, BasicMethod.CONSUME_OK], args: [['consumerTag', 'shortstr']] },
  'basic.cancel': {
    id: [ClassId.BASIC, BasicMethod.CANCEL],
    args: [['consumerTag', 'shortstr'], ['noWait', 'bit']],
  },
  'basic.cancel-ok': { id: [ClassId.BASIC, BasicMethod.CANCEL_OK], args: [['consumerTag', 'shortstr']] },
  'basic.publish': {
    id: [ClassId.BASIC, BasicMethod.PUBLISH],
    args: [
      [R, 'short'],
      ['exchange', 'shortstr'],
      ['routingKey', 'shortstr'],
      ['mandatory', 'bit'],
      ['immediate', 'bit'],
    ],
    content: true,
  },
  'basic.return': {
    id: [ClassId.BASIC, BasicMethod.RETURN],
    args: [
      ['replyCode', 'short'],
      ['replyText', 'shortstr'],
      ['exchange', 'shortstr'],
      ['routingKey', 'shortstr'],
    ],
    content: true,
  },
  'basic.deliver': {
    id: [ClassId.BASIC, BasicMethod.DELIVER],
    args: [
      ['consumerTag', 'shortstr'],
      ['deliveryTag', 'longlong'],
      ['redelivered', 'bit'],
      ['exchange', 'shortstr'],
      ['routingKey', 'shortstr'],
    ],
    content: true,
  },
  'basic.get': {
    id: [ClassId.BASIC, BasicMethod.GET],
    args: [[R, 'short'], ['queue', 'shortstr'], ['noAck', 'bit']],
  },
  'basic.get-ok': {
    id: [ClassId.BASIC, BasicMethod.GET_OK],
    args: [
      ['deliveryTag', 'longlong'],
      ['redelivered', 'bit'],
      ['exchange', 'shortstr'],
      ['routingKey', 'shortstr'],
      ['messageCount', 'long'],
    ],
    content: true,
  },
  'basic.get-empty': { id: [ClassId.BASIC, BasicMethod.GET_EMPTY], args: [[R, 'shortstr']] },
  'basic.ack': {
    id: [ClassId.BASIC, BasicMethod.ACK],
    args: [['deliveryTag', 'longlong'], ['multiple', 'bit']],
  },
  'basic.reject': {
    id: [ClassId.BASIC, BasicMethod.REJECT],
    args: [['deliveryTag', 'longlong'], ['requeue', 'bit']],
  },
  'basic.recover-async': { id: [ClassId.BASIC, BasicMethod.RECOVER_ASYNC], args: [['requeue', 'bit']] },
  'basic.recover': { id: [ClassId.BASIC, BasicMethod.RECOVER], args: [['requeue', 'bit']] },
  'basic.recover-ok': { id: [ClassId.BASIC, BasicMethod.RECOVER_OK], args: [] },
  'basic.nack': {
    id: [ClassId.BASIC, BasicMethod.NACK],
    args: [['deliveryTag', 'longlong'], ['multiple', 'bit'], ['requeue', 'bit']],
  },

  'confirm.select': { id: [ClassId.CONFIRM, ConfirmMethod.SELECT], args: [['noWait', 'bit']] },
  'confirm.select-ok': { id: [ClassId.CONFIRM, ConfirmMethod.SELECT_OK], args: [] },

  'tx.select': { id: [ClassId.TX, TxMethod.SELECT], args: [] },
  'tx.select-ok': { id: [ClassId.TX, TxMethod.SELECT_OK], args: [] },
  'tx.commit': { id: [ClassId.TX, TxMethod.COMMIT], args: [] },
  'tx.commit-ok': { id: [ClassId.TX, TxMethod.COMMIT_OK], args: [] },
  'tx.rollback': { id: [ClassId.TX, TxMethod.ROLLBACK], args: [] },
  'tx.rollback-ok': { id: [ClassId.TX, TxMethod.ROLLBACK_OK], args: [] },
} as const satisfies Record<string, MethodSpec>;

// ---------------------------------------------------------------------------------------------
// Types derived from the table

interface ArgValue {
  bit: boolean;
  octet: number;
  short: number;
  long: number;
  /** Exact up to 2^53 (delivery tags in practice never get there). */
  longlong: number;
  shortstr: string;
  longstr: string;
  bytes: Buffer;
  table: FieldTable;
}

type Specs = typeof SPECS;

/** Every method name, e.g. `'basic.publish'`, `'queue.declare-ok'`. */
export type MethodName = keyof Specs;

type ArgsOf<A extends readonly ArgSpec[]> = {
  -readonly [E in A[number] as E[0] extends string ? E[0] : never]: ArgValue[E[1]];
};

/** The method named `K`, e.g. `AmqpMethodOf<'basic.publish'>`. */
export type AmqpMethodOf<K extends MethodName> = { kind: K } & ArgsOf<Specs[K]['args']> extends infer T
  ? { [P in keyof T]: T[P] }
  : never;

/** Any AMQP 0-9-1 method: a union discriminated by `kind`. */
export type AmqpMethod = { [K in MethodName]: AmqpMethodOf<K> }[MethodName];

/** The wire id of a method, as reported in connection.close / channel.close. */
export interface MethodId {
  readonly classId: number;
  readonly methodId: number;
}

// ---------------------------------------------------------------------------------------------
// Run-time tables

interface Entry {
  readonly name: MethodName;
  readonly id: MethodId;
  readonly args: readonly ArgSpec[];
  readonly content: boolean;
}

const BY_NAME = new Map<string, Entry>();
const BY_ID = new Map<number, Entry>();
for (const name of Object.keys(SPECS) as MethodName[]) {
  const spec: MethodSpec = SPECS[name];
  const entry: Entry = {
    name,
    id: Object.freeze({ classId: spec.id[0], methodId: spec.id[1] }),
    args: spec.args,
    content: spec.content === true,
  };
  BY_NAME.set(name, entry);
  BY_ID.set(spec.id[0] * 65536 + spec.id[1], entry);
}

/** Every method name, in table order. */
export const METHOD_NAMES: readonly MethodName[] = Object.freeze(Object.keys(SPECS) as MethodName[]);

function entryOf(name: MethodName): Entry {
  const e = BY_NAME.get(name);
  if (e === undefined) throw new BrokerError(ReplyCode.INTERNAL_ERROR, `no such AMQP method '${String(name)}'`);
  return e;
}

/** `{classId, methodId}` of a method or method name (a shared frozen object: no allocation). */
export function methodIdOf(m: AmqpMethod | MethodName): MethodId {
  return entryOf(typeof m === 'string' ? m : m.kind).id;
}

/** The name of a method id, or undefined when it is not an AMQP 0-9-1 method. */
export function methodNameOf(classId: number, methodId: number): MethodName | undefined {
  return BY_ID.get(classId * 65536 + methodId)?.name;
}

/** True for basic.publish, basic.return, basic.deliver and basic.get-ok. */
export function methodHasContent(m: AmqpMethod | MethodName): boolean {
  return entryOf(typeof m === 'string' ? m : m.kind).content;
}

// ---------------------------------------------------------------------------------------------
// Decoding

const reader = new WireReader();
const PUBLISH_KEY = ClassId.BASIC * 65536 + BasicMethod.PUBLISH;

/**
 * Decodes a method frame payload (class-id, method-id, arguments). Errors are BrokerErrors that
 * name the method when it is known:
 * - unknown class/method id: 540 NOT_IMPLEMENTED (LavinMQ's answer; RabbitMQ crashes the
 *   connection on an unknown id without sending connection.close, which we do not copy);
 * - truncated or overlong arguments, malformed UTF-8 in a shortstr: 501 FRAME_ERROR, as
 *   RabbitMQ's `rabbit_misc:frame_error` ("cannot decode ...");
 * - an unknown field-table value type: 502 SYNTAX_ERROR.
 * Strings are decoded into new JS strings and byte values are copied, so the result never
 * refers to `payload`.
 */
export function decodeMethod(payload: Buffer): AmqpMethod {
  if (payload.length < 4) {
    throw new BrokerError(ReplyCode.FRAME_ERROR, `cannot decode: method frame payload of ${payload.length} octets`);
  }
  const classId = payload.readUInt16BE(0);
  const methodId = payload.readUInt16BE(2);
  const key = classId * 65536 + methodId;
  if (key === PUBLISH_KEY) return decodeBasicPublish(payload);
  const entry = BY_ID.get(key);
  if (entry === undefined) {
    throw new BrokerError(ReplyCode.NOT_IMPLEMENTED, `unknown method ${classId}/${methodId}`, { classId, methodId });
  }
  try {
    return readArgs(entry, reader.reset(payload, 4));
  } catch (e) {
    if (e instanceof BrokerError && e.method === undefined) e.method = entry.id;
    throw e;
  }
}

function readArgs(entry: Entry, r: WireReader): AmqpMethod {
  const out: Record<string, unknown> = { kind: entry.name };
  const args = entry.args;
  let bits = 0;
  let bit = 8; // next bit index in `bits`; 8 = no octet loaded
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const name = arg[0];
    const type = arg[1];
    let value: unknown;
    if (type === 'bit') {
      // AMQP 0-9-1 §4.2.5.2: consecutive bits share octets, least significant bit first
      if (bit === 8) {
        bits = r.u8();
        bit = 0;
      }
      value = (bits & (1 << bit++)) !== 0;
    } else {
      bit = 8;
      switch (type) {
        case 'octet':
          value = r.u8();
          break;
        case 'short':
          value = r.u16();
          break;
        case 'long':
          value = r.u32();
          break;
        case 'longlong':
          value = r.u64();
          break;
        case 'shortstr': {
          const len = r.u8();
          r.need(len);
          // RabbitMQ asserts UTF-8 in the shortstrs of methods without content (names, tags)
          if (!entry.content && len > 0 && !isUtf8(r.buf.subarray(r.pos, r.pos + len))) {
            throw new BrokerError(ReplyCode.FRAME_ERROR, `Malformed UTF-8 in shortstr`);
          }
          value = len === 0 ? '' : r.buf.toString('utf8', r.pos, r.pos + len);
          r.pos += len;
          break;
        }
        case 'longstr':
          value = r.longstr();
          break;
        case 'bytes':
          value = r.longstrBytes();
          break;
        case 'table':
          value = r.table();
          break;
      }
    }
    if (name !== null) out[name] = value;
  }
  if (r.remaining !== 0) throw trailing(r.remaining);
  return out as unknown as AmqpMethod;
}

const PUBLISH_ID = entryOf('basic.publish').id;

function publishTruncated(pos: number): BrokerError {
  return new BrokerError(ReplyCode.FRAME_ERROR, `cannot decode: basic.publish truncated at offset ${pos}`, PUBLISH_ID);
}

/**
 * The last short string read from a basic.publish, kept with its bytes: a publisher repeats its
 * exchange and routing key, so each message of a run shares one string (no string per message,
 * and none kept per queued message) instead of decoding its own.
 */
class RepeatedName {
  private readonly bytes = Buffer.alloc(255);
  private len = -1;
  private str = '';

  read(p: Buffer, pos: number, len: number): string {
    if (len === this.len) {
      const b = this.bytes;
      let i = 0;
      while (i < len && b[i] === p[pos + i]) i++;
      if (i === len) return this.str;
    }
    const s = p.toString('utf8', pos, pos + len);
    p.copy(this.bytes, 0, pos, pos + len);
    this.len = len;
    this.str = s;
    return s;
  }
}

const publishExchange = new RepeatedName();
const publishRoutingKey = new RepeatedName();

/** The hot path: class, method, ticket, exchange, routing key, one octet of bits. */
function decodeBasicPublish(p: Buffer): AmqpMethodOf<'basic.publish'> {
  const end = p.length;
  let pos = 6; // class-id, method-id, reserved ticket
  if (pos + 1 > end) throw publishTruncated(pos);
  const exLen = p[pos++]!;
  if (pos + exLen + 1 > end) throw publishTruncated(pos);
  const exchange = exLen === 0 ? '' : publishExchange.read(p, pos, exLen);
  pos += exLen;
  const rkLen = p[pos++]!;
  if (pos + rkLen + 1 > end) throw publishTruncated(pos);
  const routingKey = rkLen === 0 ? '' : publishRoutingKey.read(p, pos, rkLen);
  pos += rkLen;
  const bits = p[pos++]!;
  if (pos !== end) {
    const e = trailing(end - pos);
    e.method = PUBLISH_ID;
    throw e;
  }
  return { kind: 'basic.publish', exchange, routingKey, mandatory: (bits & 1) !== 0, immediate: (bits & 2) !== 0 };
}

// ---------------------------------------------------------------------------------------------
// Encoding

const writer = new WireWriter();

/**
 * A complete method frame for `m` on `channel`: type, channel, size, payload, frame-end.
 * A string longer than a shortstr allows throws a BrokerError (502) instead of being truncated.
 */
export function encodeMethod(channel: number, m: AmqpMethod): Buffer {
  const entry = entryOf(m.kind);
  const w = writer.reset();
  w.ensure(11);
  w.u8(FrameType.METHOD);
  w.u16(channel);
  w.pos += 4; // size, patched below
  w.u16(entry.id.classId);
  w.u16(entry.id.methodId);
  writeArgs(w, entry, m as unknown as Readonly<Record<string, unknown>>);
  w.buf.writeUInt32BE(w.pos - 7, 3);
  w.u8(FRAME_END);
  return w.toBuffer();
}

/** Writes the arguments; a missing value is written as its type's zero (0, '', false, {}). */
function writeArgs(w: WireWriter, entry: Entry, m: Readonly<Record<string, unknown>>): void {
  const args = entry.args;
  let bitsAt = -1; // position of the octet collecting the current run of bits
  let bit = 8;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const name = arg[0];
    const type = arg[1];
    const v = name === null ? undefined : m[name];
    if (type === 'bit') {
      if (bit === 8) {
        w.ensure(1);
        bitsAt = w.pos;
        w.buf[w.pos++] = 0;
        bit = 0;
      }
      if (v === true) w.buf[bitsAt] = w.buf[bitsAt]! | (1 << bit);
      bit++;
      continue;
    }
    bit = 8;
    switch (type) {
      case 'octet':
        w.u8((v as number | undefined) ?? 0);
        break;
      case 'short':
        w.u16((v as number | undefined) ?? 0);
        break;
      case 'long':
        w.u32((v as number | undefined) ?? 0);
        break;
      case 'longlong':
        w.u64((v as number | undefined) ?? 0);
        break;
      case 'shortstr':
        w.shortstr((v as string | undefined) ?? '', name ?? 'shortstr');
        break;
      case 'longstr':
        w.longstr((v as string | undefined) ?? '');
        break;
      case 'bytes':
        w.longstr((v as Buffer | string | undefined) ?? '');
        break;
      case 'table':
        w.table((v as FieldTable | undefined) ?? {});
        break;
    }
  }
}
