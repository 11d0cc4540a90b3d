/**
 * The public core API: the only module adapters import. The core speaks the AMQP model as plain
 * TypeScript calls; no protocol frame crosses into it.
 */
export { Core, type CoreOptions } from './core.js';
export { CoreConnection, type Closable } from './connection.js';
export { CoreChannel } from './channel.js';
export { BrokerError, ReplyCode, replyName } from './errors.js';
export { Deque } from './deque.js';
export { scalarText } from './field-key.js';
export { Alarms } from './alarms.js';
export {
  Auth,
  hashPassword,
  checkPassword,
  isLoopback,
  isHashingAlgorithm,
  validateRegex,
  HASHING_ALGORITHMS,
  USER_TAGS,
  type User,
  type Permission,
  type TopicPermission,
  type TopicVariables,
  type HashingAlgorithm,
  type Access,
} from './auth.js';
export { Policies, validatePolicy, POLICY_APPLY_TO, type Policy, type PolicyApplyTo, type PolicyValue } from './policies.js';
export { CoreTotals, ProtocolTotals, type ChannelStats, type Traffic } from './stats.js';
export type { VHost } from './vhost.js';
export type { Queue } from './queues/queue.js';
export type { Exchange, Binding } from './exchanges/exchange.js';
export type { Persistence } from './persistence.js';
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
