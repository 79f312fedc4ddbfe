// The rows of the emulator's tables (emulator/store-schema.ts), as better-sqlite3 returns them.
export type VolumeState = 'creating' | 'available' | 'extending' | 'deleting' | 'fault';
export type SnapshotState = 'creating' | 'available' | 'deleting' | 'fault';
export type CreateOp = 'create' | 'clone' | 'import';

export interface VolumeRow {
  id: number;
  name: string;
  pool: string;
  size_mb: number;
  /** the size an extend is going to, recorded before the file grows */
  target_size_mb: number | null;
  thin: number;
  state: VolumeState;
  /** how the volume is being made while state is 'creating' */
  op: CreateOp;
  src_type: 'none' | 'snapshot' | 'volume' | 'image';
  src_name: string;
  src_id: number | null;
  clone_type: '' | 'linked' | 'full';
  max_iops: number;
  max_mbps: number;
  io_priority: number;
  io_class_id: string;
  cache_policy: 'none' | 'read' | 'readwrite';
  fault_reason: string;
  create_time: number;
  job_id: string | null;
}

/**
 * A volume row as an array in the order of VOLUME_COLUMNS. better-sqlite3 builds its row objects slowly; a
 * raw row turned into an object literal is ~3× faster on a listing page of 500 (docs/BENCHMARKS.md).
 */
export type VolumeTuple = [
  number,
  string,
  string,
  number,
  number | null,
  number,
  VolumeState,
  CreateOp,
  VolumeRow['src_type'],
  string,
  number | null,
  VolumeRow['clone_type'],
  number,
  number,
  number,
  string,
  VolumeRow['cache_policy'],
  string,
  number,
  string | null,
];

export const VOLUME_COLUMNS =
  'id, name, pool, size_mb, target_size_mb, thin, state, op, src_type, src_name, src_id, clone_type, ' +
  'max_iops, max_mbps, io_priority, io_class_id, cache_policy, fault_reason, create_time, job_id';

export function volumeRowOf(t: VolumeTuple): VolumeRow {
  return {
    id: t[0],
    name: t[1],
    pool: t[2],
    size_mb: t[3],
    target_size_mb: t[4],
    thin: t[5],
    state: t[6],
    op: t[7],
    src_type: t[8],
    src_name: t[9],
    src_id: t[10],
    clone_type: t[11],
    max_iops: t[12],
    max_mbps: t[13],
    io_priority: t[14],
    io_class_id: t[15],
    cache_policy: t[16],
    fault_reason: t[17],
    create_time: t[18],
    job_id: t[19],
  };
}

/** What start-up reconcile needs of a volume row. */
export type VolumeToReconcile = Pick<
  VolumeRow,
  'id' | 'name' | 'pool' | 'state' | 'op' | 'size_mb' | 'target_size_mb' | 'thin'
>;

/** VolumeToReconcile as a raw row (the same speed-up as VolumeTuple's). */
export type VolumeToReconcileTuple = [number, string, string, VolumeState, CreateOp, number, number | null, number];

export function volumeToReconcileOf(t: VolumeToReconcileTuple): VolumeToReconcile {
  return { id: t[0], name: t[1], pool: t[2], state: t[3], op: t[4], size_mb: t[5], target_size_mb: t[6], thin: t[7] };
}

export type NewVolume = Omit<VolumeRow, 'id' | 'target_size_mb' | 'fault_reason'>;

export interface SnapshotRow {
  id: number;
  name: string;
  vol_id: number;
  vol_name: string;
  pool: string;
  size_mb: number;
  state: SnapshotState;
  group_name: string;
  fault_reason: string;
  create_time: number;
}

export interface MappingRow {
  vol_id: number;
  host_id: string;
  access_mode: 'rw' | 'ro';
}

export type AttachState = 'attaching' | 'attached' | 'detaching';
export interface AttachmentRow {
  vol_id: number;
  host_id: string;
  state: AttachState;
  device: string;
  dev_major: number;
  dev_minor: number;
  read_only: number;
  attached_at: number;
}

export type JobStatus = 'running' | 'done' | 'failed';
export interface JobRow {
  job_id: string;
  job_type: 'import' | 'export';
  status: JobStatus;
  vol_name: string;
  snap_name: string;
  vol_id: number | null;
  pool: string;
  image: string;
  image_format: string;
  bytes_done: number;
  bytes_total: number;
  error: string;
  /** the socket-API result code of a failed job (NO_SPACE for a full pool); 0 otherwise */
  error_code: number;
  /** files this job may leave behind; removed when it fails or the emulator restarts */
  tmp_paths: string;
  started_at: number;
  ended_at: number | null;
}

export type GroupState = 'creating' | 'available' | 'deleting';
export type Quiesce = 'freeze' | 'flush';
export interface GroupRow {
  id: number;
  name: string;
  pool: string;
  state: GroupState;
  /** the member volumes, sorted, ':'-joined */
  vol_names: string;
  quiesce: Quiesce;
  /** JSON list of mount points frozen (or being frozen) for the cut, so a restart can thaw them */
  frozen: string;
  frozen_num: number;
  create_time: number;
}

export interface PoolRow {
  name: string;
  pool_type: string;
  lun_path: string;
  size_bytes: number;
  created_at: number;
}
