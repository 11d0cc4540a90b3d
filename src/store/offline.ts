import { writeFileSync } from 'node:fs';
import { Core, exportDefinitions, importDefinitions, type Definitions, type ImportReport } from '../core/index.js';
import type { Logger } from '../logger.js';
import { startupError } from './errors.js';
import { readDefinitionsFile } from './index.js';
import { MessageStore } from './message-store.js';

/** The top-level keys of a RabbitMQ definitions file; a file with none of them is refused. */
const DEFINITION_KEYS = ['rabbit_version', 'rabbitmq_version', 'product_name', 'product_version', 'users', 'vhosts', 'permissions', 'topic_permissions', 'parameters', 'global_parameters', 'policies', 'queues', 'exchanges', 'bindings'];

function hasDefinitionKeys(input: unknown): boolean {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return false;
  return DEFINITION_KEYS.some((k) => Object.prototype.hasOwnProperty.call(input, k));
}

/** The definitions of a stopped broker's data directory, as `warren definitions export` writes them. */
export function readDataDirDefinitions(dataDir: string, log: Logger, version: string): Definitions {
  const store = MessageStore.open({ dataDir, log, readOnly: true });
  try {
    const core = new Core();
    store.attach(core, version);
    store.recover({ messages: false });
    return exportDefinitions(core, version);
  } finally {
    void store.close({ flush: false });
  }
}

/** Writes a data directory's definitions to `file` ('-' = stdout). */
export function exportDefinitionsOffline(dataDir: string, file: string, log: Logger, version: string): Definitions {
  const defs = readDataDirDefinitions(dataDir, log, version);
  const text = `${JSON.stringify(defs, null, 2)}\n`;
  if (file === '-') process.stdout.write(text);
  else {
    try {
      writeFileSync(file, text);
    } catch (e) {
      throw startupError(`cannot write '${file}': ${(e as Error).message}`);
    }
  }
  return defs;
}

/**
 * Imports a definitions file into a stopped broker's data directory (added to what is there, as
 * RabbitMQ's import does). The broker must not be running on it (the directory lock says).
 */
export async function importDefinitionsOffline(dataDir: string, file: string, log: Logger, version: string): Promise<ImportReport> {
  const input = readDefinitionsFile(file);
  if (!hasDefinitionKeys(input)) throw startupError(`definitions file '${file}' holds none of ${DEFINITION_KEYS.join(', ')}: not a definitions file`);
  const store = MessageStore.open({ dataDir, log });
  try {
    const core = new Core();
    store.attach(core, version);
    store.recover({ messages: false });
    let report: ImportReport;
    try {
      report = importDefinitions(core, input);
    } catch (e) {
      throw startupError(`definitions file '${file}': ${(e as Error).message}`);
    }
    await store.definitionsChanged();
    return report;
  } finally {
    await store.close();
  }
}
