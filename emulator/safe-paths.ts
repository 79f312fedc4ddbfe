// Image paths opened so that nothing can be swapped between the check and the use (issue #15).
//
// Node has no openat(2), but Linux gives the same thing: a path `/proc/self/fd/<dirfd>/<name>` resolves
// `/proc/self/fd/<dirfd>` as a magic link to the very directory the descriptor holds (the object, not its
// name), then looks up `<name>` in it. So every path is walked from `/` one component at a time, each step
// opened through the previous step's descriptor with O_NOFOLLOW (a symlink as any component is refused,
// never followed): renaming or replacing any directory of the path after its step was taken changes nothing
// for us. The file itself is first opened with O_PATH (no open(2) side effects: a FIFO does not block, a
// device is not opened), fstat'ed, and only a regular file is reopened for reading through its descriptor.
// Afterwards only the descriptor is used. Writes go through the descriptor of their directory, which must
// be a trusted directory (see `trustedChain`), and end with a rename inside that same directory.
import { closeSync, constants, fstatSync, openSync, readlinkSync, realpathSync, type Stats } from 'node:fs';
import { isAbsolute, normalize, sep } from 'node:path';
import { isInside, isInsideOrSame } from './files.js';

/** Linux's O_PATH (the same value on x86-64 and arm64); Node's fs.constants does not list it. */
const O_PATH = 0o10000000;
const O_CLOEXEC = 0o2000000;
const S_ISVTX = 0o1000;
const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW | O_CLOEXEC;

export class UnsafePathError extends Error {
  override name = 'UnsafePathError';
}

/** A path malformed as given (not absolute, not normalised): the request's fault, not the file system's. */
export class MalformedPathError extends UnsafePathError {
  override name = 'MalformedPathError';
}

/** A path through an open descriptor: usable by this process and, as root, by its children. */
export const fdPath = (fd: number, name?: string): string =>
  `/proc/${process.pid}/fd/${fd}${name === undefined ? '' : `/${name}`}`;

/** The real path of what a descriptor holds, as the kernel tracks it. */
export const realPathOf = (fd: number): string => readlinkSync(`/proc/self/fd/${fd}`);

/**
 * Whether a directory can be changed only by root: owned by root, not writable by group or others
 * (sshd's StrictModes rule).
 */
export const rootOnly = (st: Stats): boolean => st.uid === 0 && (st.mode & 0o022) === 0;

/** A sticky directory (like /tmp) protects the entries root owns in it: only root can rename or remove them. */
const stickyProtects = (parent: Stats, child: Stats): boolean => (parent.mode & S_ISVTX) !== 0 && child.uid === 0;

export interface DirChain {
  /** the open descriptor of the last directory */
  fd: number;
  /** whether nobody but root could have changed any directory of the chain */
  trusted: boolean;
  /** the first directory that others can change, for messages */
  untrustedAt?: string;
}

function openStep(parentFd: number, name: string, flags: number): number {
  try {
    return openSync(fdPath(parentFd, name), flags);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP' || code === 'ENOTDIR')
      throw new UnsafePathError(`${name} is a symlink or not a directory (symlinks are not followed)`);
    if (code === 'ENOENT') throw new UnsafePathError(`${name} does not exist`);
    throw new UnsafePathError(`cannot open ${name}: ${code ?? (err as Error).message}`);
  }
}

/**
 * Opens the directory `path` (absolute, normalised) from `/` one component at a time, never following a
 * symlink. `trusted` says whether every directory on the way is root-only, where a sticky directory counts
 * when the next component is root's (others cannot replace it); the last directory itself must be root-only.
 */
export function openDirChain(path: string): DirChain {
  const parts = path.split(sep).filter(Boolean);
  let fd = openSync('/', DIR_FLAGS);
  let st = fstatSync(fd);
  let trusted = true;
  let untrustedAt: string | undefined;
  let at = '';
  try {
    for (const name of parts) {
      const next = openStep(fd, name, DIR_FLAGS);
      const nextSt = fstatSync(next);
      if (trusted && !rootOnly(st) && !stickyProtects(st, nextSt)) {
        trusted = false;
        untrustedAt = at || '/';
      }
      closeSync(fd);
      fd = next;
      st = nextSt;
      at = `${at}/${name}`;
    }
    if (trusted && !rootOnly(st)) {
      trusted = false;
      untrustedAt = at || '/';
    }
    return { fd, trusted, ...(untrustedAt !== undefined ? { untrustedAt } : {}) };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

export interface ImageDirs {
  /** the configured image directories */
  dirs: readonly string[];
  /** real paths no image may lie in (the data dir and pools); `allowedInside` are exceptions below them */
  forbidden: readonly string[];
  allowedInside: readonly string[];
}

interface Located {
  /** the image directory's real path */
  dirReal: string;
  /** components below it */
  rest: string[];
}

function realOr(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

/** Which image directory `raw` names (spelt as configured or as its real path), and the components below it. */
function locate(raw: string, key: string, dirs: ImageDirs): Located {
  if (!isAbsolute(raw)) throw new MalformedPathError(`${key}: must be an absolute path`);
  if (normalize(raw) !== raw || raw.endsWith('/'))
    throw new MalformedPathError(`${key}: must be a normalised path (no ., .., // or trailing /)`);
  for (const dir of dirs.dirs) {
    // The configured directory's own spelling may hold symlinks the operator set up; what lies below it may not.
    const real = realOr(dir);
    for (const prefix of new Set([dir, real])) {
      if (isInside(prefix, raw)) return { dirReal: real, rest: raw.slice(prefix.length).split(sep).filter(Boolean) };
    }
  }
  throw new UnsafePathError(`${key}: ${raw} is outside the image directories (${dirs.dirs.join(', ')})`);
}

function checkNotForbidden(real: string, raw: string, key: string, dirs: ImageDirs): void {
  const exempt = dirs.allowedInside.some((a) => isInside(a, real));
  if (!exempt && dirs.forbidden.some((f) => isInsideOrSame(f, real)))
    throw new UnsafePathError(`${key}: ${raw} is inside the emulator's data or pools`);
}

/** `locate` of a path that must name a file below an image directory: its last part split off. */
function locateFile(raw: string, key: string, dirs: ImageDirs): { dirReal: string; rest: string[]; name: string } {
  const { dirReal, rest } = locate(raw, key, dirs);
  const name = rest.pop();
  if (name === undefined) throw new UnsafePathError(`${key}: ${raw} is an image directory, not a file`);
  return { dirReal, rest, name };
}

/** openDirChain, its failure an UnsafePathError starting with `what`. */
function openChainOf(dir: string, what: string): DirChain {
  try {
    return openDirChain(dir);
  } catch (err) {
    throw new UnsafePathError(`${what}: ${(err as Error).message}`);
  }
}

export interface OpenedImage {
  fd: number;
  /** the real path of the opened file */
  real: string;
  size: number;
  /**
   * Whether users other than root may write the file's content (not root's, or group- or other-writable):
   * then what is read twice may differ between the reads, so a reader that checks before it uses (qemu-img
   * info, then convert) works on a private copy instead.
   */
  othersCanWrite: boolean;
}

/**
 * Opens an image for reading. Refuses symlinks anywhere below the image directory, anything but a regular
 * file (FIFOs, devices, sockets, directories: without ever opening them), and, where someone other than root
 * could write a directory of the chain, a file with more than one link (a hard link to a file they could not
 * read themselves).
 */
export function openImageForRead(raw: string, key: string, dirs: ImageDirs): OpenedImage {
  const { dirReal, rest, name } = locateFile(raw, key, dirs);
  const chain = openChainOf(dirReal, `${key}: image directory ${dirReal}`);
  let dirFd = chain.fd;
  let trusted = chain.trusted;
  let pathFd: number | undefined;
  try {
    for (const part of rest) {
      const next = openStep(dirFd, part, DIR_FLAGS);
      if (!rootOnly(fstatSync(next))) trusted = false;
      closeSync(dirFd);
      dirFd = next;
    }
    pathFd = openStep(dirFd, name, O_PATH | constants.O_NOFOLLOW | O_CLOEXEC);
    const st = fstatSync(pathFd);
    if (st.isSymbolicLink()) throw new UnsafePathError(`${key}: ${raw} is a symlink (symlinks are not followed)`);
    if (!st.isFile()) throw new UnsafePathError(`${key}: ${raw} is not a regular file`);
    if (!trusted && st.nlink > 1)
      throw new UnsafePathError(
        `${key}: ${raw} has ${st.nlink} links in a directory others can write; copy it instead of linking it`,
      );
    // Reopening the O_PATH descriptor opens that very inode; O_NONBLOCK in case it is not what fstat said.
    const fd = openSync(
      `/proc/self/fd/${pathFd}`,
      constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | O_CLOEXEC,
    );
    try {
      const again = fstatSync(fd);
      if (again.ino !== st.ino || again.dev !== st.dev || !again.isFile())
        throw new UnsafePathError(`${key}: ${raw} changed while it was opened`);
      const real = realPathOf(fd);
      if (!isInside(dirReal, real)) throw new UnsafePathError(`${key}: ${raw} is outside the image directories`);
      checkNotForbidden(real, raw, key, dirs);
      return { fd, real, size: again.size, othersCanWrite: again.uid !== 0 || (again.mode & 0o022) !== 0 };
    } catch (err) {
      closeSync(fd);
      throw err;
    }
  } catch (err) {
    if (err instanceof UnsafePathError && err.message.startsWith(key)) throw err;
    throw new UnsafePathError(`${key}: ${raw}: ${(err as Error).message}`);
  } finally {
    if (pathFd !== undefined) closeSync(pathFd);
    closeSync(dirFd);
  }
}

export interface ExportDir {
  /** the open descriptor of the directory the image is written into */
  fd: number;
  /** its real path */
  real: string;
  /** the image's file name in it */
  name: string;
}

/**
 * Opens the directory an export writes into. It and every directory on the way must be root-only (a sticky
 * directory counts when the next one is root's): nobody else can then put or swap anything in it.
 */
export function openExportDir(raw: string, key: string, dirs: ImageDirs): ExportDir {
  const { dirReal, rest, name } = locateFile(raw, key, dirs);
  const chain = openChainOf([dirReal, ...rest].join(sep), `${key}: ${dirname(raw)}`);
  try {
    if (!chain.trusted) {
      throw new UnsafePathError(
        `${key}: ${chain.untrustedAt} can be written by users other than root; exports go only into directories only root can change`,
      );
    }
    const real = realPathOf(chain.fd);
    if (!isInsideOrSame(dirReal, real)) throw new UnsafePathError(`${key}: ${raw} is outside the image directories`);
    checkNotForbidden(`${real}/${name}`, raw, key, dirs);
    return { fd: chain.fd, real, name };
  } catch (err) {
    closeSync(chain.fd);
    throw err;
  }
}

const dirname = (p: string): string => p.slice(0, p.lastIndexOf('/')) || '/';
