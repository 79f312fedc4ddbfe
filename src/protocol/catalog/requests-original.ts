// The nine requests of the 2014 product (the original level), with the keys the Cinder driver sent.
import { Key } from './keys.js';
import { DELETED_REPLY, only, opt, PLACEMENT_QOS_KEYS, req, spec, type KeySpec, type RequestSpec } from './spec.js';

/** The keys the Cinder driver sent with every CREATE_VOLUME_REQ after the name and size, in its order. */
export const ORIGINAL_CREATE_KEYS = [
  Key.POOL_ID,
  Key.THIN_FLAG,
  Key.RESERVED,
  Key.VOLUME_SPACE_RESERVED,
  Key.FORCE_PROVISION_SIZE,
  Key.IOPS,
  Key.MAX_IOPS,
  Key.MIN_IOPS,
  Key.CACHE_SIZE,
  Key.REPLICATE_NUM,
  Key.REPLICATE_TOLERANT_NUM,
  Key.ENCRYPT_ALGORITHM,
  Key.CONSISTENCY,
  Key.STOR_SPACE_LEVEL,
  Key.COMPRESS_ALGORITHM,
  Key.DEDUPLICATION,
  Key.SNAPSHOT,
  Key.BACKUP_CYCLE,
  Key.TOLERANCE_DISK_FAILURE,
  Key.TOLERANCE_CACHE_FAILURE,
] as const;

/**
 * The neutral value of each original create key: "this feature off / not asked". The sources show the keys
 * but not the values a plain volume carried; we send what asks for nothing (0, one copy), documented in
 * docs/socket-api.md. `pool_id`, `thin_flag` and `max_iops` carry the request's own values.
 */
export const ORIGINAL_CREATE_NEUTRAL: Readonly<Record<(typeof ORIGINAL_CREATE_KEYS)[number], string>> = {
  [Key.POOL_ID]: '',
  [Key.THIN_FLAG]: '0',
  [Key.RESERVED]: '0',
  [Key.VOLUME_SPACE_RESERVED]: '0',
  [Key.FORCE_PROVISION_SIZE]: '0',
  [Key.IOPS]: '0',
  [Key.MAX_IOPS]: '0',
  [Key.MIN_IOPS]: '0',
  [Key.CACHE_SIZE]: '0',
  [Key.REPLICATE_NUM]: '1',
  [Key.REPLICATE_TOLERANT_NUM]: '0',
  [Key.ENCRYPT_ALGORITHM]: '0',
  [Key.CONSISTENCY]: '0',
  [Key.STOR_SPACE_LEVEL]: '0',
  [Key.COMPRESS_ALGORITHM]: '0',
  [Key.DEDUPLICATION]: '0',
  [Key.SNAPSHOT]: '0',
  [Key.BACKUP_CYCLE]: '0',
  [Key.TOLERANCE_DISK_FAILURE]: '0',
  [Key.TOLERANCE_CACHE_FAILURE]: '0',
};

const CREATE_KEYS: readonly KeySpec[] = [
  req(Key.VOL_NAME),
  req(Key.VOL_SIZE),
  ...ORIGINAL_CREATE_KEYS.map((k) => opt(k, 'original')),
  opt(Key.IO_CLASS_ID, 'original'),
  opt(Key.IO_PRIORITY, 'original'),
  opt(Key.MAX_MBPS),
  opt(Key.CACHE_POLICY),
];

/** The original nine, as the product serves them (and the extended level too). */
export const ORIGINAL_REQUESTS = {
  CREATE_VOLUME: spec('CREATE_VOLUME_REQ', 'original', 'write', CREATE_KEYS, only('volume')),
  DELETE_VOLUME: spec('DELETE_VOLUME_REQ', 'original', 'write', [req(Key.VOL_NAME)], DELETED_REPLY),
  EXTEND_VOLUME: spec('EXTEND_VOLUME_REQ', 'original', 'write', [req(Key.VOL_NAME), req(Key.VOL_SIZE)], only('volume')),
  CREATE_SNAPSHOT: spec(
    'CREATE_SNAPSHOT_REQ',
    'original',
    'write',
    [req(Key.SNAP_NAME), req(Key.VOL_NAME), req(Key.SMARTFLAG)],
    only('snapshot'),
  ),
  DELETE_SNAPSHOT: spec('DELETE_SNAPSHOT_REQ', 'original', 'write', [req(Key.SNAP_NAME)], DELETED_REPLY),
  CREATE_VOLUME_FROM_SNAPSHOT: spec(
    'CREATE_VOLUME_FROM_SNAPSHOT_REQ',
    'original',
    'write',
    [
      req(Key.VOL_NAME),
      req(Key.VOL_SIZE),
      req(Key.SNAP_NAME_SRC),
      req(Key.VOL_NUM),
      opt(Key.CLONE_TYPE),
      ...PLACEMENT_QOS_KEYS,
    ],
    only('volume'),
  ),
  QUERY_VOLUME: spec('QUERY_VOLUME_REQ', 'original', 'read', [req(Key.VOL_NAME)], only('volume')),
  QUERY_SNAPSHOT: spec('QUERY_SNAPSHOT_REQ', 'original', 'read', [req(Key.SNAP_NAME)], only('snapshot')),
  QUERY_POOLS_CAPABILITY: spec(
    'QUERY_POOLS_CAPABILITY_REQ',
    'original',
    'read',
    [req(Key.POOL_NUM), opt(Key.POOL_ID, 'original', true)],
    only('pool'),
  ),
} as const satisfies Record<string, RequestSpec>;
