/** Dispatch from a role spec or topology to the module of its protocol. */
import { openAmqpConsumer, openAmqpPublisher, setupAmqpTopology, teardownAmqpTopology } from './amqp.js';
import type { AmqpTopology } from './amqp.js';
import { openAmqpClientConsumer, openAmqpClientPublisher } from './amqp-client.js';
import { openMqttConsumer, openMqttPublisher } from './mqtt.js';
import { openStompConsumer, openStompPublisher } from './stomp.js';
import type { ConsumerDriver, ConsumerSpec, OnFatal, OnMessage, PublisherDriver, PublisherSpec } from './types.js';

/**
 * What a scenario declares before its clients start, and deletes afterwards.
 * `amqp-cleanup`: nothing is declared (the clients create it, e.g. STOMP's `/queue/` destinations),
 * but the listed queues and exchanges are deleted over AMQP afterwards.
 */
export type Topology =
  | { protocol: 'amqp'; url: string; amqp: AmqpTopology }
  | { protocol: 'amqp-cleanup'; url: string; amqp: AmqpTopology };

export function openPublisher(spec: PublisherSpec, onFatal: OnFatal): Promise<PublisherDriver> {
  switch (spec.protocol) {
    case 'amqp':
      return spec.library === 'amqp-client' ? openAmqpClientPublisher(spec, onFatal) : openAmqpPublisher(spec, onFatal);
    case 'mqtt':
      return openMqttPublisher(spec, onFatal);
    case 'stomp':
      return openStompPublisher(spec, onFatal);
  }
}

export function openConsumer(spec: ConsumerSpec, onMessage: OnMessage, onFatal: OnFatal): Promise<ConsumerDriver> {
  switch (spec.protocol) {
    case 'amqp':
      return spec.library === 'amqp-client'
        ? openAmqpClientConsumer(spec, onMessage, onFatal)
        : openAmqpConsumer(spec, onMessage, onFatal);
    case 'mqtt':
      return openMqttConsumer(spec, onMessage, onFatal);
    case 'stomp':
      return openStompConsumer(spec, onMessage, onFatal);
  }
}

export function setupTopology(t: Topology, options: { queueExpiresMs: number | null }): Promise<void> {
  switch (t.protocol) {
    case 'amqp':
      return setupAmqpTopology(t.url, t.amqp, options);
    case 'amqp-cleanup':
      return Promise.resolve();
  }
}

/** Returns a list of problems (empty when everything was deleted). */
export function teardownTopology(t: Topology): Promise<string[]> {
  switch (t.protocol) {
    case 'amqp':
    case 'amqp-cleanup':
      return teardownAmqpTopology(t.url, t.amqp);
  }
}
