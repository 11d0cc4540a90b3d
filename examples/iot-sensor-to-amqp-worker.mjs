#!/usr/bin/env node
// An IoT sensor publishes temperatures over MQTT; an AMQP worker consumes them from a queue bound
// to amq.topic and answers hot readings with an alert the sensor receives over MQTT.
//
//   npm start                                   # a broker on the default ports
//   node examples/iot-sensor-to-amqp-worker.mjs
//
// MQTT_URL (default mqtt://127.0.0.1:1883; ws://127.0.0.1:15672/mqtt works too) and AMQP_URL
// (default amqp://guest:guest@127.0.0.1:5672) point it elsewhere; READINGS sets how many to send.
import amqp from 'amqplib';
import mqtt from 'mqtt';

const MQTT_URL = process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883';
const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const READINGS = Number(process.env.READINGS ?? 6);
const ROOMS = ['kitchen', 'garage', 'attic'];

// --- the AMQP worker ---------------------------------------------------------------------------
// MQTT topic sensors/<room>/temp is routing key sensors.<room>.temp on amq.topic; the filter
// sensors/+/temp is the binding key sensors.*.temp.
const connection = await amqp.connect(AMQP_URL);
const channel = await connection.createChannel();
const { queue } = await channel.assertQueue('temperature-worker', { durable: true });
await channel.bindQueue(queue, 'amq.topic', 'sensors.*.temp');
await channel.prefetch(10);

let handled = 0;
await channel.consume(queue, (msg) => {
  if (msg === null) return;
  const room = msg.fields.routingKey.split('.')[1];
  const reading = JSON.parse(msg.content.toString());
  // QoS 1 publishes arrive persistent (delivery_mode 2), with the MQTT QoS in x-mqtt-publish-qos.
  const qos = msg.properties.headers?.['x-mqtt-publish-qos'];
  console.log(`worker: ${room} ${reading.celsius} °C (MQTT QoS ${qos}, ${msg.properties.contentType ?? 'no content type'})`);
  if (reading.celsius > 30) {
    // Routing key alerts.<room> reaches MQTT subscribers of alerts/<room>.
    channel.publish('amq.topic', `alerts.${room}`, Buffer.from(`too hot in the ${room}: ${reading.celsius} °C`), {
      deliveryMode: 2,
      contentType: 'text/plain',
    });
  }
  channel.ack(msg);
  handled++;
});

// --- the sensor --------------------------------------------------------------------------------
const sensor = await mqtt.connectAsync(MQTT_URL, { clientId: 'sensor-demo', protocolVersion: 5, reconnectPeriod: 0 });
sensor.on('message', (topic, payload) => console.log(`sensor: alert on ${topic}: ${payload}`));
await sensor.subscribeAsync('alerts/#', { qos: 1 });

for (let i = 0; i < READINGS; i++) {
  const room = ROOMS[i % ROOMS.length];
  const celsius = Math.round((18 + Math.random() * 16) * 10) / 10;
  // publishAsync resolves on PUBACK, which the broker sends once the message is safely queued.
  await sensor.publishAsync(`sensors/${room}/temp`, JSON.stringify({ celsius, at: new Date().toISOString() }), {
    qos: 1,
    properties: { contentType: 'application/json' },
  });
  console.log(`sensor: sent ${room} ${celsius} °C`);
}

// Wait for the worker to see every reading, and for alerts to come back.
const deadline = Date.now() + 5000;
while (handled < READINGS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, 300));
console.log(`done: ${handled}/${READINGS} readings handled`);

await sensor.endAsync();
await channel.deleteQueue(queue);
await connection.close();
process.exitCode = handled === READINGS ? 0 : 1;
