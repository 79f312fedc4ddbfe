// The emulator's metadata in SQLite (better-sqlite3): pools, hosts, volumes, snapshots, mappings,
// attachments and image jobs. WAL + synchronous=NORMAL: a commit is one write() to the WAL, no fsync, and
// survives a process crash (kill -9) because it sits in the kernel's page cache. Every state change is one
// transaction; file work is ordered around the commits so that reconcile.ts can finish or roll back any
// half-done operation (see emulator/README.md).
import { openDatabase, type SqliteDatabase } from './sqlite.js';

import { prepareStatements, type Statements } from './store-statements.js';
import { upgradeSchema } from './store-schema.js';
import { volumeRowOf, volumeToReconcileOf } from './store-rows.js';
import type {
  VolumeState,
  SnapshotState,
  VolumeRow,
  VolumeToReconcile,
  NewVolume,
  SnapshotRow,
  MappingRow,
  AttachState,
  AttachmentRow,
  JobRow,
  GroupState,
  GroupRow,
  PoolRow,
} from './store-rows.js';

export type * from './store-rows.js';

/** Rows in id order, fetched a page at a time after the last id seen. */
function* keysetPages<T extends { id: number }>(page: (afterId: number) => T[], pageSize: number): Generator<T> {
  let afterId = 0;
  for (;;) {
    const rows = page(afterId);
    yield* rows;
    if (rows.length < pageSize) return;
    afterId = rows[rows.length - 1]!.id;
  }
}

// Rows from .all(), not .iterate(): better-sqlite3 12's statement iterator aborts Node 24 when the garbage
// collector destroys it (RemoveEnvironmentCleanupHook: env != nullptr), which killed the emulator in CI.
function namesByPool(rows: Iterable<[string, string]>): Map<string, Set<string>> {
  const byPool = new Map<string, Set<string>>();
  for (const [pool, name] of rows) {
    const names = byPool.get(pool);
    if (names) names.add(name);
    else byPool.set(pool, new Set([name]));
  }
  return byPool;
}

export class StoreLockedError extends Error {
  override name = 'StoreLockedError';
}

export class Store {
  readonly db: SqliteDatabase;
  /** true when this open created the database (no metadata existed before) */
  readonly fresh: boolean;

  private readonly s: Statements;
  /**
   * One transaction wrapper for every tx(): better-sqlite3's db.transaction() builds a new wrapper (and its
   * deferred/immediate/exclusive variants) each time it is called, ~18 µs of each request's commit.
   */
  private readonly runTx: <T>(fn: () => T) => T;

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
      this.fresh = upgradeSchema(this.db);
    } catch (err) {
      this.db.close();
      if ((err as { code?: string }).code === 'SQLITE_BUSY') {
        throw new StoreLockedError(`${path} is locked: another emulator is using this data directory`);
      }
      throw err;
    }
    this.s = prepareStatements(this.db);
    this.runTx = this.db.transaction(<T>(fn: () => T): T => fn()) as <T>(fn: () => T) => T;
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
      return this.runTx(fn);
    } catch (err) {
      this.usage = saved;
      throw err;
    }
  }

  // ---- volumes
  volume(name: string): VolumeRow | undefined {
    const t = this.s.volumeByName.get(name);
    return t && volumeRowOf(t);
  }
  volumeById(id: number): VolumeRow | undefined {
    const t = this.s.volumeById.get(id);
    return t && volumeRowOf(t);
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
    const row = this.volumeById(id);
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
    const rows = pool ? this.s.listVolumesInPool.all(pool, marker, limit) : this.s.listVolumes.all(marker, limit);
    return rows.map(volumeRowOf);
  }
  /** Every volume, in pages of `pageSize` read as the loop goes: the body may change or delete rows. */
  *volumesToReconcile(pageSize = 1000): Generator<VolumeToReconcile> {
    yield* keysetPages(
      (afterId) => this.s.volumesToReconcile.all(afterId, pageSize).map(volumeToReconcileOf),
      pageSize,
    );
  }
  /** The volume names of each pool. */
  volumeNames(): Map<string, Set<string>> {
    return namesByPool(this.s.volumeNames.all());
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
  /** Every snapshot, a page at a time (see volumesToReconcile). */
  *snapshotsToReconcile(pageSize = 1000): Generator<SnapshotRow> {
    yield* keysetPages((afterId) => this.s.snapshotsToReconcile.all(afterId, pageSize), pageSize);
  }
  snapshotNames(): Map<string, Set<string>> {
    return namesByPool(this.s.snapshotNames.all());
  }

  // ---- mappings and attachments
  mappings(volId: number): MappingRow[] {
    return this.s.mappingsOf.all(volId);
  }
  /** The mappings and snapshot counts of a page of volumes, two queries for the whole page. */
  relationsOf(volIds: readonly number[]): { mappings: Map<number, MappingRow[]>; snapshotCounts: Map<number, number> } {
    const ids = JSON.stringify(volIds);
    const mappings = new Map<number, MappingRow[]>();
    for (const m of this.s.mappingsOfIds.all(ids)) {
      const list = mappings.get(m.vol_id);
      if (list) list.push(m);
      else mappings.set(m.vol_id, [m]);
    }
    const snapshotCounts = new Map(this.s.snapshotCountsOfIds.all(ids).map((r) => [r.vol_id, r.n] as const));
    return { mappings, snapshotCounts };
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
