/**
 * The scenario registry. A scenario is a recipe: given a broker endpoint it returns the topology to
 * declare and the client roles to fork. Everything protocol-specific is in clients/<protocol>.ts.
 *
 * Adding one (e.g. `mqtt-1to1-qos0`, `stomp-queue-1k`, `amqp-1to1-1k-persistent-confirms`): write a
 * function returning a Scenario and add it to SCENARIOS. Brokers that have no endpoint for the
 * scenario's protocol are skipped for it.
 */
import type { Topology } from './clients/index.js';
import type { DelayedScenario } from './delayed.js';
import type { RpcScenario } from './rpc.js';
import type { ConsumerSpec, Protocol, PublisherSpec } from './clients/types.js';

export interface ScenarioEnv {
  /** Unique per harness run; part of every queue and exchange name. */
  runId: string;
  /** The broker's endpoint for the scenario's protocol, e.g. amqp://guest:guest@127.0.0.1:5672. */
  url: string;
  /** Warm-up + measured seconds; bounds message counts. */
  totalSeconds: number;
  /** Every endpoint of the broker (cross-protocol scenarios use more than `url`). */
  urls: Partial<Record<Protocol, string>>;
}

export interface ScenarioPlan {
  topology: Topology | null;
  publishers: PublisherSpec[];
  consumers: ConsumerSpec[];
  /** Deliveries one publish produces (fanout to N queues: N). */
  deliveriesPerPublish: number;
  /**
   * The in-flight window, in deliveries: the publishers pause while
   * published * deliveriesPerPublish - delivered >= window, so queues stay bounded
   * (with N queues fanned out to, each holds about window / N).
   */
  window: number;
}

export interface Scenario {
  kind?: 'throughput';
  name: string;
  protocol: Protocol;
  /** Endpoints needed besides `protocol`'s (cross-protocol scenarios); brokers without them skip it. */
  alsoNeeds?: Protocol[];
  /** One line for the report. */
  summary: string;
  plan(env: ScenarioEnv): ScenarioPlan;
}

/**
 * Not a throughput run: open `connections` idle connections from `processes` client processes and
 * compare the broker's resident memory before and after (see idle.ts).
 */
export interface IdleScenario {
  kind: 'idle';
  name: string;
  protocol: Protocol;
  summary: string;
  connections: number;
  processes: number;
  /** Connection attempts in flight per process. */
  concurrency: number;
  /** MQTT keep-alive the connections ask for; each sends a PINGREQ at half of it. */
  keepAliveS: number;
  /** Seconds the connections idle while the broker's memory is read (once a second). */
  settleS: number;
}

/** No publisher sends more than this many messages per second of run, whatever happens. */
const MAX_RATE_PER_PUBLISHER = 2_000_000;
const WINDOW = 10_000;
const PREFETCH = 1_000;
/** Consumers ack each message individually (basic.ack multiple=false), as most applications do. */
const ACK_EVERY = 1;

function amqpOneToOne(name: string, bodySize: number, transport: 'amqp' | 'amqps' = 'amqp'): Scenario {
  return {
    name,
    protocol: transport,
    ...(transport === 'amqps' ? { alsoNeeds: ['amqp' as const] } : {}),
    summary:
      `AMQP 0-9-1${transport === 'amqps' ? ' over TLS (amqps://, TLS 1.3)' : ''}: 1 publisher -> default exchange -> 1 queue -> 1 consumer; ${bodySize} B transient bodies; ` +
      `prefetch ${PREFETCH}, ack each message; in-flight window ${WINDOW} messages`,
    plan: ({ runId, url, urls, totalSeconds }) => {
      const queue = `warren-bench.${runId}.${name}`;
      // The harness declares over plain AMQP (it does not trust the TLS certificate itself).
      return {
        topology: { protocol: 'amqp', url: urls.amqp ?? url, amqp: { exchanges: [], queues: [{ name: queue }], bindings: [] } },
        publishers: [
          {
            role: 'publisher',
            protocol: 'amqp',
            id: 'pub-0',
            url,
            exchange: '',
            routingKey: queue,
            persistent: false,
            bodySize,
            maxMessages: MAX_RATE_PER_PUBLISHER * totalSeconds,
          },
        ],
        consumers: [
          { role: 'consumer', protocol: 'amqp', id: 'con-0', url, queues: [queue], prefetch: PREFETCH, ackEvery: ACK_EVERY },
        ],
        deliveriesPerPublish: 1,
        window: WINDOW,
      };
    },
  };
}

function amqpFanout(name: string, queues: number, bodySize: number): Scenario {
  return {
    name,
    protocol: 'amqp',
    summary:
      `AMQP 0-9-1: 1 publisher -> fanout exchange -> ${queues} queues; one consumer process with one connection ` +
      `and ${queues} channels (one consumer per queue); ${bodySize} B transient bodies; prefetch ${PREFETCH} per ` +
      `channel, ack each message; in-flight window ${WINDOW} deliveries in total; ` +
      `msgs/s counts deliveries across all queues`,
    plan: ({ runId, url, totalSeconds }) => {
      const exchange = `warren-bench.${runId}.${name}`;
      const names = Array.from({ length: queues }, (_, i) => `${exchange}.q${i}`);
      return {
        topology: {
          protocol: 'amqp',
          url,
          amqp: {
            exchanges: [{ name: exchange, type: 'fanout' }],
            queues: names.map((q) => ({ name: q })),
            bindings: names.map((q) => ({ queue: q, exchange, routingKey: '' })),
          },
        },
        publishers: [
          {
            role: 'publisher',
            protocol: 'amqp',
            id: 'pub-0',
            url,
            exchange,
            routingKey: '',
            persistent: false,
            bodySize,
            maxMessages: MAX_RATE_PER_PUBLISHER * totalSeconds,
          },
        ],
        consumers: [
          { role: 'consumer', protocol: 'amqp', id: 'con-0', url, queues: names, prefetch: PREFETCH, ackEvery: ACK_EVERY },
        ],
        deliveriesPerPublish: queues,
        window: WINDOW,
      };
    },
  };
}

/** QoS 1 MQTT publishers: PUBLISHes awaiting PUBACK per connection. */
const MQTT_PUBLISH_INFLIGHT = 100;
const MQTT_PUBLISHERS = 10;

/** One publisher process with `n` MQTT connections, one topic each: <prefix>/<i>/value. */
function mqttPublishers(env: ScenarioEnv, name: string, qos: 0 | 1, bodySize: number, topicPrefix: string): PublisherSpec {
  return {
    role: 'publisher',
    protocol: 'mqtt',
    id: 'pub-0',
    url: env.url,
    topics: Array.from({ length: MQTT_PUBLISHERS }, (_, i) => `${topicPrefix}/${i}/value`),
    qos,
    inflight: MQTT_PUBLISH_INFLIGHT,
    clientIdPrefix: `wb-${env.runId}-${name}-p`,
    bodySize,
    maxMessages: MAX_RATE_PER_PUBLISHER * env.totalSeconds,
  };
}

function mqttFanIn(name: string, qos: 0 | 1, bodySize: number, transport: 'mqtt' | 'mqtts' = 'mqtt'): Scenario {
  return {
    name,
    protocol: transport,
    summary:
      `MQTT 3.1.1${transport === 'mqtts' ? ' over TLS (mqtts://, TLS 1.3)' : ''}: ${MQTT_PUBLISHERS} publishers (${MQTT_PUBLISHERS} connections in one process, topics ` +
      `warren-bench/<run>/<n>/value) -> 1 subscriber on warren-bench/<run>/#; QoS ${qos} publish and subscription; ` +
      `${bodySize} B payloads; clean sessions` +
      (qos > 0 ? `; ${MQTT_PUBLISH_INFLIGHT} PUBLISHes awaiting PUBACK per publisher connection, each delivery PUBACKed` : '') +
      `; in-flight window ${WINDOW} messages`,
    plan: (env) => {
      const prefix = `warren-bench/${env.runId}`;
      return {
        topology: null,
        publishers: [mqttPublishers(env, name, qos, bodySize, prefix)],
        consumers: [
          { role: 'consumer', protocol: 'mqtt', id: 'con-0', url: env.url, filter: `${prefix}/#`, qos, clientId: `wb-${env.runId}-${name}-c` },
        ],
        deliveriesPerPublish: 1,
        window: WINDOW,
      };
    },
  };
}

/** MQTT publishers -> amq.topic -> an AMQP queue bound with the MQTT topic's routing key -> amqplib consumer. */
function mqttToAmqp(name: string, qos: 0 | 1, bodySize: number): Scenario {
  return {
    name,
    protocol: 'mqtt',
    alsoNeeds: ['amqp'],
    summary:
      `MQTT -> AMQP: ${MQTT_PUBLISHERS} MQTT publishers (one process, QoS ${qos}, topics warren-bench/<run>/<n>/value) -> ` +
      `amq.topic -> 1 AMQP queue bound with warren-bench.<run>.# -> 1 amqplib consumer, prefetch ${PREFETCH}, ` +
      `ack each message; ${bodySize} B payloads; in-flight window ${WINDOW} messages`,
    plan: (env) => {
      const amqpUrl = env.urls.amqp;
      if (amqpUrl === undefined) throw new Error(`${name} needs an AMQP endpoint`);
      const queue = `warren-bench.${env.runId}.${name}`;
      return {
        topology: {
          protocol: 'amqp',
          url: amqpUrl,
          amqp: {
            exchanges: [],
            queues: [{ name: queue }],
            bindings: [{ queue, exchange: 'amq.topic', routingKey: `warren-bench.${env.runId}.#` }],
          },
        },
        publishers: [mqttPublishers(env, name, qos, bodySize, `warren-bench/${env.runId}`)],
        consumers: [
          { role: 'consumer', protocol: 'amqp', id: 'con-0', url: amqpUrl, queues: [queue], prefetch: PREFETCH, ackEvery: ACK_EVERY },
        ],
        deliveriesPerPublish: 1,
        window: WINDOW,
      };
    },
  };
}

function mqttIdle(name: string, connections: number): IdleScenario {
  return {
    kind: 'idle',
    name,
    protocol: 'mqtt',
    summary:
      `MQTT 3.1.1: ${connections.toLocaleString('en-US')} idle connections (clean session, keep-alive 60 s, ` +
      `no subscriptions, PINGREQs spread over the keep-alive) from 4 client processes; broker resident memory (RSS) ` +
      `before, 5 s after, and settled over 90 s of idling, per connection`,
    connections,
    processes: 4,
    concurrency: 25,
    keepAliveS: 60,
    settleS: 90,
  };
}

/**
 * STOMP 1.2: 1 publisher SENDs to /queue/<name> -> 1 subscriber (ack auto, or client-individual with
 * an ACK frame per MESSAGE and prefetch-count). `protocol` picks TCP (`stomp`) or WebSocket (`stomp-ws`).
 */
function stompQueue(name: string, protocol: 'stomp' | 'stomp-ws', ack: 'auto' | 'client-individual', bodySize: number): Scenario {
  const prefetch = ack === 'auto' ? 0 : PREFETCH;
  return {
    name,
    protocol,
    summary:
      `STOMP 1.2 over ${protocol === 'stomp' ? 'TCP' : 'WebSocket (one frame per binary message)'}: 1 publisher ` +
      `SENDs to /queue/<name> (content-length, no receipts) -> 1 subscriber, ack ${ack}` +
      (prefetch > 0 ? `, prefetch-count ${prefetch}, an ACK frame per message` : '') +
      `; ${bodySize} B bodies; in-flight window ${WINDOW} messages; the queue is deleted over AMQP afterwards`,
    plan: ({ runId, url, urls, totalSeconds }) => {
      const queue = `warren-bench.${runId}.${name}`;
      const destination = `/queue/${queue}`;
      const amqpUrl = urls.amqp;
      return {
        // The clients create the queue (SUBSCRIBE/SEND to /queue/ declares it, durable in RabbitMQ);
        // it is deleted over AMQP afterwards.
        topology:
          amqpUrl === undefined
            ? null
            : { protocol: 'amqp-cleanup', url: amqpUrl, amqp: { exchanges: [], queues: [{ name: queue }], bindings: [] } },
        publishers: [
          { role: 'publisher', protocol: 'stomp', id: 'pub-0', url, destination, bodySize, maxMessages: MAX_RATE_PER_PUBLISHER * totalSeconds },
        ],
        consumers: [{ role: 'consumer', protocol: 'stomp', id: 'con-0', url, destination, ack, prefetch }],
        deliveriesPerPublish: 1,
        window: WINDOW,
      };
    },
  };
}

/** Routing throughput on one exchange while another holds `pending` delayed messages. */
function delayedPending(name: string, pending: number): DelayedScenario {
  const base = amqpOneToOne(`${name}-base`, 16);
  return {
    kind: 'delayed',
    name,
    protocol: 'amqp',
    summary:
      `amqp-1to1-16b without pending delayed messages (A) and while an x-delayed-message exchange holds ` +
      `${pending.toLocaleString('en-US')} 16 B messages due in an hour (B), interleaved A B A B ... A on one broker; ` +
      `the medians' change in msgs/s and in broker CPU per message is the cost of the pending messages (brokers ` +
      `without the exchange type fail the first B run)`,
    pending,
    base,
  };
}

/**
 * Not a throughput run: hold `connections` connections (idle MQTT from `processes` client
 * processes, plus `activeEach` AMQP and as many STOMP connections that publish to themselves once a
 * second) and, meanwhile, time new clients of each protocol (see connections.ts).
 */
export interface ConnectionsScenario {
  kind: 'connections';
  name: string;
  protocol: Protocol;
  summary: string;
  connections: number;
  activeEach: number;
  processes: number;
  /** Seconds of idling after the MQTT connections are up, and after the active ones are. */
  settleS: number;
  activeSettleS: number;
  /** New clients per protocol. */
  probes: number;
}

function manyConnections(name: string, connections: number, activeEach: number): ConnectionsScenario {
  return {
    kind: 'connections',
    name,
    protocol: 'mqtt',
    summary:
      `${connections.toLocaleString('en-US')} connections held at once: ${(connections - 2 * activeEach).toLocaleString('en-US')} idle MQTT 3.1.1 ` +
      `(clean session, keep-alive 60 s, from 4 client processes) plus ${activeEach} AMQP and ${activeEach} STOMP connections that each ` +
      `publish to their own queue once a second and consume it; meanwhile new MQTT, AMQP and STOMP clients connect and round-trip ` +
      `one message. Brokers without AMQP/STOMP hold the idle MQTT connections only`,
    connections,
    activeEach,
    processes: 4,
    settleS: 90,
    activeSettleS: 20,
    probes: 30,
  };
}

function directReplyRpc(name: string, inFlight: number[], bodySize: number): RpcScenario {
  return {
    kind: 'rpc',
    name,
    protocol: 'amqp',
    summary:
      `AMQP 0-9-1 RPC over direct reply-to: 1 requester (consumes amq.rabbitmq.reply-to no-ack, publishes requests with ` +
      `reply-to amq.rabbitmq.reply-to) keeping ${inFlight.join(' or ')} requests in flight -> 1 request queue -> 1 responder ` +
      `(prefetch 256, acks each request, replies to the rewritten reply-to); ${bodySize} B bodies; both clients in the harness process`,
    inFlight,
    bodySize,
  };
}

export const SCENARIOS: readonly (Scenario | IdleScenario | DelayedScenario | ConnectionsScenario | RpcScenario)[] = [
  amqpOneToOne('amqp-1to1-16b', 16),
  amqpOneToOne('amqp-1to1-1k', 1024),
  amqpFanout('amqp-fanout10', 10, 16),
  mqttFanIn('mqtt-qos0-10to1', 0, 16),
  mqttFanIn('mqtt-qos1-10to1', 1, 16),
  amqpOneToOne('amqp-1to1-16b-tls', 16, 'amqps'),
  mqttFanIn('mqtt-qos0-10to1-tls', 0, 16, 'mqtts'),
  mqttToAmqp('mqtt-to-amqp-qos1', 1, 16),
  mqttIdle('mqtt-idle-10k', 10_000),
  manyConnections('connections-20k', 20_000, 250),
  stompQueue('stomp-queue-ack-individual', 'stomp', 'client-individual', 16),
  stompQueue('stomp-queue-ack-auto', 'stomp', 'auto', 16),
  stompQueue('stomp-ws-queue-ack-individual', 'stomp-ws', 'client-individual', 16),
  delayedPending('amqp-delayed-1m-pending', 1_000_000),
  directReplyRpc('amqp-rpc-direct-reply-to', [1, 16], 16),
];

export function findScenario(name: string): Scenario | IdleScenario | DelayedScenario | ConnectionsScenario | RpcScenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
