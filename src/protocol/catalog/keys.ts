// The VBS socket API's protocol levels and every key of a request or reply (docs/socket-api.md).

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
