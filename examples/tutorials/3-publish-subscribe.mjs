// RabbitMQ tutorial 3, "Publish/Subscribe": a fanout exchange copies every log line to each
// subscriber's own temporary queue.  Run: node examples/tutorials/3-publish-subscribe.mjs
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
await ch.assertExchange('logs', 'fanout', { durable: false });

let received = 0;
let finish;
const finished = new Promise((resolve) => (finish = resolve));
for (const name of ['subscriber A', 'subscriber B']) {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'logs', '');
  await ch.consume(queue, (msg) => {
    console.log(` [${name}] ${msg.content.toString()}`);
    if (++received === 4) finish();
  }, { noAck: true });
}
for (const line of ['info: Hello World!', 'warning: disk almost full']) ch.publish('logs', '', Buffer.from(line));
await finished;
await ch.close();
await conn.close();
