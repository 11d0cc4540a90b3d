// RabbitMQ tutorial 1, "Hello World": a producer sends one message to a named queue, a consumer
// prints it.  Run: node examples/tutorials/1-hello-world.mjs   (AMQP_URL overrides the broker)
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
await ch.assertQueue('hello', { durable: false });

ch.sendToQueue('hello', Buffer.from('Hello World!'));
console.log(" [x] Sent 'Hello World!'");

await new Promise((resolve) => {
  ch.consume('hello', (msg) => {
    console.log(` [x] Received '${msg.content.toString()}'`);
    resolve();
  }, { noAck: true });
});
await ch.close();
await conn.close();
