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
import type { AmqpLibrary, ConsumerSpec, Protocol, PublisherSpec } from './clients/types.js';

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
  /** Clean session (default true). */
  clean?: boolean;
  /**
   * One subscription per connection: `%c` in the filter is the client id (a filter per session),
   * `%r` the run's prefix (one filter shared by all).
   */
  subscribe?: { filter: string; qos: 0 | 1 | 2 };
  /** Load while idling: one publisher to the subscription filter (which must then contain no `%c`). */
  fanOut?: { ratePerS: number; qos: 0 | 1; bodySize: number };
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

/**
 * amqp-1to1 to an exclusive queue the consumer declares and binds to amq.direct: in a cluster
 * the queue lives on the consumer's node, and a publish on another node reaches it as a
 * transient subscriber's message.
 */
function amqpToExclusive(name: string, bodySize: number): Scenario {
  return {
    name,
    protocol: 'amqp',
    summary:
      `AMQP 0-9-1: 1 publisher -> amq.direct -> 1 exclusive queue declared and bound by its consumer -> 1 consumer; ${bodySize} B ` +
      `transient bodies; prefetch ${PREFETCH}, ack each message; in-flight window ${WINDOW} messages`,
    plan: ({ runId, url, totalSeconds }) => {
      const queue = `warren-bench.${runId}.${name}`;
      return {
        topology: { protocol: 'amqp', url, amqp: { exchanges: [], queues: [], bindings: [] } },
        publishers: [
          {
            role: 'publisher',
            protocol: 'amqp',
            id: 'pub-0',
            url,
            exchange: 'amq.direct',
            routingKey: queue,
            persistent: false,
            bodySize,
            maxMessages: MAX_RATE_PER_PUBLISHER * totalSeconds,
          },
        ],
        consumers: [
          { role: 'consumer', protocol: 'amqp', id: 'con-0', url, queues: [queue], prefetch: PREFETCH, ackEvery: ACK_EVERY, declareExclusiveOn: 'amq.direct' },
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

function mqttSubscribed(name: string, connections: number): IdleScenario {
  return {
    ...mqttIdle(name, connections),
    summary:
      `MQTT 3.1.1: ${connections.toLocaleString('en-US')} idle sessions (clean session, keep-alive 60 s), each subscribed to its own ` +
      `filter \`wb/<client id>/cmd\` with QoS 1 (a device's command topic), from 4 client processes; no messages. Broker memory as for mqtt-idle-10k`,
    subscribe: { filter: 'wb/%c/cmd', qos: 1 },
  };
}

function mqttFanOutMemory(name: string, connections: number, ratePerS: number): IdleScenario {
  return {
    ...mqttIdle(name, connections),
    summary:
      `MQTT 3.1.1: ${connections.toLocaleString('en-US')} sessions (clean session) all subscribed to one filter with QoS 1, and one publisher ` +
      `sending ${ratePerS} QoS 1 messages a second (16 B) to it while they idle: ${(connections * ratePerS).toLocaleString('en-US')} deliveries a ` +
      `second, each acknowledged. Broker memory per subscriber under that load`,
    subscribe: { filter: 'wb/%r/fan', qos: 1 },
    fanOut: { ratePerS, qos: 1, bodySize: 16 },
    settleS: 60,
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

/** What else the broker holds while a latency scenario runs. */
export type LatencyLoad = 'none' | 'idle-10k' | 'backlog-1m';

/**
 * A fixed-rate latency run (see latency.ts): one producer and one consumer in their own processes,
 * the producer on a fixed schedule (latency counted from each message's due time), while the broker
 * holds nothing else, 10 000 idle MQTT connections, or a 1 000 000-message backlog on another queue.
 */
export interface LatencyScenario {
  kind: 'latency';
  name: string;
  protocol: Protocol;
  summary: string;
  rate: number;
  load: LatencyLoad;
  /** The 1:1 scenario, its publisher set to `rate`. */
  base: Scenario;
}

/** Fixed-rate runs have no in-flight window: the schedule alone paces the publisher. */
const NO_WINDOW = Number.MAX_SAFE_INTEGER;
/** Latency runs send 16 B: the due time (0..7) and the actual send time (8..15). */
const LATENCY_BODY = 16;

/** `s` with its plan passed through `change`. */
function replan(s: Scenario, change: (plan: ScenarioPlan, env: ScenarioEnv) => ScenarioPlan): Scenario {
  return { ...s, plan: (env) => change(s.plan(env), env) };
}

/** `s` with its publishers on a fixed schedule of `rate` msgs/s and no in-flight window. */
function atRate(s: Scenario, rate: number): Scenario {
  return replan(s, (plan, env) => ({
    ...plan,
    publishers: plan.publishers.map((p) => ({ ...p, rate, maxMessages: Math.ceil(rate * env.totalSeconds) })),
    window: NO_WINDOW,
  }));
}

/** MQTT 3.1.1, one publisher connection -> one subscriber on the same topic. */
function mqttOneToOne(name: string, qos: 0 | 1): Scenario {
  return {
    name,
    protocol: 'mqtt',
    summary: `MQTT 3.1.1: 1 publisher -> 1 subscriber on the same topic, QoS ${qos}`,
    plan: (env) => {
      const topic = `warren-bench/${env.runId}/${name}`;
      return {
        topology: null,
        publishers: [
          {
            role: 'publisher',
            protocol: 'mqtt',
            id: 'pub-0',
            url: env.url,
            topics: [topic],
            qos,
            inflight: MQTT_PUBLISH_INFLIGHT,
            clientIdPrefix: `wb-${env.runId}-${name}-p`,
            bodySize: LATENCY_BODY,
            maxMessages: MAX_RATE_PER_PUBLISHER * env.totalSeconds,
          },
        ],
        consumers: [{ role: 'consumer', protocol: 'mqtt', id: 'con-0', url: env.url, filter: topic, qos, clientId: `wb-${env.runId}-${name}-c` }],
        deliveriesPerPublish: 1,
        window: WINDOW,
      };
    },
  };
}

const LOAD_TEXT: Record<LatencyLoad, string> = {
  none: '',
  'idle-10k': '; meanwhile the broker holds 10 000 idle MQTT connections (keep-alive 60 s, 4 client processes)',
  'backlog-1m': '; meanwhile another queue holds 1 000 000 messages of 16 B (filled over AMQP before the run; brokers without AMQP skip this)',
};

/** `s` with its AMQP publishers and consumers on another client library. */
function onAmqpLibrary(s: Scenario, library: AmqpLibrary): Scenario {
  return replan(s, (plan) => ({
    ...plan,
    publishers: plan.publishers.map((p) => (p.protocol === 'amqp' ? { ...p, library } : p)),
    consumers: plan.consumers.map((c) => (c.protocol === 'amqp' ? { ...c, library } : c)),
  }));
}

function latency(
  protocol: 'amqp' | 'amqp-client' | 'mqtt-qos0' | 'mqtt-qos1' | 'stomp',
  rate: number,
  load: LatencyLoad,
): LatencyScenario {
  const name = `latency-${protocol}-${rate / 1000}k${load === 'none' ? '' : `-${load}`}`;
  let base: Scenario;
  let what: string;
  switch (protocol) {
    case 'amqp':
      base = amqpOneToOne(name, LATENCY_BODY);
      what = 'AMQP 0-9-1: 1 publisher -> default exchange -> 1 queue -> 1 consumer (prefetch 1000, ack each)';
      break;
    case 'amqp-client':
      base = onAmqpLibrary(amqpOneToOne(name, LATENCY_BODY), 'amqp-client');
      what =
        'AMQP 0-9-1 on @cloudamqp/amqp-client (amqplib in the others): 1 publisher -> default exchange -> 1 queue -> 1 consumer (prefetch 1000, ack each)';
      break;
    case 'mqtt-qos0':
    case 'mqtt-qos1': {
      const qos = protocol === 'mqtt-qos0' ? 0 : 1;
      base = mqttOneToOne(name, qos);
      what = `MQTT 3.1.1 QoS ${qos}: 1 publisher connection -> 1 subscriber on the same topic` + (qos > 0 ? ', every delivery PUBACKed' : '');
      break;
    }
    case 'stomp':
      base = stompQueue(name, 'stomp', 'client-individual', LATENCY_BODY);
      what = 'STOMP 1.2: 1 publisher SENDs to /queue/<name> -> 1 subscriber (ack client-individual, prefetch-count 1000)';
      break;
  }
  return {
    kind: 'latency',
    name,
    protocol: base.protocol,
    summary:
      `${what}; fixed rate ${rate.toLocaleString('en-US')} msgs/s, ${LATENCY_BODY} B transient bodies stamped with the due and the send time; ` +
      `latency from the due time (no coordinated omission)${LOAD_TEXT[load]}`,
    rate,
    load,
    base: atRate(base, rate),
  };
}

const LATENCY_PROTOCOLS = ['amqp', 'amqp-client', 'mqtt-qos0', 'mqtt-qos1', 'stomp'] as const;

/** Every latency scenario: each protocol at 1 000 and 5 000 msgs/s, and at 5 000 under both loads. */
export const LATENCY_SCENARIOS: readonly LatencyScenario[] = [
  ...LATENCY_PROTOCOLS.flatMap((p) => [latency(p, 1000, 'none'), latency(p, 5000, 'none')]),
  ...LATENCY_PROTOCOLS.map((p) => latency(p, 5000, 'idle-10k')),
  ...LATENCY_PROTOCOLS.map((p) => latency(p, 5000, 'backlog-1m')),
];

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

/**
 * Many connections, each looping messages through a destination of its own (loop.ts): what all
 * of the broker's processes move together, with no routing between them.
 */
export interface LoopScenario {
  kind: 'loop';
  name: string;
  protocol: 'amqp' | 'mqtt';
  summary: string;
  connections: number;
  processes: number;
  /** Messages each connection keeps going round. */
  inflight: number;
  bodySize: number;
  qos: 0 | 1;
}

function loop(name: string, protocol: 'amqp' | 'mqtt', qos: 0 | 1, connections: number): LoopScenario {
  const what =
    protocol === 'amqp'
      ? 'AMQP 0-9-1: each connection consumes an exclusive queue of its own (prefetch 50, ack each) and publishes every message it receives to it again'
      : `MQTT 3.1.1 QoS ${qos}: each connection subscribes to a topic of its own and publishes every message it receives to it again`;
  return {
    kind: 'loop',
    name,
    protocol,
    summary: `${what}; ${connections} connections from 2 client processes, 50 messages in flight per connection, 16 B bodies`,
    connections,
    processes: 2,
    inflight: 50,
    bodySize: 16,
    qos,
  };
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

/**
 * Not a throughput run: `sessions` subscribed MQTT clean sessions drop at once, for each count in
 * turn (see teardown.ts). RabbitMQ's MQTT plugin is left out (its node would need minutes per
 * round at these counts); Mosquitto is the MQTT reference.
 */
export interface StormScenario {
  kind: 'storm';
  name: string;
  protocol: Protocol;
  summary: string;
  sessions: readonly number[];
  processes: number;
}

/** Not a throughput run: queue.delete and connect + close with ever more queues in the vhost (see teardown.ts). */
export interface QueueDeleteScenario {
  kind: 'queue-delete';
  name: string;
  protocol: Protocol;
  summary: string;
  levels: readonly number[];
  /** Queues deleted (timed) at each level. */
  deletes: number;
  /** AMQP connect + close round trips (timed) at each level. */
  connects: number;
}

function disconnectStorm(name: string, sessions: readonly number[]): StormScenario {
  return {
    kind: 'storm',
    name,
    protocol: 'mqtt',
    summary:
      `${sessions.map((n) => n.toLocaleString('en-US')).join(' and ')} subscribed MQTT 3.1.1 clean sessions (one QoS 1 subscription and ` +
      `a QoS 0 will each, from 4 client processes) drop at once (sockets destroyed, no DISCONNECT: a load balancer restart). Storm = ` +
      `from the drop until the last will reaches a watcher subscribed to them all (the broker has handled every session's end); CPU ` +
      `from /proc every 10 ms until the broker is quiet after that; meanwhile a new client connects every 10 ms (CONNECT -> CONNACK timed). ` +
      `The largest count is what fits the broker's open-files limit`,
    sessions,
    processes: 4,
  };
}

function queueDelete(name: string, levels: readonly number[]): QueueDeleteScenario {
  return {
    kind: 'queue-delete',
    name,
    protocol: 'amqp',
    summary:
      `With ${levels.map((n) => n.toLocaleString('en-US')).join(' / ')} queues in the vhost (each bound to amq.topic): the broker's CPU ` +
      `per queue.delete of 5,000 more bound queues (pipelined on one channel), and per AMQP connect + channel.open + close (200, one at a time)`,
    levels,
    deletes: 5_000,
    connects: 200,
  };
}

export type AnyScenario =
  | Scenario
  | IdleScenario
  | DelayedScenario
  | ConnectionsScenario
  | RpcScenario
  | StormScenario
  | QueueDeleteScenario
  | LatencyScenario
  | LoopScenario;

export const SCENARIOS: readonly AnyScenario[] = [
  amqpOneToOne('amqp-1to1-16b', 16),
  amqpOneToOne('amqp-1to1-1k', 1024),
  amqpToExclusive('amqp-exclusive-16b', 16),
  amqpFanout('amqp-fanout10', 10, 16),
  mqttFanIn('mqtt-qos0-10to1', 0, 16),
  mqttFanIn('mqtt-qos1-10to1', 1, 16),
  amqpOneToOne('amqp-1to1-16b-tls', 16, 'amqps'),
  mqttFanIn('mqtt-qos0-10to1-tls', 0, 16, 'mqtts'),
  mqttToAmqp('mqtt-to-amqp-qos1', 1, 16),
  mqttIdle('mqtt-idle-10k', 10_000),
  mqttSubscribed('mqtt-subscribed-10k', 10_000),
  mqttFanOutMemory('mqtt-fanout-memory-5k', 5_000, 2),
  manyConnections('connections-20k', 20_000, 250),
  stompQueue('stomp-queue-ack-individual', 'stomp', 'client-individual', 16),
  stompQueue('stomp-queue-ack-auto', 'stomp', 'auto', 16),
  stompQueue('stomp-ws-queue-ack-individual', 'stomp-ws', 'client-individual', 16),
  delayedPending('amqp-delayed-1m-pending', 1_000_000),
  directReplyRpc('amqp-rpc-direct-reply-to', [1, 16], 16),
  disconnectStorm('mqtt-disconnect-storm', [5_000, 19_800]),
  queueDelete('amqp-queue-delete', [1_000, 10_000, 50_000]),
  ...LATENCY_SCENARIOS,
  loop('amqp-loop-32', 'amqp', 0, 32),
  loop('mqtt-qos0-loop-32', 'mqtt', 0, 32),
  loop('mqtt-qos1-loop-32', 'mqtt', 1, 32),
];

export function findScenario(name: string): AnyScenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
