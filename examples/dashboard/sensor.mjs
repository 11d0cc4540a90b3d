#!/usr/bin/env node
// Simulated sensors: every second each room publishes its temperature and humidity over MQTT to
// sensors/<room>/<metric>. The dashboard sees them on /topic/sensors.# (STOMP) or sensors/# (MQTT).
//
//   node examples/dashboard/sensor.mjs            # MQTT_URL defaults to mqtt://127.0.0.1:1883
import mqtt from 'mqtt';

const url = process.env.MQTT_URL ?? 'mqtt://127.0.0.1:1883';
const rooms = { kitchen: 21.5, 'living-room': 20.0, bedroom: 18.5 };

const client = await mqtt.connectAsync(url, { clientId: `sensors-${process.pid}`, username: 'guest', password: 'guest' });
console.log(`publishing readings to ${url} (Ctrl-C to stop)`);

const timer = setInterval(() => {
  for (const room of Object.keys(rooms)) {
    rooms[room] = Math.round((rooms[room] + (Math.random() - 0.5) * 0.4) * 10) / 10;
    client.publish(`sensors/${room}/temp`, rooms[room].toFixed(1));
    client.publish(`sensors/${room}/humidity`, String(Math.round(40 + Math.random() * 15)));
  }
}, 1000);

process.on('SIGINT', () => {
  clearInterval(timer);
  void client.endAsync().then(() => process.exit(0));
});
