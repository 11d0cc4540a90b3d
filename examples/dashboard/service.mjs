#!/usr/bin/env node
// A backend service over AMQP 0-9-1: it receives the commands the dashboard SENDs to
// /topic/commands.<device> (a queue bound to amq.topic with commands.#) and answers with an alert
// on alerts.<device>, which the dashboard shows.
//
//   node examples/dashboard/service.mjs           # AMQP_URL defaults to amqp://guest:guest@127.0.0.1:5672
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const conn = await amqp.connect(url);
const ch = await conn.createChannel();
const { queue } = await ch.assertQueue('', { exclusive: true });
await ch.bindQueue(queue, 'amq.topic', 'commands.#');

const alert = (device, text) =>
  ch.publish('amq.topic', `alerts.${device}`, Buffer.from(text), { contentType: 'text/plain', appId: 'home-service' });

await ch.consume(queue, (msg) => {
  if (msg === null) return;
  const device = msg.fields.routingKey.slice('commands.'.length);
  const action = msg.content.toString();
  console.log(`command: ${device} ${action}`);
  alert(device, `${device} switched ${action}`);
  ch.ack(msg);
});
alert('service', 'home service online');
console.log(`listening for commands on ${url} (Ctrl-C to stop)`);

process.on('SIGINT', () => {
  void conn.close().then(() => process.exit(0));
});
