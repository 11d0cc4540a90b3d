import { AMQPClient, type AMQPChannel } from '@cloudamqp/amqp-client';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, test, vi } from 'vitest';
import { AmqpConnection } from '../../adapters/amqp/connection.js';
import { FrameType } from '../../adapters/amqp/codec/constants.js';
import { MqttConnection } from '../../adapters/mqtt/connection.js';
import { StompConnection } from '../../adapters/stomp/connection.js';
import { ManagementApi } from '../../src/management/api.js';
import { RecordStore } from '../../src/store/record-store.js';
import { CoreChannel } from '../../src/core/channel.js';
import type { Message, PublishResult } from '../../src/core/index.js';
import { RawAmqp } from '../helpers/amqp-raw.js';
import { waitFor } from '../helpers/broker.js';
import { RawMqtt } from '../helpers/mqtt.js';
import { RawStomp, startLoggedBroker, type LoggedBroker } from '../helpers/stomp.js';

/**
 * Failure isolation per connection: bad input, and any exception while serving one connection's
 * input, closes that connection with its protocol's error and a log line; the broker and a
 * bystander connection of every protocol carry on.
 */
let lb: LoggedBroker;
let amqpPort: number;
let mqttPort: number;
let stompPort: number;
let amqpBystander: AMQPClient;
let amqpCh: AMQPChannel;
let mqttBystander: MqttClient;
let stompBystander: RawStomp;
const mqttReceived: string[] = [];

beforeAll(async () => {
  lb = await startLoggedBroker();
  amqpPort = lb.broker.ports.amqp!;
  mqttPort = lb.broker.ports.mqtt!;
  stompPort = lb.broker.ports.stomp!;
  amqpBystander = new AMQPClient(`amqp://guest:guest@127.0.0.1:${amqpPort}`);
  await amqpBystander.connect();
  amqpCh = await amqpBystander.channel();
  await amqpCh.queueDeclare('isolation-amqp', { exclusive: true });
  mqttBystander = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'isolation-bystander', reconnectPeriod: 0 });
  mqttBystander.on('message', (_t, p) => mqttReceived.push(p.toString()));
  await mqttBystander.subscribeAsync('isolation/mqtt', { qos: 1 });
  stompBystander = await RawStomp.connected(stompPort);
  stompBystander.send('SUBSCRIBE', { id: 's', destination: '/queue/isolation-stomp', receipt: 'sub' });
  await stompBystander.next('RECEIPT');
});

afterAll(async () => {
  await amqpBystander.close();
  await mqttBystander.endAsync();
  stompBystander.destroy();
  await lb.stop();
});

afterEach(() => {
  vi.restoreAllMocks();
});

let round = 0;
/** Each bystander still round-trips a message on its own protocol. */
async function bystandersRoundTrip(): Promise<void> {
  const tag = `round-${++round}`;
  await amqpCh.basicPublish('', 'isolation-amqp', tag);
  const m = await waitFor(async () => await amqpCh.basicGet('isolation-amqp', { noAck: true }), 3000, 'AMQP bystander message');
  expect(m.bodyToString()).toBe(tag);
  await mqttBystander.publishAsync('isolation/mqtt', tag, { qos: 1 });
  await waitFor(() => mqttReceived.includes(tag), 3000, 'MQTT bystander message');
  stompBystander.send('SEND', { destination: '/queue/isolation-stomp', receipt: tag }, tag);
  await stompBystander.next('RECEIPT');
  const f = await stompBystander.next('MESSAGE');
  expect(f.body.toString()).toBe(tag);
  expect(amqpBystander.closed).toBe(false);
  expect(mqttBystander.connected).toBe(true);
  expect(stompBystander.closed).toBe(false);
}

/** Publishes whose routing key contains `boom` throw a TypeError inside the core (a stand-in for any unexpected bug). */
function injectPublishFault(): void {
  const original = CoreChannel.prototype.publish;
  vi.spyOn(CoreChannel.prototype, 'publish').mockImplementation(function (this: CoreChannel, msg: Message): PublishResult {
    if (msg.routingKey.includes('boom')) throw new TypeError('injected fault');
    return original.call(this, msg);
  });
}

/** The error-level log line of an internal error, with the stack of `message`. */
async function internalErrorLogged(protocol: string, message: string): Promise<void> {
  await waitFor(
    () =>
      lb.logs.some((l) => {
        const err = l['err'] as { stack?: string } | undefined;
        return l.level === 50 && l['protocol'] === protocol && l.msg === 'internal error' && err?.stack?.includes(message) === true;
      }),
    3000,
    `${protocol} internal error logged with its stack`,
  );
}

async function amqpBoomPublish(c: RawAmqp, routingKey: string): Promise<void> {
  c.send(1, { kind: 'channel.open' });
  await c.nextMethod('channel.open-ok');
  c.send(1, { kind: 'basic.publish', exchange: '', routingKey, mandatory: false, immediate: false });
  const header = Buffer.alloc(14);
  header.writeUInt16BE(60, 0); // class basic
  header.writeBigUInt64BE(1n, 4); // body size
  header.writeUInt16BE(0, 12); // no properties
  c.write(RawAmqp.frame(FrameType.HEADER, 1, header));
  c.write(RawAmqp.frame(FrameType.BODY, 1, Buffer.from('x')));
}

describe('bad input closes only the connection that sent it', () => {
  test('AMQP: an unknown frame type gets connection.close 501 FRAME_ERROR', async () => {
    const c = await RawAmqp.ready(amqpPort);
    c.write(RawAmqp.frame(9, 0, Buffer.from('junk')));
    const close = await c.nextMethod('connection.close');
    expect(close.replyCode).toBe(501);
    await bystandersRoundTrip();
    c.end();
  });

  test('MQTT: a packet with reserved flags closes the connection', async () => {
    const c = await RawMqtt.connected(mqttPort, 5);
    c.send(Buffer.from([0x83, 0x02, 0x00, 0x01])); // SUBSCRIBE must have flags 0b0010 [MQTT-3.8.1-1]
    const d = await c.next('disconnect');
    expect(d.reasonCode).toBe(0x81);
    await c.waitClosed();
    await bystandersRoundTrip();
  });

  test('STOMP: an unknown command gets an ERROR frame', async () => {
    const c = await RawStomp.connected(stompPort);
    c.write('EXPLODE\n\n\0');
    await c.expectError('Bad command');
    await bystandersRoundTrip();
  });
});

describe('an exception while serving one connection closes it with the protocol internal error', () => {
  test('AMQP: a non-BrokerError during a publish gets connection.close 541 INTERNAL_ERROR and a log line with the stack', async () => {
    injectPublishFault();
    const c = await RawAmqp.ready(amqpPort);
    await amqpBoomPublish(c, 'boom');
    const close = await c.nextMethod('connection.close');
    expect(close.replyCode).toBe(541);
    await internalErrorLogged('amqp', 'injected fault');
    await c.waitClosed(3000).catch(() => c.end());
    await bystandersRoundTrip();
  });

  test('MQTT 5: a non-BrokerError during a PUBLISH gets DISCONNECT 0x83 and a log line with the stack', async () => {
    injectPublishFault();
    const c = await RawMqtt.connected(mqttPort, 5);
    c.send({ cmd: 'publish', topic: 'isolation/boom', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
    const d = await c.next('disconnect');
    expect(d.reasonCode).toBe(0x83);
    await c.waitClosed();
    await internalErrorLogged('mqtt', 'injected fault');
    await bystandersRoundTrip();
  });

  test('MQTT 3.1.1: a non-BrokerError during a PUBLISH closes the socket', async () => {
    injectPublishFault();
    const c = await RawMqtt.connected(mqttPort, 4);
    c.send({ cmd: 'publish', topic: 'isolation/boom', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
    await c.waitClosed();
    await bystandersRoundTrip();
  });

  test('STOMP: a non-BrokerError during a SEND gets ERROR "Processing error" (as RabbitMQ) and a log line with the stack', async () => {
    injectPublishFault();
    const c = await RawStomp.connected(stompPort);
    c.send('SEND', { destination: '/topic/isolation.boom' }, 'x');
    const f = await c.expectError('Processing error');
    expect(f.body.toString()).not.toContain('injected fault'); // private detail stays in the log
    await internalErrorLogged('stomp', 'injected fault');
    await bystandersRoundTrip();
  });
});

describe('the input guard contains what escapes an adapter own error handling', () => {
  test('AMQP: an exception thrown while handling an error still ends in connection.close 541', async () => {
    vi.spyOn(AmqpConnection.prototype as unknown as { fail: () => void }, 'fail').mockImplementationOnce(() => {
      throw new RangeError('error handling failed');
    });
    const c = await RawAmqp.ready(amqpPort);
    c.write(RawAmqp.frame(9, 0, Buffer.from('junk')));
    const close = await c.nextMethod('connection.close');
    expect(close.replyCode).toBe(541);
    await internalErrorLogged('amqp', 'error handling failed');
    await bystandersRoundTrip();
    c.end();
  });

  test('MQTT: an exception thrown while handling a protocol error still closes the connection with 0x83', async () => {
    vi.spyOn(MqttConnection.prototype as unknown as { protocolError: () => void }, 'protocolError').mockImplementationOnce(() => {
      throw new RangeError('error handling failed');
    });
    const c = await RawMqtt.connected(mqttPort, 5);
    c.send(Buffer.from([0x83, 0x02, 0x00, 0x01]));
    const d = await c.next('disconnect');
    expect(d.reasonCode).toBe(0x83);
    await c.waitClosed();
    await internalErrorLogged('mqtt', 'error handling failed');
    await bystandersRoundTrip();
  });

  test('STOMP: an exception in a receipt settle handler closes that connection with ERROR', async () => {
    vi.spyOn(StompConnection.prototype, 'settledInOrder').mockImplementationOnce(() => {
      throw new RangeError('settle handler failed');
    });
    const c = await RawStomp.connected(stompPort);
    // persistent to a durable queue: the receipt waits for the store, so it settles asynchronously
    c.send('SEND', { destination: '/queue/isolation-durable', persistent: 'true', receipt: 'r' }, 'x');
    await c.expectError('Processing error');
    await internalErrorLogged('stomp', 'settle handler failed');
    await bystandersRoundTrip();
  });

  test('MQTT: an exception in the keep-alive sweep closes only the connection it was checking', async () => {
    vi.spyOn(MqttConnection.prototype, 'keepAliveExpired').mockImplementationOnce(() => {
      throw new RangeError('sweep failed');
    });
    const c = await RawMqtt.connected(mqttPort, 5, { keepalive: 1 });
    const d = await c.next('disconnect', 5000);
    expect(d.reasonCode).toBe(0x83);
    await c.waitClosed();
    await internalErrorLogged('mqtt', 'sweep failed');
    await bystandersRoundTrip();
  });

  test('HTTP: an exception in a request handler is a 500 for that request, and the port keeps serving', async () => {
    const port = lb.broker.ports.http!;
    const auth = { authorization: `Basic ${Buffer.from('guest:guest').toString('base64')}` };
    vi.spyOn(ManagementApi.prototype, 'handle').mockImplementationOnce(() => {
      throw new RangeError('handler failed');
    });
    const failed = await fetch(`http://127.0.0.1:${port}/api/overview`, { headers: auth });
    expect(failed.status).toBe(500);
    expect(await failed.text()).not.toContain('handler failed');
    expect((await fetch(`http://127.0.0.1:${port}/api/overview`, { headers: auth })).status).toBe(200);
    await bystandersRoundTrip();
  });

  test('MQTT: a failed write of persistent session state is logged, not an unhandled rejection', async () => {
    vi.spyOn(RecordStore.prototype, 'set').mockImplementation(() => Promise.reject(new Error('disk said no')));
    const c = await RawMqtt.connected(mqttPort, 5, { clientId: 'isolation-persistent', clean: false, properties: { sessionExpiryInterval: 60 } });
    await waitFor(() => lb.logs.some((l) => l.msg === 'cannot store MQTT session state'), 3000, 'store failure logged');
    c.send({ cmd: 'pingreq' });
    await c.next('pingresp');
    vi.restoreAllMocks();
    c.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await c.waitClosed();
    await bystandersRoundTrip();
  });

  test('no internal error left a connection behind', async () => {
    const adapters = lb.broker.adapters;
    await waitFor(() => adapters.get('amqp')!.connectionCount === 1, 3000, 'only the AMQP bystander');
    await waitFor(() => adapters.get('mqtt')!.connectionCount === 1, 3000, 'only the MQTT bystander');
    await waitFor(() => adapters.get('stomp')!.connectionCount === 1, 3000, 'only the STOMP bystander');
  });
});
