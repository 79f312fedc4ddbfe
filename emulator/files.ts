// File operations on volume files: sparse create, reflink, sparse full copy, preallocation, fsync.
import {
  chmodSync,
  closeSync,
  constants,
  fsyncSync,
  ftruncateSync,
  openSync,
  promises as fsp,
  renameSync,
  statSync,
} from 'node:fs';
import { relative, isAbsolute, resolve } from 'node:path';
import { run } from './exec.js';

export const MiB = 1024 * 1024;

/** Creates `path` (which must not exist) as a sparse file of `bytes`: one open and one ftruncate, no data. */
export function createSparseSync(path: string, bytes: number): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600);
  try {
    ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

/** Grows a file to `bytes` (never shrinks). */
export function growSync(path: string, bytes: number): void {
  const fd = openSync(path, constants.O_WRONLY);
  try {
    if (statSync(path).size < bytes) ftruncateSync(fd, bytes);
  } finally {
    closeSync(fd);
  }
}

/** A copy-on-write clone (FICLONE): instant, shares every extent with `src` until either is written. */
export async function reflink(src: string, dst: string): Promise<void> {
  await fsp.copyFile(src, dst, constants.COPYFILE_FICLONE_FORCE | constants.COPYFILE_EXCL);
}

/**
 * An independent copy holding only the source's data: `cp --sparse=always --reflink=never` reads the
 * allocated ranges (SEEK_DATA/SEEK_HOLE) and writes them, leaving holes where the source has holes or
 * zeros. It does not use copy_file_range, which XFS may satisfy by sharing extents.
 */
export async function sparseCopy(src: string, dst: string): Promise<void> {
  await run('cp', ['--reflink=never', '--sparse=always', '--no-preserve=all', '--', src, dst], {
    timeoutMs: 24 * 3600_000,
  });
  chmodSync(dst, 0o600);
}

/** Allocates [offset, offset+length) of a file (thick provisioning); existing data is kept. */
export async function preallocate(path: string, offset: number, length: number): Promise<void> {
  if (length <= 0) return;
  await run('fallocate', ['-o', String(offset), '-l', String(length), '--', path], { timeoutMs: 3600_000 });
}

/** fsync of a file or a directory by path. */
export function fsyncPath(path: string): void {
  const fd = openSync(path, constants.O_RDONLY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export function allocatedBytes(path: string): number {
  return allocationOf(path) ?? 0;
}

/** Allocated bytes of a file, or undefined when it does not exist (its data is gone). */
export function allocationOf(path: string): number | undefined {
  try {
    return statSync(path).blocks * 512;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return 0;
  }
}

/** Puts a finished file in place so that a crash leaves either no file or the whole of it: data, name, entry. */
export function renameDurably(tmp: string, finalPath: string, dir: string): void {
  fsyncPath(tmp);
  renameSync(tmp, finalPath);
  fsyncPath(dir);
}

export async function removeQuietly(path: string): Promise<void> {
  await fsp.rm(path, { force: true, recursive: true }).catch(() => undefined);
}

/** True when `child` is `parent` itself or below it (both resolved). */
export function isInsideOrSame(parent: string, child: string): boolean {
  const rel = relative(resolve(parent), resolve(child));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** True when `child` is strictly below `parent`. */
export function isInside(parent: string, child: string): boolean {
  const rel = relative(resolve(parent), resolve(child));
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
}
