import { describe, expect, test } from 'vitest';
import { MemoryRetainedStore, type RetainedMessage } from '../../../../adapters/mqtt/retained.js';

function msg(topic: string, expiresAt = 0): RetainedMessage {
  return { topic, qos: 1, properties: {}, body: Buffer.from(topic), expiresAt };
}

function topics(list: RetainedMessage[]): string[] {
  return list.map((m) => m.topic).sort();
}

describe('MemoryRetainedStore', () => {
  const all = ['a', 'a/b', 'a/b/c', 'a/c', 'b/b', '/x', '$SYS/load', '$SYS/a/b'];
  function filled(): MemoryRetainedStore {
    const s = new MemoryRetainedStore();
    for (const t of all) s.set('/', t, msg(t));
    return s;
  }

  test.each([
    ['a/b', ['a/b']],
    ['a/+', ['a/b', 'a/c']],
    ['a/#', ['a', 'a/b', 'a/b/c', 'a/c']],
    ['+/b', ['a/b', 'b/b']],
    ['#', ['/x', 'a', 'a/b', 'a/b/c', 'a/c', 'b/b']],
    ['+', ['a']],
    ['+/+', ['/x', 'a/b', 'a/c', 'b/b']],
    ['$SYS/#', ['$SYS/a/b', '$SYS/load']],
    ['$SYS/+', ['$SYS/load']],
    ['+/load', []],
    ['nothing/#', []],
  ])('filter %s replays %j', (filter, expected) => {
    expect(topics(filled().match('/', filter))).toEqual([...expected].sort());
  });

  test('setting null deletes, and empty branches are pruned', () => {
    const s = filled();
    s.set('/', 'a/b/c', null);
    s.set('/', 'a/b', null);
    expect(topics(s.match('/', 'a/#'))).toEqual(['a', 'a/c']);
    expect(s.count('/')).toBe(all.length - 2);
    for (const t of all) s.set('/', t, null);
    expect(s.count('/')).toBe(0);
    expect(s.match('/', '#')).toEqual([]);
  });

  test('vhosts are separate', () => {
    const s = filled();
    expect(s.match('other', '#')).toEqual([]);
    s.set('other', 'a', msg('a'));
    expect(s.count('other')).toBe(1);
    expect(s.count('/')).toBe(all.length);
  });

  test('replacing a message keeps one per topic', () => {
    const s = new MemoryRetainedStore();
    s.set('/', 't', msg('t'));
    s.set('/', 't', { ...msg('t'), body: Buffer.from('new') });
    expect(s.count('/')).toBe(1);
    expect(s.get('/', 't')?.body.toString()).toBe('new');
  });

  test('expired messages are neither replayed nor kept', () => {
    const s = new MemoryRetainedStore();
    s.set('/', 'old', msg('old', Date.now() - 1));
    s.set('/', 'new', msg('new', Date.now() + 60_000));
    expect(topics(s.match('/', '#'))).toEqual(['new']);
    expect(s.count('/')).toBe(1);
    expect(s.get('/', 'old')).toBeUndefined();
  });
});
