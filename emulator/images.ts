// Image import and export as asynchronous jobs (docs/socket-api.md §2.6): the service holds the running jobs and
// what they share; image-import.ts and image-export.ts run them, image-source.ts and image-tools.ts do the I/O.
import { realpathSync } from 'node:fs';
import { join } from 'node:path';
import { nowSeconds, type Ctx } from './context.js';
import { notExist } from './errors.js';
import { startExport } from './image-export.js';
import { startImport } from './image-import.js';
import type { ImageJobHost, LiveJob } from './image-jobs.js';
import type { Logger } from './log.js';
import type { Params } from './params.js';
import type { ImageDirs } from './safe-paths.js';
import type { JobRow, VolumeRow } from './store.js';
import { parseAllowlist, type UrlAllowlist } from './url-guard.js';

const JOB_RETENTION_S = 3600;

function realpathOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

export class ImageService implements ImageJobHost {
  readonly live = new Map<string, LiveJob>();
  private readonly purgeTimer: NodeJS.Timeout;
  readonly qemuImg: string;
  readonly urlAllow: UrlAllowlist;

  constructor(readonly ctx: Ctx) {
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

  /** Aborts running jobs (shutdown); each fails and cleans up after itself. */
  abortAll(): void {
    clearInterval(this.purgeTimer);
    for (const job of this.live.values()) job.abort.abort(new Error('the emulator is shutting down'));
  }

  // ---- paths

  /** The image directories and what no image may be in (the data dir and the pools, save <data>/images). */
  imageDirs(): ImageDirs {
    const { config } = this.ctx;
    const forbidden = [
      realpathOr(config.dataDir),
      ...[...this.ctx.pools.values()].flatMap((p) => [realpathOr(p.root), p.lunPath ? realpathOr(p.lunPath) : '']),
    ].filter(Boolean);
    return { dirs: config.imageDirs, forbidden, allowedInside: [realpathOr(join(config.dataDir, 'images'))] };
  }

  startImport(p: Params, log: Logger): Promise<{ jobId: string; volume: VolumeRow }> {
    return startImport(this, p, log);
  }

  startExport(p: Params, log: Logger): string {
    return startExport(this, p, log);
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
