import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { ConfigError, DEFAULTS, envName, resolveOptions } from '../../src/config.js';

describe('options', () => {
  test('defaults when nothing is given', () => {
    expect(resolveOptions({}, {})).toEqual(DEFAULTS);
  });

  test('env names follow WARREN_<NAME>', () => {
    expect(envName('amqpPort')).toBe('WARREN_AMQP_PORT');
    expect(envName('memoryHighWatermark')).toBe('WARREN_MEMORY_HIGH_WATERMARK');
  });

  test('STOMP: a 16 MiB body limit and the host fallback by default; both settable', () => {
    expect([DEFAULTS.stompMaxMessageSize, DEFAULTS.stompHostFallback]).toEqual([16 * 1024 * 1024, true]);
    const o = resolveOptions({ stompHostFallback: 'false' }, { WARREN_STOMP_MAX_MESSAGE_SIZE: '1048576' });
    expect([o.stompMaxMessageSize, o.stompHostFallback]).toEqual([1048576, false]);
    expect(() => resolveOptions({ stompMaxMessageSize: '-1' }, {})).toThrow(ConfigError);
  });

  test("ports accept numbers, 0 and 'off'", () => {
    const o = resolveOptions({ amqpPort: '0', httpPort: 'off' }, { WARREN_MQTT_PORT: '1884' });
    expect([o.amqpPort, o.httpPort, o.mqttPort]).toEqual([0, null, 1884]);
  });

  test('AMQP over WebSocket is on by default; --amqp-websocket false or WARREN_AMQP_WEBSOCKET=false turns it off', () => {
    expect(DEFAULTS.amqpWebsocket).toBe(true);
    expect(resolveOptions({ amqpWebsocket: 'false' }, {}).amqpWebsocket).toBe(false);
    expect(resolveOptions({}, { WARREN_AMQP_WEBSOCKET: 'false' }).amqpWebsocket).toBe(false);
    expect(() => resolveOptions({ amqpWebsocket: 'sometimes' }, {})).toThrow(ConfigError);
  });

  test('flags beat the environment, which beats the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-cfg-'));
    const file = join(dir, 'c.json');
    await writeFile(file, JSON.stringify({ amqpPort: 1, 'http-port': 2, stompPort: 3 }));
    const o = resolveOptions({ config: file, amqpPort: '10' }, { WARREN_HTTP_PORT: '20' });
    expect([o.amqpPort, o.httpPort, o.stompPort]).toEqual([10, 20, 3]);
    await rm(dir, { recursive: true });
  });

  test.each([
    [{ amqpPort: '70000' }, 'amqp-port'],
    [{ amqpPort: 'abc' }, 'amqp-port'],
    [{ logLevel: 'loud' }, 'log-level'],
    [{ guestRemote: 'maybe' }, 'guest-remote'],
    [{ frameMax: '-1' }, 'frame-max'],
    [{ bogus: '1' }, 'bogus'],
  ])('invalid %j names --%s', (flags, option) => {
    expect(() => resolveOptions(flags, {})).toThrow(ConfigError);
    try {
      resolveOptions(flags, {});
    } catch (e) {
      expect((e as ConfigError).option).toBe(option);
      expect((e as Error).message).toContain(`--${option}`);
    }
  });

  test('cluster options come from flags, WARREN_CLUSTER* / WARREN_NODE_NAME and the config file', async () => {
    expect([DEFAULTS.cluster, DEFAULTS.clusterUrl, DEFAULTS.nodeName]).toEqual(['warren', undefined, undefined]);
    const env = { WARREN_CLUSTER: 'prod', WARREN_CLUSTER_URL: 'nats://h1:4222, nats://h2:4222', WARREN_NODE_NAME: 'n2' };
    const o = resolveOptions({}, env);
    expect([o.cluster, o.clusterUrl, o.nodeName]).toEqual(['prod', 'nats://h1:4222,nats://h2:4222', 'n2']);
    expect(resolveOptions({ nodeName: 'n1', clusterUrl: 'nats://h3:4222' }, env).nodeName).toBe('n1');
    const dir = await mkdtemp(join(tmpdir(), 'warren-cfg-'));
    const file = join(dir, 'c.json');
    await writeFile(file, JSON.stringify({ cluster: 'c1', 'cluster-url': 'nats://127.0.0.1:4222', 'node-name': 'edge-1' }));
    const f = resolveOptions({ config: file }, {});
    expect([f.cluster, f.clusterUrl, f.nodeName]).toEqual(['c1', 'nats://127.0.0.1:4222', 'edge-1']);
    await rm(dir, { recursive: true });
  });

  test.each([
    [{ clusterUrl: 'http://h1:4222' }, 'cluster-url'],
    [{ clusterUrl: 'nats://h1:4222,' + 'h2' }, 'cluster-url'],
    [{ nodeName: 'rabbit@host' }, 'node-name'],
    [{ cluster: 'a.b' }, 'cluster'],
  ])('invalid cluster option %j names --%s', (flags, option) => {
    expect(() => resolveOptions(flags, {})).toThrow(`--${option}`);
  });

  test('an unreadable or non-object config file is a config error', () => {
    expect(() => resolveOptions({ config: '/nonexistent/warren.json' }, {})).toThrow(/--config/);
  });
});
