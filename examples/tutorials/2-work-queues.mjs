// RabbitMQ tutorial 2, "Work queues": tasks on a durable queue are shared by two workers; with
// prefetch 1 a busy worker gets no new task until it acks (fair dispatch).
// Run: node examples/tutorials/2-work-queues.mjs
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@localhost:5672';
const conn = await amqp.connect(url);
const queue = 'task_queue';

const channels = [];

async function worker(name) {
  const ch = await conn.createChannel();
  channels.push(ch);
  await ch.assertQueue(queue, { durable: true });
  await ch.prefetch(1);
  await ch.consume(queue, (msg) => {
    const task = msg.content.toString();
    const seconds = task.split('.').length - 1; // one dot = one unit of work
    setTimeout(() => {
      console.log(` [${name}] done '${task}'`);
      ch.ack(msg);
      done();
    }, seconds * 100);
  });
}

let remaining = 6;
let finish;
const finished = new Promise((resolve) => (finish = resolve));
function done() {
  if (--remaining === 0) finish();
}

await worker('worker 1');
await worker('worker 2');
const producer = await conn.createChannel();
await producer.assertQueue(queue, { durable: true });
for (const task of ['First message.', 'Second message..', 'Third message...', 'Fourth.', 'Fifth..', 'Sixth.']) {
  producer.sendToQueue(queue, Buffer.from(task), { persistent: true });
  console.log(` [x] Sent '${task}'`);
}
await finished;
// Close the channels first: channel.close waits for the broker's close-ok, which comes after every
// ack sent before it. conn.close() alone can drop the last acks (amqplib does not flush them), and
// the broker would requeue those tasks.
for (const ch of [...channels, producer]) await ch.close();
await conn.close();
