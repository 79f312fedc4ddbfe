// Image export as an asynchronous job (docs/socket-api.md §2.6): the job reads a temporary reflink snapshot (or the
// snapshot itself), writes `.<name>.<job>.part` next to the target through the directory's descriptor and renames
// it into place when complete.
import { randomUUID } from 'node:crypto';
import {
  closeSync,
  constants,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  promises as fsp,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import { Key } from '../src/protocol/catalog.js';
import { RetCode } from '../src/protocol/vbs.js';
import { nowSeconds, usablePool } from './context.js';
import { busy, imageError, invalid, notExist, VbsError } from './errors.js';
import { fsyncPath, MiB, reflink, sparseCopy } from './files.js';
import {
  doneJob,
  failedJob,
  jobFailure,
  needQemuImg,
  once,
  pathError,
  type ImageJobHost,
  type LiveJob,
} from './image-jobs.js';
import { runWithProgress } from './image-tools.js';
import { snapKey, volKey } from './locks.js';
import { flushDevice } from './loopdev.js';
import type { Logger } from './log.js';
import type { Params } from './params.js';
import { fdPath, openExportDir, type ExportDir } from './safe-paths.js';
import { orUndo, takeLocks } from './volumes.js';

export function startExport(host: ImageJobHost, p: Params, log: Logger): string {
  const volName = p.optName(Key.VOL_NAME);
  const snapName = p.optName(Key.SNAP_NAME);
  if ((volName === undefined) === (snapName === undefined))
    throw invalid(Key.VOL_NAME, 'give exactly one of vol_name and snap_name');
  const format = p.oneOf(Key.IMAGE_FORMAT, ['raw', 'qcow2'] as const, 'raw');
  if (format === 'qcow2') needQemuImg(host, 'writing a qcow2 image');
  const overwrite = p.flag(Key.OVERWRITE, false);
  let dir: ExportDir;
  try {
    dir = openExportDir(p.req(Key.IMAGE_PATH), Key.IMAGE_PATH, host.imageDirs());
  } catch (err) {
    throw pathError(err);
  }
  // From here on the export names its directory only through this descriptor (safe-paths.ts).
  let handedOver = false;
  try {
    const jobId = exportJob(host, volName, snapName, dir, format, overwrite, log);
    handedOver = true;
    return jobId;
  } finally {
    if (!handedOver) closeSync(dir.fd);
  }
}

function exportJob(
  host: ImageJobHost,
  volName: string | undefined,
  snapName: string | undefined,
  dir: ExportDir,
  format: 'raw' | 'qcow2',
  overwrite: boolean,
  log: Logger,
): string {
  const target = join(dir.real, dir.name);
  const targetAt = fdPath(dir.fd, dir.name);
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(targetAt);
  } catch {
    /* absent */
  }
  if (existing && (!existing.isFile() || !overwrite)) {
    throw imageError(
      `image_path: ${target} exists${existing.isFile() ? '; set overwrite=1 to replace it' : ' and is not a regular file'}`,
    );
  }
  const { ctx } = host;
  const row =
    volName !== undefined
      ? exportable(ctx.store.volume(volName), `volume ${volName}`)
      : exportable(ctx.store.snapshot(snapName!), `snapshot ${snapName}`);
  const sourceLock = volName !== undefined ? volKey(volName) : snapKey(snapName!);
  const { pool: poolName, size_mb: sizeMb } = row;
  const pool = usablePool(ctx, poolName);
  // A snapshot is held for the whole export; a volume only while its temporary snapshot is taken.
  const release = takeLocks(ctx, [sourceLock], 'export');
  const jobId = `job-${randomUUID()}`;
  const tmpSource = pool.tmpPath(`export-${jobId}`);
  const partName = `.${dir.name}.${jobId}.part`;
  // Written through the directory's descriptor: the same directory however its path is renamed meanwhile.
  const part = fdPath(dir.fd, partName);
  orUndo(
    () =>
      ctx.store.insertJob({
        job_id: jobId,
        job_type: 'export',
        status: 'running',
        vol_name: volName ?? '',
        snap_name: snapName ?? '',
        vol_id: null,
        pool: pool.name,
        image: target,
        image_format: format,
        bytes_done: 0,
        bytes_total: sizeMb * MiB,
        error: '',
        tmp_paths: JSON.stringify([tmpSource, join(dir.real, partName)]),
        started_at: nowSeconds(),
        ended_at: null,
      }),
    release,
  );
  const live: LiveJob = { bytesDone: 0, bytesTotal: sizeMb * MiB, abort: new AbortController() };
  host.live.set(jobId, live);
  const jobLog = log.child({ job_id: jobId });
  jobLog.info({ volume: volName, snapshot: snapName, target, format }, 'export started');
  const releaseOnce = once(release);
  void ctx.background.track(
    (async () => {
      const signal = live.abort.signal;
      try {
        let source: string;
        if (volName !== undefined) {
          const row = ctx.store.volume(volName)!;
          const att = ctx.store.attachment(row.id);
          if (att?.state === 'attached') flushDevice(att.device);
          if (pool.linkedClone) await reflink(pool.volumePath(volName), tmpSource);
          else await sparseCopy(pool.volumePath(volName), tmpSource);
          releaseOnce();
          source = tmpSource;
        } else {
          source = pool.snapshotPath(snapName!);
        }
        // Made 0600 before any byte is in it: qemu-img and cp write into the existing file and keep its mode, so
        // no other user can open the image while it is written, nor read it after.
        closeSync(
          openSync(part, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600),
        );
        if (host.qemuImg)
          await runWithProgress(host.qemuImg, ['convert', '-p', '-f', 'raw', '-O', format, source, part], live, signal);
        else await sparseCopy(source, part); // raw without qemu-img: a sparse copy is the same image
        if (signal.aborted) throw signal.reason;
        fsyncPath(part);
        if (overwrite) renameSync(part, targetAt);
        else {
          // link(2) refuses to replace a file that appeared meanwhile.
          linkSync(part, targetAt);
          unlinkSync(part);
        }
        fsyncSync(dir.fd);
        releaseOnce();
        // The temporary snapshot goes before the job says done, so nothing of the job outlives its end.
        await fsp.rm(tmpSource, { force: true });
        ctx.store.finishJob(doneJob(jobId, live));
        jobLog.info('export done');
      } catch (err) {
        const failure = jobFailure(signal, err);
        jobLog.warn({ err }, 'export failed');
        await fsp.rm(part, { force: true }).catch(() => undefined);
        await fsp.rm(tmpSource, { force: true }).catch(() => undefined);
        releaseOnce();
        ctx.store.finishJob(failedJob(jobId, live, failure));
      } finally {
        releaseOnce();
        host.live.delete(jobId);
        await fsp.rm(tmpSource, { force: true }).catch(() => undefined);
        try {
          closeSync(dir.fd);
        } catch {
          /* already closed */
        }
      }
    })(),
  );
  return jobId;
}

/** An export's source row: it must exist and be available; a faulty one is INTERNAL, a busy one BUSY. */
function exportable<R extends { state: string; fault_reason: string }>(row: R | undefined, what: string): R {
  if (!row) throw notExist(what);
  if (row.state !== 'available') {
    if (row.state === 'fault') throw new VbsError(RetCode.INTERNAL, `${what} is faulty: ${row.fault_reason}`);
    throw busy(what, row.state);
  }
  return row;
}
