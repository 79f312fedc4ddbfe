// The emulator's metadata in SQLite (better-sqlite3): pools, hosts, volumes, snapshots, mappings,
// attachments and image jobs. WAL + synchronous=NORMAL: a commit is one write() to the WAL, no fsync, and
// survives a process crash (kill -9) because it sits in the kernel's page cache. Every state change is one
// transaction; file work is ordered around the commits so that reconcile.ts can finish or roll back any
// half-done operation (see emulator/README.md).
import { openDatabase, type SqliteDatabase } from './sqlite.js';

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

// 2: group_snapshots (snapshots.group_name existed since 1). 3: attachments keyed by (volume, host), so a
// volume can be attached on several hosts at once (shared raw block for live migration).
const SCHEMA_VERSION = '3';

// Provisioned MiB per pool are counted in memory (see Store.usage), not by triggers: a trigger adds a page
// to every commit of the create/delete hot path.
const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pools (
  name TEXT PRIMARY KEY, pool_type TEXT NOT NULL, lun_path TEXT NOT NULL, size_bytes INTEGER NOT NULL,
  created_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (host_id TEXT PRIMARY KEY, local INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS volumes (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  pool TEXT NOT NULL,
  size_mb INTEGER NOT NULL,
  target_size_mb INTEGER,
  thin INTEGER NOT NULL,
  state TEXT NOT NULL,
  op TEXT NOT NULL,
  src_type TEXT NOT NULL,
  src_name TEXT NOT NULL,
  src_id INTEGER,
  clone_type TEXT NOT NULL,
  max_iops INTEGER NOT NULL,
  max_mbps INTEGER NOT NULL,
  io_priority INTEGER NOT NULL,
  io_class_id TEXT NOT NULL,
  cache_policy TEXT NOT NULL,
  fault_reason TEXT NOT NULL DEFAULT '',
  create_time INTEGER NOT NULL,
  job_id TEXT);
CREATE INDEX IF NOT EXISTS volumes_src ON volumes (src_id) WHERE src_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS snapshots (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  vol_id INTEGER NOT NULL,
  vol_name TEXT NOT NULL,
  pool TEXT NOT NULL,
  size_mb INTEGER NOT NULL,
  state TEXT NOT NULL,
  group_name TEXT NOT NULL DEFAULT '',
  fault_reason TEXT NOT NULL DEFAULT '',
  create_time INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS snapshots_vol ON snapshots (vol_id);
CREATE INDEX IF NOT EXISTS snapshots_vol_name ON snapshots (vol_name, name);
CREATE TABLE IF NOT EXISTS mappings (
  vol_id INTEGER NOT NULL, host_id TEXT NOT NULL, access_mode TEXT NOT NULL, PRIMARY KEY (vol_id, host_id));
CREATE TABLE IF NOT EXISTS attachments (
  vol_id INTEGER NOT NULL, host_id TEXT NOT NULL, state TEXT NOT NULL, device TEXT NOT NULL,
  dev_major INTEGER NOT NULL, dev_minor INTEGER NOT NULL, read_only INTEGER NOT NULL, attached_at INTEGER NOT NULL,
  PRIMARY KEY (vol_id, host_id));
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY, job_type TEXT NOT NULL, status TEXT NOT NULL, vol_name TEXT NOT NULL,
  snap_name TEXT NOT NULL, vol_id INTEGER, pool TEXT NOT NULL, image TEXT NOT NULL, image_format TEXT NOT NULL,
  bytes_done INTEGER NOT NULL, bytes_total INTEGER NOT NULL, error TEXT NOT NULL, tmp_paths TEXT NOT NULL,
  started_at INTEGER NOT NULL, ended_at INTEGER, error_code INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS group_snapshots (
  id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, pool TEXT NOT NULL, state TEXT NOT NULL, vol_names TEXT NOT NULL,
  quiesce TEXT NOT NULL, frozen TEXT NOT NULL DEFAULT '[]', frozen_num INTEGER NOT NULL DEFAULT 0, create_time INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS snapshots_group ON snapshots (group_name) WHERE group_name != '';

`;

/**
 * Databases before schema 3 keyed attachments by volume alone (one host per volume). SQLite cannot change a
 * primary key in place: the rows are copied into a table of the new shape, in one transaction.
 */
function migrateAttachments(db: SqliteDatabase): void {
  const columns = db.prepare('PRAGMA table_info(attachments)').all() as Array<{ name: string; pk: number }>;
  if (columns.length === 0 || columns.some((c) => c.name === 'host_id' && c.pk > 0)) return;
  db.transaction(() => {
    db.exec('ALTER TABLE attachments RENAME TO attachments_v2');
    db.exec(`CREATE TABLE attachments (
      vol_id INTEGER NOT NULL, host_id TEXT NOT NULL, state TEXT NOT NULL, device TEXT NOT NULL,
      dev_major INTEGER NOT NULL, dev_minor INTEGER NOT NULL, read_only INTEGER NOT NULL, attached_at INTEGER NOT NULL,
      PRIMARY KEY (vol_id, host_id))`);
    db.exec(
      'INSERT INTO attachments SELECT vol_id, host_id, state, device, dev_major, dev_minor, read_only, attached_at FROM attachments_v2',
    );
    db.exec('DROP TABLE attachments_v2');
  })();
}

export class StoreLockedError extends Error {
  override name = 'StoreLockedError';
}

export class Store {
  readonly db: SqliteDatabase;
  /** true when this open created the database (no metadata existed before) */
  readonly fresh: boolean;

  private readonly s;

  constructor(path: string) {
    this.db = openDatabase(path);
    try {
      // One emulator per data directory: the exclusive lock is held until close and released by the kernel
      // when the process dies, so a second daemon on the same data directory fails at once.
      this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('busy_timeout = 2000');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('foreign_keys = OFF');
      // Checkpoints (which fsync) run less often; the WAL stays a few MB.
      this.db.pragma('wal_autocheckpoint = 2000');
      const hadMeta = this.db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'meta'").get() as {
        n: number;
      };
      migrateAttachments(this.db);
      this.db.exec(SCHEMA);
      // Databases from before jobs.error_code (the result code of a failed job, e.g. NO_SPACE).
      const jobColumns = this.db.prepare('PRAGMA table_info(jobs)').all() as Array<{ name: string }>;
      if (!jobColumns.some((c) => c.name === 'error_code'))
        this.db.exec('ALTER TABLE jobs ADD COLUMN error_code INTEGER NOT NULL DEFAULT 0');
      this.fresh = hadMeta.n === 0;
      this.db
        .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING')
        .run('schema_version', SCHEMA_VERSION);
      // Older databases: SCHEMA above added what they lack (CREATE ... IF NOT EXISTS); record the new version.
      this.db
        .prepare(
          "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < CAST(? AS INTEGER)",
        )
        .run(SCHEMA_VERSION, SCHEMA_VERSION);
    } catch (err) {
      this.db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') {
        throw new StoreLockedError(`${path} is locked: another emulator is using this data directory`);
      }
      throw err;
    }
    const db = this.db;
    this.s = {
      volumeByName: db.prepare<[string], VolumeRow>('SELECT * FROM volumes WHERE name = ?'),
      volumeById: db.prepare<[number], VolumeRow>('SELECT * FROM volumes WHERE id = ?'),
      insertVolume: db.prepare(`INSERT INTO volumes (name, pool, size_mb, thin, state, op, src_type, src_name, src_id,
        clone_type, max_iops, max_mbps, io_priority, io_class_id, cache_policy, create_time, job_id)
        VALUES (@name, @pool, @size_mb, @thin, @state, @op, @src_type, @src_name, @src_id, @clone_type, @max_iops,
        @max_mbps, @io_priority, @io_class_id, @cache_policy, @create_time, @job_id)`),
      setVolumeState: db.prepare<[VolumeState, number]>('UPDATE volumes SET state = ? WHERE id = ?'),
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
      listVolumes: db.prepare<[string, number], VolumeRow>(
        'SELECT * FROM volumes WHERE name > ? ORDER BY name LIMIT ?',
      ),
      listVolumesInPool: db.prepare<[string, string, number], VolumeRow>(
        'SELECT * FROM volumes WHERE pool = ? AND name > ? ORDER BY name LIMIT ?',
      ),
      allVolumes: db.prepare<[], VolumeRow>('SELECT * FROM volumes ORDER BY id'),
      linkedDependents: db.prepare<[number], { n: number }>(
        "SELECT count(*) AS n FROM volumes WHERE src_id = ? AND src_type = 'snapshot' AND clone_type = 'linked'",
      ),

      snapshotByName: db.prepare<[string], SnapshotRow>('SELECT * FROM snapshots WHERE name = ?'),
      insertSnapshot:
        db.prepare(`INSERT INTO snapshots (name, vol_id, vol_name, pool, size_mb, state, group_name, create_time)
        VALUES (@name, @vol_id, @vol_name, @pool, @size_mb, @state, @group_name, @create_time)`),
      setSnapshotState: db.prepare<[SnapshotState, number]>('UPDATE snapshots SET state = ? WHERE id = ?'),
      setSnapshotFault: db.prepare<[string, number]>(
        "UPDATE snapshots SET state = 'fault', fault_reason = ? WHERE id = ?",
      ),
      deleteSnapshot: db.prepare<[number]>('DELETE FROM snapshots WHERE id = ?'),
      snapshotCount: db.prepare<[number], { n: number }>('SELECT count(*) AS n FROM snapshots WHERE vol_id = ?'),
      listSnapshots: db.prepare<[string, number], SnapshotRow>(
        'SELECT * FROM snapshots WHERE name > ? ORDER BY name LIMIT ?',
      ),
      listSnapshotsOfVolume: db.prepare<[string, string, number], SnapshotRow>(
        'SELECT * FROM snapshots WHERE vol_name = ? AND name > ? ORDER BY name LIMIT ?',
      ),
      allSnapshots: db.prepare<[], SnapshotRow>('SELECT * FROM snapshots ORDER BY id'),

      mappingsOf: db.prepare<[number], MappingRow>('SELECT * FROM mappings WHERE vol_id = ? ORDER BY host_id'),
      upsertMapping: db.prepare<[number, string, string]>(
        'INSERT INTO mappings (vol_id, host_id, access_mode) VALUES (?, ?, ?) ON CONFLICT (vol_id, host_id) DO UPDATE SET access_mode = excluded.access_mode',
      ),
      deleteMapping: db.prepare<[number, string]>('DELETE FROM mappings WHERE vol_id = ? AND host_id = ?'),

      attachmentsOf: db.prepare<[number], AttachmentRow>(
        'SELECT * FROM attachments WHERE vol_id = ? ORDER BY attached_at, host_id',
      ),
      attachmentOn: db.prepare<[number, string], AttachmentRow>(
        'SELECT * FROM attachments WHERE vol_id = ? AND host_id = ?',
      ),
      allAttachments: db.prepare<[], AttachmentRow>('SELECT * FROM attachments'),
      upsertAttachment:
        db.prepare(`INSERT INTO attachments (vol_id, host_id, state, device, dev_major, dev_minor, read_only, attached_at)
        VALUES (@vol_id, @host_id, @state, @device, @dev_major, @dev_minor, @read_only, @attached_at)
        ON CONFLICT (vol_id, host_id) DO UPDATE SET state = excluded.state, device = excluded.device,
        dev_major = excluded.dev_major, dev_minor = excluded.dev_minor, read_only = excluded.read_only, attached_at = excluded.attached_at`),
      setAttachmentState: db.prepare<[AttachState, number, string]>(
        'UPDATE attachments SET state = ? WHERE vol_id = ? AND host_id = ?',
      ),
      deleteAttachment: db.prepare<[number, string]>('DELETE FROM attachments WHERE vol_id = ? AND host_id = ?'),
      deleteAttachmentsOf: db.prepare<[number]>('DELETE FROM attachments WHERE vol_id = ?'),

      hosts: db.prepare<[], { host_id: string; local: number }>('SELECT * FROM hosts ORDER BY local DESC, host_id'),
      poolRow: db.prepare<[string], PoolRow>('SELECT * FROM pools WHERE name = ?'),
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
      jobById: db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE job_id = ?'),
      runningJobs: db.prepare<[], JobRow>("SELECT * FROM jobs WHERE status = 'running'"),
      finishJob: db.prepare(
        'UPDATE jobs SET status = @status, error = @error, error_code = @error_code, bytes_done = @bytes_done, bytes_total = @bytes_total, ended_at = @ended_at WHERE job_id = @job_id',
      ),
      setJobTmp: db.prepare<[string, string]>('UPDATE jobs SET tmp_paths = ? WHERE job_id = ?'),
      setJobProgress: db.prepare<[number, number, string]>(
        'UPDATE jobs SET bytes_done = ?, bytes_total = ? WHERE job_id = ?',
      ),
      purgeJobs: db.prepare<[number]>("DELETE FROM jobs WHERE status != 'running' AND ended_at < ?"),

      groupByName: db.prepare<[string], GroupRow>('SELECT * FROM group_snapshots WHERE name = ?'),
      allGroups: db.prepare<[], GroupRow>('SELECT * FROM group_snapshots ORDER BY id'),
      insertGroup: db.prepare(`INSERT INTO group_snapshots (name, pool, state, vol_names, quiesce, create_time)
        VALUES (@name, @pool, @state, @vol_names, @quiesce, @create_time)`),
      setGroupState: db.prepare<[GroupState, number]>('UPDATE group_snapshots SET state = ? WHERE id = ?'),
      setGroupFrozen: db.prepare<[string, number]>('UPDATE group_snapshots SET frozen = ? WHERE id = ?'),
      setGroupFrozenNum: db.prepare<[number, number]>('UPDATE group_snapshots SET frozen_num = ? WHERE id = ?'),
      deleteGroup: db.prepare<[number]>('DELETE FROM group_snapshots WHERE id = ?'),
      groupMembers: db.prepare<[string], SnapshotRow>(
        "SELECT * FROM snapshots WHERE group_name = ? AND group_name != '' ORDER BY vol_name, name",
      ),
      releaseMembers: db.prepare<[string]>("UPDATE snapshots SET group_name = '' WHERE group_name = ?"),
    };
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  /** Provisioned MiB per pool: max(size, extend target) summed; changed only with the rows it counts. */
  private usage = new Map<string, number>();

  private adjust(pool: string, deltaMb: number): void {
    if (deltaMb !== 0) this.usage.set(pool, (this.usage.get(pool) ?? 0) + deltaMb);
  }

  /** One transaction; the in-memory counters roll back with it. */
  tx<T>(fn: () => T): T {
    const saved = new Map(this.usage);
    try {
      return this.db.transaction(fn)();
    } catch (err) {
      this.usage = saved;
      throw err;
    }
  }

  // ---- volumes
  volume(name: string): VolumeRow | undefined {
    return this.s.volumeByName.get(name);
  }
  volumeById(id: number): VolumeRow | undefined {
    return this.s.volumeById.get(id);
  }
  insertVolume(v: NewVolume): number {
    const id = Number(this.s.insertVolume.run(v).lastInsertRowid);
    this.adjust(v.pool, v.size_mb);
    return id;
  }
  setVolumeState(id: number, state: VolumeState): void {
    this.s.setVolumeState.run(state, id);
  }
  /** Drops an extend target (fault, abort) and its share of the provisioned count. */
  private dropTarget(id: number, run: () => void): void {
    const row = this.s.volumeById.get(id);
    run();
    if (row?.target_size_mb != null) this.adjust(row.pool, -(Math.max(row.size_mb, row.target_size_mb) - row.size_mb));
  }
  setVolumeFault(id: number, reason: string): void {
    this.dropTarget(id, () => this.s.setVolumeFault.run(reason, id));
  }
  beginExtend(id: number, targetMb: number): void {
    const row = this.s.beginExtend.get(targetMb, id);
    if (row) this.adjust(row.pool, Math.max(0, targetMb - row.size_mb));
  }
  finishExtend(id: number): void {
    this.s.finishExtend.run(id);
  }
  abortExtend(id: number): void {
    this.dropTarget(id, () => this.s.abortExtend.run(id));
  }
  setQos(id: number, q: Pick<VolumeRow, 'max_iops' | 'max_mbps' | 'io_priority' | 'cache_policy'>): void {
    this.s.setQos.run({
      id,
      max_iops: q.max_iops,
      max_mbps: q.max_mbps,
      io_priority: q.io_priority,
      cache_policy: q.cache_policy,
    });
  }
  /** Drops a volume row with its mappings and attachment record. */
  deleteVolume(id: number): void {
    const gone = this.s.deleteVolume.get(id);
    if (gone) this.adjust(gone.pool, -Math.max(gone.size_mb, gone.target_size_mb ?? 0));
    this.s.deleteMappingsOf.run(id);
    this.s.deleteAttachmentsOf.run(id);
  }
  deleteMappingsOf(id: number): void {
    this.s.deleteMappingsOf.run(id);
  }
  listVolumes(marker: string, limit: number, pool?: string): VolumeRow[] {
    return pool ? this.s.listVolumesInPool.all(pool, marker, limit) : this.s.listVolumes.all(marker, limit);
  }
  allVolumes(): VolumeRow[] {
    return this.s.allVolumes.all();
  }
  linkedDependents(snapshotId: number): number {
    return this.s.linkedDependents.get(snapshotId)!.n;
  }

  // ---- snapshots
  snapshot(name: string): SnapshotRow | undefined {
    return this.s.snapshotByName.get(name);
  }
  insertSnapshot(s: Omit<SnapshotRow, 'id' | 'group_name' | 'fault_reason'> & { group_name?: string }): number {
    return Number(this.s.insertSnapshot.run({ group_name: '', ...s }).lastInsertRowid);
  }
  setSnapshotState(id: number, state: SnapshotState): void {
    this.s.setSnapshotState.run(state, id);
  }
  setSnapshotFault(id: number, reason: string): void {
    this.s.setSnapshotFault.run(reason, id);
  }
  deleteSnapshot(id: number): void {
    this.s.deleteSnapshot.run(id);
  }
  snapshotCount(volId: number): number {
    return this.s.snapshotCount.get(volId)!.n;
  }
  listSnapshots(marker: string, limit: number, volName?: string): SnapshotRow[] {
    return volName ? this.s.listSnapshotsOfVolume.all(volName, marker, limit) : this.s.listSnapshots.all(marker, limit);
  }
  allSnapshots(): SnapshotRow[] {
    return this.s.allSnapshots.all();
  }

  // ---- mappings and attachments
  mappings(volId: number): MappingRow[] {
    return this.s.mappingsOf.all(volId);
  }
  upsertMapping(volId: number, hostId: string, mode: 'rw' | 'ro'): void {
    this.s.upsertMapping.run(volId, hostId, mode);
  }
  deleteMapping(volId: number, hostId: string): void {
    this.s.deleteMapping.run(volId, hostId);
  }
  /** The attachment on `hostId`; without a host, the oldest attachment on any host. */
  attachment(volId: number, hostId?: string): AttachmentRow | undefined {
    return hostId === undefined ? this.s.attachmentsOf.get(volId) : this.s.attachmentOn.get(volId, hostId);
  }
  /** Every host's attachment of a volume, oldest first. */
  attachments(volId: number): AttachmentRow[] {
    return this.s.attachmentsOf.all(volId);
  }
  allAttachments(): AttachmentRow[] {
    return this.s.allAttachments.all();
  }
  upsertAttachment(a: AttachmentRow): void {
    this.s.upsertAttachment.run(a);
  }
  setAttachmentState(volId: number, hostId: string, state: AttachState): void {
    this.s.setAttachmentState.run(state, volId, hostId);
  }
  deleteAttachment(volId: number, hostId: string): void {
    this.s.deleteAttachment.run(volId, hostId);
  }

  // ---- hosts and pools
  hosts(): { host_id: string; local: number }[] {
    return this.s.hosts.all();
  }
  /** Replaces the host table with this VBS's host and the configured extra hosts. */
  setHosts(local: string, extra: readonly string[]): void {
    this.tx(() => {
      this.db.prepare('DELETE FROM hosts').run();
      const ins = this.db.prepare('INSERT INTO hosts (host_id, local) VALUES (?, ?)');
      ins.run(local, 1);
      for (const h of extra) ins.run(h, 0);
    });
  }
  provisionedMb(pool: string): number {
    return this.usage.get(pool) ?? 0;
  }
  /** Counts the provisioned MiB of every pool from the rows (at start). */
  recountUsage(): void {
    const rows = this.db
      .prepare<[], { pool: string; mb: number }>(
        'SELECT pool, sum(max(size_mb, coalesce(target_size_mb, 0))) AS mb FROM volumes GROUP BY pool',
      )
      .all();
    this.usage = new Map(rows.map((r) => [r.pool, r.mb]));
  }
  poolRow(name: string): PoolRow | undefined {
    return this.s.poolRow.get(name);
  }
  insertPool(p: PoolRow): void {
    this.s.insertPool.run(p);
  }
  updatePoolSize(name: string, sizeBytes: number): void {
    this.s.updatePoolSize.run(sizeBytes, name);
  }
  poolHasObjects(name: string): boolean {
    return this.s.poolHasObjects.get(name, name)!.n > 0;
  }

  // ---- group snapshots (members are snapshot rows whose group_name is the group's name)
  group(name: string): GroupRow | undefined {
    return this.s.groupByName.get(name);
  }
  allGroups(): GroupRow[] {
    return this.s.allGroups.all();
  }
  insertGroup(g: Pick<GroupRow, 'name' | 'pool' | 'state' | 'vol_names' | 'quiesce' | 'create_time'>): number {
    return Number(this.s.insertGroup.run(g).lastInsertRowid);
  }
  setGroupState(id: number, state: GroupState): void {
    this.s.setGroupState.run(state, id);
  }
  setGroupFrozen(id: number, mountPoints: readonly string[]): void {
    this.s.setGroupFrozen.run(JSON.stringify(mountPoints), id);
  }
  setGroupFrozenNum(id: number, n: number): void {
    this.s.setGroupFrozenNum.run(n, id);
  }
  /** Drops the group row; members left behind (a failed delete) become ordinary snapshots. */
  deleteGroup(id: number, name: string): void {
    this.s.deleteGroup.run(id);
    this.s.releaseMembers.run(name);
  }
  groupMembers(name: string): SnapshotRow[] {
    return this.s.groupMembers.all(name);
  }

  // ---- jobs
  insertJob(j: Omit<JobRow, 'error_code'>): void {
    this.s.insertJob.run(j);
  }
  job(id: string): JobRow | undefined {
    return this.s.jobById.get(id);
  }
  runningJobs(): JobRow[] {
    return this.s.runningJobs.all();
  }
  finishJob(
    j: Pick<JobRow, 'job_id' | 'status' | 'error' | 'bytes_done' | 'bytes_total'> & {
      ended_at: number;
      error_code?: number;
    },
  ): void {
    this.s.finishJob.run({ error_code: 0, ...j });
  }
  setJobTmp(id: string, paths: string[]): void {
    this.s.setJobTmp.run(JSON.stringify(paths), id);
  }
  setJobProgress(id: string, done: number, total: number): void {
    this.s.setJobProgress.run(done, total, id);
  }
  purgeJobs(endedBefore: number): void {
    this.s.purgeJobs.run(endedBefore);
  }
}
