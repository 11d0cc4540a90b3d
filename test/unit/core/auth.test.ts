import { describe, expect, test } from 'vitest';
import { Auth, checkPassword, hashPassword, isLoopback } from '../../../src/core/auth.js';
import { BrokerError } from '../../../src/core/errors.js';

describe('users and permissions', () => {
  test("password hashes use RabbitMQ's salted SHA-256 form", () => {
    const h = hashPassword('secret', Buffer.from([1, 2, 3, 4]));
    expect(Buffer.from(h, 'base64')).toHaveLength(36);
    expect(checkPassword('secret', h)).toBe(true);
    expect(checkPassword('Secret', h)).toBe(false);
    // exported by RabbitMQ (rabbitmqctl add_user hashprobe s3cret; export_definitions)
    expect(checkPassword('s3cret', 'BZe+6siUC+ZC9/A+VY1oX0vSV28f4WKd7oIi2aGU8wt2bVuA')).toBe(true);
    expect(checkPassword('s3cret!', 'BZe+6siUC+ZC9/A+VY1oX0vSV28f4WKd7oIi2aGU8wt2bVuA')).toBe(false);
  });

  test('guest may connect only from loopback unless allowed', () => {
    const auth = new Auth();
    auth.addUser('guest', 'guest');
    expect(auth.authenticate('guest', 'guest', '127.0.0.1').name).toBe('guest');
    expect(auth.authenticate('guest', 'guest', '::ffff:127.0.0.1').name).toBe('guest');
    expect(() => auth.authenticate('guest', 'guest', '10.1.2.3')).toThrow(/can only connect via localhost/);
    auth.guestLoopbackOnly = false;
    expect(auth.authenticate('guest', 'guest', '10.1.2.3').name).toBe('guest');
  });

  test('bad credentials are ACCESS_REFUSED', () => {
    const auth = new Auth();
    auth.addUser('alice', 'pw');
    for (const [u, p] of [['alice', 'nope'], ['bob', 'pw']] as const) {
      try {
        auth.authenticate(u, p, '127.0.0.1');
        expect.unreachable();
      } catch (e) {
        expect((e as BrokerError).code).toBe(403);
      }
    }
  });

  test('permission regexes match unanchored, as RabbitMQ does; the default exchange is amq.default', () => {
    const auth = new Auth();
    auth.setPermission('/', 'u', { configure: '^tmp-', write: 'logs', read: '' });
    expect(auth.permitted('u', '/', 'configure', 'tmp-1')).toBe(true);
    expect(auth.permitted('u', '/', 'configure', 'x-tmp-1')).toBe(false);
    expect(auth.permitted('u', '/', 'write', 'app-logs-2')).toBe(true);
    expect(auth.permitted('u', '/', 'write', '')).toBe(false);
    expect(auth.permitted('u', '/', 'read', 'anything')).toBe(false);
    expect(auth.permitted('u', '/other', 'configure', 'tmp-1')).toBe(false);
    auth.setPermission('/', 'd', { configure: '', write: '^amq\\.default$', read: '' });
    expect(auth.permitted('d', '/', 'write', '')).toBe(true);
  });

  test('loopback addresses', () => {
    expect(['127.0.0.1', '127.5.5.5', '::1', '::ffff:127.0.0.1'].every(isLoopback)).toBe(true);
    expect(['10.0.0.1', '192.168.1.1', '::ffff:10.0.0.1'].some(isLoopback)).toBe(false);
  });
});
