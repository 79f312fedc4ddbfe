// The requests of the extended level: ours, on top of the original nine.
import { Key, type KeyName } from './keys.js';
import {
  DELETED_REPLY,
  EXTENT_PAGE_KEYS,
  EXTENT_REPLY,
  nothing,
  only,
  opt,
  PAGE_KEYS,
  PLACEMENT_QOS_KEYS,
  req,
  spec,
  type Effect,
  type KeySpec,
  type ReplySpec,
  type RequestSpec,
} from './spec.js';

/** A request of ours: every one is of the extended level, and so is every key it requires. */
const extended = (type: string, effect: Effect, keys: readonly KeySpec[], reply: ReplySpec): RequestSpec =>
  spec(type, 'extended', effect, keys, reply);
const need = (key: KeyName, repeated = false): KeySpec => req(key, 'extended', repeated);

/** A group snapshot's reply: the group record and its members' snapshot records. */
const GROUP_REPLY: ReplySpec = { records: ['group', 'snapshot'], keys: [Key.SNAP_NUM] };

/** Ours. `resendSafe`: see RequestSpec. */
export const EXTENDED_REQUESTS = {
  QUERY_CAPABILITY: extended('QUERY_CAPABILITY_REQ', 'read', [], {
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
  CLONE_VOLUME: extended(
    'CLONE_VOLUME_REQ',
    'write',
    [need(Key.VOL_NAME), need(Key.VOL_SIZE), need(Key.SRC_VOL_NAME), opt(Key.CLONE_TYPE), ...PLACEMENT_QOS_KEYS],
    only('volume'),
  ),
  MODIFY_VOLUME: extended(
    'MODIFY_VOLUME_REQ',
    'write',
    [need(Key.VOL_NAME), opt(Key.MAX_IOPS), opt(Key.MAX_MBPS), opt(Key.IO_PRIORITY), opt(Key.CACHE_POLICY)],
    only('volume'),
  ),
  LIST_VOLUMES: extended('LIST_VOLUMES_REQ', 'read', [...PAGE_KEYS, opt(Key.POOL_ID)], {
    records: ['volume'],
    keys: [Key.VOL_NUM, Key.NEXT_MARKER],
  }),
  LIST_SNAPSHOTS: extended('LIST_SNAPSHOTS_REQ', 'read', [...PAGE_KEYS, opt(Key.VOL_NAME), opt(Key.SNAP_NAME)], {
    records: ['snapshot'],
    keys: [Key.SNAP_NUM, Key.NEXT_MARKER],
  }),
  MAP_VOLUME: extended(
    'MAP_VOLUME_REQ',
    'write',
    [need(Key.VOL_NAME), need(Key.HOST_ID), opt(Key.ACCESS_MODE), opt(Key.EXCLUSIVE)],
    nothing,
  ),
  UNMAP_VOLUME: extended('UNMAP_VOLUME_REQ', 'write', [need(Key.VOL_NAME), need(Key.HOST_ID), opt(Key.FORCE)], nothing),
  QUERY_VOLUME_HOSTS: extended('QUERY_VOLUME_HOSTS_REQ', 'read', [need(Key.VOL_NAME)], {
    records: ['host'],
    keys: [Key.HOST_NUM],
  }),
  QUERY_HOSTS: extended('QUERY_HOSTS_REQ', 'read', [], { records: ['host'], keys: [Key.HOST_NUM] }),
  /** the emulator's stand-in for the cluster's heartbeats: a host marked down (online=0) or up (tests, drills) */
  SET_HOST_STATE: extended('SET_HOST_STATE_REQ', 'write', [need(Key.HOST_ID), opt(Key.ONLINE)], nothing),
  IMPORT_IMAGE: extended(
    'IMPORT_IMAGE_REQ',
    'job',
    [
      need(Key.VOL_NAME),
      need(Key.IMAGE_URL),
      opt(Key.IMAGE_FORMAT),
      opt(Key.CHECKSUM),
      opt(Key.VOL_SIZE),
      ...PLACEMENT_QOS_KEYS,
    ],
    { records: ['volume'], keys: [Key.JOB_ID] },
  ),
  EXPORT_IMAGE: extended(
    'EXPORT_IMAGE_REQ',
    'job',
    [opt(Key.VOL_NAME), opt(Key.SNAP_NAME), need(Key.IMAGE_PATH), opt(Key.IMAGE_FORMAT), opt(Key.OVERWRITE)],
    { records: [], keys: [Key.JOB_ID] },
  ),
  QUERY_IMAGE_JOB: extended('QUERY_IMAGE_JOB_REQ', 'read', [need(Key.JOB_ID)], only('job')),
  CREATE_GROUP_SNAPSHOT: extended(
    'CREATE_GROUP_SNAPSHOT_REQ',
    'write',
    [need(Key.GROUP_NAME), need(Key.VOL_NAME, true), opt(Key.QUIESCE), opt(Key.FREEZE_TIMEOUT_MS)],
    GROUP_REPLY,
  ),
  DELETE_GROUP_SNAPSHOT: extended('DELETE_GROUP_SNAPSHOT_REQ', 'write', [need(Key.GROUP_NAME)], DELETED_REPLY),
  QUERY_GROUP_SNAPSHOT: extended('QUERY_GROUP_SNAPSHOT_REQ', 'read', [need(Key.GROUP_NAME)], {
    records: ['group', 'snapshot'],
    keys: [Key.SNAP_NUM],
  }),
  QUERY_SNAPSHOT_EXTENTS: extended(
    'QUERY_SNAPSHOT_EXTENTS_REQ',
    'read',
    [need(Key.SNAP_NAME), ...EXTENT_PAGE_KEYS],
    EXTENT_REPLY,
  ),
  QUERY_SNAPSHOT_DELTA: extended(
    'QUERY_SNAPSHOT_DELTA_REQ',
    'read',
    [need(Key.BASE_SNAP_NAME), need(Key.SNAP_NAME), ...EXTENT_PAGE_KEYS],
    EXTENT_REPLY,
  ),
} as const satisfies Record<string, RequestSpec>;
