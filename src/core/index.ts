/**
 * The public core API: the only module adapters import. The core speaks the AMQP model as plain
 * TypeScript calls; no protocol frame crosses into it.
 */
export { Core, type CoreOptions, type CoreLog } from './core.js';
export {
  checkMessage,
  propertyText,
  setHeader,
  MessageRefusedError,
  MAX_PROPERTIES_BYTES,
  MAX_SHORTSTR,
  MAX_TABLE_DEPTH,
  OVERFLOW_HEADERS,
  type OverflowProperty,
} from './message-check.js';
export { CoreConnection, type Closable } from './connection.js';
export { SlicedWalk } from './sliced-walk.js';
export { Teardown, TEARDOWN_BUDGET_ITEMS, TEARDOWN_BUDGET_MS, type TeardownWork } from './teardown.js';
export { CoreChannel } from './channel.js';
export { SystemSession, type BindingInfo, type QueueInfo, type PublishAs } from './session.js';
export { BrokerError, ReplyCode, replyName } from './errors.js';
export { Deque } from './deque.js';
export { scalarText } from './field-key.js';
export { Alarms, MEMORY_CLEAR_RATIO, MEMORY_SAMPLE_MS, memoryBase, type MemoryBase, type MemoryFigure } from './alarms.js';
export { MemoryAccount, processMemory, type MemorySource } from './memory.js';
/** JWT access tokens (OAuth 2.0 resource server, RabbitMQ's scope format). */
export { TokenVerifier, type TokenGrant, type TokenOptions } from './token-auth.js';
export {
  Auth,
  hashPassword,
  checkPassword,
  isLoopback,
  isHashingAlgorithm,
  validateRegex,
  substituteTopicVariables,
  MAX_USER_NAME_BYTES,
  HASHING_ALGORITHMS,
  USER_TAGS,
  type User,
  type Permission,
  type TopicPermission,
  type TopicVariables,
  type HashingAlgorithm,
  type Access,
} from './auth.js';
export { FORBIDDEN_SEGMENTS, getOwn, setOwn } from './own-keys.js';
export { compilePattern, escapePattern, patternProblem, PatternCache, PatternError, MAX_PATTERN_SIZE, type Pattern } from './pattern.js';
export { Policies, validatePolicy, POLICY_APPLY_TO, type Policy, type PolicyApplyTo, type PolicyValue } from './policies.js';
export { CoreTotals, ProtocolTotals, type ChannelStats, type Traffic } from './stats.js';
export {
  bindingDefinition,
  exchangeDefinition,
  exportDefinitions,
  importDefinitions,
  isDefinedBinding,
  isDefinedExchange,
  policyDefinition,
  queueDefinition,
  userDefinition,
  vhostDefinition,
  tableToJson,
  tableFromJson,
  type Definitions,
  type ImportReport,
  type ImportOptions,
  type JsonValue,
} from './definitions.js';
export type { VHost, ReplyRelay, RoutingRelay } from './vhost.js';
export type { Queue, QueueForwarder, QueueReplica, RemoteQueue, RemoteTaken } from './queues/queue.js';
/** Stream queues (`x-queue-type: stream`): an append-only log read from offsets. */
export { StreamQueue } from './queues/stream-queue.js';
export type { StreamLimits, StreamRecord } from './queues/stream-store.js';
export { Consumer, type ConsumerOwner } from './queues/consumer.js';
export { newEntry, type QueueEntry } from './queues/entry.js';
export type { Exchange, Binding } from './exchanges/exchange.js';
export type { DefinitionChange, Persistence } from './persistence.js';
export { NO_PERSISTENCE } from './persistence.js';
export {
  Decimal,
  SETTLED,
  type FieldTable,
  type FieldValue,
  type MessageProperties,
  type Message,
  type StoredMessage,
  type Delivery,
  type DeliverySink,
  type QueueOptions,
  type ExchangeOptions,
  type ConsumeOptions,
  type PublishOptions,
  type PublishResult,
  type ConnectionInfo,
  type QueueDeclareOk,
  type GetResult,
} from './types.js';
export { ConsumerTimeouts, oldestUnackedAge, oldestUnackedAt } from './consumer-timeout.js';
export { DELAYED_EXCHANGE_TYPE, type DelayedStore } from './exchanges/delayed.js';
/** Direct reply-to: the pseudo-queue name, the reply address prefix, and the per-vhost registry. */
export { REPLY_TO_QUEUE, REPLY_TO_PREFIX, DirectReplyTo, replyToken, replyNode, type ReplyTarget } from './reply-to.js';
/** Bench-only per-message latency trace (WARREN_LATENCY_TRACE); null when off. */
export { latencyTrace, LatencyTrace, TraceSpan, traceNow } from './latency-trace.js';
