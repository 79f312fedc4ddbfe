// What the back end really holds, counted without the driver: the emulator's socket API (LIST_* paging),
// the files in its pool directory, its SQLite rows (read-only, once the daemon has released its exclusive
// lock) and the loop devices over its files. The reliability tests compare these with what the CSI layer
// was told.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { openDatabase } from '../../emulator/sqlite.js';
import { call } from './emulator.js';

const run = promisify(execFile);

export const MiB = 1024 * 1024;

export interface BackendRecords {
  volumes: Record<string, string>[];
  snapshots: Record<string, string>[];
}

/** Every volume and snapshot record, through LIST_VOLUMES_REQ / LIST_SNAPSHOTS_REQ, all pages. */
export async function listEverything(vbsSocket: string, pageSize = 1000): Promise<BackendRecords> {
  const volumes: Record<string, string>[] = [];
  const snapshots: Record<string, string>[] = [];
  for (const [type, prefix, countKey, out] of [
    ['LIST_VOLUMES_REQ', 'volume', 'vol_num', volumes],
    ['LIST_SNAPSHOTS_REQ', 'snapshot', 'snap_num', snapshots],
  ] as const) {
    let marker = '';
    for (let page = 0; ; page++) {
      if (page > 10_000) throw new Error(`${type}: paging does not end`);
      const answer = await call(vbsSocket, type, { marker, limit: pageSize });
      if (answer.retcode !== 0) throw new Error(`${type} failed: ${answer.text}`);
      const n = Number(answer.get(countKey));
      for (let i = 0; i < n; i++) out.push(answer.record(`${prefix}${i}`));
      marker = answer.get('next_marker') ?? '';
      if (marker === '') break;
    }
  }
  return { volumes, snapshots };
}

export interface PoolFiles {
  volumes: Map<string, number>;
  snapshots: Map<string, number>;
  tmp: string[];
}

/** The files in a pool's volumes/, snapshots/ and .tmp/ (with their sizes); the pool must be mounted. */
export function poolFiles(emulatorDataDir: string, pool = 'pool0'): PoolFiles {
  const dir = join(emulatorDataDir, 'pools', pool);
  const sizes = (sub: string) => {
    const out = new Map<string, number>();
    const path = join(dir, sub);
    if (!existsSync(path)) throw new Error(`${path} does not exist (is the pool mounted?)`);
    for (const name of readdirSync(path)) out.set(name, statSync(join(path, name)).size);
    return out;
  };
  return { volumes: sizes('volumes'), snapshots: sizes('snapshots'), tmp: readdirSync(join(dir, '.tmp')) };
}

/** Loop devices whose backing file lies under `dir` (`losetup --list`, scoped to our own directory). */
export async function loopDevicesUnder(dir: string): Promise<string[]> {
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--raw', '--output', 'NAME,BACK-FILE']);
  const found: string[] = [];
  for (const line of stdout.split('\n')) {
    const space = line.indexOf(' ');
    if (space === -1) continue;
    const backing = line.slice(space + 1).trim();
    if (backing.startsWith(`${dir}/`)) found.push(`${line.slice(0, space)} → ${backing}`);
  }
  return found;
}

/** Loop devices over the emulator's pool files: none may be left once every volume is unstaged. */
export function poolLoopDevices(emulatorDataDir: string): Promise<string[]> {
  return loopDevicesUnder(`${emulatorDataDir}/pools`);
}

export interface DbRows {
  volumes: Array<{ name: string; state: string; size_mb: number }>;
  snapshots: Array<{ name: string; state: string; size_mb: number }>;
  attachments: number;
}

/** The emulator's rows, read-only. Only once the daemon has stopped: it holds the database exclusively. */
export function databaseRows(emulatorDataDir: string): DbRows {
  const db = openDatabase(join(emulatorDataDir, 'emulator.db'), { readonly: true, fileMustExist: true });
  try {
    return {
      volumes: db.prepare('SELECT name, state, size_mb FROM volumes ORDER BY name').all() as DbRows['volumes'],
      snapshots: db.prepare('SELECT name, state, size_mb FROM snapshots ORDER BY name').all() as DbRows['snapshots'],
      attachments: (db.prepare('SELECT count(*) AS n FROM attachments').get() as { n: number }).n,
    };
  } finally {
    db.close();
  }
}

/**
 * Rows and files agree: every record healthy and settled (status 1 or 2, health ok) with a file of exactly
 * its size, no file without a record, nothing left under construction in .tmp/. Returns the problems.
 */
export function disagreements(records: BackendRecords, files: PoolFiles): string[] {
  const problems: string[] = [];
  for (const [kind, list, nameKey, onDisk] of [
    ['volume', records.volumes, 'vol_name', files.volumes],
    ['snapshot', records.snapshots, 'snap_name', files.snapshots],
  ] as const) {
    const named = new Set<string>();
    for (const r of list) {
      const name = r[nameKey]!;
      named.add(name);
      if (r.status !== '1' && r.status !== '2') problems.push(`${kind} ${name}: status ${r.status}`);
      if (r.health !== 'ok') problems.push(`${kind} ${name}: health ${r.health} (${r.fault_reason})`);
      const size = onDisk.get(name);
      if (size === undefined) problems.push(`${kind} ${name}: record without a file`);
      else if (size !== Number(r.vol_size) * MiB)
        problems.push(`${kind} ${name}: file of ${size} bytes, record says ${r.vol_size} MiB`);
    }
    for (const name of onDisk.keys()) if (!named.has(name)) problems.push(`${kind} file ${name} without a record`);
  }
  if (files.tmp.length > 0) problems.push(`files left under construction in .tmp/: ${files.tmp.join(', ')}`);
  return problems;
}

/** A small deterministic PRNG (mulberry32), so a failing run is replayed from its printed seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The seed of a run: `envName` when set (to replay one), else a fixed default. */
export function seedFrom(envName: string, fallback: number): number {
  const raw = process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n)) throw new Error(`${envName} must be an integer, got ${raw}`);
  return n;
}

/** A positive whole number from the environment (soak runs raise counts this way), else the default. */
export function countFrom(envName: string, fallback: number): number {
  const raw = process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${envName} must be a positive integer, got ${raw}`);
  return n;
}

/** What the back end holds, read from its socket (LIST_* pages of `pageSize`) and its pool files. */
export async function backendState(
  stack: { vbsSocket: string; emulatorDataDir: string },
  pageSize?: number,
): Promise<{ records: BackendRecords; files: PoolFiles; problems: string[] }> {
  const records = await listEverything(stack.vbsSocket, pageSize);
  const files = poolFiles(stack.emulatorDataDir);
  return { records, files, problems: disagreements(records, files) };
}
