// The typed catalog of the VBS socket API (docs/socket-api.md): every request type, the keys it takes, the
// records and fields of its reply, whether it may be resent after it left, whether it changes state, and the
// protocol level that introduced it. Pure data and pure helpers, no I/O: shared by the driver's client
// (src/sds) and the emulator's handlers, so no request type, key or retry list is spelled anywhere else.
// The tables live under src/protocol/catalog/ (keys, records, the request specs of each level); this module
// joins them and is the one to import.
import { COMMON_EXTENSION_KEYS, type KeyName, type ProtocolLevel } from './catalog/keys.js';
import { ORIGINAL_REQUESTS } from './catalog/requests-original.js';
import { EXTENDED_REQUESTS } from './catalog/requests-extended.js';
import type { RequestSpec } from './catalog/spec.js';

export * from './catalog/keys.js';
export * from './catalog/records.js';
export type { KeySpec, ReplySpec, RequestSpec } from './catalog/spec.js';
export { ORIGINAL_CREATE_KEYS, ORIGINAL_CREATE_NEUTRAL } from './catalog/requests-original.js';

/**
 * Every request type. `resendSafe`: see RequestSpec. Only the image jobs are unsafe: each repeat would start
 * a job, a repeat cannot tell ours from another's, and the first job's id is lost with the reply.
 */
export const Requests = { ...ORIGINAL_REQUESTS, ...EXTENDED_REQUESTS } as const satisfies Record<string, RequestSpec>;

export type RequestName = keyof typeof Requests;
/** The wire name of a request type: `CREATE_VOLUME_REQ`. */
export type RequestType = (typeof Requests)[RequestName]['type'];

export const REQUEST_SPECS: readonly RequestSpec[] = Object.values(Requests);
const byType = new Map<string, RequestSpec>(REQUEST_SPECS.map((s) => [s.type, s]));

/** The catalog entry of a wire type, or undefined for a type nobody defined. */
export function requestSpec(type: string): RequestSpec | undefined {
  return byType.get(type);
}

/** Request types a VBS of `level` serves. */
export function requestTypesOf(level: ProtocolLevel): string[] {
  return REQUEST_SPECS.filter((s) => level === 'extended' || s.level === 'original').map((s) => s.type);
}

export function isKnownAt(type: string, level: ProtocolLevel): boolean {
  const s = byType.get(type);
  return s !== undefined && (level === 'extended' || s.level === 'original');
}

/** May `type` be sent again after it left without a reply? Unknown types: no. */
export function isResendSafe(type: string): boolean {
  return byType.get(type)?.resendSafe ?? false;
}

/** Does `type` change state? Unknown types: no (they are refused). */
export function isMutating(type: string): boolean {
  return byType.get(type)?.mutating ?? false;
}

/** The keys of `type` that a VBS of `level` knows (an original VBS ignores the rest). */
export function keysAt(type: string, level: ProtocolLevel): KeyName[] {
  const s = byType.get(type);
  if (s === undefined) return [];
  return s.keys.filter((k) => level === 'extended' || k.level === 'original').map((k) => k.key);
}

/** Is `key` one that `type` takes at `level` (common extension keys count on the extended level)? */
export function takesKey(type: string, key: string, level: ProtocolLevel): boolean {
  if (level === 'extended' && (COMMON_EXTENSION_KEYS as readonly string[]).includes(key)) return true;
  return (keysAt(type, level) as string[]).includes(key);
}

// ---- the generic failure of the original level ----

/**
 * The original product answered every failure with one code (the Cinder fixtures use `retcode=1`), except
 * "does not exist" (-900079). A reply with it says only "it did not work": the driver asks follow-up
 * queries to learn why (docs/socket-api.md).
 */
export const ORIGINAL_GENERIC_FAILURE = 1;

/** Volume states of the original level that mean "it exists" (QUERY_VOLUME_REQ). */
export const ORIGINAL_VOLUME_EXISTS: readonly number[] = [1, 2, 10];
/** Snapshot states of the original level that mean "it exists" (QUERY_SNAPSHOT_REQ). */
export const ORIGINAL_SNAPSHOT_EXISTS: readonly number[] = [1, 2];

// ---- capabilities (QUERY_CAPABILITY_REQ) ----

/** The capability words an extended VBS lists. */
export const Capability = {
  LINKED_CLONE: 'linked_clone',
  FULL_CLONE: 'full_clone',
  CLONE_VOLUME: 'clone_volume',
  LIST: 'list',
  QOS: 'qos',
  /** the emulator listed it when its QoS limits are enforced on this host (blkio throttling) */
  QOS_ENFORCED: 'qos_enforced',
  CACHE: 'cache',
  IMAGE_IMPORT: 'image_import',
  IMAGE_EXPORT: 'image_export',
  IMAGE_QCOW2: 'image_qcow2',
  MAP: 'map',
  AUTH_TOKEN: 'auth_token',
  GROUP_SNAPSHOT: 'group_snapshot',
  EXTENT_MAP: 'extent_map',
} as const;
export type CapabilityName = (typeof Capability)[keyof typeof Capability];
