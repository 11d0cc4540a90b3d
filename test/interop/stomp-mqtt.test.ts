import type { Client } from '@stomp/stompjs';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { collect, receiptFor, stompClient, wsUrl } from '../helpers/stomp.js';

let tb: TestBroker;
let stomp: Client;
let device: MqttClient;

beforeAll(async () => {
  tb = await startTestBroker();
  stomp = await stompClient(wsUrl(tb.broker.ports.http!));
  device = await mqtt.connectAsync(`mqtt://127.0.0.1:${tb.broker.ports.mqtt}`, { clientId: 'stomp-interop-device', reconnectPeriod: 0 });
});
afterAll(async () => {
  await device.endAsync();
  await stomp.deactivate();
  await tb.stop();
});

async function subscribed(destination: string): Promise<ReturnType<typeof collect>> {
  const done = receiptFor(stomp, destination);
  const s = collect(stomp, destination, { receipt: destination });
  await done;
  return s;
}

describe('MQTT <-> STOMP', () => {
  test('an MQTT publish to a/b/c reaches a /topic/a.# subscriber as /topic/a.b.c', async () => {
    const s = await subscribed('/topic/sensors.#');
    await device.publishAsync('sensors/kitchen/temp', '21.5', { qos: 1 });
    await device.publishAsync('sensors/hall/humidity', '40', { qos: 0 });
    await waitFor(() => s.messages.length === 2);
    const byDest = Object.fromEntries(s.messages.map((m) => [m.headers['destination'], m]));
    expect(byDest['/topic/sensors.kitchen.temp']!.body).toBe('21.5');
    // QoS 1 is a persistent message, QoS 0 is not (DESIGN: MQTT -> AMQP).
    expect(byDest['/topic/sensors.kitchen.temp']!.headers['persistent']).toBe('true');
    expect(byDest['/topic/sensors.hall.humidity']!.body).toBe('40');
    expect(byDest['/topic/sensors.hall.humidity']!.headers['persistent']).toBeUndefined();
    s.unsubscribe();
  });

  test('a STOMP SEND to /topic/a.b reaches an MQTT subscriber of a/+ as a/b', async () => {
    const got: { topic: string; payload: string }[] = [];
    device.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
    await device.subscribeAsync('commands/+', { qos: 1 });
    const r = receiptFor(stomp, 'cmd');
    stomp.publish({ destination: '/topic/commands.heater', body: 'on', headers: { receipt: 'cmd' } });
    await r;
    await waitFor(() => got.length === 1);
    expect(got[0]).toEqual({ topic: 'commands/heater', payload: 'on' });
  });

  test('an MQTT client over WebSocket and a STOMP client over WebSocket share the HTTP port', async () => {
    const s = await subscribed('/topic/ws.reading');
    const wsDevice = await mqtt.connectAsync(`ws://127.0.0.1:${tb.broker.ports.http}/ws`, { clientId: 'stomp-interop-ws', reconnectPeriod: 0 });
    try {
      await wsDevice.publishAsync('ws/reading', 'over websocket', { qos: 1 });
      await waitFor(() => s.messages.length === 1);
      expect(s.messages[0]!.body).toBe('over websocket');
      expect(s.messages[0]!.headers['destination']).toBe('/topic/ws.reading');
    } finally {
      await wsDevice.endAsync();
    }
  });
});
