// Every statement the store runs, prepared once when it opens.
import { VOLUME_COLUMNS } from './store-rows.js';
import type { SqliteDatabase } from './sqlite.js';
import type * as Row from './store-rows.js';

export function prepareStatements(db: SqliteDatabase) {
  return {
    // Raw rows made into object literals (volumeRowOf): every request reads a volume row or two.
    volumeByName: db
      .prepare<[string], Row.VolumeTuple>(`SELECT ${VOLUME_COLUMNS} FROM volumes WHERE name = ?`)
      .raw(true),
    volumeById: db.prepare<[number], Row.VolumeTuple>(`SELECT ${VOLUME_COLUMNS} FROM volumes WHERE id = ?`).raw(true),
    // The id is above every id a snapshot still names: SQLite would reuse a deleted volume's id (max + 1),
    // and a new volume would then count the old one's surviving snapshots as its own (snap_num, deltas).
    insertVolume: db.prepare(`INSERT INTO volumes (id, name, pool, size_mb, thin, state, op, src_type, src_name,
      src_id, clone_type, max_iops, max_mbps, io_priority, io_class_id, cache_policy, create_time, job_id)
      VALUES (max(coalesce((SELECT max(id) FROM volumes), 0), coalesce((SELECT max(vol_id) FROM snapshots), 0)) + 1,
      @name, @pool, @size_mb, @thin, @state, @op, @src_type, @src_name, @src_id, @clone_type, @max_iops,
      @max_mbps, @io_priority, @io_class_id, @cache_policy, @create_time, @job_id)`),
    setVolumeState: db.prepare<[Row.VolumeState, number]>('UPDATE volumes SET state = ? WHERE id = ?'),
    setVolumeFault: db.prepare<[string, number]>(
      "UPDATE volumes SET state = 'fault', fault_reason = ?, target_size_mb = NULL WHERE id = ?",
    ),
    beginExtend: db.prepare<[number, number], { pool: string; size_mb: number }>(
      "UPDATE volumes SET state = 'extending', target_size_mb = ? WHERE id = ? RETURNING pool, size_mb",
    ),
    finishExtend: db.prepare<[number]>(
      "UPDATE volumes SET state = 'available', size_mb = target_size_mb, target_size_mb = NULL WHERE id = ?",
    ),
    abortExtend: db.prepare<[number]>("UPDATE volumes SET state = 'available', target_size_mb = NULL WHERE id = ?"),
    setQos: db.prepare(
      'UPDATE volumes SET max_iops = @max_iops, max_mbps = @max_mbps, io_priority = @io_priority, cache_policy = @cache_policy WHERE id = @id',
    ),
    deleteVolume: db.prepare<[number], { pool: string; size_mb: number; target_size_mb: number | null }>(
      'DELETE FROM volumes WHERE id = ? RETURNING pool, size_mb, target_size_mb',
    ),
    deleteMappingsOf: db.prepare<[number]>('DELETE FROM mappings WHERE vol_id = ?'),
    listVolumes: db
      .prepare<[string, number], Row.VolumeTuple>(
        `SELECT ${VOLUME_COLUMNS} FROM volumes WHERE name > ? ORDER BY name LIMIT ?`,
      )
      .raw(true),
    listVolumesInPool: db
      .prepare<[string, string, number], Row.VolumeTuple>(
        `SELECT ${VOLUME_COLUMNS} FROM volumes WHERE pool = ? AND name > ? ORDER BY name LIMIT ?`,
      )
      .raw(true),
    // Start-up reconcile reads every row: only the columns it needs, a page at a time (keyset by id), so
    // 100,000 volumes are never all in memory and rows may change between pages.
    volumesToReconcile: db
      .prepare<[number, number], Row.VolumeToReconcileTuple>(
        'SELECT id, name, pool, state, op, size_mb, target_size_mb, thin FROM volumes WHERE id > ? ORDER BY id LIMIT ?',
      )
      .raw(true),
    volumeNames: db.prepare<[], [string, string]>('SELECT pool, name FROM volumes').raw(true),
    linkedDependents: db.prepare<[number], { n: number }>(
      "SELECT count(*) AS n FROM volumes WHERE src_id = ? AND src_type = 'snapshot' AND clone_type = 'linked'",
    ),

    snapshotByName: db.prepare<[string], Row.SnapshotRow>('SELECT * FROM snapshots WHERE name = ?'),
    insertSnapshot:
      db.prepare(`INSERT INTO snapshots (name, vol_id, vol_name, pool, size_mb, state, group_name, create_time)
      VALUES (@name, @vol_id, @vol_name, @pool, @size_mb, @state, @group_name, @create_time)`),
    setSnapshotState: db.prepare<[Row.SnapshotState, number]>('UPDATE snapshots SET state = ? WHERE id = ?'),
    setSnapshotFault: db.prepare<[string, number]>(
      "UPDATE snapshots SET state = 'fault', fault_reason = ? WHERE id = ?",
    ),
    deleteSnapshot: db.prepare<[number]>('DELETE FROM snapshots WHERE id = ?'),
    snapshotCount: db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM snapshots WHERE vol_id = ?'),
    listSnapshots: db.prepare<[string, number], Row.SnapshotRow>(
      'SELECT * FROM snapshots WHERE name > ? ORDER BY name LIMIT ?',
    ),
    listSnapshotsOfVolume: db.prepare<[string, string, number], Row.SnapshotRow>(
      'SELECT * FROM snapshots WHERE vol_name = ? AND name > ? ORDER BY name LIMIT ?',
    ),
    snapshotsToReconcile: db.prepare<[number, number], Row.SnapshotRow>(
      'SELECT * FROM snapshots WHERE id > ? ORDER BY id LIMIT ?',
    ),
    snapshotNames: db.prepare<[], [string, string]>('SELECT pool, name FROM snapshots').raw(true),

    mappingsOf: db.prepare<[number], Row.MappingRow>('SELECT * FROM mappings WHERE vol_id = ? ORDER BY host_id'),
    // A listing page's relations in one query each (the ids as a JSON array), not one query per row.
    mappingsOfIds: db.prepare<[string], Row.MappingRow>(
      'SELECT * FROM mappings WHERE vol_id IN (SELECT value FROM json_each(?)) ORDER BY vol_id, host_id',
    ),
    snapshotCountsOfIds: db.prepare<[string], { vol_id: number; n: number }>(
      'SELECT vol_id, count(*) AS n FROM snapshots WHERE vol_id IN (SELECT value FROM json_each(?)) GROUP BY vol_id',
    ),
    upsertMapping: db.prepare<[number, string, string]>(
      'INSERT INTO mappings (vol_id, host_id, access_mode) VALUES (?, ?, ?) ON CONFLICT (vol_id, host_id) DO UPDATE SET access_mode = excluded.access_mode',
    ),
    deleteMapping: db.prepare<[number, string]>('DELETE FROM mappings WHERE vol_id = ? AND host_id = ?'),

    attachmentsOf: db.prepare<[number], Row.AttachmentRow>(
      'SELECT * FROM attachments WHERE vol_id = ? ORDER BY attached_at, host_id',
    ),
    attachmentOn: db.prepare<[number, string], Row.AttachmentRow>(
      'SELECT * FROM attachments WHERE vol_id = ? AND host_id = ?',
    ),
    allAttachments: db.prepare<[], Row.AttachmentRow>('SELECT * FROM attachments'),
    upsertAttachment:
      db.prepare(`INSERT INTO attachments (vol_id, host_id, state, device, dev_major, dev_minor, read_only, attached_at)
      VALUES (@vol_id, @host_id, @state, @device, @dev_major, @dev_minor, @read_only, @attached_at)
      ON CONFLICT (vol_id, host_id) DO UPDATE SET state = excluded.state, device = excluded.device,
      dev_major = excluded.dev_major, dev_minor = excluded.dev_minor, read_only = excluded.read_only, attached_at = excluded.attached_at`),
    setAttachmentState: db.prepare<[Row.AttachState, number, string]>(
      'UPDATE attachments SET state = ? WHERE vol_id = ? AND host_id = ?',
    ),
    deleteAttachment: db.prepare<[number, string]>('DELETE FROM attachments WHERE vol_id = ? AND host_id = ?'),
    deleteAttachmentsOf: db.prepare<[number]>('DELETE FROM attachments WHERE vol_id = ?'),

    hosts: db.prepare<[], { host_id: string; local: number }>('SELECT * FROM hosts ORDER BY local DESC, host_id'),
    poolRow: db.prepare<[string], Row.PoolRow>('SELECT * FROM pools WHERE name = ?'),
    insertPool: db.prepare(
      'INSERT INTO pools (name, pool_type, lun_path, size_bytes, created_at) VALUES (@name, @pool_type, @lun_path, @size_bytes, @created_at)',
    ),
    updatePoolSize: db.prepare<[number, string]>('UPDATE pools SET size_bytes = ? WHERE name = ?'),
    poolHasObjects: db.prepare<[string, string], { n: number }>(
      'SELECT (SELECT count(*) FROM volumes WHERE pool = ?) + (SELECT count(*) FROM snapshots WHERE pool = ?) AS n',
    ),

    insertJob:
      db.prepare(`INSERT INTO jobs (job_id, job_type, status, vol_name, snap_name, vol_id, pool, image, image_format,
      bytes_done, bytes_total, error, tmp_paths, started_at, ended_at) VALUES (@job_id, @job_type, @status, @vol_name,
      @snap_name, @vol_id, @pool, @image, @image_format, @bytes_done, @bytes_total, @error, @tmp_paths, @started_at, @ended_at)`),
    jobById: db.prepare<[string], Row.JobRow>('SELECT * FROM jobs WHERE job_id = ?'),
    runningJobs: db.prepare<[], Row.JobRow>("SELECT * FROM jobs WHERE status = 'running'"),
    finishJob: db.prepare(
      'UPDATE jobs SET status = @status, error = @error, error_code = @error_code, bytes_done = @bytes_done, bytes_total = @bytes_total, ended_at = @ended_at WHERE job_id = @job_id',
    ),
    setJobTmp: db.prepare<[string, string]>('UPDATE jobs SET tmp_paths = ? WHERE job_id = ?'),
    setJobProgress: db.prepare<[number, number, string]>(
      'UPDATE jobs SET bytes_done = ?, bytes_total = ? WHERE job_id = ?',
    ),
    purgeJobs: db.prepare<[number]>("DELETE FROM jobs WHERE status != 'running' AND ended_at < ?"),

    groupByName: db.prepare<[string], Row.GroupRow>('SELECT * FROM group_snapshots WHERE name = ?'),
    allGroups: db.prepare<[], Row.GroupRow>('SELECT * FROM group_snapshots ORDER BY id'),
    insertGroup: db.prepare(`INSERT INTO group_snapshots (name, pool, state, vol_names, quiesce, create_time)
      VALUES (@name, @pool, @state, @vol_names, @quiesce, @create_time)`),
    setGroupState: db.prepare<[Row.GroupState, number]>('UPDATE group_snapshots SET state = ? WHERE id = ?'),
    setGroupFrozen: db.prepare<[string, number]>('UPDATE group_snapshots SET frozen = ? WHERE id = ?'),
    setGroupFrozenNum: db.prepare<[number, number]>('UPDATE group_snapshots SET frozen_num = ? WHERE id = ?'),
    deleteGroup: db.prepare<[number]>('DELETE FROM group_snapshots WHERE id = ?'),
    groupMembers: db.prepare<[string], Row.SnapshotRow>(
      "SELECT * FROM snapshots WHERE group_name = ? AND group_name != '' ORDER BY vol_name, name",
    ),
    releaseMembers: db.prepare<[string]>("UPDATE snapshots SET group_name = '' WHERE group_name = ?"),
  };
}

export type Statements = ReturnType<typeof prepareStatements>;
