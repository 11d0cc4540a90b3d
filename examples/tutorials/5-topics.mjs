// RabbitMQ tutorial 5, "Topics": binding keys with * (one word) and # (zero or more words).
// Run: node examples/tutorials/5-topics.mjs
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
await ch.assertExchange('topic_logs', 'topic', { durable: false });

const bindings = { 'kern.*': 'kernel', '*.critical': 'critical' };
const keys = ['kern.critical', 'kern.info', 'cron.critical', 'cron.info'];
let expected = 4; // kern.critical twice, kern.info, cron.critical
let finish;
const finished = new Promise((resolve) => (finish = resolve));
for (const [key, name] of Object.entries(bindings)) {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'topic_logs', key);
  await ch.consume(queue, (msg) => {
    console.log(` [${name}] ${msg.fields.routingKey}: ${msg.content.toString()}`);
    if (--expected === 0) finish();
  }, { noAck: true });
}
for (const key of keys) ch.publish('topic_logs', key, Buffer.from(`a ${key} event`));
await finished;
await ch.close();
await conn.close();
