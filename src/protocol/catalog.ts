// The typed catalog of the VBS socket API (docs/socket-api.md): every request type, the keys it takes, the
// records and fields of its reply, whether it may be resent after it left, whether it changes state, and the
// protocol level that introduced it. Pure data and pure helpers, no I/O: shared by the driver's client
// (src/sds) and the emulator's handlers, so no request type, key or retry list is spelled anywhere else.

/** `original`: the nine requests of the 2014 product, as the Cinder driver spoke them. `extended`: ours. */
export type ProtocolLevel = 'original' | 'extended';
export const PROTOCOL_LEVELS: readonly ProtocolLevel[] = ['original', 'extended'];

// ---- keys ----

/** Every key of a request or reply, as spelled on the wire (the product's typos included). */
export const Key = {
  // keys any request may carry (extended)
  AUTH_TOKEN: 'auth_token',
  REQUEST_ID: 'request_id',
  // reply keys
  RETCODE: 'retcode',
  RET_DESC: 'ret_desc',
  DELETED: 'deleted',
  // names and sizes
  VOL_NAME: 'vol_name',
  VOL_SIZE: 'vol_size',
  POOL_ID: 'pool_id',
  POOL_NUM: 'pool_num',
  THIN_FLAG: 'thin_flag',
  SNAP_NAME: 'snap_name',
  SNAP_NAME_SRC: 'snap_name_src',
  SMARTFLAG: 'smartflag',
  VOL_NUM: 'vol_num',
  SNAP_NUM: 'snap_num',
  // the rest of the original CREATE_VOLUME_REQ keys
  RESERVED: 'reserved',
  VOLUME_SPACE_RESERVED: 'volume_space_reserved',
  FORCE_PROVISION_SIZE: 'force_provision_size',
  IOPS: 'iops',
  MAX_IOPS: 'max_iops',
  MIN_IOPS: 'min_iops',
  CACHE_SIZE: 'cache_size',
  REPLICATE_NUM: 'repicate_num',
  REPLICATE_TOLERANT_NUM: 'repicate_tolerant_num',
  ENCRYPT_ALGORITHM: 'encrypt_algorithm',
  CONSISTENCY: 'consistency',
  STOR_SPACE_LEVEL: 'stor_space_level',
  COMPRESS_ALGORITHM: 'compress_algorithm',
  DEDUPLICATION: 'deduplication',
  SNAPSHOT: 'snapshot',
  BACKUP_CYCLE: 'backup_cycle',
  TOLERANCE_DISK_FAILURE: 'tolerance_disk_failure',
  TOLERANCE_CACHE_FAILURE: 'tolerance_cache_failure',
  IO_CLASS_ID: 'IOClASSID',
  IO_PRIORITY: 'IOPRIORITY',
  // extensions of the create keys
  MAX_MBPS: 'max_mbps',
  CACHE_POLICY: 'cache_policy',
  CLONE_TYPE: 'clone_type',
  SRC_VOL_NAME: 'src_vol_name',
  // lists
  MARKER: 'marker',
  LIMIT: 'limit',
  NEXT_MARKER: 'next_marker',
  // mapping
  HOST_ID: 'host_id',
  HOST_NUM: 'host_num',
  ACCESS_MODE: 'access_mode',
  EXCLUSIVE: 'exclusive',
  FORCE: 'force',
  ONLINE: 'online',
  // images
  IMAGE_URL: 'image_url',
  IMAGE_FORMAT: 'image_format',
  IMAGE_PATH: 'image_path',
  CHECKSUM: 'checksum',
  OVERWRITE: 'overwrite',
  JOB_ID: 'job_id',
  // groups
  GROUP_NAME: 'group_name',
  QUIESCE: 'quiesce',
  FREEZE_TIMEOUT_MS: 'freeze_timeout_ms',
  // extents
  BASE_SNAP_NAME: 'base_snap_name',
  OFFSET: 'offset',
  SIZE_BYTES: 'size_bytes',
  BLOCK_SIZE: 'block_size',
  EXTENT_NUM: 'extent_num',
  NEXT_OFFSET: 'next_offset',
  METHOD: 'method',
  // capability reply
  PRODUCT: 'product',
  VERSION: 'version',
  API_VERSION: 'api_version',
  CAPABILITY: 'capability',
  IMAGE_DIR: 'image_dir',
  MAX_REQUEST_BYTES: 'max_request_bytes',
  MAX_REPLY_BYTES: 'max_reply_bytes',
  MAX_LIST_LIMIT: 'max_list_limit',
} as const;
export type KeyName = (typeof Key)[keyof typeof Key];

/** Keys any extended request may carry; a VBS of the original level does not know them. */
export const COMMON_EXTENSION_KEYS: readonly KeyName[] = [Key.AUTH_TOKEN, Key.REQUEST_ID];

// ---- record fields ----

/** How a field's value is written: the parser a reader applies to it. */
export type FieldType =
  | 'name' // a non-empty name
  | 'string' // any text (may be empty)
  | 'int' // a whole number, plain decimal digits
  | 'mib' // a size in MiB
  | 'gib' // a size in GiB (the original pool fields)
  | 'bytes' // a size or offset in bytes
  | 'decimal' // a non-negative decimal such as 4.0
  | 'flag' // 0 or 1
  | 'enum' // one word of `values`
  | 'list' // `:`-joined names
  | 'seconds'; // Unix seconds

export interface FieldSpec {
  readonly type: FieldType;
  /** the level whose records carry it: an `original` record may hold only the original fields */
  readonly level: ProtocolLevel;
  readonly values?: readonly string[];
}

const o = (type: FieldType, values?: readonly string[]): FieldSpec =>
  values ? { type, level: 'original', values } : { type, level: 'original' };
const x = (type: FieldType, values?: readonly string[]): FieldSpec =>
  values ? { type, level: 'extended', values } : { type, level: 'extended' };

/** Record prefixes (`volume0=[...]`). */
export const RecordPrefix = {
  VOLUME: 'volume',
  SNAPSHOT: 'snapshot',
  POOL: 'pool',
  HOST: 'host',
  JOB: 'job',
  GROUP: 'group',
  EXTENT: 'extent',
} as const;
export type RecordPrefixName = (typeof RecordPrefix)[keyof typeof RecordPrefix];

/** Record field keys that are not request keys. */
export const Field = {
  STATUS: 'status',
  ALLOC_SIZE: 'alloc_size',
  CREATE_TIME: 'create_time',
  SRC_TYPE: 'src_type',
  SRC_NAME: 'src_name',
  MAPPED_HOSTS: 'mapped_hosts',
  HEALTH: 'health',
  FAULT_REASON: 'fault_reason',
  DEPENDENTS: 'dependents',
  STOR_ID: 'stor_id',
  TOTAL_CAPACITY: 'total_capacity',
  USABLE_CAPACITY: 'usable_capacity',
  RAID_LEVEL: 'raid_level',
  TOTAL_CAPACITY_MB: 'total_capacity_mb',
  USABLE_CAPACITY_MB: 'usable_capacity_mb',
  PROVISIONED_MB: 'provisioned_mb',
  ALLOCATED_MB: 'allocated_mb',
  MAX_OVERSUBSCRIPTION: 'max_oversubscription',
  THIN_CAPACITY_MB: 'thin_capacity_mb',
  THICK_CAPACITY_MB: 'thick_capacity_mb',
  LINKED_CLONE: 'linked_clone',
  POOL_TYPE: 'pool_type',
  HOSTS: 'hosts',
  ATTACHED: 'attached',
  DEV_ADDR: 'dev_addr',
  JOB_TYPE: 'job_type',
  BYTES_DONE: 'bytes_done',
  BYTES_TOTAL: 'bytes_total',
  ERROR: 'error',
  /** the retcode a failed image job would have answered (NO_SPACE: the pool filled up) */
  ERROR_CODE: 'error_code',
  VOL_NAMES: 'vol_names',
  FROZEN_NUM: 'frozen_num',
  LOCAL: 'local',
  /** 0 when the host was marked down (emulator: SET_HOST_STATE_REQ); absent: up */
  ONLINE: 'online',
  LENGTH: 'length',
} as const;

export type RecordSchema = Readonly<Record<string, FieldSpec>>;

/** The fields each record kind may carry, with their parsers and the level that has them. */
export const RECORDS = {
  volume: {
    [Field.STATUS]: o('int'),
    [Key.VOL_NAME]: x('name'),
    [Key.VOL_SIZE]: x('mib'),
    [Key.POOL_ID]: x('string'),
    [Key.THIN_FLAG]: x('flag'),
    [Field.ALLOC_SIZE]: x('mib'),
    [Field.CREATE_TIME]: x('seconds'),
    [Field.SRC_TYPE]: x('enum', ['none', 'snapshot', 'volume', 'image']),
    [Field.SRC_NAME]: x('string'),
    [Key.CLONE_TYPE]: x('enum', ['', 'linked', 'full']),
    [Key.MAX_IOPS]: x('int'),
    [Key.MAX_MBPS]: x('int'),
    [Key.IO_PRIORITY]: x('int'),
    [Key.IO_CLASS_ID]: x('string'),
    [Key.CACHE_POLICY]: x('enum', ['none', 'read', 'readwrite']),
    [Field.MAPPED_HOSTS]: x('list'),
    [Field.HEALTH]: x('enum', ['ok', 'fault']),
    [Field.FAULT_REASON]: x('string'),
    [Key.SNAP_NUM]: x('int'),
    [Key.JOB_ID]: x('string'),
  },
  snapshot: {
    [Field.STATUS]: o('int'),
    [Key.SNAP_NAME]: x('name'),
    [Key.VOL_NAME]: x('string'),
    [Key.VOL_SIZE]: x('mib'),
    [Key.POOL_ID]: x('string'),
    [Field.ALLOC_SIZE]: x('mib'),
    [Field.CREATE_TIME]: x('seconds'),
    [Field.DEPENDENTS]: x('int'),
    [Key.GROUP_NAME]: x('string'),
  },
  pool: {
    [Field.STOR_ID]: o('name'),
    [Field.TOTAL_CAPACITY]: o('gib'),
    [Field.USABLE_CAPACITY]: o('gib'),
    [Field.RAID_LEVEL]: o('int'),
    [Key.IOPS]: o('int'),
    [Field.TOTAL_CAPACITY_MB]: x('mib'),
    [Field.USABLE_CAPACITY_MB]: x('mib'),
    [Field.PROVISIONED_MB]: x('mib'),
    [Field.ALLOCATED_MB]: x('mib'),
    [Field.MAX_OVERSUBSCRIPTION]: x('decimal'),
    [Field.THIN_CAPACITY_MB]: x('mib'),
    [Field.THICK_CAPACITY_MB]: x('mib'),
    [Field.LINKED_CLONE]: x('flag'),
    [Field.POOL_TYPE]: x('string'),
    [Field.HOSTS]: x('list'),
    [Field.HEALTH]: x('enum', ['ok', 'fault']),
  },
  host: {
    [Key.HOST_ID]: x('name'),
    [Key.ACCESS_MODE]: x('enum', ['rw', 'ro']),
    [Field.ATTACHED]: x('flag'),
    [Field.DEV_ADDR]: x('string'),
    [Field.LOCAL]: x('flag'),
    [Field.ONLINE]: x('flag'),
  },
  job: {
    [Key.JOB_ID]: x('name'),
    [Field.JOB_TYPE]: x('enum', ['import', 'export']),
    [Field.STATUS]: x('enum', ['running', 'done', 'failed']),
    [Key.VOL_NAME]: x('string'),
    [Key.SNAP_NAME]: x('string'),
    [Field.BYTES_DONE]: x('int'),
    [Field.BYTES_TOTAL]: x('int'),
    [Field.ERROR]: x('string'),
    [Field.ERROR_CODE]: x('int'),
  },
  group: {
    [Field.STATUS]: x('int'),
    [Key.GROUP_NAME]: x('name'),
    [Key.POOL_ID]: x('string'),
    [Field.CREATE_TIME]: x('seconds'),
    [Key.SNAP_NUM]: x('int'),
    [Field.VOL_NAMES]: x('list'),
    [Key.QUIESCE]: x('enum', ['freeze', 'flush']),
    [Field.FROZEN_NUM]: x('int'),
    [Field.HEALTH]: x('enum', ['ok', 'fault']),
    [Field.FAULT_REASON]: x('string'),
  },
  extent: {
    [Key.OFFSET]: x('bytes'),
    [Field.LENGTH]: x('bytes'),
  },
} as const satisfies Record<RecordPrefixName, RecordSchema>;

/** The fields of a record kind that a VBS of `level` sends (on `original`: volume/snapshot `status` only). */
export function recordFields(prefix: RecordPrefixName, level: ProtocolLevel): string[] {
  const schema: RecordSchema = RECORDS[prefix];
  return Object.keys(schema).filter((k) => level === 'extended' || schema[k]!.level === 'original');
}

// ---- requests ----

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

const req = (key: KeyName, level: ProtocolLevel = 'original', repeated = false): KeySpec =>
  repeated ? { key, required: true, level, repeated } : { key, required: true, level };
const opt = (key: KeyName, level: ProtocolLevel = 'extended', repeated = false): KeySpec =>
  repeated ? { key, required: false, level, repeated } : { key, required: false, level };

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
/** The placement, QoS and cache keys a clone or import also takes (extended). */
const PLACEMENT_QOS_KEYS: readonly KeySpec[] = [
  opt(Key.POOL_ID),
  opt(Key.THIN_FLAG),
  opt(Key.MAX_IOPS),
  opt(Key.MAX_MBPS),
  opt(Key.IO_PRIORITY),
  opt(Key.IO_CLASS_ID),
  opt(Key.CACHE_POLICY),
];
const PAGE_KEYS: readonly KeySpec[] = [opt(Key.MARKER), opt(Key.LIMIT)];
const EXTENT_PAGE_KEYS: readonly KeySpec[] = [opt(Key.OFFSET), opt(Key.LIMIT)];
const EXTENT_REPLY: ReplySpec = {
  records: ['extent'],
  keys: [Key.SIZE_BYTES, Key.BLOCK_SIZE, Key.EXTENT_NUM, Key.NEXT_OFFSET, Key.METHOD],
};
const nothing: ReplySpec = { records: [], keys: [] };
const only = (...records: RecordPrefixName[]): ReplySpec => ({ records, keys: [] });

function spec(
  type: string,
  level: ProtocolLevel,
  resendSafe: boolean,
  mutating: boolean,
  keys: readonly KeySpec[],
  reply: ReplySpec,
): RequestSpec {
  return { type, level, keys, reply, resendSafe, mutating };
}

/**
 * Every request type. `resendSafe`: see RequestSpec. Only the image jobs are unsafe: each repeat would start
 * a job, a repeat cannot tell ours from another's, and the first job's id is lost with the reply.
 */
export const Requests = {
  // the original nine
  CREATE_VOLUME: spec('CREATE_VOLUME_REQ', 'original', true, true, CREATE_KEYS, only('volume')),
  DELETE_VOLUME: spec('DELETE_VOLUME_REQ', 'original', true, true, [req(Key.VOL_NAME)], {
    records: [],
    keys: [Key.DELETED],
  }),
  EXTEND_VOLUME: spec(
    'EXTEND_VOLUME_REQ',
    'original',
    true,
    true,
    [req(Key.VOL_NAME), req(Key.VOL_SIZE)],
    only('volume'),
  ),
  CREATE_SNAPSHOT: spec(
    'CREATE_SNAPSHOT_REQ',
    'original',
    true,
    true,
    [req(Key.SNAP_NAME), req(Key.VOL_NAME), req(Key.SMARTFLAG)],
    only('snapshot'),
  ),
  DELETE_SNAPSHOT: spec('DELETE_SNAPSHOT_REQ', 'original', true, true, [req(Key.SNAP_NAME)], {
    records: [],
    keys: [Key.DELETED],
  }),
  CREATE_VOLUME_FROM_SNAPSHOT: spec(
    'CREATE_VOLUME_FROM_SNAPSHOT_REQ',
    'original',
    true,
    true,
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
  QUERY_VOLUME: spec('QUERY_VOLUME_REQ', 'original', true, false, [req(Key.VOL_NAME)], only('volume')),
  QUERY_SNAPSHOT: spec('QUERY_SNAPSHOT_REQ', 'original', true, false, [req(Key.SNAP_NAME)], only('snapshot')),
  QUERY_POOLS_CAPABILITY: spec(
    'QUERY_POOLS_CAPABILITY_REQ',
    'original',
    true,
    false,
    [req(Key.POOL_NUM), opt(Key.POOL_ID, 'original', true)],
    only('pool'),
  ),
  // ours
  QUERY_CAPABILITY: spec('QUERY_CAPABILITY_REQ', 'extended', true, false, [], {
    records: [],
    keys: [
      Key.PRODUCT,
      Key.VERSION,
      Key.API_VERSION,
      Key.HOST_ID,
      Key.CAPABILITY,
      Key.IMAGE_DIR,
      Key.MAX_REQUEST_BYTES,
      Key.MAX_REPLY_BYTES,
      Key.MAX_LIST_LIMIT,
    ],
  }),
  CLONE_VOLUME: spec(
    'CLONE_VOLUME_REQ',
    'extended',
    true,
    true,
    [
      req(Key.VOL_NAME, 'extended'),
      req(Key.VOL_SIZE, 'extended'),
      req(Key.SRC_VOL_NAME, 'extended'),
      opt(Key.CLONE_TYPE),
      ...PLACEMENT_QOS_KEYS,
    ],
    only('volume'),
  ),
  MODIFY_VOLUME: spec(
    'MODIFY_VOLUME_REQ',
    'extended',
    true,
    true,
    [req(Key.VOL_NAME, 'extended'), opt(Key.MAX_IOPS), opt(Key.MAX_MBPS), opt(Key.IO_PRIORITY), opt(Key.CACHE_POLICY)],
    only('volume'),
  ),
  LIST_VOLUMES: spec('LIST_VOLUMES_REQ', 'extended', true, false, [...PAGE_KEYS, opt(Key.POOL_ID)], {
    records: ['volume'],
    keys: [Key.VOL_NUM, Key.NEXT_MARKER],
  }),
  LIST_SNAPSHOTS: spec(
    'LIST_SNAPSHOTS_REQ',
    'extended',
    true,
    false,
    [...PAGE_KEYS, opt(Key.VOL_NAME), opt(Key.SNAP_NAME)],
    {
      records: ['snapshot'],
      keys: [Key.SNAP_NUM, Key.NEXT_MARKER],
    },
  ),
  MAP_VOLUME: spec(
    'MAP_VOLUME_REQ',
    'extended',
    true,
    true,
    [req(Key.VOL_NAME, 'extended'), req(Key.HOST_ID, 'extended'), opt(Key.ACCESS_MODE), opt(Key.EXCLUSIVE)],
    nothing,
  ),
  UNMAP_VOLUME: spec(
    'UNMAP_VOLUME_REQ',
    'extended',
    true,
    true,
    [req(Key.VOL_NAME, 'extended'), req(Key.HOST_ID, 'extended'), opt(Key.FORCE)],
    nothing,
  ),
  QUERY_VOLUME_HOSTS: spec('QUERY_VOLUME_HOSTS_REQ', 'extended', true, false, [req(Key.VOL_NAME, 'extended')], {
    records: ['host'],
    keys: [Key.HOST_NUM],
  }),
  QUERY_HOSTS: spec('QUERY_HOSTS_REQ', 'extended', true, false, [], { records: ['host'], keys: [Key.HOST_NUM] }),
  /** the emulator's stand-in for the cluster's heartbeats: a host marked down (online=0) or up (tests, drills) */
  SET_HOST_STATE: spec(
    'SET_HOST_STATE_REQ',
    'extended',
    true,
    true,
    [req(Key.HOST_ID, 'extended'), opt(Key.ONLINE)],
    nothing,
  ),
  IMPORT_IMAGE: spec(
    'IMPORT_IMAGE_REQ',
    'extended',
    false,
    true,
    [
      req(Key.VOL_NAME, 'extended'),
      req(Key.IMAGE_URL, 'extended'),
      opt(Key.IMAGE_FORMAT),
      opt(Key.CHECKSUM),
      opt(Key.VOL_SIZE),
      ...PLACEMENT_QOS_KEYS,
    ],
    { records: ['volume'], keys: [Key.JOB_ID] },
  ),
  EXPORT_IMAGE: spec(
    'EXPORT_IMAGE_REQ',
    'extended',
    false,
    true,
    [opt(Key.VOL_NAME), opt(Key.SNAP_NAME), req(Key.IMAGE_PATH, 'extended'), opt(Key.IMAGE_FORMAT), opt(Key.OVERWRITE)],
    { records: [], keys: [Key.JOB_ID] },
  ),
  QUERY_IMAGE_JOB: spec('QUERY_IMAGE_JOB_REQ', 'extended', true, false, [req(Key.JOB_ID, 'extended')], only('job')),
  CREATE_GROUP_SNAPSHOT: spec(
    'CREATE_GROUP_SNAPSHOT_REQ',
    'extended',
    true,
    true,
    [
      req(Key.GROUP_NAME, 'extended'),
      req(Key.VOL_NAME, 'extended', true),
      opt(Key.QUIESCE),
      opt(Key.FREEZE_TIMEOUT_MS),
    ],
    { records: ['group', 'snapshot'], keys: [Key.SNAP_NUM] },
  ),
  DELETE_GROUP_SNAPSHOT: spec('DELETE_GROUP_SNAPSHOT_REQ', 'extended', true, true, [req(Key.GROUP_NAME, 'extended')], {
    records: [],
    keys: [Key.DELETED],
  }),
  QUERY_GROUP_SNAPSHOT: spec('QUERY_GROUP_SNAPSHOT_REQ', 'extended', true, false, [req(Key.GROUP_NAME, 'extended')], {
    records: ['group', 'snapshot'],
    keys: [Key.SNAP_NUM],
  }),
  QUERY_SNAPSHOT_EXTENTS: spec(
    'QUERY_SNAPSHOT_EXTENTS_REQ',
    'extended',
    true,
    false,
    [req(Key.SNAP_NAME, 'extended'), ...EXTENT_PAGE_KEYS],
    EXTENT_REPLY,
  ),
  QUERY_SNAPSHOT_DELTA: spec(
    'QUERY_SNAPSHOT_DELTA_REQ',
    'extended',
    true,
    false,
    [req(Key.BASE_SNAP_NAME, 'extended'), req(Key.SNAP_NAME, 'extended'), ...EXTENT_PAGE_KEYS],
    EXTENT_REPLY,
  ),
} as const satisfies Record<string, RequestSpec>;

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
