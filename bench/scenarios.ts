/**
 * The scenario registry. A scenario is a recipe: given a broker endpoint it returns the topology to
 * declare and the client roles to fork. Everything protocol-specific is in clients/<protocol>.ts.
 *
 * Adding one (e.g. `mqtt-1to1-qos0`, `stomp-queue-1k`, `amqp-1to1-1k-persistent-confirms`): write a
 * function returning a Scenario and add it to SCENARIOS. Brokers that have no endpoint for the
 * scenario's protocol are skipped for it.
 */
import type { Topology } from './clients/index.js';
import type { ConsumerSpec, Protocol, PublisherSpec } from './clients/types.js';

export interface ScenarioEnv {
  /** Unique per harness run; part of every queue and exchange name. */
  runId: string;
  /** The broker's endpoint for the scenario's protocol, e.g. amqp://guest:guest@127.0.0.1:5672. */
  url: string;
  /** Warm-up + measured seconds; bounds message counts. */
  totalSeconds: number;
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
  name: string;
  protocol: Protocol;
  /** One line for the report. */
  summary: string;
  plan(env: ScenarioEnv): ScenarioPlan;
}

/** No publisher sends more than this many messages per second of run, whatever happens. */
const MAX_RATE_PER_PUBLISHER = 2_000_000;
const WINDOW = 10_000;
const PREFETCH = 1_000;
/** Consumers ack each message individually (basic.ack multiple=false), as most applications do. */
const ACK_EVERY = 1;

function amqpOneToOne(name: string, bodySize: number): Scenario {
  return {
    name,
    protocol: 'amqp',
    summary:
      `AMQP 0-9-1: 1 publisher -> default exchange -> 1 queue -> 1 consumer; ${bodySize} B transient bodies; ` +
      `prefetch ${PREFETCH}, ack each message; in-flight window ${WINDOW} messages`,
    plan: ({ runId, url, totalSeconds }) => {
      const queue = `warren-bench.${runId}.${name}`;
      return {
        topology: { protocol: 'amqp', url, amqp: { exchanges: [], queues: [{ name: queue }], bindings: [] } },
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

export const SCENARIOS: readonly Scenario[] = [
  amqpOneToOne('amqp-1to1-16b', 16),
  amqpOneToOne('amqp-1to1-1k', 1024),
  amqpFanout('amqp-fanout10', 10, 16),
];

export function findScenario(name: string): Scenario | undefined {
  return SCENARIOS.find((s) => s.name === name);
}
