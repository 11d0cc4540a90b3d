import { AMQPClient, type AMQPChannel, type AMQPMessage } from '@cloudamqp/amqp-client';
import type { Client as StompClient } from '@stomp/stompjs';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { NoResponderError } from '../../src/cluster/engine.js';
import { connectNats, type NatsEngine } from '../../src/cluster/nats/nats-engine.js';
import { encodeKey, exchangeSubject } from '../../src/cluster/transient-routing.js';
import { waitFor } from '../helpers/broker.js';
import { startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { collect as collectMqtt, connectMqtt, type Received } from '../helpers/mqtt.js';
import { collect as collectStomp, stompClient, wsUrl } from '../helpers/stomp.js';

/**
 * Transient subscribers (exclusive queues, MQTT clean sessions, STOMP /topic) on one node get
 * what is published on another, over three real nats-servers and three Warren nodes.
 */
describe('routing to transient subscribers across nodes', { timeout: 60_000 }, () => {
  let cluster: TestCluster;
  let nats: NatsEngine;
  const amqp: AMQPClient[] = [];
  const mqtts: MqttClient[] = [];
  const stomps: StompClient[] = [];

  beforeAll(async () => {
    cluster = await startTestCluster(3);
    const on = ['--mqtt-port', '0', '--stomp-port', '0'];
    await cluster.start('n1', on);
    await Promise.all([cluster.start('n2', on), cluster.start('n3', on)]);
    nats = await connectNats({ servers: cluster.nats.url.split(','), name: 'routing-test' });
  }, 60_000);

  afterAll(async () => {
    for (const c of mqtts) c.end(true);
    for (const c of stomps) await c.deactivate();
    for (const c of amqp) await c.close().catch(() => undefined);
    await nats?.close();
    await cluster?.stop();
  });

  const node = (name: string) => cluster.nodes.get(name)!;
  async function channel(name: string): Promise<AMQPChannel> {
    const c = new AMQPClient(`amqp://guest:guest@127.0.0.1:${node(name).amqpPort}`);
    amqp.push(c);
    await c.connect();
    return c.channel();
  }
  async function mqttOn(name: string, ws = false): Promise<{ client: MqttClient; got: Received[] }> {
    const n = node(name);
    const url = ws ? `ws://127.0.0.1:${n.httpPort}/mqtt` : `mqtt://127.0.0.1:${n.mqttPort!}`;
    const client = await connectMqtt(url, { protocolVersion: 4, clean: true });
    mqtts.push(client);
    return { client, got: collectMqtt(client) };
  }
  /** An exclusive server-named queue on `ch`, its bodies collected. */
  async function exclusiveQueue(ch: AMQPChannel): Promise<{ name: string; bodies: string[] }> {
    const q = await ch.queueDeclare('', { exclusive: true });
    const bodies: string[] = [];
    await ch.basicConsume(q.name, { noAck: true }, (m: AMQPMessage) => void bodies.push(m.bodyToString() ?? ''));
    return { name: q.name, bodies };
  }
  /**
   * Interest on the bus spreads between the nats-servers in a moment (the subscription window):
   * publishes probes until one arrives, so what the test publishes next is not lost to it.
   */
  async function primed(publish: (body: string) => Promise<unknown>, bodies: () => string[], tag: string): Promise<void> {
    let i = 0;
    await waitFor(
      async () => {
        await publish(`probe-${tag}-${i++}`);
        await new Promise((r) => setTimeout(r, 50));
        return bodies().some((b) => b.startsWith(`probe-${tag}-`));
      },
      10_000,
      `${tag}: interest seen by the publishing node`,
    );
  }
  const real = (bodies: string[]): string[] => bodies.filter((b) => !b.startsWith('probe-'));
  /** Whether any node listens on `subject` (a request finds no responder when none does). */
  async function listened(subject: string): Promise<boolean> {
    try {
      await nats.bus.request(subject, Buffer.of(0), 300);
      return true;
    } catch (e) {
      return !(e instanceof NoResponderError);
    }
  }

  test('an exclusive queue on n2 bound to amq.topic with a.*.c and a.# gets a publish on n1 once', async () => {
    const ch2 = await channel('n2');
    const q = await exclusiveQueue(ch2);
    await ch2.queueBind(q.name, 'amq.topic', 'a.*.c');
    await ch2.queueBind(q.name, 'amq.topic', 'a.#');
    const ch1 = await channel('n1');
    const topic = 'amq.topic';
    await primed((b) => ch1.basicPublish(topic, 'a.probe', b), () => q.bodies, 'topic');
    await ch1.confirmSelect();
    await ch1.basicPublish(topic, 'a.b.c', 'both patterns');
    await ch1.basicPublish(topic, 'a', 'hash matches no word');
    await ch1.basicPublish(topic, 'b.b.c', 'no pattern');
    await ch1.basicPublish(topic, 'a.end', 'last');
    await waitFor(() => real(q.bodies).includes('last'), 5000, 'the last message on n2');
    expect(real(q.bodies)).toEqual(['both patterns', 'hash matches no word', 'last']);
  });

  test('fanout and headers exchanges reach an exclusive queue on n3', async () => {
    const ch3 = await channel('n3');
    const fan = await exclusiveQueue(ch3);
    await ch3.queueBind(fan.name, 'amq.fanout', '');
    const hdr = await exclusiveQueue(ch3);
    await ch3.queueBind(hdr.name, 'amq.headers', '', { 'x-match': 'all', kind: 'alert' });
    const ch1 = await channel('n1');
    await primed((b) => ch1.basicPublish('amq.fanout', 'any', b), () => fan.bodies, 'fanout');
    await primed((b) => ch1.basicPublish('amq.headers', '', b, { headers: { kind: 'alert' } }), () => hdr.bodies, 'headers');
    await ch1.basicPublish('amq.fanout', 'whatever', 'fanned');
    await ch1.basicPublish('amq.headers', '', 'not an alert', { headers: { kind: 'info' } });
    await ch1.basicPublish('amq.headers', '', 'alert', { headers: { kind: 'alert' } });
    await waitFor(() => real(hdr.bodies).length === 1 && real(fan.bodies).length === 1, 5000, 'fanout and headers deliveries');
    expect(real(fan.bodies)).toEqual(['fanned']);
    expect(real(hdr.bodies)).toEqual(['alert']);
  });

  test("exchange-to-exchange: a node-local exchange on n2 behind amq.direct, and a durable chain declared on n1", async () => {
    const ch2 = await channel('n2');
    await ch2.exchangeDeclare('local-fan', 'fanout', { durable: false });
    await ch2.exchangeBind('local-fan', 'amq.direct', 'to-local');
    const local = await exclusiveQueue(ch2);
    await ch2.queueBind(local.name, 'local-fan', '');

    const ch1 = await channel('n1');
    await ch1.exchangeDeclare('chain-src', 'fanout', { durable: true });
    await ch1.exchangeDeclare('chain-dst', 'direct', { durable: true });
    await ch1.exchangeBind('chain-dst', 'chain-src', '');
    await waitFor(async () => {
      try {
        const c = await channel('n2');
        await c.exchangeDeclare('chain-dst', 'direct', { passive: true });
        return true;
      } catch {
        return false;
      }
    }, 5000, 'chain-dst on n2');
    const chained = await exclusiveQueue(ch2);
    await ch2.queueBind(chained.name, 'chain-dst', 'k');

    await primed((b) => ch1.basicPublish('amq.direct', 'to-local', b), () => local.bodies, 'e2e-local');
    await primed((b) => ch1.basicPublish('chain-src', 'k', b), () => chained.bodies, 'e2e-chain');
    await ch1.basicPublish('amq.direct', 'to-local', 'through local-fan');
    await ch1.basicPublish('chain-src', 'other', 'filtered by chain-dst');
    await ch1.basicPublish('chain-src', 'k', 'through the chain');
    await waitFor(() => real(local.bodies).length === 1 && real(chained.bodies).length === 1, 5000, 'exchange-to-exchange deliveries');
    expect(real(local.bodies)).toEqual(['through local-fan']);
    expect(real(chained.bodies)).toEqual(['through the chain']);
  });

  test('an MQTT clean session on n3 gets QoS 0 and QoS 1 from MQTT on n1 and from AMQP on n2', async () => {
    const sub = await mqttOn('n3');
    await sub.client.subscribeAsync('sensors/+/temp', { qos: 1 });
    const pub = await mqttOn('n1');
    const bodies = (): string[] => sub.got.map((m) => m.payload);
    await primed((b) => pub.client.publishAsync('sensors/probe/temp', b, { qos: 0 }), bodies, 'mqtt');
    const ch2 = await channel('n2');
    await primed((b) => ch2.basicPublish('amq.topic', 'sensors.probe.temp', b), bodies, 'amqp-mqtt');
    await pub.client.publishAsync('sensors/a/temp', 'mqtt qos0', { qos: 0 });
    await pub.client.publishAsync('sensors/a/temp', 'mqtt qos1', { qos: 1 });
    await pub.client.publishAsync('sensors/a/humidity', 'not matched', { qos: 1 });
    await ch2.basicPublish('amq.topic', 'sensors.b.temp', 'amqp transient');
    await ch2.basicPublish('amq.topic', 'sensors.b.temp', 'amqp persistent', { deliveryMode: 2 });
    await waitFor(() => real(bodies()).length >= 4, 5000, 'four MQTT deliveries on n3');
    const got = sub.got.filter((m) => !m.payload.startsWith('probe-'));
    expect(got.map((m) => [m.topic, m.payload]).sort()).toEqual([
      ['sensors/a/temp', 'mqtt qos0'],
      ['sensors/a/temp', 'mqtt qos1'],
      ['sensors/b/temp', 'amqp persistent'],
      ['sensors/b/temp', 'amqp transient'],
    ]);
    expect(got.find((m) => m.payload === 'mqtt qos0')!.packet.qos).toBe(0);
    expect(got.find((m) => m.payload === 'mqtt qos1')!.packet.qos).toBe(1);
  });

  test('a STOMP /topic subscriber on n2 gets a publish from MQTT on n1', async () => {
    const client = await stompClient(wsUrl(node('n2').httpPort));
    stomps.push(client);
    const sub = collectStomp(client, '/topic/news.today');
    const bodies = (): string[] => sub.messages.map((m) => m.body);
    const pub = await mqttOn('n1');
    await primed((b) => pub.client.publishAsync('news/today', b, { qos: 1 }), bodies, 'stomp');
    await pub.client.publishAsync('news/today', 'extra, extra', { qos: 0 });
    await waitFor(() => real(bodies()).length === 1, 5000, 'the STOMP delivery');
    expect(real(bodies())).toEqual(['extra, extra']);
    expect(sub.messages.at(-1)!.headers['destination']).toBe('/topic/news.today');
  });

  test('an MQTT subscriber over WebSocket on n2 gets a publish from AMQP on n1', async () => {
    const sub = await mqttOn('n2', true);
    await sub.client.subscribeAsync('ws/#', { qos: 0 });
    const ch1 = await channel('n1');
    const bodies = (): string[] => sub.got.map((m) => m.payload);
    await primed((b) => ch1.basicPublish('amq.topic', 'ws.probe', b), bodies, 'ws');
    await ch1.basicPublish('amq.topic', 'ws.x.y', 'over websocket');
    await waitFor(() => real(bodies()).length === 1, 5000, 'the WebSocket delivery');
    expect(sub.got.at(-1)!.topic).toBe('ws/x/y');
  });

  test('no duplicates when publisher and subscriber share a node; a durable queue gets one copy', async () => {
    const ch1 = await channel('n1');
    const ch2 = await channel('n2');
    const here = await exclusiveQueue(ch1);
    const there = await exclusiveQueue(ch2);
    await ch1.queueBind(here.name, 'amq.topic', 'dup.#');
    await ch1.queueBind(here.name, 'amq.topic', 'dup.*');
    await ch2.queueBind(there.name, 'amq.topic', 'dup.#');
    await ch1.queueDeclare('routing-durable', { durable: true });
    await ch1.queueBind('routing-durable', 'amq.topic', 'dup.#');
    await primed((b) => ch1.basicPublish('amq.topic', 'dup.probe', b), () => there.bodies, 'dup');
    await ch1.queuePurge('routing-durable');
    await ch1.confirmSelect();
    for (let i = 0; i < 5; i++) await ch1.basicPublish('amq.topic', 'dup.x', `m${i}`);
    await ch1.basicPublish('amq.topic', 'dup.end', 'end');
    await waitFor(() => real(there.bodies).includes('end') && real(here.bodies).includes('end'), 5000, 'both ends');
    // Also from a third node: the copies the publishing node and n2 route must not add up.
    const ch3 = await channel('n3');
    await ch3.basicPublish('amq.topic', 'dup.from3', 'from n3');
    await waitFor(() => real(there.bodies).includes('from n3') && real(here.bodies).includes('from n3'), 5000, 'from n3 on both');
    const expected = ['m0', 'm1', 'm2', 'm3', 'm4', 'end', 'from n3'];
    expect(real(here.bodies)).toEqual(expected);
    expect(real(there.bodies)).toEqual(expected);
    const q = await ch1.queueDeclare('routing-durable', { passive: true });
    expect(q.messageCount).toBe(7);
  });

  test('unsubscribing drops the node’s interest on the bus and stops delivery', async () => {
    const sub = await mqttOn('n3');
    await sub.client.subscribeAsync('gone/+/soon', { qos: 0 });
    await sub.client.subscribeAsync('stays', { qos: 0 });
    const subject = `${exchangeSubject('test', '/', 'amq.topic')}.${encodeKey('gone.x.soon')}`;
    await waitFor(() => listened(subject), 5000, 'interest in gone/+/soon');
    const pub = await mqttOn('n1');
    const bodies = (): string[] => sub.got.map((m) => m.payload);
    await primed((b) => pub.client.publishAsync('gone/x/soon', b, { qos: 0 }), bodies, 'unsub');
    await sub.client.unsubscribeAsync('gone/+/soon');
    await waitFor(async () => !(await listened(subject)), 5000, 'interest dropped');
    await primed((b) => pub.client.publishAsync('stays', b, { qos: 0 }), bodies, 'stays');
    const before = sub.got.length;
    await pub.client.publishAsync('gone/x/soon', 'after unsubscribe', { qos: 0 });
    await pub.client.publishAsync('stays', 'marker', { qos: 0 });
    await waitFor(() => bodies().includes('marker'), 5000, 'the marker');
    expect(real(sub.got.slice(before).map((m) => m.payload))).toEqual(['marker']);
  });
});
