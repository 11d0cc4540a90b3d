import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { spawnWarren } from '../helpers/warren-process.js';

test('SIGTERM sent the moment the ready line is read always stops the broker cleanly (exit 0)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'warren-sigterm-'));
  try {
    for (let i = 0; i < 8; i++) {
      const w = await spawnWarren(dir);
      w.child.kill('SIGTERM');
      expect(await w.exited, `start ${i}: ${w.stderr.join('')}`).toBe(0);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}, 60_000);
