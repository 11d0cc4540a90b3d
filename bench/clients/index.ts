/** Dispatch from a role spec or topology to the module of its protocol. */
import { openAmqpConsumer, openAmqpPublisher, setupAmqpTopology, teardownAmqpTopology } from './amqp.js';
import type { AmqpTopology } from './amqp.js';
import type { ConsumerDriver, ConsumerSpec, OnFatal, OnMessage, PublisherDriver, PublisherSpec } from './types.js';

/** What a scenario declares before its clients start, and deletes afterwards. */
export type Topology = { protocol: 'amqp'; url: string; amqp: AmqpTopology };

export function openPublisher(spec: PublisherSpec, onFatal: OnFatal): Promise<PublisherDriver> {
  switch (spec.protocol) {
    case 'amqp':
      return openAmqpPublisher(spec, onFatal);
  }
}

export function openConsumer(spec: ConsumerSpec, onMessage: OnMessage, onFatal: OnFatal): Promise<ConsumerDriver> {
  switch (spec.protocol) {
    case 'amqp':
      return openAmqpConsumer(spec, onMessage, onFatal);
  }
}

export function setupTopology(t: Topology, options: { queueExpiresMs: number | null }): Promise<void> {
  switch (t.protocol) {
    case 'amqp':
      return setupAmqpTopology(t.url, t.amqp, options);
  }
}

/** Returns a list of problems (empty when everything was deleted). */
export function teardownTopology(t: Topology): Promise<string[]> {
  switch (t.protocol) {
    case 'amqp':
      return teardownAmqpTopology(t.url, t.amqp);
  }
}
