import { hostname, networkInterfaces } from 'node:os';
import { describe, expect, test } from 'vitest';
import { isLocalHost } from '../../../../adapters/stomp/local-host.js';

describe('isLocalHost (a STOMP host header that names this broker)', () => {
  test.each(['localhost', 'LOCALHOST', '127.0.0.1', '127.1.2.3', '::1', '[::1]', '[::1]:61613', 'localhost:61613', '127.0.0.1:61613', 'localhost.'])(
    '%s is this broker',
    (h) => {
      expect(isLocalHost(h, '0.0.0.0')).toBe(true);
    },
  );

  test("the machine's host name and every interface address are this broker", () => {
    expect(isLocalHost(hostname(), '0.0.0.0')).toBe(true);
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) expect(isLocalHost(a.address, '::')).toBe(true);
  });

  test('the bind address names this broker; 0.0.0.0 and :: name no host', () => {
    expect(isLocalHost('broker.example', 'broker.example')).toBe(true);
    expect(isLocalHost('0.0.0.0', '0.0.0.0')).toBe(false);
    expect(isLocalHost('::', '::')).toBe(false);
  });

  test.each(['/', 'my-vhost', 'elsewhere.example', '10.255.255.254.example', '', 'localhost:notaport'])('%s is not this broker', (h) => {
    expect(isLocalHost(h, '0.0.0.0')).toBe(false);
  });
});
