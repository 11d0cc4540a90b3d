// RabbitMQ tutorial 4, "Routing": a direct exchange delivers by severity; one queue takes only
// errors, another everything.  Run: node examples/tutorials/4-routing.mjs
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
await ch.assertExchange('direct_logs', 'direct', { durable: false });

const subscribers = { 'errors only': ['error'], 'all severities': ['info', 'warning', 'error'] };
let expected = 1 + 3;
let finish;
const finished = new Promise((resolve) => (finish = resolve));
for (const [name, severities] of Object.entries(subscribers)) {
  const { queue } = await ch.assertQueue('', { exclusive: true });
  for (const s of severities) await ch.bindQueue(queue, 'direct_logs', s);
  await ch.consume(queue, (msg) => {
    console.log(` [${name}] ${msg.fields.routingKey}: ${msg.content.toString()}`);
    if (--expected === 0) finish();
  }, { noAck: true });
}
for (const [severity, text] of [['info', 'all good'], ['warning', 'hmm'], ['error', 'broken']]) {
  ch.publish('direct_logs', severity, Buffer.from(text));
}
await finished;
await ch.close();
await conn.close();
