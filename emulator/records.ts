// Records of the socket API (docs/socket-api.md §2.4), built from rows and the pool's file system.
import { Field as RecordField, Key } from '../src/protocol/catalog.js';
import { encodeRecord, SnapshotStatus, VolumeStatus, type Field } from '../src/protocol/vbs.js';
import { poolHostIds, type Ctx } from './context.js';
import { allocationOf, MiB } from './files.js';
import type { Pool } from './pools.js';
import type { GroupRow, JobRow, MappingRow, SnapshotRow, VolumeRow } from './store.js';

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

/**
 * A volume's or snapshot's allocated bytes and what is wrong with it ('' when nothing): its row's fault, its
 * pool's, or its file gone missing. `allocBytes` when the caller knows it, to spare a stat.
 */
function fileState(
  ctx: Ctx,
  row: VolumeRow | SnapshotRow,
  kind: 'volume' | 'snapshot',
  allocBytes?: number,
): { alloc: number; problem: string } {
  const pool = ctx.pools.get(row.pool);
  const path = (p: Pool) => (kind === 'volume' ? p.volumePath(row.name) : p.snapshotPath(row.name));
  const stat = allocBytes ?? (pool && pool.healthy && row.state !== 'creating' ? allocationOf(path(pool)) : 0);
  // A file gone behind our back is reported at once; the next start's reconcile records it in the row.
  const missing = stat === undefined && row.state !== 'deleting' ? `the ${kind} file is missing from the pool` : '';
  const problem = row.state === 'fault' ? row.fault_reason : poolProblem(ctx, row.pool) || missing;
  return { alloc: stat ?? 0, problem };
}

/** The health fields every record ends with. */
function health(problem: string): Record<string, string> {
  return { [RecordField.HEALTH]: problem ? 'fault' : 'ok', [RecordField.FAULT_REASON]: problem };
}

/** What a caller may already know of a volume, to spare a stat (a volume just created) or a query (a page). */
export interface KnownOfVolume {
  allocBytes?: number;
  mappings?: readonly MappingRow[];
  snapshotCount?: number;
}

export function volumeRecord(ctx: Ctx, row: VolumeRow, known: KnownOfVolume = {}): Record<string, string | number> {
  const mappings = known.mappings ?? ctx.store.mappings(row.id);
  const { alloc, problem } = fileState(ctx, row, 'volume', known.allocBytes);
  return {
    [RecordField.STATUS]:
      problem && row.state !== 'deleting' ? VolumeStatus.FAULT : volumeStatus(row, mappings.length > 0),
    [Key.VOL_NAME]: row.name,
    [Key.VOL_SIZE]: row.size_mb,
    [Key.POOL_ID]: row.pool,
    [Key.THIN_FLAG]: row.thin,
    [RecordField.ALLOC_SIZE]: Math.ceil(alloc / MiB),
    [RecordField.CREATE_TIME]: row.create_time,
    [RecordField.SRC_TYPE]: row.src_type,
    [RecordField.SRC_NAME]: row.src_name,
    [Key.CLONE_TYPE]: row.clone_type,
    [Key.MAX_IOPS]: row.max_iops,
    [Key.MAX_MBPS]: row.max_mbps,
    [Key.IO_PRIORITY]: row.io_priority,
    [Key.CACHE_POLICY]: row.cache_policy,
    [RecordField.MAPPED_HOSTS]: mappings.map((m) => m.host_id).join(':'),
    ...health(problem),
    [Key.SNAP_NUM]: known.snapshotCount ?? ctx.store.snapshotCount(row.id),
    [Key.IO_CLASS_ID]: row.io_class_id,
    [Key.JOB_ID]: row.job_id ?? '',
  };
}

export function snapshotRecord(ctx: Ctx, row: SnapshotRow): Record<string, string | number> {
  const dependents = ctx.store.linkedDependents(row.id);
  const { alloc, problem } = fileState(ctx, row, 'snapshot');
  let status: number;
  switch (row.state) {
    case 'creating':
      status = SnapshotStatus.CREATING;
      break;
    case 'deleting':
      status = SnapshotStatus.DELETING;
      break;
    case 'fault':
      status = SnapshotStatus.FAULT;
      break;
    default:
      status = problem ? SnapshotStatus.FAULT : dependents > 0 ? SnapshotStatus.IN_USE : SnapshotStatus.AVAILABLE;
  }
  return {
    [RecordField.STATUS]: status,
    [Key.SNAP_NAME]: row.name,
    [Key.VOL_NAME]: row.vol_name,
    [Key.VOL_SIZE]: row.size_mb,
    [Key.POOL_ID]: row.pool,
    [RecordField.ALLOC_SIZE]: Math.ceil(alloc / MiB),
    [RecordField.CREATE_TIME]: row.create_time,
    [RecordField.DEPENDENTS]: dependents,
    [Key.GROUP_NAME]: row.group_name,
    ...health(problem),
  };
}

/** A group snapshot; faulty when a member is (its record says why) or a member is missing. */
export function groupRecord(ctx: Ctx, row: GroupRow, members: SnapshotRow[]): Record<string, string | number> {
  const expected = row.vol_names === '' ? 0 : row.vol_names.split(':').length;
  let problem = row.state === 'deleting' ? '' : poolProblem(ctx, row.pool);
  if (!problem && row.state === 'available') {
    if (members.length !== expected)
      problem = `${expected - members.length} of ${expected} member snapshots are missing`;
    for (const m of members) {
      if (problem) break;
      const rec = snapshotRecord(ctx, m);
      if (rec[RecordField.HEALTH] !== 'ok') problem = `member ${m.name}: ${rec[RecordField.FAULT_REASON]}`;
    }
  }
  const status =
    row.state === 'creating'
      ? SnapshotStatus.CREATING
      : row.state === 'deleting'
        ? SnapshotStatus.DELETING
        : problem
          ? SnapshotStatus.FAULT
          : SnapshotStatus.AVAILABLE;
  return {
    [RecordField.STATUS]: status,
    [Key.GROUP_NAME]: row.name,
    [Key.POOL_ID]: row.pool,
    [RecordField.CREATE_TIME]: row.create_time,
    [Key.SNAP_NUM]: members.length,
    [RecordField.VOL_NAMES]: row.vol_names,
    [Key.QUIESCE]: row.quiesce,
    [RecordField.FROZEN_NUM]: row.frozen_num,
    ...health(problem),
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
    [RecordField.STOR_ID]: pool.name,
    [RecordField.TOTAL_CAPACITY]: Math.floor(total / GiB),
    [RecordField.USABLE_CAPACITY]: Math.floor(free / GiB),
    [RecordField.RAID_LEVEL]: 0,
    [Key.IOPS]: 0,
    [RecordField.TOTAL_CAPACITY_MB]: totalMb,
    [RecordField.USABLE_CAPACITY_MB]: freeMb,
    [RecordField.PROVISIONED_MB]: provisionedMb,
    [RecordField.ALLOCATED_MB]: Math.ceil(used / MiB),
    [RecordField.MAX_OVERSUBSCRIPTION]: Number.isInteger(ratio) ? ratio.toFixed(1) : String(ratio),
    [RecordField.THIN_CAPACITY_MB]: thinCapacityMb,
    [RecordField.THICK_CAPACITY_MB]: Math.min(freeMb, thinCapacityMb),
    [RecordField.LINKED_CLONE]: pool.linkedClone ? 1 : 0,
    [RecordField.POOL_TYPE]: pool.kind,
    [RecordField.HOSTS]: poolHostIds(ctx, pool.name).join(':'),
    ...health(pool.healthy ? '' : pool.faultReason),
  };
}

export function jobRecord(
  row: JobRow,
  live?: { bytesDone: number; bytesTotal: number },
): Record<string, string | number> {
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

/** The records of a page of volumes: their mappings and snapshot counts read once for the page. */
export function volumePageRecords(ctx: Ctx, rows: readonly VolumeRow[]): Record<string, string | number>[] {
  const { mappings, snapshotCounts } = ctx.store.relationsOf(rows.map((r) => r.id));
  return rows.map((row) =>
    volumeRecord(ctx, row, { mappings: mappings.get(row.id) ?? [], snapshotCount: snapshotCounts.get(row.id) ?? 0 }),
  );
}

export const field = (key: string, record: Record<string, string | number>): Field => [key, encodeRecord(record)];
