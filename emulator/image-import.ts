// Image import as an asynchronous job (docs/socket-api.md §2.6): the source streams into a sparse file under the
// pool's .tmp/ (raw directly, qcow2 through qemu-img), the checksum is verified, and only then is the file renamed
// into place; a failure deletes the volume the import created.
import { createHash, randomUUID } from 'node:crypto';
import { promises as fsp, renameSync } from 'node:fs';
import { Key } from '../src/protocol/catalog.js';
import { urlWithoutCredentials } from '../src/protocol/urls.js';
import { nowSeconds, poolOf, usablePool } from './context.js';
import { imageError, invalid } from './errors.js';
import { createSparseSync, fsyncPath, growSync, MiB, preallocate } from './files.js';
import { doneJob, failedJob, jobFailure, needQemuImg, once, type ImageJobHost, type LiveJob } from './image-jobs.js';
import {
  closeSource,
  download,
  hashFile,
  openSource,
  QCOW2_MAGIC,
  sourceStream,
  unreadableFormat,
  writeSparse,
  type Source,
} from './image-source.js';
import { checkQcow2, runWithProgress } from './image-tools.js';
import { volKey } from './locks.js';
import type { Logger } from './log.js';
import type { Params } from './params.js';
import type { VolumeRow } from './store.js';
import { checkVolumeNameFree, newVolume, orUndo, parseCreateSpec, takeLocks } from './volumes.js';
import { checkCapacity, reserve } from './capacity.js';

function checksumSpec(p: Params): { algorithm: 'sha256' | 'md5'; hex: string } | undefined {
  const v = p.opt(Key.CHECKSUM);
  if (v === undefined) return undefined;
  const m = /^(sha256|md5):([0-9a-fA-F]+)$/.exec(v);
  if (!m || m[2]!.length !== (m[1] === 'sha256' ? 64 : 32)) {
    throw invalid(Key.CHECKSUM, 'must be sha256:<64 hex digits> or md5:<32 hex digits>');
  }
  return { algorithm: m[1] as 'sha256' | 'md5', hex: m[2]!.toLowerCase() };
}

export async function startImport(
  host: ImageJobHost,
  p: Params,
  log: Logger,
): Promise<{ jobId: string; volume: VolumeRow }> {
  const name = p.name(Key.VOL_NAME);
  const url = p.req(Key.IMAGE_URL);
  const requested = p.oneOf(Key.IMAGE_FORMAT, ['auto', 'raw', 'qcow2'] as const, 'auto');
  const checksum = checksumSpec(p);
  const spec = parseCreateSpec(host.ctx, p, false);
  checkVolumeNameFree(host.ctx, name);
  const source = await openSource(host, url);
  let handedOver = false;
  try {
    const isQcow2 = source.head.length >= 4 && source.head.readUInt32BE(0) === QCOW2_MAGIC;
    const foreign = requested === 'auto' && !isQcow2 ? unreadableFormat(source.head) : undefined;
    if (foreign) {
      throw imageError(
        `image_url: the image is ${foreign}, which this VBS cannot read (raw and qcow2 only); convert or decompress it to raw or qcow2 first`,
      );
    }
    const format = requested === 'auto' ? (isQcow2 ? 'qcow2' : 'raw') : requested;
    let virtualSize: number | undefined;
    if (format === 'qcow2') {
      if (!isQcow2 || source.head.length < 32) throw imageError('image_format: the image is not qcow2');
      needQemuImg(host, 'reading a qcow2 image');
      if (source.head.readBigUInt64BE(8) !== 0n)
        throw imageError('image_url: qcow2 images with a backing file are refused');
      virtualSize = Number(source.head.readBigUInt64BE(24));
    } else {
      virtualSize = source.size;
    }
    const sizeMb = spec.sizeMb ?? (virtualSize !== undefined ? Math.max(1, Math.ceil(virtualSize / MiB)) : undefined);
    if (sizeMb === undefined) throw invalid(Key.VOL_SIZE, 'is required: the image size is not known in advance');
    if (virtualSize !== undefined && virtualSize > sizeMb * MiB) {
      throw imageError(`vol_size: the image (${virtualSize} bytes) is larger than ${sizeMb} MiB`);
    }
    // Checked again after the probe, which may have waited on the network.
    checkVolumeNameFree(host.ctx, name);
    const pool = usablePool(host.ctx, spec.pool.name);
    checkCapacity(host.ctx, pool, sizeMb, spec.thin ? 0 : sizeMb * MiB);
    const releaseLocks = takeLocks(host.ctx, [volKey(name)], 'import');
    const jobId = `job-${randomUUID()}`;
    const tmpVolume = pool.tmpPath(`import-${jobId}`);
    // A thick import's space is held from the check above until the job ends, as for a thick create.
    const unreserve = reserve(host.ctx, pool.name, spec.thin ? 0 : sizeMb * MiB, tmpVolume);
    const release = (): void => {
      unreserve();
      releaseLocks();
    };
    const download = pool.tmpPath(`download-${jobId}`);
    const image = source.kind === 'file' ? source.path : urlWithoutCredentials(source.url);
    const volId = orUndo(
      () =>
        host.ctx.store.tx(() => {
          const id = host.ctx.store.insertVolume(
            newVolume(spec, sizeMb, 'creating', { op: 'import', src_type: 'image', job_id: jobId }),
          );
          host.ctx.store.insertJob({
            job_id: jobId,
            job_type: 'import',
            status: 'running',
            vol_name: name,
            snap_name: '',
            vol_id: id,
            pool: pool.name,
            image,
            image_format: format,
            bytes_done: 0,
            bytes_total: virtualSize ?? sizeMb * MiB,
            error: '',
            tmp_paths: JSON.stringify([tmpVolume, download]),
            started_at: nowSeconds(),
            ended_at: null,
          });
          return id;
        }),
      release,
    );
    const live: LiveJob = { bytesDone: 0, bytesTotal: virtualSize ?? sizeMb * MiB, abort: new AbortController() };
    host.live.set(jobId, live);
    handedOver = true;
    const jobLog = log.child({ job_id: jobId, volume: name });
    jobLog.info({ image, format, sizeMb }, 'import started');
    // Called in the same step as the job's final commit: a job seen as ended holds no lock.
    const releaseOnce = once(release);
    void host.ctx.background.track(
      runImport(host, {
        jobId,
        volId,
        name,
        source,
        format,
        sizeBytes: sizeMb * MiB,
        thin: spec.thin,
        checksum,
        tmpVolume,
        download,
        live,
        log: jobLog,
        release: releaseOnce,
      }).finally(() => {
        releaseOnce();
        host.live.delete(jobId);
      }),
    );
    return { jobId, volume: host.ctx.store.volumeById(volId)! };
  } finally {
    if (!handedOver) closeSource(source);
  }
}

async function runImport(
  host: ImageJobHost,
  job: {
    jobId: string;
    volId: number;
    name: string;
    source: Source;
    format: 'raw' | 'qcow2';
    sizeBytes: number;
    thin: boolean;
    checksum: { algorithm: 'sha256' | 'md5'; hex: string } | undefined;
    tmpVolume: string;
    download: string;
    live: LiveJob;
    log: Logger;
    release: () => void;
  },
): Promise<void> {
  const { ctx } = host;
  const { source, live, log } = job;
  const signal = live.abort.signal;
  const hash = job.checksum ? createHash(job.checksum.algorithm) : undefined;
  try {
    const pool = poolOf(ctx, ctx.store.volumeById(job.volId)!.pool);
    if (job.format === 'raw') {
      createSparseSync(job.tmpVolume, job.sizeBytes);
      await writeSparse(sourceStream(source), job.tmpVolume, job.sizeBytes, hash, live, signal);
    } else {
      let qcowPath: string;
      // qemu-img reads the image twice (info checks it has no backing or data file, convert reads it): a file
      // someone else may write could gain a backing file (/etc/shadow) between the two, so that one is
      // read from a private copy, as a download is.
      const direct = source.kind === 'file' && !source.othersCanWrite;
      if (direct) {
        if (hash) await hashFile(source.fd, hash, live, signal);
        // qemu-img reads the very file that was hashed: the descriptor is its fd 3.
        qcowPath = '/dev/fd/3';
      } else {
        await download(sourceStream(source), job.download, hash, live, signal);
        qcowPath = job.download;
      }
      const fd = direct ? source.fd : undefined;
      const qemuImg = needQemuImg(host, 'reading a qcow2 image');
      await checkQcow2(qemuImg, qcowPath, job.sizeBytes, signal, fd);
      live.bytesDone = 0;
      await runWithProgress(
        qemuImg,
        ['convert', '-p', '-f', 'qcow2', '-O', 'raw', qcowPath, job.tmpVolume],
        live,
        signal,
        fd,
      );
      growSync(job.tmpVolume, job.sizeBytes);
    }
    // The job's files go before its end is recorded: a job seen as ended leaves no file behind.
    await fsp.rm(job.download, { force: true });
    if (hash && job.checksum) {
      const got = hash.digest('hex');
      if (got !== job.checksum.hex)
        throw imageError(`checksum mismatch: expected ${job.checksum.algorithm}:${job.checksum.hex}, got ${got}`);
    }
    if (!job.thin) await preallocate(job.tmpVolume, 0, job.sizeBytes);
    fsyncPath(job.tmpVolume);
    renameSync(job.tmpVolume, pool.volumePath(job.name));
    fsyncPath(pool.volumesDir);
    ctx.store.tx(() => {
      ctx.store.setVolumeState(job.volId, 'available');
      ctx.store.finishJob(doneJob(job.jobId, live));
    });
    job.release();
    log.info('import done');
  } catch (err) {
    const failure = jobFailure(signal, err);
    log.warn({ err }, 'import failed; deleting the volume it created');
    await fsp.rm(job.tmpVolume, { force: true }).catch(() => undefined);
    await fsp.rm(job.download, { force: true }).catch(() => undefined);
    ctx.store.tx(() => {
      ctx.store.deleteVolume(job.volId);
      ctx.store.finishJob(failedJob(job.jobId, live, failure));
    });
    job.release();
  } finally {
    closeSource(source);
    await fsp.rm(job.download, { force: true }).catch(() => undefined);
  }
}
