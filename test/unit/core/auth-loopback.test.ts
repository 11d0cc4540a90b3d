import { describe, expect, test } from 'vitest';
import { Auth, isLoopback } from '../../../src/core/auth.js';

describe('isLoopback', () => {
  test('loopback addresses, IPv4, IPv6 and IPv4-mapped, are loopback', () => {
    for (const a of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) expect(isLoopback(a), a).toBe(true);
  });

  test('an unknown or empty address is never loopback', () => {
    for (const a of ['', ' ', 'localhost', 'unknown', '127.', '127.0.0', '127.0.0.1.5', '::ffff:', '::ffff:127.0.0', '127.0.0.1 ']) {
      expect(isLoopback(a), JSON.stringify(a)).toBe(false);
    }
  });

  test('remote addresses are not loopback', () => {
    for (const a of ['10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1', '::2', 'fe80::1', '1.127.0.0']) expect(isLoopback(a), a).toBe(false);
  });

  test('guest (loopback only) is refused when the peer address is unknown', () => {
    const auth = new Auth();
    auth.addUser('guest', 'guest');
    expect(() => auth.authenticate('guest', 'guest', '')).toThrow(/can only connect via localhost/);
    expect(auth.authenticate('guest', 'guest', '127.0.0.1').name).toBe('guest');
  });
});
