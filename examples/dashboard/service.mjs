#!/usr/bin/env node
// A backend service over AMQP 0-9-1: it receives the commands the dashboard SENDs to
// /topic/commands.<device> (a queue bound to amq.topic with commands.#) and answers with an alert
// on alerts.<device>, which the dashboard shows. When the broker goes away (a restart, a network
// cut) it says why and reconnects every RETRY_MS (default 2000) until it is back.
//
//   node examples/dashboard/service.mjs           # AMQP_URL defaults to amqp://guest:guest@127.0.0.1:5672
import amqp from 'amqplib';

const url = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const RETRY_MS = Number(process.env.RETRY_MS ?? 2000);
let conn;
let stopping = false;

const why = (e) => (e && e.message ? e.message : String(e));
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Connects, declares its queue and consumes; resolves once listening. */
async function serve() {
  const c = await amqp.connect(url);
  c.on('error', () => {}); // the reason also comes with 'close'
  const ch = await c.createChannel();
  const { queue } = await ch.assertQueue('', { exclusive: true });
  await ch.bindQueue(queue, 'amq.topic', 'commands.#');
  const alert = (device, text) =>
    ch.publish('amq.topic', `alerts.${device}`, Buffer.from(text), { contentType: 'text/plain', appId: 'home-service' });
  await ch.consume(queue, (msg) => {
    if (msg === null) return; // the queue went away: the connection will close and we reconnect
    const device = msg.fields.routingKey.slice('commands.'.length);
    const action = msg.content.toString();
    console.log(`command: ${device} ${action}`);
    alert(device, `${device} switched ${action}`);
    ch.ack(msg);
  });
  alert('service', 'home service online');
  conn = c;
  c.on('close', (err) => {
    conn = undefined;
    if (stopping) return;
    console.log(`connection lost: ${err ? why(err) : 'closed by the broker'}; reconnecting every ${RETRY_MS} ms`);
    void connectLoop();
  });
  console.log(`listening for commands on ${url} (Ctrl-C to stop)`);
}

async function connectLoop() {
  for (let attempt = 1; !stopping; attempt++) {
    try {
      await serve();
      return;
    } catch (e) {
      if (attempt === 1) console.log(`cannot connect to ${url}: ${why(e)}; retrying every ${RETRY_MS} ms (is the broker running?)`);
      await sleep(RETRY_MS);
    }
  }
}

const stop = () => {
  stopping = true;
  void (conn ? conn.close().catch(() => {}) : Promise.resolve()).then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

await connectLoop();
