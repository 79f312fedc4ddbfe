// The record kinds of VBS replies and the fields each carries, with their parsers and levels.
import { Key, type ProtocolLevel } from './keys.js';

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
