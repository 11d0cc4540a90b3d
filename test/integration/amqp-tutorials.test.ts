import { AMQPClient, type AMQPMessage } from '@cloudamqp/amqp-client';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startTestBroker();
});
afterAll(async () => {
  await tb.stop();
});

function fib(n: number): number {
  return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

describe("RabbitMQ's tutorials with amqplib", () => {
  let conn: ChannelModel;
  let ch: Channel;
  beforeAll(async () => {
    conn = await connect(tb.amqpUrl);
    ch = await conn.createChannel();
  });
  afterAll(async () => {
    await conn.close();
  });

  test('1 hello world: a message sent to a named queue reaches its consumer', async () => {
    await ch.assertQueue('hello', { durable: false });
    ch.sendToQueue('hello', Buffer.from('Hello World!'));
    const got = await new Promise<ConsumeMessage>((resolve) => {
      void ch.consume('hello', (m) => m && resolve(m), { noAck: true });
    });
    expect(got.content.toString()).toBe('Hello World!');
    expect(got.fields.routingKey).toBe('hello');
    expect(got.fields.exchange).toBe('');
    await ch.deleteQueue('hello');
  });

  test('2 work queues: prefetch 1 gives a busy worker no second task (fair dispatch)', async () => {
    const c1 = await conn.createChannel();
    const c2 = await conn.createChannel();
    await c1.assertQueue('task_queue', { durable: true });
    await c1.prefetch(1);
    await c2.prefetch(1);
    const slow: ConsumeMessage[] = [];
    const fast: string[] = [];
    await c1.consume('task_queue', (m) => m && slow.push(m), { noAck: false });
    await c2.consume('task_queue', (m) => {
      if (!m) return;
      fast.push(m.content.toString());
      c2.ack(m);
    });
    for (let i = 0; i < 10; i++) ch.sendToQueue('task_queue', Buffer.from(`task ${i}`), { persistent: true });
    await waitFor(() => slow.length + fast.length === 10, 5000, 'all tasks dispatched');
    expect(slow).toHaveLength(1);
    expect(fast).toHaveLength(9);
    c1.ack(slow[0]!);
    await c1.close();
    await c2.close();
    const q = await ch.checkQueue('task_queue');
    expect(q.messageCount).toBe(0);
    await ch.deleteQueue('task_queue');
  });

  test('2 work queues: without prefetch, tasks are dealt round-robin', async () => {
    await ch.assertQueue('rr', { durable: false });
    const c1 = await conn.createChannel();
    const c2 = await conn.createChannel();
    const a: string[] = [];
    const b: string[] = [];
    await c1.consume('rr', (m) => m && a.push(m.content.toString()), { noAck: true });
    await c2.consume('rr', (m) => m && b.push(m.content.toString()), { noAck: true });
    for (let i = 0; i < 10; i++) ch.sendToQueue('rr', Buffer.from(String(i)));
    await waitFor(() => a.length + b.length === 10);
    expect(a).toEqual(['0', '2', '4', '6', '8']);
    expect(b).toEqual(['1', '3', '5', '7', '9']);
    await c1.close();
    await c2.close();
    await ch.deleteQueue('rr');
  });

  test('3 publish/subscribe: a fanout exchange copies each message to every bound queue', async () => {
    await ch.assertExchange('logs', 'fanout', { durable: false });
    const q1 = await ch.assertQueue('', { exclusive: true });
    const q2 = await ch.assertQueue('', { exclusive: true });
    expect(q1.queue).toMatch(/^amq\.gen-/);
    await ch.bindQueue(q1.queue, 'logs', '');
    await ch.bindQueue(q2.queue, 'logs', '');
    ch.publish('logs', '', Buffer.from('info: hi'));
    const m1 = await waitFor(() => ch.get(q1.queue, { noAck: true }));
    const m2 = await waitFor(() => ch.get(q2.queue, { noAck: true }));
    expect(m1.content.toString()).toBe('info: hi');
    expect(m2.content.toString()).toBe('info: hi');
  });

  test('4 routing: a direct exchange delivers by exact routing key', async () => {
    await ch.assertExchange('direct_logs', 'direct', { durable: false });
    const errors = await ch.assertQueue('', { exclusive: true });
    const all = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(errors.queue, 'direct_logs', 'error');
    for (const s of ['info', 'warning', 'error']) await ch.bindQueue(all.queue, 'direct_logs', s);
    for (const s of ['info', 'warning', 'error', 'debug']) ch.publish('direct_logs', s, Buffer.from(s));
    await waitFor(async () => (await ch.checkQueue(all.queue)).messageCount === 3);
    expect((await ch.checkQueue(errors.queue)).messageCount).toBe(1);
    const e = await ch.get(errors.queue, { noAck: true });
    expect(e && e.content.toString()).toBe('error');
  });

  test('5 topics: * matches one word and # zero or more', async () => {
    await ch.assertExchange('topic_logs', 'topic', { durable: false });
    const critical = await ch.assertQueue('', { exclusive: true });
    const kern = await ch.assertQueue('', { exclusive: true });
    const everything = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(critical.queue, 'topic_logs', '*.critical');
    await ch.bindQueue(kern.queue, 'topic_logs', 'kern.#');
    await ch.bindQueue(everything.queue, 'topic_logs', '#');
    const keys = ['kern.critical', 'kern', 'auth.critical', 'a.b.critical', 'kern.disk.full', 'cron.info'];
    for (const k of keys) ch.publish('topic_logs', k, Buffer.from(k));
    const drain = async (q: string): Promise<string[]> => {
      const out: string[] = [];
      await waitFor(async () => (await ch.checkQueue(q)).messageCount > 0);
      for (let m = await ch.get(q, { noAck: true }); m; m = await ch.get(q, { noAck: true })) out.push(m.content.toString());
      return out;
    };
    await waitFor(async () => (await ch.checkQueue(everything.queue)).messageCount === keys.length);
    expect(await drain(critical.queue)).toEqual(['kern.critical', 'auth.critical']);
    expect(await drain(kern.queue)).toEqual(['kern.critical', 'kern', 'kern.disk.full']);
    expect(await drain(everything.queue)).toEqual(keys);
  });

  test('6 RPC: reply_to and correlation_id carry the answer back', async () => {
    const server = await conn.createChannel();
    await server.assertQueue('rpc_queue', { durable: false });
    await server.prefetch(1);
    await server.consume('rpc_queue', (m) => {
      if (!m) return;
      const n = Number(m.content.toString());
      server.sendToQueue(m.properties.replyTo as string, Buffer.from(String(fib(n))), {
        correlationId: m.properties.correlationId as string,
      });
      server.ack(m);
    });
    const reply = await ch.assertQueue('', { exclusive: true });
    const answers = new Map<string, string>();
    await ch.consume(reply.queue, (m) => m && answers.set(m.properties.correlationId as string, m.content.toString()), { noAck: true });
    ch.sendToQueue('rpc_queue', Buffer.from('10'), { correlationId: 'c-10', replyTo: reply.queue });
    ch.sendToQueue('rpc_queue', Buffer.from('20'), { correlationId: 'c-20', replyTo: reply.queue });
    await waitFor(() => answers.size === 2);
    expect(answers.get('c-10')).toBe('55');
    expect(answers.get('c-20')).toBe('6765');
    await server.close();
  });
});

describe("RabbitMQ's tutorials with @cloudamqp/amqp-client", () => {
  let client: AMQPClient;
  beforeAll(async () => {
    client = new AMQPClient(tb.amqpUrl);
    await client.connect();
  });
  afterAll(async () => {
    await client.close();
  });

  test('1 hello world', async () => {
    const ch = await client.channel();
    await ch.queueDeclare('hello2');
    await ch.basicPublish('', 'hello2', 'Hello World!');
    const got = await new Promise<AMQPMessage>((resolve) => {
      void ch.basicConsume('hello2', { noAck: true }, resolve);
    });
    expect(got.bodyToString()).toBe('Hello World!');
    await ch.close();
  });

  test('2 work queues with prefetch 1', async () => {
    const pub = await client.channel();
    await pub.queueDeclare('tasks2', { durable: true });
    const w1 = await client.channel();
    const w2 = await client.channel();
    await w1.prefetch(1);
    await w2.prefetch(1);
    const held: AMQPMessage[] = [];
    let done = 0;
    await w1.basicConsume('tasks2', { noAck: false }, (m) => void held.push(m));
    await w2.basicConsume('tasks2', { noAck: false }, (m) => {
      done++;
      void m.ack();
    });
    for (let i = 0; i < 6; i++) await pub.basicPublish('', 'tasks2', `t${i}`, { deliveryMode: 2 });
    await waitFor(() => held.length + done === 6);
    expect(held).toHaveLength(1);
    await held[0]!.ack();
    await w1.close();
    await w2.close();
    await pub.queueDelete('tasks2');
    await pub.close();
  });

  test('3 publish/subscribe', async () => {
    const ch = await client.channel();
    await ch.exchangeDeclare('logs2', 'fanout');
    const a = await ch.queueDeclare('', { exclusive: true });
    const b = await ch.queueDeclare('', { exclusive: true });
    await ch.queueBind(a.name, 'logs2', '');
    await ch.queueBind(b.name, 'logs2', '');
    await ch.basicPublish('logs2', '', 'broadcast');
    const ma = await waitFor(() => ch.basicGet(a.name, { noAck: true }));
    const mb = await waitFor(() => ch.basicGet(b.name, { noAck: true }));
    expect([ma.bodyToString(), mb.bodyToString()]).toEqual(['broadcast', 'broadcast']);
    await ch.close();
  });

  test('4 routing', async () => {
    const ch = await client.channel();
    await ch.exchangeDeclare('direct2', 'direct');
    const q = await ch.queueDeclare('', { exclusive: true });
    await ch.queueBind(q.name, 'direct2', 'error');
    await ch.basicPublish('direct2', 'info', 'no');
    await ch.basicPublish('direct2', 'error', 'yes');
    const m = await waitFor(() => ch.basicGet(q.name, { noAck: true }));
    expect(m.bodyToString()).toBe('yes');
    expect(await ch.basicGet(q.name, { noAck: true })).toBeNull();
    await ch.close();
  });

  test('5 topics', async () => {
    const ch = await client.channel();
    await ch.exchangeDeclare('topic2', 'topic');
    const q = await ch.queueDeclare('', { exclusive: true });
    await ch.queueBind(q.name, 'topic2', '*.orange.*');
    await ch.queueBind(q.name, 'topic2', 'lazy.#');
    for (const k of ['quick.orange.rabbit', 'lazy.brown.fox', 'quick.brown.fox', 'lazy', 'quick.orange.male.rabbit']) {
      await ch.basicPublish('topic2', k, k);
    }
    const got: string[] = [];
    await waitFor(async () => {
      const m = await ch.basicGet(q.name, { noAck: true });
      if (m) got.push(m.bodyToString() ?? '');
      return got.length === 3;
    });
    expect(got).toEqual(['quick.orange.rabbit', 'lazy.brown.fox', 'lazy']);
    await ch.close();
  });

  test('6 RPC', async () => {
    const srv = await client.channel();
    await srv.queueDeclare('rpc2');
    await srv.basicConsume('rpc2', { noAck: false }, async (m) => {
      const n = Number(m.bodyToString());
      await srv.basicPublish('', m.properties.replyTo ?? '', String(fib(n)), { correlationId: m.properties.correlationId });
      await m.ack();
    });
    const cli = await client.channel();
    const reply = await cli.queueDeclare('', { exclusive: true });
    const answer = new Promise<AMQPMessage>((resolve) => {
      void cli.basicConsume(reply.name, { noAck: true }, resolve);
    });
    await cli.basicPublish('', 'rpc2', '15', { replyTo: reply.name, correlationId: 'x1' });
    const m = await answer;
    expect([m.properties.correlationId, m.bodyToString()]).toEqual(['x1', '610']);
    await srv.close();
    await cli.close();
  });
});
