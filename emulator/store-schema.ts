// The store's tables and how an older database is brought up to them.
import type { SqliteDatabase } from './sqlite.js';

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

/** Creates what the database lacks and records the schema version; true when it had no metadata before. */
export function upgradeSchema(db: SqliteDatabase): boolean {
  const hadMeta = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE name = 'meta'").get() as {
    n: number;
  };
  migrateAttachments(db);
  db.exec(SCHEMA);
  // Databases from before jobs.error_code (the result code of a failed job, e.g. NO_SPACE).
  const jobColumns = db.prepare('PRAGMA table_info(jobs)').all() as Array<{ name: string }>;
  if (!jobColumns.some((c) => c.name === 'error_code'))
    db.exec('ALTER TABLE jobs ADD COLUMN error_code INTEGER NOT NULL DEFAULT 0');
  db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING').run(
    'schema_version',
    SCHEMA_VERSION,
  );
  // Older databases: SCHEMA above added what they lack (CREATE ... IF NOT EXISTS); record the new version.
  db.prepare(
    "UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < CAST(? AS INTEGER)",
  ).run(SCHEMA_VERSION, SCHEMA_VERSION);
  return hadMeta.n === 0;
}
