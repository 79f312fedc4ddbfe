// What the image jobs share: the running jobs' progress, the service state they read, and how a failure is told.
import { RetCode } from '../src/protocol/vbs.js';
import { nowSeconds, type Ctx } from './context.js';
import { fromIoError, imageError, VbsError } from './errors.js';
import { MalformedPathError, type ImageDirs } from './safe-paths.js';
import type { UrlAllowlist } from './url-guard.js';

/** A running job's progress, and how to stop it. */
export interface LiveJob {
  bytesDone: number;
  bytesTotal: number;
  abort: AbortController;
}

/** What of the image service an import or export job needs (ImageService is one). */
export interface ImageJobHost {
  readonly ctx: Ctx;
  readonly live: Map<string, LiveJob>;
  /** the qemu-img of --qemu-img (or found in PATH at start); '' when there is none */
  readonly qemuImg: string;
  /** the hosts and networks http(s) imports may reach beyond the default */
  readonly urlAllow: UrlAllowlist;
  imageDirs(): ImageDirs;
}

export const pathError = (err: unknown): VbsError =>
  new VbsError(
    err instanceof MalformedPathError ? RetCode.INVALID_PARAMETER : RetCode.IMAGE_ERROR,
    (err as Error).message,
  );

/** The qemu-img path, or IMAGE_ERROR saying what needs it when this VBS has none. */
export function needQemuImg(host: ImageJobHost, what: string): string {
  if (!host.qemuImg) {
    throw imageError(
      `image_format: ${what} needs qemu-img, and this VBS has none (install qemu-utils or set --qemu-img); raw images work without it`,
    );
  }
  return host.qemuImg;
}

/** The result code a failed job reports: NO_SPACE when it ran out of space (ENOSPC from us or a tool). */
function failureCode(err: unknown): number {
  return err instanceof VbsError ? err.retcode : fromIoError(err, 'job').retcode;
}

/** A failed job's error and code: an aborted job says why it was aborted, with code 0. */
export function jobFailure(signal: AbortSignal, err: unknown): { message: string; errorCode: number } {
  const message = signal.aborted ? String((signal.reason as Error)?.message ?? 'aborted') : (err as Error).message;
  const errorCode = signal.aborted ? 0 : failureCode(err);
  return { message, errorCode };
}

/** Returns a function that calls `release` the first time only. */
export function once(release: () => void): () => void {
  let released = false;
  return () => {
    if (!released) release();
    released = true;
  };
}

type JobEnd = Parameters<Ctx['store']['finishJob']>[0];

/** The row that ends a job that did all its bytes. */
export function doneJob(jobId: string, live: LiveJob): JobEnd {
  return {
    job_id: jobId,
    status: 'done',
    error: '',
    bytes_done: live.bytesTotal,
    bytes_total: live.bytesTotal,
    ended_at: nowSeconds(),
  };
}

/** The row that ends a failed job, with what jobFailure said of it. */
export function failedJob(jobId: string, live: LiveJob, failure: { message: string; errorCode: number }): JobEnd {
  return {
    job_id: jobId,
    status: 'failed',
    error: failure.message,
    error_code: failure.errorCode,
    bytes_done: live.bytesDone,
    bytes_total: live.bytesTotal,
    ended_at: nowSeconds(),
  };
}
