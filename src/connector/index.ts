// The driver's data-plane room: runs sds_cli (the KV connector). Nothing here imports emulator code.
export { KvConnector } from './kv-connector.js';
export { CONNECTOR_DEFAULTS, DEFAULT_CLI_PATH, CLI_PATH_ENV } from './options.js';
export type { KvConnectorOptions, AttachOptions, CallOptions, ConnectorLogger, ConnectorObserver } from './options.js';
export { ConnectorError, isConnectorError } from './errors.js';
export type { ConnectorErrorKind } from './errors.js';
