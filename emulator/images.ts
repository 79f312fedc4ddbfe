// Image import and export as asynchronous jobs (docs/socket-api.md §2.6). Imports stream the source into a
// sparse file under the pool's .tmp/ (raw directly, qcow2 through qemu-img), verify the checksum, and only
// then rename the file into place; a failure deletes the volume the import created. Exports read a
// temporary reflink snapshot, write `.<name>.<job>.part` next to the target and rename it when complete.
import { spawn } from 'node:child_process';
import { createHash, randomUUID, type Hash } from 'node:crypto';
import {
  closeSync,
  constants,
  createReadStream,
  fsyncSync,
  linkSync,
  lstatSync,
  openSync,
  promises as fsp,
  readSync,
  realpathSync,
  renameSync,
  unlinkSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Key } from '../src/protocol/catalog.js';
import { RetCode } from '../src/protocol/vbs.js';
import { nowSeconds, poolOf, usablePool, type Ctx } from './context.js';
import { busy, fromIoError, imageError, invalid, notExist, VbsError } from './errors.js';
import { openHttp, type HttpSource } from './image-http.js';
import { createSparseSync, fsyncPath, growSync, MiB, preallocate, reflink, sparseCopy } from './files.js';
import { snapKey, volKey } from './locks.js';
import { flushDevice } from './loopdev.js';
import type { Logger } from './log.js';
import type { Params } from './params.js';
import {
  fdPath,
  MalformedPathError,
  openExportDir,
  openImageForRead,
  type ExportDir,
  type ImageDirs,
  type OpenedImage,
} from './safe-paths.js';
import type { JobRow, VolumeRow } from './store.js';
import { parseAllowlist, type UrlAllowlist } from './url-guard.js';
import { urlWithoutCredentials } from '../src/protocol/urls.js';
import { checkCapacity, checkVolumeNameFree, orUndo, parseCreateSpec, reserve, takeLocks } from './volumes.js';

const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
const BLOCK = 4096;
const ZERO_BLOCK = Buffer.alloc(BLOCK);
const JOB_RETENTION_S = 3600;

const pathError = (err: unknown): VbsError =>
  new VbsError(
    err instanceof MalformedPathError ? RetCode.INVALID_PARAMETER : RetCode.IMAGE_ERROR,
    (err as Error).message,
  );

/**
 * Formats recognised by their first bytes that this VBS cannot read. With image_format=auto they are refused
 * up front, rather than imported byte for byte as if they were a raw disk.
 */
export function unreadableFormat(head: Buffer): string | undefined {
  const at = (offset: number, magic: string): boolean =>
    head.length >= offset + magic.length && head.toString('latin1', offset, offset + magic.length) === magic;
  if (at(0, 'KDMV') || at(0, '# Disk DescriptorFile')) return 'vmdk';
  if (at(0, 'vhdxfile')) return 'vhdx';
  if (at(0, 'conectix')) return 'vhd';
  if (at(0, 'QED\0')) return 'qed';
  if (head.length >= 0x44 && head.readUInt32LE(0x40) === 0xbeda107f) return 'vdi';
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip-compressed';
  if (at(0, '\xfd7zXZ\0')) return 'xz-compressed';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd-compressed';
  if (at(0, 'BZh') && head.length >= 4 && head[3]! >= 0x31 && head[3]! <= 0x39) return 'bzip2-compressed';
  return undefined;
}

interface LiveJob {
  bytesDone: number;
  bytesTotal: number;
  abort: AbortController;
}

type Source =
  { kind: 'file'; path: string; fd: number; size: number; head: Buffer; othersCanWrite: boolean } | HttpSource;

function checksumSpec(p: Params): { algorithm: 'sha256' | 'md5'; hex: string } | undefined {
  const v = p.opt(Key.CHECKSUM);
  if (v === undefined) return undefined;
  const m = /^(sha256|md5):([0-9a-fA-F]+)$/.exec(v);
  if (!m || m[2]!.length !== (m[1] === 'sha256' ? 64 : 32)) {
    throw invalid(Key.CHECKSUM, 'must be sha256:<64 hex digits> or md5:<32 hex digits>');
  }
  return { algorithm: m[1] as 'sha256' | 'md5', hex: m[2]!.toLowerCase() };
}

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export class ImageService {
  private readonly live = new Map<string, LiveJob>();
  private readonly purgeTimer: NodeJS.Timeout;
  /** the qemu-img of --qemu-img (or found in PATH at start); '' when there is none */
  private readonly qemuImg: string;
  /** the hosts and networks http(s) imports may reach beyond the default */
  private readonly urlAllow: UrlAllowlist;

  constructor(private readonly ctx: Ctx) {
    this.qemuImg = ctx.config.qemuImg;
    this.urlAllow = parseAllowlist(ctx.config.imageUrlAllow);
    ctx.store.purgeJobs(nowSeconds() - JOB_RETENTION_S);
    this.purgeTimer = setInterval(() => ctx.store.purgeJobs(nowSeconds() - JOB_RETENTION_S), 60_000);
    this.purgeTimer.unref();
  }

  /** Whether qcow2 images can be read and written (qemu-img is there). */
  get qcow2(): boolean {
    return this.qemuImg !== '';
  }

  private needQemuImg(what: string): string {
    if (!this.qemuImg) {
      throw imageError(
        `image_format: ${what} needs qemu-img, and this VBS has none (install qemu-utils or set --qemu-img); raw images work without it`,
      );
    }
    return this.qemuImg;
  }

  /** Aborts running jobs (shutdown); each fails and cleans up after itself. */
  abortAll(): void {
    clearInterval(this.purgeTimer);
    for (const job of this.live.values()) job.abort.abort(new Error('the emulator is shutting down'));
  }

  // ---- paths

  /** The image directories and what no image may be in (the data dir and the pools, save <data>/images). */
  private imageDirs(): ImageDirs {
    const { config } = this.ctx;
    const forbidden = [
      realpathOr(config.dataDir),
      ...[...this.ctx.pools.values()].flatMap((p) => [realpathOr(p.root), p.lunPath ? realpathOr(p.lunPath) : '']),
    ].filter(Boolean);
    return { dirs: config.imageDirs, forbidden, allowedInside: [realpathOr(join(config.dataDir, 'images'))] };
  }

  // ---- import

  async startImport(p: Params, log: Logger): Promise<{ jobId: string; volume: VolumeRow }> {
    const name = p.name(Key.VOL_NAME);
    const url = p.req(Key.IMAGE_URL);
    const requested = p.oneOf(Key.IMAGE_FORMAT, ['auto', 'raw', 'qcow2'] as const, 'auto');
    const checksum = checksumSpec(p);
    const spec = parseCreateSpec(this.ctx, p, false);
    checkVolumeNameFree(this.ctx, name);
    const source = await this.openSource(url);
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
        this.needQemuImg('reading a qcow2 image');
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
      checkVolumeNameFree(this.ctx, name);
      const pool = usablePool(this.ctx, spec.pool.name);
      checkCapacity(this.ctx, pool, sizeMb, spec.thin ? 0 : sizeMb * MiB);
      const releaseLocks = takeLocks(this.ctx, [volKey(name)], 'import');
      const jobId = `job-${randomUUID()}`;
      const tmpVolume = pool.tmpPath(`import-${jobId}`);
      // A thick import's space is held from the check above until the job ends, as for a thick create.
      const unreserve = reserve(this.ctx, pool.name, spec.thin ? 0 : sizeMb * MiB, tmpVolume);
      const release = (): void => {
        unreserve();
        releaseLocks();
      };
      const download = pool.tmpPath(`download-${jobId}`);
      const image = source.kind === 'file' ? source.path : urlWithoutCredentials(source.url);
      const volId = orUndo(
        () =>
          this.ctx.store.tx(() => {
            const id = this.ctx.store.insertVolume({
              name,
              pool: pool.name,
              size_mb: sizeMb,
              thin: spec.thin ? 1 : 0,
              state: 'creating',
              op: 'import',
              src_type: 'image',
              src_name: '',
              src_id: null,
              clone_type: '',
              max_iops: spec.maxIops,
              max_mbps: spec.maxMbps,
              io_priority: spec.ioPriority,
              io_class_id: spec.ioClassId,
              cache_policy: spec.cachePolicy,
              create_time: nowSeconds(),
              job_id: jobId,
            });
            this.ctx.store.insertJob({
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
      this.live.set(jobId, live);
      handedOver = true;
      const jobLog = log.child({ job_id: jobId, volume: name });
      jobLog.info({ image, format, sizeMb }, 'import started');
      let released = false;
      // Called in the same step as the job's final commit: a job seen as ended holds no lock.
      const releaseOnce = (): void => {
        if (!released) release();
        released = true;
      };
      void this.ctx.background.track(
        this.runImport({
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
          this.live.delete(jobId);
        }),
      );
      return { jobId, volume: this.ctx.store.volumeById(volId)! };
    } finally {
      if (!handedOver) closeSource(source);
    }
  }

  private async openSource(url: string): Promise<Source> {
    let path: string | undefined;
    if (url.startsWith('/')) path = url;
    else if (url.startsWith('file:')) {
      try {
        path = fileURLToPath(url);
      } catch {
        throw invalid(Key.IMAGE_URL, 'is not a valid file:// URL');
      }
    } else if (/^https?:\/\//i.test(url)) {
      return openHttp(url, this.urlAllow);
    } else {
      throw invalid(Key.IMAGE_URL, 'must be an absolute path, a file:// URL or an http(s):// URL');
    }
    let opened: OpenedImage;
    try {
      opened = openImageForRead(path, Key.IMAGE_URL, this.imageDirs());
    } catch (err) {
      throw pathError(err);
    }
    try {
      const head = Buffer.alloc(512);
      const n = readSync(opened.fd, head, 0, head.length, 0);
      return {
        kind: 'file',
        path: opened.real,
        fd: opened.fd,
        size: opened.size,
        head: head.subarray(0, n),
        othersCanWrite: opened.othersCanWrite,
      };
    } catch (err) {
      closeSync(opened.fd);
      throw imageError(`image_url: cannot read ${path}: ${(err as Error).message}`);
    }
  }

  private async runImport(job: {
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
  }): Promise<void> {
    const { ctx } = this;
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
        const qemuImg = this.needQemuImg('reading a qcow2 image');
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
        ctx.store.finishJob({
          job_id: job.jobId,
          status: 'done',
          error: '',
          bytes_done: live.bytesTotal,
          bytes_total: live.bytesTotal,
          ended_at: nowSeconds(),
        });
      });
      job.release();
      log.info('import done');
    } catch (err) {
      const message = signal.aborted ? String((signal.reason as Error)?.message ?? 'aborted') : (err as Error).message;
      const errorCode = signal.aborted ? 0 : failureCode(err);
      log.warn({ err }, 'import failed; deleting the volume it created');
      await fsp.rm(job.tmpVolume, { force: true }).catch(() => undefined);
      await fsp.rm(job.download, { force: true }).catch(() => undefined);
      ctx.store.tx(() => {
        ctx.store.deleteVolume(job.volId);
        ctx.store.finishJob({
          job_id: job.jobId,
          status: 'failed',
          error: message,
          error_code: errorCode,
          bytes_done: live.bytesDone,
          bytes_total: live.bytesTotal,
          ended_at: nowSeconds(),
        });
      });
      job.release();
    } finally {
      closeSource(source);
      await fsp.rm(job.download, { force: true }).catch(() => undefined);
    }
  }

  // ---- export

  startExport(p: Params, log: Logger): string {
    const volName = p.optName(Key.VOL_NAME);
    const snapName = p.optName(Key.SNAP_NAME);
    if ((volName === undefined) === (snapName === undefined))
      throw invalid(Key.VOL_NAME, 'give exactly one of vol_name and snap_name');
    const format = p.oneOf(Key.IMAGE_FORMAT, ['raw', 'qcow2'] as const, 'raw');
    if (format === 'qcow2') this.needQemuImg('writing a qcow2 image');
    const overwrite = p.flag(Key.OVERWRITE, false);
    let dir: ExportDir;
    try {
      dir = openExportDir(p.req(Key.IMAGE_PATH), Key.IMAGE_PATH, this.imageDirs());
    } catch (err) {
      throw pathError(err);
    }
    // From here on the export names its directory only through this descriptor (safe-paths.ts).
    let handedOver = false;
    try {
      const jobId = this.exportJob(volName, snapName, dir, format, overwrite, log);
      handedOver = true;
      return jobId;
    } finally {
      if (!handedOver) closeSync(dir.fd);
    }
  }

  private exportJob(
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
    const { ctx } = this;
    let poolName: string;
    let sizeMb: number;
    let sourceLock: string;
    if (volName !== undefined) {
      const row = ctx.store.volume(volName);
      if (!row) throw notExist(`volume ${volName}`);
      if (row.state !== 'available') {
        if (row.state === 'fault')
          throw new VbsError(RetCode.INTERNAL, `volume ${volName} is faulty: ${row.fault_reason}`);
        throw busy(`volume ${volName}`, row.state);
      }
      poolName = row.pool;
      sizeMb = row.size_mb;
      sourceLock = volKey(volName);
    } else {
      const row = ctx.store.snapshot(snapName!);
      if (!row) throw notExist(`snapshot ${snapName}`);
      if (row.state !== 'available') {
        if (row.state === 'fault')
          throw new VbsError(RetCode.INTERNAL, `snapshot ${snapName} is faulty: ${row.fault_reason}`);
        throw busy(`snapshot ${snapName}`, row.state);
      }
      poolName = row.pool;
      sizeMb = row.size_mb;
      sourceLock = snapKey(snapName!);
    }
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
    this.live.set(jobId, live);
    const jobLog = log.child({ job_id: jobId });
    jobLog.info({ volume: volName, snapshot: snapName, target, format }, 'export started');
    let released = false;
    const releaseOnce = (): void => {
      if (!released) release();
      released = true;
    };
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
          if (this.qemuImg)
            await runWithProgress(
              this.qemuImg,
              ['convert', '-p', '-f', 'raw', '-O', format, source, part],
              live,
              signal,
            );
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
          ctx.store.finishJob({
            job_id: jobId,
            status: 'done',
            error: '',
            bytes_done: live.bytesTotal,
            bytes_total: live.bytesTotal,
            ended_at: nowSeconds(),
          });
          jobLog.info('export done');
        } catch (err) {
          const message = signal.aborted
            ? String((signal.reason as Error)?.message ?? 'aborted')
            : (err as Error).message;
          const errorCode = signal.aborted ? 0 : failureCode(err);
          jobLog.warn({ err }, 'export failed');
          await fsp.rm(part, { force: true }).catch(() => undefined);
          await fsp.rm(tmpSource, { force: true }).catch(() => undefined);
          releaseOnce();
          ctx.store.finishJob({
            job_id: jobId,
            status: 'failed',
            error: message,
            error_code: errorCode,
            bytes_done: live.bytesDone,
            bytes_total: live.bytesTotal,
            ended_at: nowSeconds(),
          });
        } finally {
          releaseOnce();
          this.live.delete(jobId);
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

  job(jobId: string): { row: JobRow; live?: { bytesDone: number; bytesTotal: number } } {
    const row = this.ctx.store.job(jobId);
    if (!row) throw notExist(`job ${jobId}`);
    const live = this.live.get(jobId);
    return {
      row,
      live: live && row.status === 'running' ? { bytesDone: live.bytesDone, bytesTotal: live.bytesTotal } : undefined,
    };
  }
}

/** The result code a failed job reports: NO_SPACE when it ran out of space (ENOSPC from us or a tool). */
function failureCode(err: unknown): number {
  return err instanceof VbsError ? err.retcode : fromIoError(err, 'job').retcode;
}

function closeSource(source: Source): void {
  if (source.kind === 'file') {
    try {
      closeSync(source.fd);
    } catch {
      /* already closed */
    }
  } else if (!source.response.destroyed) {
    source.response.destroy();
  }
}

/** The whole source as a stream of chunks: the probed head first, then the rest. */
async function* sourceStream(source: Source): AsyncGenerator<Buffer> {
  if (source.kind === 'file') {
    const stream = createReadStream('', { fd: source.fd, start: 0, highWaterMark: MiB, autoClose: false });
    for await (const chunk of stream) yield chunk as Buffer;
    return;
  }
  if (source.head.length > 0) yield source.head;
  for await (const chunk of source.response as Readable) yield chunk as Buffer;
}

/** Writes a stream into a pre-sized sparse file, skipping all-zero 4 KiB blocks so the file stays sparse. */
async function writeSparse(
  chunks: AsyncIterable<Buffer>,
  path: string,
  limit: number,
  hash: Hash | undefined,
  live: LiveJob,
  signal: AbortSignal,
): Promise<void> {
  const fh = await fsp.open(path, 'r+');
  try {
    const pending = Buffer.alloc(4 * MiB);
    let fill = 0;
    let offset = 0;
    const flush = async (final: boolean): Promise<void> => {
      const usable = final ? fill : fill - (fill % BLOCK);
      let runStart = -1;
      for (let i = 0; i < usable; i += BLOCK) {
        const end = Math.min(i + BLOCK, usable);
        const block = pending.subarray(i, end);
        const zero = block.length === BLOCK ? block.equals(ZERO_BLOCK) : block.every((b) => b === 0);
        if (!zero && runStart < 0) runStart = i;
        if (zero && runStart >= 0) {
          await fh.write(pending, runStart, i - runStart, offset + runStart);
          runStart = -1;
        }
      }
      if (runStart >= 0) await fh.write(pending, runStart, usable - runStart, offset + runStart);
      pending.copy(pending, 0, usable, fill);
      fill -= usable;
      offset += usable;
    };
    for await (const chunk of chunks) {
      if (signal.aborted) throw signal.reason;
      hash?.update(chunk);
      let pos = 0;
      while (pos < chunk.length) {
        const n = Math.min(chunk.length - pos, pending.length - fill);
        chunk.copy(pending, fill, pos, pos + n);
        fill += n;
        pos += n;
        if (offset + fill > limit) throw imageError(`the image is larger than the volume (${limit} bytes)`);
        if (fill === pending.length) await flush(false);
      }
      live.bytesDone = offset + fill;
    }
    await flush(true);
    live.bytesDone = offset;
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function hashFile(fd: number, hash: Hash, live: LiveJob, signal: AbortSignal): Promise<void> {
  const stream = createReadStream('', { fd, start: 0, highWaterMark: MiB, autoClose: false });
  live.bytesDone = 0;
  for await (const chunk of stream) {
    if (signal.aborted) throw signal.reason;
    hash.update(chunk as Buffer);
    live.bytesDone += (chunk as Buffer).length;
  }
}

async function download(
  chunks: AsyncIterable<Buffer>,
  path: string,
  hash: Hash | undefined,
  live: LiveJob,
  signal: AbortSignal,
): Promise<void> {
  const fh = await fsp.open(path, 'wx', 0o600);
  try {
    live.bytesDone = 0;
    for await (const chunk of chunks) {
      if (signal.aborted) throw signal.reason;
      hash?.update(chunk);
      await fh.write(chunk);
      live.bytesDone += chunk.length;
    }
  } finally {
    await fh.close();
  }
}

/** Refuses qcow2 images that would make qemu-img open other files, or that do not fit the volume. */
async function checkQcow2(
  qemuImg: string,
  path: string,
  limit: number,
  signal: AbortSignal,
  fd: number | undefined,
): Promise<void> {
  const out = await runCapture(qemuImg, ['info', '--output=json', '-f', 'qcow2', path], signal, fd);
  let info: {
    'virtual-size'?: number;
    'backing-filename'?: string;
    'format-specific'?: { data?: { 'data-file'?: string } };
  };
  try {
    info = JSON.parse(out) as typeof info;
  } catch {
    throw imageError('qemu-img info printed no JSON');
  }
  if (info['backing-filename']) throw imageError('qcow2 images with a backing file are refused');
  if (info['format-specific']?.data?.['data-file'])
    throw imageError('qcow2 images with an external data file are refused');
  if ((info['virtual-size'] ?? 0) > limit)
    throw imageError(`the image (${info['virtual-size']} bytes) is larger than the volume (${limit} bytes)`);
}

function runCapture(cmd: string, args: string[], signal: AbortSignal, fd?: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', ...(fd !== undefined ? [fd] : [])], signal });
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d.slice(0, 4096);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise(out);
      else reject(imageError(`${cmd} ${args[0]} failed: ${err.trim().split('\n').pop() ?? `exit ${code}`}`));
    });
  });
}

/** Runs qemu-img with -p and turns its "(NN.NN/100%)" lines into bytes_done. */
function runWithProgress(cmd: string, args: string[], live: LiveJob, signal: AbortSignal, fd?: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe', ...(fd !== undefined ? [fd] : [])], signal });
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      const all = [...d.matchAll(/\((\d+(?:\.\d+)?)\/100%\)/g)];
      const last = all[all.length - 1];
      if (last) live.bytesDone = Math.floor((Number(last[1]) / 100) * live.bytesTotal);
    });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      err += d.slice(0, 4096);
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolvePromise();
      else reject(new Error(`${cmd} ${args[0]} failed: ${err.trim().split('\n').pop() ?? `exit ${code}`}`));
    });
  });
}
