import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { protocolLabels } from '../../src/management/metrics.js';
import { startTestBroker, waitFor, type TestBroker } from '../helpers/broker.js';
import { http, mgmt } from '../helpers/management.js';
import { connectMqtt } from '../helpers/mqtt.js';

let tb: TestBroker;
beforeAll(async () => {
  tb = await startTestBroker();
});
afterAll(async () => {
  await tb.stop();
});

async function scrape(): Promise<string[]> {
  return (await http(tb.broker.ports.http!, 'GET', '/metrics', { auth: null })).text.trimEnd().split('\n');
}

describe('metric labels', () => {
  test('protocol names become a stable protocol label and a separate version label', () => {
    expect(protocolLabels('AMQP 0-9-1')).toEqual({ protocol: 'amqp', version: '0-9-1' });
    expect(protocolLabels('MQTT 3.1.1')).toEqual({ protocol: 'mqtt', version: '3.1.1' });
    expect(protocolLabels('MQTT 5.0')).toEqual({ protocol: 'mqtt', version: '5.0' });
    expect(protocolLabels('STOMP 1.2')).toEqual({ protocol: 'stomp', version: '1.2' });
    expect(protocolLabels('Direct 0-9-1')).toEqual({ protocol: 'management', version: '0-9-1' });
  });

  test('MQTT clients of two versions and a publish over the HTTP API, as Prometheus sees them', async () => {
    const url = `mqtt://127.0.0.1:${tb.broker.ports.mqtt}`;
    const v4 = await connectMqtt(url, { clientId: 'm-v4', protocolVersion: 4 });
    const v5 = await connectMqtt(url, { clientId: 'm-v5', protocolVersion: 5 });
    await v4.publishAsync('a/b', 'x', { qos: 1 });
    const api = mgmt(tb.broker.ports.http!);
    await api.put('/queues/%2F/labels.q', { durable: false });
    await api.post('/exchanges/%2F/amq.default/publish', { routing_key: 'labels.q', payload: 'p', payload_encoding: 'string', properties: {} });
    const lines = await waitFor(async () => {
      const l = await scrape();
      return l.includes('warren_connections{protocol="mqtt",version="5.0"} 1') ? l : undefined;
    }, 5000, 'MQTT 5 connection counted');
    expect(lines).toContain('warren_connections{protocol="mqtt",version="3.1.1"} 1');
    expect(lines).toContain('warren_messages_published_total{protocol="mqtt",version="3.1.1"} 1');
    expect(lines).toContain('warren_messages_published_total{protocol="management",version="0-9-1"} 1');
    // no label value carries a space or an upper-case protocol name any more
    for (const l of lines.filter((x) => x.includes('protocol='))) expect(l).toMatch(/protocol="[a-z]+",version="[0-9.-]+"/);
    expect(lines.join('\n')).not.toMatch(/Direct|MQTT 3|AMQP 0/);
    await v4.endAsync();
    await v5.endAsync();
  });

  test('every series /metrics exposes is documented in the README', async () => {
    const readme = await readFile(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
    const names = (await scrape()).filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]!);
    expect(names.length).toBeGreaterThan(30);
    for (const n of names) expect(readme, n).toContain(`| \`${n}\` |`);
  });
});
