import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { STORE_CORE_VALUES, checkSource, checkTree, findImports, formatViolation } from '../../../tools/import-boundaries.js';

const ROOT = join(import.meta.dirname, '..', '..', '..');

function rules(file: string, text: string): string[] {
  return checkSource(file, text).map((v) => `${v.line}:${v.rule}:${v.specifier}`);
}

describe('import boundaries', () => {
  test('the tree has no violations', () => {
    const violations = checkTree(ROOT);
    expect(violations.map(formatViolation)).toEqual([]);
  });

  test('the command exits 0 on the tree and 1 listing each violation on a tree with some', async () => {
    const bin = join(ROOT, 'dist', 'tools', 'import-boundaries.js');
    const ok = spawnSync(process.execPath, [bin], { encoding: 'utf8' });
    expect(ok.stdout.trim()).toBe('import boundaries: ok');
    expect(ok.status).toBe(0);
    const dir = await mkdtemp(join(tmpdir(), 'warren-lint-'));
    try {
      mkdirSync(join(dir, 'src', 'core'), { recursive: true });
      mkdirSync(join(dir, 'adapters', 'mqtt'), { recursive: true });
      writeFileSync(join(dir, 'src', 'core', 'vhost.ts'), "import { x } from './other.js';\nimport { MqttAdapter } from '../../adapters/mqtt/index.js';\n");
      writeFileSync(join(dir, 'adapters', 'mqtt', 'index.ts'), "import type { AdapterContext } from '../../src/broker.js';\n");
      const bad = spawnSync(process.execPath, [bin, dir], { encoding: 'utf8' });
      expect(bad.status).toBe(1);
      expect(bad.stderr.trim().split('\n')).toEqual([
        "adapters/mqtt/index.ts:1: R2: '../../src/broker.js': adapters do not import root",
        "src/core/vhost.ts:2: R1: '../../adapters/mqtt/index.js': the core imports only the core",
        // The store files the exception list names are not in this tree: the list is checked too.
        ...STORE_CORE_VALUES.map(([file, module]) => `${file}:1: R3: STORE_CORE_VALUES lists a value import of ${module} that the file no longer makes`),
        `${2 + STORE_CORE_VALUES.length} import boundary violations`,
      ]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('the core may not import an adapter, the store, transport or management', () => {
    expect(rules('src/core/vhost.ts', "import { MqttAdapter } from '../../adapters/mqtt/index.js';")).toEqual(['1:R1:../../adapters/mqtt/index.js']);
    expect(rules('src/core/queues/queue.ts', "import type { QueueLog } from '../../store/queue-log.js';")).toEqual(['1:R1:../../store/queue-log.js']);
    expect(rules('src/core/core.ts', "import type { Logger } from '../logger.js';\nimport { Alarms } from './alarms.js';")).toEqual(['1:R1:../logger.js']);
  });

  test('adapters reach the core only through src/core/index.ts and never each other or the composition root', () => {
    const f = 'adapters/mqtt/session.ts';
    expect(rules(f, "import { CoreChannel } from '../../src/core/index.js';")).toEqual([]);
    expect(rules(f, "import type { VHost } from '../../src/core/vhost.js';")).toEqual(['1:R2:../../src/core/vhost.js']);
    expect(rules(f, "import { StompAdapter } from '../stomp/index.js';")).toEqual(['1:R2:../stomp/index.js']);
    expect(rules(f, "import type { AdapterContext } from '../../src/broker.js';")).toEqual(['1:R2:../../src/broker.js']);
    expect(rules(f, "import { RecordStore } from '../../src/store/index.js';")).toEqual([]);
    expect(rules(f, "import { RecordStore } from '../../src/store/record-store.js';")).toEqual(['1:R2:../../src/store/record-store.js']);
    expect(rules(f, "import { createLogger } from '../../src/logger.js';")).toEqual(['1:R2:../../src/logger.js']);
    expect(rules(f, "import type { Logger } from '../../src/logger.js';")).toEqual([]);
    expect(rules(f, "import { Outbound } from '../../src/transport/outbound.js';")).toEqual([]);
  });

  test('the store takes only types from the core, except the listed value imports', () => {
    expect(rules('src/store/records.ts', "import type { QueueEntry } from '../core/queues/entry.js';")).toEqual([]);
    expect(rules('src/store/records.ts', "import { newEntry } from '../core/queues/entry.js';")).toEqual(['1:R3:../core/queues/entry.js']);
    expect(rules('src/store/queue-recovery.ts', "import { newEntry } from '../core/queues/entry.js';")).toEqual([]);
    expect(rules('src/store/records.ts', "import { Outbound } from '../transport/outbound.js';")).toEqual(['1:R3:../transport/outbound.js']);
  });

  test('transport takes only types from the public core and store modules; management never reaches the store', () => {
    expect(rules('src/transport/adapter.ts', "import type { Core } from '../core/index.js';")).toEqual([]);
    expect(rules('src/transport/adapter.ts', "import { Core } from '../core/index.js';")).toEqual(['1:R4:../core/index.js']);
    expect(rules('src/transport/tcp.ts', "import { AmqpAdapter } from '../../adapters/amqp/index.js';")).toEqual(['1:R4:../../adapters/amqp/index.js']);
    expect(rules('src/management/api.ts', "import { MessageStore } from '../store/index.js';")).toEqual(['1:R5:../store/index.js']);
    expect(rules('src/management/api.ts', "import { exportDefinitions } from '../core/definitions.js';")).toEqual(['1:R5:../core/definitions.js']);
    expect(rules('src/broker.ts', "import { AmqpAdapter } from '../adapters/amqp/index.js';")).toEqual([]);
    expect(rules('src/logger.ts', "import type { Core } from './core/index.js';")).toEqual(['1:R6:./core/index.js']);
  });

  test('nothing but the composition root reaches the cluster, and the root only through a dynamic import', () => {
    expect(rules('src/core/vhost.ts', "import type { ClusterKV } from '../cluster/engine.js';")).toEqual(['1:R1:../cluster/engine.js']);
    expect(rules('src/store/message-store.ts', "import { DefinitionsSync } from '../cluster/index.js';")).toEqual(['1:R3:../cluster/index.js']);
    expect(rules('src/management/api.ts', "import type { ClusterMembership } from '../cluster/index.js';")).toEqual(['1:R5:../cluster/index.js']);
    expect(rules('adapters/mqtt/session.ts', "import { joinCluster } from '../../src/cluster/index.js';")).toEqual(['1:R2:../../src/cluster/index.js']);
    expect(rules('src/broker.ts', "import { joinCluster } from './cluster/index.js';")).toEqual(['1:R8:./cluster/index.js']);
    expect(rules('src/broker.ts', "import type { ClusterMembership } from './cluster/index.js';\nconst { joinCluster } = await import('./cluster/index.js');")).toEqual([]);
  });

  test('the cluster reaches the core and the store only through their index modules', () => {
    const f = 'src/cluster/definitions-sync.ts';
    expect(rules(f, "import { importDefinitions } from '../core/index.js';\nimport { allEntries } from '../store/index.js';\nimport type { Logger } from '../logger.js';")).toEqual([]);
    expect(rules(f, "import type { VHost } from '../core/vhost.js';")).toEqual(['1:R8:../core/vhost.js']);
    expect(rules(f, "import { allEntries } from '../store/definitions-state.js';")).toEqual(['1:R8:../store/definitions-state.js']);
    expect(rules(f, "import { Management } from '../management/index.js';")).toEqual(['1:R8:../management/index.js']);
  });

  test('a file outside every area is reported', () => {
    expect(rules('src/new-thing.ts', '')).toEqual(['1:areas:']);
  });
});

describe('finding imports', () => {
  const found = (text: string) => findImports(text).map((r) => `${r.specifier}${r.typeOnly ? ' (type)' : ''}@${r.line}`);

  test('static, side-effect, dynamic imports and re-exports', () => {
    const text = [
      "import { a, b } from './a.js';",
      "import './side.js';",
      'import {',
      '  c,',
      "} from './multi.js';",
      "export * from './star.js';",
      "export * as ns from './ns.js';",
      "export { d } from './reexport.js';",
      'export const x = 1;',
      "const m = await import('./dynamic.js');",
      'const meta = import.meta.url;',
    ].join('\n');
    expect(found(text)).toEqual(['./a.js@1', './side.js@2', './multi.js@3', './star.js@6', './ns.js@7', './reexport.js@8', './dynamic.js@10']);
  });

  test('type-only forms', () => {
    const text = [
      "import type { A } from './t1.js';",
      "import { type B, type C } from './t2.js';",
      "import { type D, e } from './mixed.js';",
      "export type { F } from './t3.js';",
      "export { type G } from './t4.js';",
      "type H = typeof import('./t5.js');",
      "import type from './default-named-type.js';",
      "import type, { i } from './default-and-named.js';",
    ].join('\n');
    expect(found(text)).toEqual([
      './t1.js (type)@1',
      './t2.js (type)@2',
      './mixed.js@3',
      './t3.js (type)@4',
      './t4.js (type)@5',
      './t5.js (type)@6',
      './default-named-type.js@7',
      './default-and-named.js@8',
    ]);
  });

  test('text that only looks like an import: comments, strings, regular expressions, templates', () => {
    const text = [
      "// import { no } from './comment.js';",
      "/* export * from './block.js'; */",
      "const s = \"import x from './string.js'\";",
      "const r = /'/; const q = 'import y from \\'./after-regex.js\\'';",
      "const d = a / b / c; import { real } from './real.js';",
      "const t = `${n} import z from './template.js' ${`nested ${'x'}`}`;",
      "import { last } from './last.js';",
    ].join('\n');
    expect(found(text)).toEqual(['./real.js@5', './last.js@7']);
  });
});
