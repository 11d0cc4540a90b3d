// RabbitMQ tutorial 6, "RPC": a server answers fib(n) requests; the client names its reply queue
// in reply_to and matches answers by correlation_id.  Run: node examples/tutorials/6-rpc.mjs
import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const conn = await amqp.connect(url);

const fib = (n) => (n < 2 ? n : fib(n - 1) + fib(n - 2));

// server
const server = await conn.createChannel();
await server.assertQueue('rpc_queue', { durable: false });
await server.prefetch(1);
await server.consume('rpc_queue', (msg) => {
  const n = Number(msg.content.toString());
  server.sendToQueue(msg.properties.replyTo, Buffer.from(String(fib(n))), { correlationId: msg.properties.correlationId });
  server.ack(msg);
});

// client
const client = await conn.createChannel();
const { queue: replyTo } = await client.assertQueue('', { exclusive: true });
const pending = new Map();
await client.consume(replyTo, (msg) => {
  pending.get(msg.properties.correlationId)?.(msg.content.toString());
  pending.delete(msg.properties.correlationId);
}, { noAck: true });

function call(n) {
  const correlationId = randomUUID();
  return new Promise((resolve) => {
    pending.set(correlationId, resolve);
    client.sendToQueue('rpc_queue', Buffer.from(String(n)), { correlationId, replyTo });
  });
}

for (const n of [10, 20, 30]) console.log(` [.] fib(${n}) = ${await call(n)}`);
// Channels first, so the server's last ack reaches the broker before the connection goes.
await client.close();
await server.close();
await conn.close();
