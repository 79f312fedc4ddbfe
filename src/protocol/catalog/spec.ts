// How a request type is described: its keys, its reply, whether it may be resent and whether it changes
// state; the builders the request tables use, and the key lists several requests share.
import { Key, type KeyName, type ProtocolLevel } from './keys.js';
import type { RecordPrefixName } from './records.js';

export interface KeySpec {
  readonly key: KeyName;
  readonly required: boolean;
  /** sent once per item of a list (`pool_id` × `pool_num`, `vol_name` of a group) */
  readonly repeated?: boolean;
  /** the level that knows the key; an original VBS ignores extended keys */
  readonly level: ProtocolLevel;
}

export interface ReplySpec {
  /** record kinds the success reply may carry */
  readonly records: readonly RecordPrefixName[];
  /** plain keys of the success reply (counts, markers, job ids...) */
  readonly keys: readonly KeyName[];
}

export interface RequestSpec {
  readonly type: string;
  readonly level: ProtocolLevel;
  readonly keys: readonly KeySpec[];
  readonly reply: ReplySpec;
  /**
   * Safe to send again after it left but no reply came back: read-only, or name-keyed / absolute so a repeat
   * answers what the first would have (a repeated create reports the existing object, a repeated delete
   * -900079). Requests that never left, and BUSY/UNAVAILABLE replies, are retried whatever this says.
   */
  readonly resendSafe: boolean;
  /** it changes state on the VBS (logged at info there) */
  readonly mutating: boolean;
}

export const req = (key: KeyName, level: ProtocolLevel = 'original', repeated = false): KeySpec =>
  repeated ? { key, required: true, level, repeated } : { key, required: true, level };
export const opt = (key: KeyName, level: ProtocolLevel = 'extended', repeated = false): KeySpec =>
  repeated ? { key, required: false, level, repeated } : { key, required: false, level };

/** The placement, QoS and cache keys a clone or import also takes (extended). */
export const PLACEMENT_QOS_KEYS: readonly KeySpec[] = [
  opt(Key.POOL_ID),
  opt(Key.THIN_FLAG),
  opt(Key.MAX_IOPS),
  opt(Key.MAX_MBPS),
  opt(Key.IO_PRIORITY),
  opt(Key.IO_CLASS_ID),
  opt(Key.CACHE_POLICY),
];
export const PAGE_KEYS: readonly KeySpec[] = [opt(Key.MARKER), opt(Key.LIMIT)];
export const EXTENT_PAGE_KEYS: readonly KeySpec[] = [opt(Key.OFFSET), opt(Key.LIMIT)];
export const EXTENT_REPLY: ReplySpec = {
  records: ['extent'],
  keys: [Key.SIZE_BYTES, Key.BLOCK_SIZE, Key.EXTENT_NUM, Key.NEXT_OFFSET, Key.METHOD],
};
export const nothing: ReplySpec = { records: [], keys: [] };
/** The reply of a DELETE_*: `deleted=1` when the delete already completed (else it is polled). */
export const DELETED_REPLY: ReplySpec = { records: [], keys: [Key.DELETED] };
export const only = (...records: RecordPrefixName[]): ReplySpec => ({ records, keys: [] });

/**
 * What a request does, which says whether it changes state and may be resent (see RequestSpec): `read` a
 * query; `write` a name-keyed or absolute change, which a repeat answers as the first would have; `job` the
 * start of an image job, which each repeat would start again.
 */
export type Effect = 'read' | 'write' | 'job';

export function spec(
  type: string,
  level: ProtocolLevel,
  effect: Effect,
  keys: readonly KeySpec[],
  reply: ReplySpec,
): RequestSpec {
  return { type, level, keys, reply, resendSafe: effect !== 'job', mutating: effect !== 'read' };
}
