import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));

/** The package's root directory (the one holding its package.json), from src/ or dist/src/. */
export const PACKAGE_ROOT: string = (() => {
  let dir = HERE;
  for (let i = 0; i < 6; i++) {
    const pj = join(dir, 'package.json');
    if (existsSync(pj)) {
      try {
        const name = (JSON.parse(readFileSync(pj, 'utf8')) as { name?: unknown }).name;
        if (name === 'warren') return dir;
      } catch {
        // keep looking
      }
    }
    dir = dirname(dir);
  }
  return join(HERE, '..', '..');
})();

export const VERSION: string = (() => {
  try {
    const v = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version?: unknown }).version;
    return typeof v === 'string' ? v : '0.0.0';
  } catch {
    return '0.0.0';
  }
})();

/** The web UI's files: next to this module when run from source, under the package root otherwise. */
export const UI_DIR: string = (() => {
  const candidates = [join(HERE, 'ui'), join(PACKAGE_ROOT, 'src', 'management', 'ui')];
  return candidates.find((d) => existsSync(join(d, 'index.html'))) ?? candidates[1]!;
})();
