// The driver's back-end room: the VBS socket-API client and its types. Nothing here imports emulator code.
export * from './backend.js';
export * from './errors.js';
export { SdsClient, CLIENT_DEFAULTS, isRetriedAfterSend, toMiB } from './client.js';
export type { SdsClientOptions, SdsLogger, SdsObserver, RetryPolicy } from './client.js';
export { parseAddress, parseAddressList, formatAddress, AddressError } from './transport.js';
export type { VbsAddress } from './transport.js';
export { rawVbsCall } from './raw.js';
export type { RawCallOptions, RawReply, RawTarget } from './raw.js';
