import { describe, expect, test } from 'vitest';
import { Auth, checkPassword, hashPassword } from '../../../src/core/auth.js';

describe('users', () => {
  test('SHA-512 and MD5 hashes from RabbitMQ definitions are accepted', () => {
    const salt = Buffer.from([9, 8, 7, 6]);
    const h512 = hashPassword('pw', salt, 'rabbit_password_hashing_sha512');
    expect(Buffer.from(h512, 'base64')).toHaveLength(4 + 64);
    expect(checkPassword('pw', h512, 'rabbit_password_hashing_sha512')).toBe(true);
    expect(checkPassword('pw', h512, 'rabbit_password_hashing_sha256')).toBe(false);
    const md5 = hashPassword('pw', salt, 'rabbit_password_hashing_md5');
    expect(checkPassword('pw', md5, 'rabbit_password_hashing_md5')).toBe(true);
    expect(checkPassword('pw', '')).toBe(false);
  });

  test('a user imported with a hash logs in; deleting a user drops its permissions', () => {
    const auth = new Auth();
    auth.putUser('imported', { passwordHash: 'BZe+6siUC+ZC9/A+VY1oX0vSV28f4WKd7oIi2aGU8wt2bVuA', tags: ['management'] });
    expect(auth.authenticate('imported', 's3cret', '10.0.0.1').tags).toEqual(['management']);
    auth.setPermission('/', 'imported', { configure: '.*', write: '.*', read: '.*' });
    auth.setTopicPermission('/', 'imported', { exchange: 'amq.topic', write: '.*', read: '.*' });
    const gen = auth.generation;
    expect(auth.deleteUser('imported')).toBe(true);
    expect(auth.generation).toBeGreaterThan(gen);
    expect(auth.canAccessVhost('imported', '/')).toBe(false);
    expect(auth.hasTopicPermission('imported', '/', 'amq.topic')).toBe(false);
    expect(auth.deleteUser('imported')).toBe(false);
  });

  test('changing a password keeps the user; an empty password means no password login', () => {
    const auth = new Auth();
    auth.addUser('u', 'one', ['monitoring']);
    auth.changePassword('u', 'two');
    expect(() => auth.authenticate('u', 'one', '127.0.0.1')).toThrow(/ACCESS_REFUSED/);
    expect(auth.authenticate('u', 'two', '127.0.0.1').tags).toEqual(['monitoring']);
    auth.changePassword('u', '');
    expect(() => auth.authenticate('u', '', '127.0.0.1')).toThrow(/ACCESS_REFUSED/);
  });

  test('invalid regular expressions are refused when set', () => {
    const auth = new Auth();
    expect(() => auth.setPermission('/', 'u', { configure: '(', write: '', read: '' })).toThrow(/PRECONDITION_FAILED/);
    expect(() => auth.setTopicPermission('/', 'u', { exchange: 'amq.topic', write: '[', read: '' })).toThrow(/PRECONDITION_FAILED/);
  });
});

describe('topic permissions', () => {
  const vars = { username: 'alice', vhost: '/', client_id: 'dev-1' };

  test('without a topic permission for the exchange everything is allowed', () => {
    const auth = new Auth();
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'write', 'any.key', vars)).toBe(true);
    auth.setTopicPermission('/', 'alice', { exchange: 'other', write: '^$', read: '^$' });
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'write', 'any.key', vars)).toBe(true);
    expect(auth.topicPermitted('alice', '/', 'other', 'write', 'any.key', vars)).toBe(false);
  });

  test('{username}, {vhost} and {client_id} are substituted; an empty regex matches only the empty key', () => {
    const auth = new Auth();
    auth.setTopicPermission('/', 'alice', { exchange: 'amq.topic', write: '^u\\.{username}\\.c\\.{client_id}$', read: '' });
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'write', 'u.alice.c.dev-1', vars)).toBe(true);
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'write', 'u.bob.c.dev-1', vars)).toBe(false);
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'write', 'u.alice.c.dev-2', vars)).toBe(false);
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'read', 'x', vars)).toBe(false);
    expect(auth.topicPermitted('alice', '/', 'amq.topic', 'read', '', vars)).toBe(true);
  });

  test('clearing one exchange or all of them', () => {
    const auth = new Auth();
    auth.setTopicPermission('/', 'alice', { exchange: 'a', write: '.*', read: '.*' });
    auth.setTopicPermission('/', 'alice', { exchange: 'b', write: '.*', read: '.*' });
    expect(auth.clearTopicPermission('/', 'alice', 'a')).toBe(true);
    expect(auth.topicPermissionsOf('/', 'alice').map((p) => p.exchange)).toEqual(['b']);
    expect(auth.clearTopicPermission('/', 'alice')).toBe(true);
    expect(auth.topicPermissionsOf('/', 'alice')).toEqual([]);
    expect(auth.clearTopicPermission('/', 'alice')).toBe(false);
  });
});
