// Path checks that survive a dead mount. lstat() of a mount point whose filesystem is gone fails with
// ENOTCONN (FUSE), ESTALE (NFS) or EIO, or may block on a hard NFS mount; all of these are reported as
// 'dead' instead of thrown, and a check that takes too long is abandoned.
import { lstat, realpath, rmdir } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';

export type PathState =
  | { kind: 'missing' }
  | { kind: 'directory' }
  | { kind: 'file'; size: number }
  | { kind: 'blockDevice'; major: number; minor: number }
  | { kind: 'symlink' }
  | { kind: 'other' }
  /** a mount whose filesystem does not answer */
  | { kind: 'dead'; reason: string };

const DEAD_MOUNT_ERRORS = new Set(['ENOTCONN', 'ESTALE', 'EIO', 'EHOSTDOWN', 'ENXIO', 'ENODEV']);

export function isDeadMountError(err: unknown): boolean {
  return DEAD_MOUNT_ERRORS.has((err as NodeJS.ErrnoException)?.code ?? '');
}

/** Linux dev_t → major/minor (glibc's encoding). */
export function splitDeviceNumber(dev: number): { major: number; minor: number } {
  const value = BigInt(dev);
  const major = Number(((value >> 32n) & 0xfffff000n) | ((value >> 8n) & 0xfffn));
  const minor = Number(((value >> 12n) & 0xffffff00n) | (value & 0xffn));
  return { major, minor };
}

function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((resolveTimeout) => {
    timer = setTimeout(() => resolveTimeout(onTimeout()), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** What is at `path`, without following a symlink there. */
export function inspectPath(path: string, timeoutMs = 5_000): Promise<PathState> {
  const check = (async (): Promise<PathState> => {
    try {
      const info = await lstat(path);
      if (info.isSymbolicLink()) return { kind: 'symlink' };
      if (info.isDirectory()) return { kind: 'directory' };
      if (info.isFile()) return { kind: 'file', size: info.size };
      if (info.isBlockDevice()) return { kind: 'blockDevice', ...splitDeviceNumber(info.rdev) };
      return { kind: 'other' };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
      if (isDeadMountError(err)) return { kind: 'dead', reason: code! };
      throw err;
    }
  })();
  return withTimeout(check, timeoutMs, () => ({ kind: 'dead', reason: `no answer within ${timeoutMs} ms` }));
}

/**
 * Removes the directory at `path` if it is empty, within a time bound: 'notEmpty' for one holding anything,
 * 'notDirectory' for anything else at the path (a symlink there is not followed), 'dead' when the path does
 * not answer. Other failures (a mount point: EBUSY) are thrown.
 */
export async function removeDirectory(
  path: string,
  timeoutMs = 5_000,
): Promise<'removed' | 'missing' | 'notEmpty' | 'notDirectory' | 'dead'> {
  const attempt = rmdir(path).then(
    () => 'removed' as const,
    (err: unknown) => {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return 'missing' as const;
      if (code === 'ENOTEMPTY' || code === 'EEXIST') return 'notEmpty' as const;
      if (code === 'ENOTDIR') return 'notDirectory' as const;
      if (isDeadMountError(err)) return 'dead' as const;
      throw err;
    },
  );
  return withTimeout(attempt, timeoutMs, () => 'dead' as const);
}

/**
 * The path as the mount table spells it: absolute, normalised, with symlinks in its parent directories
 * resolved. The last component is never resolved (it may be a dead mount, and a symlink there is refused
 * by the callers anyway).
 */
export async function canonicalPath(path: string): Promise<string> {
  const absolute = resolve(path);
  if (absolute === '/') return absolute;
  try {
    return join(await withTimeout(realpath(dirname(absolute)), 5_000, () => dirname(absolute)), basename(absolute));
  } catch {
    return absolute;
  }
}
