// Records of the socket API (docs/socket-api.md §2.4), built from rows and the pool's file system.
import { encodeRecord, SnapshotStatus, VolumeStatus, type Field } from '../src/protocol/vbs.js';
import type { Ctx } from './context.js';
import { allocationOf, MiB } from './files.js';
import type { Pool } from './pools.js';
import type { GroupRow, JobRow, SnapshotRow, VolumeRow } from './store.js';

const GiB = 1024 * MiB;

function volumeStatus(row: VolumeRow, mapped: boolean): number {
  switch (row.state) {
    case 'creating':
    case 'extending':
      return VolumeStatus.BUSY;
    case 'deleting':
      return VolumeStatus.DELETING;
    case 'fault':
      return VolumeStatus.FAULT;
    default:
      return mapped ? VolumeStatus.IN_USE : VolumeStatus.AVAILABLE;
  }
}

/** Why an object of this pool is unhealthy beyond its own row, '' when the pool is fine. */
function poolProblem(ctx: Ctx, poolName: string): string {
  const pool = ctx.pools.get(poolName);
  if (!pool) return `pool ${poolName} is not configured`;
  return pool.healthy ? '' : `pool ${poolName} is faulty: ${pool.faultReason}`;
}

/** `allocBytes` when the caller knows it (a volume just created), to spare a stat. */
export function volumeRecord(ctx: Ctx, row: VolumeRow, allocBytes?: number): Record<string, string | number> {
  const mappings = ctx.store.mappings(row.id);
  const pool = ctx.pools.get(row.pool);
  const stat = allocBytes ?? (pool && pool.healthy && row.state !== 'creating' ? allocationOf(pool.volumePath(row.name)) : 0);
  // A file gone behind our back is reported at once; the next start's reconcile records it in the row.
  const missing = stat === undefined && row.state !== 'deleting' ? 'the volume file is missing from the pool' : '';
  const problem = row.state === 'fault' ? row.fault_reason : poolProblem(ctx, row.pool) || missing;
  const alloc = stat ?? 0;
  return {
    status: problem && row.state !== 'deleting' ? VolumeStatus.FAULT : volumeStatus(row, mappings.length > 0),
    vol_name: row.name,
    vol_size: row.size_mb,
    pool_id: row.pool,
    thin_flag: row.thin,
    alloc_size: Math.ceil(alloc / MiB),
    create_time: row.create_time,
    src_type: row.src_type,
    src_name: row.src_name,
    clone_type: row.clone_type,
    max_iops: row.max_iops,
    max_mbps: row.max_mbps,
    IOPRIORITY: row.io_priority,
    cache_policy: row.cache_policy,
    mapped_hosts: mappings.map((m) => m.host_id).join(':'),
    health: problem ? 'fault' : 'ok',
    fault_reason: problem,
    snap_num: ctx.store.snapshotCount(row.id),
    IOClASSID: row.io_class_id,
    job_id: row.job_id ?? '',
  };
}

export function snapshotRecord(ctx: Ctx, row: SnapshotRow): Record<string, string | number> {
  const dependents = ctx.store.linkedDependents(row.id);
  const pool = ctx.pools.get(row.pool);
  const stat = pool && pool.healthy && row.state !== 'creating' ? allocationOf(pool.snapshotPath(row.name)) : 0;
  const missing = stat === undefined && row.state !== 'deleting' ? 'the snapshot file is missing from the pool' : '';
  const problem = row.state === 'fault' ? row.fault_reason : poolProblem(ctx, row.pool) || missing;
  let status: number;
  switch (row.state) {
    case 'creating': status = SnapshotStatus.CREATING; break;
    case 'deleting': status = SnapshotStatus.DELETING; break;
    case 'fault': status = SnapshotStatus.FAULT; break;
    default: status = problem ? SnapshotStatus.FAULT : dependents > 0 ? SnapshotStatus.IN_USE : SnapshotStatus.AVAILABLE;
  }
  const alloc = stat ?? 0;
  return {
    status,
    snap_name: row.name,
    vol_name: row.vol_name,
    vol_size: row.size_mb,
    pool_id: row.pool,
    alloc_size: Math.ceil(alloc / MiB),
    create_time: row.create_time,
    dependents,
    group_name: row.group_name,
    health: problem ? 'fault' : 'ok',
    fault_reason: problem,
  };
}

/** A group snapshot; faulty when a member is (its record says why) or a member is missing. */
export function groupRecord(ctx: Ctx, row: GroupRow, members: SnapshotRow[]): Record<string, string | number> {
  const expected = row.vol_names === '' ? 0 : row.vol_names.split(':').length;
  let problem = row.state === 'deleting' ? '' : poolProblem(ctx, row.pool);
  if (!problem && row.state === 'available') {
    if (members.length !== expected) problem = `${expected - members.length} of ${expected} member snapshots are missing`;
    for (const m of members) {
      if (problem) break;
      const rec = snapshotRecord(ctx, m);
      if (rec.health !== 'ok') problem = `member ${m.name}: ${rec.fault_reason}`;
    }
  }
  const status = row.state === 'creating' ? SnapshotStatus.CREATING : row.state === 'deleting' ? SnapshotStatus.DELETING
    : problem ? SnapshotStatus.FAULT : SnapshotStatus.AVAILABLE;
  return {
    status,
    group_name: row.name,
    pool_id: row.pool,
    create_time: row.create_time,
    snap_num: members.length,
    vol_names: row.vol_names,
    quiesce: row.quiesce,
    frozen_num: row.frozen_num,
    health: problem ? 'fault' : 'ok',
    fault_reason: problem,
  };
}

export function poolRecord(ctx: Ctx, pool: Pool): Record<string, string | number> {
  const provisionedMb = ctx.store.provisionedMb(pool.name);
  let total = 0;
  let free = 0;
  let used = 0;
  if (pool.healthy) {
    const s = pool.space();
    total = s.totalBytes;
    free = Math.max(0, s.freeBytes - (ctx.thickReserved.get(pool.name) ?? 0));
    used = s.usedBytes;
  }
  const totalMb = Math.floor(total / MiB);
  const freeMb = Math.floor(free / MiB);
  const ratio = ctx.config.maxOversubscription;
  const thinCapacityMb = Math.max(0, Math.floor(totalMb * ratio) - provisionedMb);
  return {
    stor_id: pool.name,
    total_capacity: Math.floor(total / GiB),
    usable_capacity: Math.floor(free / GiB),
    raid_level: 0,
    iops: 0,
    total_capacity_mb: totalMb,
    usable_capacity_mb: freeMb,
    provisioned_mb: provisionedMb,
    allocated_mb: Math.ceil(used / MiB),
    max_oversubscription: Number.isInteger(ratio) ? ratio.toFixed(1) : String(ratio),
    thin_capacity_mb: thinCapacityMb,
    thick_capacity_mb: Math.min(freeMb, thinCapacityMb),
    linked_clone: pool.linkedClone ? 1 : 0,
    pool_type: pool.kind,
    hosts: ctx.store.hosts().map((h) => h.host_id).join(':'),
    health: pool.healthy ? 'ok' : 'fault',
    fault_reason: pool.faultReason,
  };
}

export function jobRecord(row: JobRow, live?: { bytesDone: number; bytesTotal: number }): Record<string, string | number> {
  return {
    job_id: row.job_id,
    job_type: row.job_type,
    status: row.status,
    vol_name: row.vol_name,
    snap_name: row.snap_name,
    bytes_done: live?.bytesDone ?? row.bytes_done,
    bytes_total: live?.bytesTotal ?? row.bytes_total,
    error: row.error,
    // Only for a failed job: a driver tells a full pool (NO_SPACE) from a bad image by it.
    ...(row.status === 'failed' && row.error_code ? { error_code: row.error_code } : {}),
  };
}

export const field = (key: string, record: Record<string, string | number>): Field => [key, encodeRecord(record)];
