// What an emulator holds, read from its data directory without asking it: on the original level there is no
// list request, so a leak check must look for itself. Test-only; the layout is emulator/README.md's
// ("On-disk layout") and is no contract for the driver.
//  - While the daemon runs, its SQLite store is locked exclusively: the pool directories are read instead
//    (`pools/<pool>/{volumes,snapshots,.tmp}`, mounted while it runs).
//  - Once it has stopped, its pools are unmounted: the store is read, read-only.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
// Opened as the emulator opens it: no better-sqlite3 object is ever collected (emulator/sqlite.ts says why).
import { openDatabase } from '../../emulator/sqlite.js';

export interface PoolFiles {
  /** `<pool>/<volume>` */
  volumes: string[];
  /** `<pool>/<snapshot>` */
  snapshots: string[];
  /** `<pool>/<file>`: files under construction */
  tmp: string[];
}

function entries(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

/** The volume and snapshot files of every pool of a running daemon. */
export function poolFiles(dataDir: string): PoolFiles {
  const out: PoolFiles = { volumes: [], snapshots: [], tmp: [] };
  for (const pool of entries(join(dataDir, 'pools'))) {
    const root = join(dataDir, 'pools', pool);
    out.volumes.push(...entries(join(root, 'volumes')).map((n) => `${pool}/${n}`));
    out.snapshots.push(...entries(join(root, 'snapshots')).map((n) => `${pool}/${n}`));
    out.tmp.push(...entries(join(root, '.tmp')).map((n) => `${pool}/${n}`));
  }
  return out;
}

export interface StoreRows {
  volumes: Array<{ name: string; pool: string; state: string }>;
  snapshots: Array<{ name: string; vol_name: string; pool: string; state: string }>;
  attachments: Array<{ vol_name: string; state: string; device: string }>;
}

/** The rows of a stopped daemon's store (read-only; throws while a daemon holds the data dir). */
export function storeRows(dataDir: string): StoreRows {
  const path = join(dataDir, 'emulator.db');
  if (!existsSync(path)) return { volumes: [], snapshots: [], attachments: [] };
  const db = openDatabase(path, { readonly: true, fileMustExist: true });
  try {
    return {
      volumes: db.prepare('SELECT name, pool, state FROM volumes ORDER BY name').all() as StoreRows['volumes'],
      snapshots: db
        .prepare('SELECT name, vol_name, pool, state FROM snapshots ORDER BY name')
        .all() as StoreRows['snapshots'],
      attachments: db
        .prepare(
          'SELECT v.name AS vol_name, a.state, a.device FROM attachments a JOIN volumes v ON v.id = a.vol_id ORDER BY v.name',
        )
        .all() as StoreRows['attachments'],
    };
  } finally {
    db.close();
  }
}

export interface BackendObjects {
  /** `<pool>/<volume>` */
  volumes: string[];
  /** `<pool>/<snapshot>` */
  snapshots: string[];
}

/**
 * The volumes and snapshots an emulator holds, running or stopped: a stopped one's store, else (the store
 * is locked by the running daemon) its pool files. For leak checks on the original level.
 */
export function backendObjects(dataDir: string): BackendObjects {
  let rows: StoreRows;
  try {
    rows = storeRows(dataDir);
  } catch (err) {
    if ((err as { code?: string }).code !== 'SQLITE_BUSY') throw err;
    const files = poolFiles(dataDir);
    return { volumes: files.volumes, snapshots: files.snapshots };
  }
  return {
    volumes: rows.volumes.map((v) => `${v.pool}/${v.name}`),
    snapshots: rows.snapshots.map((s) => `${s.pool}/${s.name}`),
  };
}
