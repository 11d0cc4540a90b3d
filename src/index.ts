/** The embeddable API: `import { startBroker } from 'warren'`. */
export { startBroker, type Broker, type Ports } from './broker.js';
export type { AdapterContext, AdapterStore } from './transport/adapter.js';
export { resolveOptions, DEFAULTS, ConfigError, type BrokerOptions, type Port } from './config.js';
export * as core from './core/index.js';
