// The staging and target directories kubelet names: a symlink at the path is refused (it could lead anywhere),
// something that is not a directory is the CO's mistake, and a missing one is made (mkdir -p).
import { mkdir } from 'node:fs/promises';
import { inspectPath, type PathState } from '../mount/index.js';
import { invalidArgument } from '../server/errors.js';

/** Refuses a staging/target directory path that cannot be used (a symlink could lead anywhere); makes nothing. */
export async function checkDirectoryPath(field: string, path: string): Promise<'missing' | 'present'> {
  return checkDirectoryState(field, path, await inspectPath(path));
}

/** checkDirectoryPath of what the caller has just seen at the path. */
export function checkDirectoryState(field: string, path: string, state: PathState): 'missing' | 'present' {
  switch (state.kind) {
    case 'directory':
    case 'dead': // a dead mount sits on a directory; the caller unmounts it
      return 'present';
    case 'missing':
      return 'missing';
    case 'symlink':
      throw invalidArgument(`${field} ${path} is a symbolic link; refusing to use it`);
    default:
      throw invalidArgument(`${field} ${path} exists and is not a directory`);
  }
}

/** mkdir -p; a path running through a file is the CO's mistake (INVALID_ARGUMENT), not ours. */
export async function makeDirectories(field: string, path: string): Promise<void> {
  try {
    await mkdir(path, { recursive: true, mode: 0o750 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR' || code === 'EEXIST')
      throw invalidArgument(`${field} ${path}: a part of it exists and is not a directory`);
    throw err;
  }
}

/**
 * Makes sure the staging/target directory exists; refuses a symlink (it could lead anywhere). `seen`: what the
 * caller's state of the path, read under the volume's lock just before, shows there (spares an lstat).
 */
export async function ensureDirectory(field: string, path: string, seen?: PathState): Promise<void> {
  const found = seen ? checkDirectoryState(field, path, seen) : await checkDirectoryPath(field, path);
  if (found === 'missing') await makeDirectories(field, path);
}
