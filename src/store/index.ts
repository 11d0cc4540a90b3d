import { readFileSync } from 'node:fs';
import type { Core } from '../core/core.js';
import { importDefinitions, type ImportReport } from '../core/index.js';
import type { Logger } from '../logger.js';
import { startupError } from './errors.js';
import { DurableDelayed, HELD_CODEC, recoverDelayed } from './delayed.js';
import { MessageStore, type RecoverySummary } from './message-store.js';

export { DEFINITIONS_LOG, DEFINITIONS_SNAPSHOT, DefinitionsLog, definitionKey } from './definitions-log.js';
export type { DefinitionEntry, DefinitionKind } from './definitions-log.js';
/** The core's definitions as keyed entries: what a node replicates to the others in a cluster. */
export { allEntries, changeKey, currentEntry, metaEntries } from './definitions-state.js';
export { MessageStore, DEFINITIONS_FILE, DEFAULT_QUEUE_MEMORY_BUDGET, DEFAULT_SEGMENT_SIZE, queueDirName } from './message-store.js';
export type { StoreOptions, RecoverySummary } from './message-store.js';
export { StoreError } from './errors.js';
export { RecordStore } from './record-store.js';
/** The store's binary codec, for adapters that keep their own records in a record store. */
export { ByteReader, ByteWriter, readProperties, writeProperties } from './codec.js';

/** Store tuning for the embeddable API and tests (the CLI uses the defaults). */
export interface StoreTuning {
  /** Bytes of ready messages a durable queue keeps in memory before paging (0 = never page). */
  queueMemoryBudget?: number;
  /** Size at which a segment file is closed and a new one started. */
  segmentSize?: number;
  /** Size above which the definitions log may be compacted into a snapshot. */
  definitionsCompactBytes?: number;
}

/** Reads a RabbitMQ definitions file; a `startup` StoreError says what is wrong with it. */
export function readDefinitionsFile(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw startupError(`cannot read definitions file '${file}': ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw startupError(`definitions file '${file}' is not valid JSON: ${(e as Error).message}`);
  }
}

/** Imports a definitions file into the core; malformed content is a `startup` StoreError. */
export function importDefinitionsFile(core: Core, file: string): ImportReport {
  const defs = readDefinitionsFile(file);
  try {
    return importDefinitions(core, defs);
  } catch (e) {
    throw startupError(`definitions file '${file}': ${(e as Error).message}`);
  }
}

export interface OpenedStore {
  store: MessageStore;
  recovery: RecoverySummary;
}

/**
 * Opens the data directory for `core`, recovers definitions and messages, then imports
 * `definitionsFile` (RabbitMQ JSON) on top when given. Throws a `startup` StoreError when the
 * directory or the file cannot be used.
 */
export function openStore(
  core: Core,
  opts: { dataDir: string; definitions?: string | undefined; version?: string } & StoreTuning,
  log: Logger,
): OpenedStore {
  const store = MessageStore.open({
    dataDir: opts.dataDir,
    log,
    queueMemoryBudget: opts.queueMemoryBudget,
    segmentSize: opts.segmentSize,
    definitionsCompactBytes: opts.definitionsCompactBytes,
  });
  try {
    const version = opts.version ?? '0.0.0';
    store.attach(core, version);
    // Held messages need their exchanges: the store is attached before, refilled after recovery.
    const delayed = new DurableDelayed(store.records('delayed'), log, () => store.definitionsWritten());
    core.delayedStore = delayed;
    core.heldCodec = HELD_CODEC;
    const recovery = store.recover();
    recoverDelayed(core, delayed, log);
    if (opts.definitions !== undefined) {
      const report = importDefinitionsFile(core, opts.definitions);
      for (const w of report.warnings) log.warn(`definitions: ${w}`);
      log.info(
        { file: opts.definitions, vhosts: report.vhosts, users: report.users, exchanges: report.exchanges, queues: report.queues, bindings: report.bindings },
        'definitions imported',
      );
      void store.definitionsChanged();
    }
    return { store, recovery };
  } catch (e) {
    void store.close();
    throw e;
  }
}
