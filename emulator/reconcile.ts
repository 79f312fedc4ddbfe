// Start-up recovery: bring rows and files back into agreement after any crash (kill -9 included), before
// the first request is served. The rules are listed in emulator/README.md, "Recovery".
import { existsSync, mkdirSync, promises as fsp, readdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Ctx } from './context.js';
import { growSync, MiB, preallocate } from './files.js';
import { thawRecorded } from './freeze.js';
import { detachLoop, type LoopDevice } from './loopdev.js';
import type { Logger } from './log.js';
import type { Pool } from './pools.js';
import type { VolumeRow } from './store.js';
import { MISSING, scanFileSizes, type FileSizes } from './file-sizes.js';

export interface ReconcileReport {
  finished: number;
  rolledBack: number;
  deleted: number;
  faulted: number;
  orphansRemoved: number;
  tmpRemoved: number;
  jobsFailed: number;
  attachmentsFixed: number;
  groupsRolledBack: number;
  groupsDeleted: number;
  thawed: number;
}

function sizeOf(path: string): number | undefined {
  try {
    return statSync(path).size;
  } catch {
    return undefined;
  }
}

async function unlinkQuiet(path: string): Promise<void> {
  await fsp.rm(path, { force: true, recursive: true }).catch(() => undefined);
}

/** The named pool when it is there and healthy: reconcile leaves the rows of any other pool alone. */
function usablePool(ctx: Ctx, name: string): Pool | undefined {
  const pool = ctx.pools.get(name);
  return pool?.healthy ? pool : undefined;
}

/**
 * The rows whose pool is usable, each with its file's path and a logger for it. The logger is made only when
 * called: a restart looks at every row and logs about few of them.
 */
function* inUsablePools<R extends { name: string; pool: string; state: string }>(
  ctx: Ctx,
  rows: Iterable<R>,
  kind: 'volume' | 'snapshot',
): Generator<{ row: R; path: string; rowLog: () => Logger }> {
  for (const row of rows) {
    const pool = usablePool(ctx, row.pool);
    if (!pool) continue;
    const path = kind === 'volume' ? pool.volumePath(row.name) : pool.snapshotPath(row.name);
    yield { row, path, rowLog: () => ctx.log.child({ [kind]: row.name, state: row.state }) };
  }
}

/**
 * Starts reading the file sizes of every usable pool's volumes (emulator/file-sizes.ts), to run while the
 * daemon lists its loop devices and reconcile's first steps run. Nothing before step 2 touches volumes/.
 */
export function startScans(ctx: Pick<Ctx, 'pools'>): Map<string, Promise<FileSizes | undefined>> {
  const scans = new Map<string, Promise<FileSizes | undefined>>();
  for (const pool of ctx.pools.values()) if (pool.healthy) scans.set(pool.name, scanFileSizes(pool.volumesDir));
  return scans;
}

export async function reconcile(
  ctx: Ctx,
  loops: LoopDevice[],
  scans: Map<string, Promise<FileSizes | undefined>> = startScans(ctx),
): Promise<ReconcileReport> {
  const { store, log } = ctx;
  const report: ReconcileReport = {
    finished: 0,
    rolledBack: 0,
    deleted: 0,
    faulted: 0,
    orphansRemoved: 0,
    tmpRemoved: 0,
    jobsFailed: 0,
    attachmentsFixed: 0,
    groupsRolledBack: 0,
    groupsDeleted: 0,
    thawed: 0,
  };
  store.recountUsage();

  // 1. Image jobs cannot resume: fail them and remove what they wrote.
  for (const job of store.runningJobs()) {
    for (const p of JSON.parse(job.tmp_paths || '[]') as string[]) await unlinkQuiet(p);
    store.finishJob({
      job_id: job.job_id,
      status: 'failed',
      error: 'the emulator restarted while the job ran',
      bytes_done: job.bytes_done,
      bytes_total: job.bytes_total,
      ended_at: Math.floor(Date.now() / 1000),
    });
    report.jobsFailed++;
  }

  // 2. Volumes. Each usable pool's file sizes come from its scan (started before the loop devices were
  //    listed, see startScans); a pool whose scan failed is stat'ed file by file.
  const scanned = new Map<string, FileSizes>();
  for (const [name, scan] of scans) {
    const sizes = await scan;
    if (sizes) scanned.set(name, sizes);
    else log.warn({ pool: name }, 'cannot scan the volume files with find; stat-ing them one by one');
  }
  // The names the scans' listings are checked against for orphans: every row seen here, so a file that this
  // step removes with its row is not taken for an orphan.
  const rowNames = new Map<string, Set<string>>();
  for (const { row, path, rowLog: vlog } of inUsablePools(ctx, store.volumesToReconcile(), 'volume')) {
    const known = rowNames.get(row.pool);
    if (known) known.add(row.name);
    else rowNames.set(row.pool, new Set([row.name]));
    const sizes = scanned.get(row.pool);
    const scannedSize = sizes?.get(row.name);
    const size = sizes ? (scannedSize === MISSING ? undefined : scannedSize) : sizeOf(path);
    switch (row.state) {
      case 'creating':
        // The file is renamed into place only when complete, so a clone or thick create found there is done;
        // an import is never finished (its checksum was not confirmed by a commit).
        if (size !== undefined && row.op !== 'import') {
          store.setVolumeState(row.id, 'available');
          report.finished++;
          vlog().warn('finished a create interrupted after its file was complete');
        } else {
          if (size !== undefined) await unlinkQuiet(path);
          store.deleteVolume(row.id);
          report.rolledBack++;
          vlog().warn('rolled back an interrupted create');
        }
        break;
      case 'extending': {
        if (size === undefined) {
          store.setVolumeFault(row.id, 'volume file missing');
          report.faulted++;
          break;
        }
        const target = (row.target_size_mb ?? row.size_mb) * MiB;
        growSync(path, target);
        if (!row.thin) await preallocate(path, row.size_mb * MiB, target - row.size_mb * MiB);
        store.finishExtend(row.id);
        report.finished++;
        vlog().warn({ sizeMb: row.target_size_mb }, 'finished an interrupted extend');
        break;
      }
      case 'deleting':
        await unlinkQuiet(path);
        store.deleteVolume(row.id);
        report.deleted++;
        vlog().info('finished an interrupted delete');
        break;
      case 'available':
        if (size === undefined) {
          store.setVolumeFault(row.id, 'volume file missing');
          report.faulted++;
          vlog().error('volume file missing; marked faulty');
        } else if (size !== row.size_mb * MiB) {
          store.setVolumeFault(row.id, `volume file is ${size} bytes, ${row.size_mb * MiB} expected`);
          report.faulted++;
          vlog().error({ size }, 'volume file has the wrong size; marked faulty');
        }
        break;
      default:
        break;
    }
  }

  // 3a. Group snapshots, before their members are looked at one by one: a group is all or nothing. File
  //     systems a dead daemon left frozen are thawed first (their writers are blocked until then).
  for (const group of store.allGroups()) {
    const frozen = JSON.parse(group.frozen || '[]') as string[];
    if (frozen.length > 0) {
      report.thawed += await thawRecorded(frozen, log);
      store.setGroupFrozen(group.id, []);
    }
    if (group.state === 'available') continue;
    const pool = usablePool(ctx, group.pool);
    const members = store.groupMembers(group.name);
    for (const m of members) if (pool) await unlinkQuiet(pool.snapshotPath(m.name));
    store.tx(() => {
      for (const m of members) store.deleteSnapshot(m.id);
      store.deleteGroup(group.id, group.name);
    });
    if (group.state === 'creating') report.groupsRolledBack++;
    else report.groupsDeleted++;
    log.warn(
      { group: group.name, state: group.state, members: members.length },
      group.state === 'creating'
        ? 'rolled back an interrupted group snapshot (all members removed)'
        : 'finished an interrupted group snapshot delete',
    );
  }

  // 3. Snapshots.
  for (const { row, path, rowLog: slog } of inUsablePools(ctx, store.snapshotsToReconcile(), 'snapshot')) {
    const exists = existsSync(path);
    if (row.state === 'creating') {
      if (exists) {
        store.setSnapshotState(row.id, 'available');
        report.finished++;
        slog().warn('finished a snapshot interrupted after its file was complete');
      } else {
        store.deleteSnapshot(row.id);
        report.rolledBack++;
        slog().warn('rolled back an interrupted snapshot');
      }
    } else if (row.state === 'deleting') {
      await unlinkQuiet(path);
      store.deleteSnapshot(row.id);
      report.deleted++;
    } else if (row.state === 'available' && !exists) {
      store.setSnapshotFault(row.id, 'snapshot file missing');
      report.faulted++;
      slog().error('snapshot file missing; marked faulty');
    }
  }

  // 4. Files without rows. With a brand-new database they are kept aside instead: losing the metadata must
  //    not destroy the data.
  //    A scanned pool's volume files are those its scan listed (step 2 removes files only with their rows).
  let volumeNames: Map<string, Set<string>> | undefined;
  const snapshotNames = store.snapshotNames();
  for (const pool of ctx.pools.values()) {
    if (!pool.healthy) continue;
    for (const entry of readdirSync(pool.tmpDir)) {
      await unlinkQuiet(join(pool.tmpDir, entry));
      report.tmpRemoved++;
    }
    const listed = scanned.get(pool.name);
    const volumeFiles = listed
      ? { entries: listed.keys(), known: rowNames.get(pool.name) }
      : { entries: readdirSync(pool.volumesDir), known: (volumeNames ??= store.volumeNames()).get(pool.name) };
    for (const [dir, entries, known, kind] of [
      [pool.volumesDir, volumeFiles.entries, volumeFiles.known ?? new Set<string>(), 'volume'],
      [
        pool.snapshotsDir,
        readdirSync(pool.snapshotsDir),
        snapshotNames.get(pool.name) ?? new Set<string>(),
        'snapshot',
      ],
    ] as const) {
      for (const entry of entries) {
        if (known.has(entry)) continue;
        const path = join(dir, entry);
        if (store.fresh) {
          const lost = join(pool.root, 'lost+found');
          mkdirSync(lost, { recursive: true, mode: 0o700 });
          const target = join(lost, `${kind}-${entry}`);
          renameSync(path, existsSync(target) ? `${target}.${Date.now()}` : target);
          log.error({ pool: pool.name, file: path }, 'file without metadata in a new database: moved to lost+found');
        } else {
          await unlinkQuiet(path);
          log.warn({ pool: pool.name, file: path }, 'removed a file without metadata');
        }
        report.orphansRemoved++;
      }
    }
  }

  scanned.clear();
  rowNames.clear();

  // 5. Attachments against the loop devices that really exist.
  const byFile = new Map<string, LoopDevice[]>();
  for (const d of loops) (byFile.get(d.backFile) ?? byFile.set(d.backFile, []).get(d.backFile)!).push(d);
  const claimed = new Set<string>();
  for (const att of store.allAttachments()) {
    const vol = store.volumeById(att.vol_id);
    const pool = vol ? usablePool(ctx, vol.pool) : undefined;
    if (!vol || !pool) {
      if (!vol) store.deleteAttachment(att.vol_id, att.host_id);
      continue;
    }
    const path = pool.volumePath(vol.name);
    const devices = byFile.get(path) ?? [];
    // Several hosts may hold the same file: a host's record matches its own device, or a device no other
    // record has claimed.
    const current = devices.find((d) => d.device === att.device) ?? devices.find((d) => !claimed.has(d.device));
    if (att.state === 'detaching' || !current) {
      if (current)
        await detachLoop(current.device).catch((err: unknown) =>
          log.warn({ err, device: current.device }, 'cannot finish a detach'),
        );
      store.deleteAttachment(att.vol_id, att.host_id);
      report.attachmentsFixed++;
      log.warn(
        { volume: vol.name, device: att.device, state: att.state },
        current ? 'finished an interrupted detach' : 'attached device is gone; dropped the record',
      );
      continue;
    }
    claimed.add(current.device);
    if (att.state !== 'attached' || current.device !== att.device) {
      store.upsertAttachment({
        ...att,
        state: 'attached',
        device: current.device,
        dev_major: current.major,
        dev_minor: current.minor,
      });
      report.attachmentsFixed++;
      log.warn({ volume: vol.name, device: current.device }, 'finished an interrupted attach');
    }
    ctx.qos.apply(current.major, current.minor, { maxIops: vol.max_iops, maxMbps: vol.max_mbps });
  }
  // Loop devices over our volume files that no row knows (a crash between losetup and the commit).
  for (const pool of ctx.pools.values()) {
    if (!pool.healthy) continue;
    const prefix = pool.volumesDir + '/';
    for (const d of loops) {
      if (claimed.has(d.device) || !d.backFile.startsWith(prefix)) continue;
      const name = d.backFile.slice(prefix.length);
      const vol: VolumeRow | undefined = store.volume(name);
      if (!vol || vol.state !== 'available' || store.attachment(vol.id)) {
        log.warn(
          { device: d.device, file: d.backFile },
          'loop device over a file that is not an attachable volume; left alone',
        );
        continue;
      }
      store.upsertAttachment({
        vol_id: vol.id,
        host_id: ctx.hostId,
        state: 'attached',
        device: d.device,
        dev_major: d.major,
        dev_minor: d.minor,
        read_only: d.readOnly ? 1 : 0,
        attached_at: Math.floor(Date.now() / 1000),
      });
      ctx.qos.apply(d.major, d.minor, { maxIops: vol.max_iops, maxMbps: vol.max_mbps });
      claimed.add(d.device);
      report.attachmentsFixed++;
      log.warn({ volume: name, device: d.device }, 'adopted an attached loop device without a record');
    }
  }
  store.recountUsage();
  return report;
}
