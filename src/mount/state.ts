// Higher-level questions about mount points, answered from the mount table plus an lstat that survives
// dead mounts: what is mounted at a path, who uses a device, and unmounting a path completely.
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { sameDevice, type DeviceNumber } from './device.js';
import { MountError } from './errors.js';
import { mountsAt, mountsOfDevice, readMountTable, type MountEntry } from './mountinfo.js';
import { unmount } from './mounts.js';
import { canonicalPath, inspectPath, splitDeviceNumber, type PathState } from './paths.js';
import { readOnlyLoopsOver } from './readonly-device.js';

export interface MountPointState {
  /** the path as the mount table spells it */
  path: string;
  /** what lstat says is there ('dead' for a mount whose filesystem does not answer) */
  pathState: PathState;
  /** the visible mount at the path, if any */
  mount?: MountEntry;
  /** how many mounts are stacked at the path */
  depth: number;
}

export async function mountPointState(path: string): Promise<MountPointState> {
  return (await mountPointStates([path]))[0]!;
}

/**
 * mountPointState of several paths at once: all their pool calls together, and one read of the mount table
 * (a busy node's has hundreds of lines: ~0.3 ms to read and parse at 300).
 */
export async function mountPointStates(paths: readonly string[]): Promise<MountPointState[]> {
  // Resolving the parent and looking at the path are independent: lstat follows the same symlinks above the
  // last component as realpath, and neither follows one at it. Together they cost one pool round trip, not two.
  const looked = await Promise.all(paths.map((path) => Promise.all([canonicalPath(path), inspectPath(path)])));
  const table = await readMountTable();
  return looked.map(([canonical, pathState]) => stateIn(table, canonical, pathState));
}

/**
 * mountPointState of a path that is already canonical (the `path` of an earlier state): a re-read after an
 * unmount spares resolving the parent directories again. `table`: the mount table, when the caller has just
 * read it.
 */
export async function mountPointStateAt(canonical: string, table?: readonly MountEntry[]): Promise<MountPointState> {
  const [now, pathState] = await Promise.all([table ?? readMountTable(), inspectPath(canonical)]);
  return stateIn(now, canonical, pathState);
}

function stateIn(table: readonly MountEntry[], path: string, pathState: PathState): MountPointState {
  const here = mountsAt(table, path);
  return { path, pathState, mount: here[here.length - 1], depth: here.length };
}

/** Filesystems that show devices through their nodes (a bind of a device node onto a file lives on one). */
const DEVICE_NODE_FILESYSTEMS = new Set(['devtmpfs', 'tmpfs']);

/**
 * Every mount point through which the block device is used: mounts of its filesystem (including bind
 * mounts of them), and bind mounts of its device node onto files (block publishes).
 */
export async function mountPointsOfDevice(dev: DeviceNumber, devicePath: string | undefined): Promise<string[]> {
  const table = await readMountTable();
  const points = mountsOfDevice(table, dev.major, dev.minor).map((m) => m.mountPoint);
  // Binds of a device node onto a file: the only mounts through which a read-only loop over the device is used.
  const nodeBinds = table.filter((m) => DEVICE_NODE_FILESYSTEMS.has(m.fsType) && m.root !== '/');
  if (nodeBinds.length === 0) return points;
  // Read-only block publishes bind a read-only loop device over this one (readonly-device.ts): uses too. The
  // sysfs scan of every loop device is only needed when some device node is bound somewhere.
  const loops = await readOnlyLoopsOver(dev);
  const nodes = [dev, ...loops.map((l) => l.dev)];
  const names = devicePath ? new Set([basename(devicePath), ...loops.map((l) => basename(l.path))]) : undefined;
  for (const m of nodeBinds) {
    if (names !== undefined && !names.has(basename(m.root))) continue;
    // A device node never blocks a stat, whatever state its device is in.
    try {
      const info = await stat(m.mountPoint);
      if (info.isBlockDevice() && nodes.some((n) => sameDevice(splitDeviceNumber(info.rdev), n)))
        points.push(m.mountPoint);
    } catch {
      // gone between reading the table and now
    }
  }
  return [...new Set(points)];
}

/** Unmounts the top mount at `path` (canonical); lazily only when its filesystem is dead (see unmountAll). */
export async function unmountTop(path: string, options: { signal?: AbortSignal } = {}): Promise<{ lazy: boolean }> {
  try {
    await unmount(path, { signal: options.signal });
    return { lazy: false };
  } catch (err) {
    const state = await inspectPath(path, 2_000);
    if (state.kind !== 'dead') throw err;
    await unmount(path, { lazy: true, signal: options.signal });
    return { lazy: true };
  }
}

/**
 * Unmounts everything stacked at `path` (canonical). A mount whose filesystem is dead, and which a normal
 * unmount cannot remove, is detached lazily: it has no I/O left to lose. Returns how many were removed and
 * whether a lazy unmount was needed.
 */
export async function unmountAll(
  path: string,
  options: { signal?: AbortSignal } = {},
): Promise<{ removed: number; lazy: boolean }> {
  let removed = 0;
  let lazy = false;
  for (let round = 0; round < 16; round++) {
    const table = await readMountTable();
    if (mountsAt(table, path).length === 0) return { removed, lazy };
    try {
      await unmount(path, { signal: options.signal });
    } catch (err) {
      const state = await inspectPath(path, 2_000);
      if (state.kind !== 'dead') throw err;
      await unmount(path, { lazy: true, signal: options.signal });
      lazy = true;
    }
    removed++;
  }
  throw new MountError('Failed', `unmounting ${path}: still mounted after 16 unmounts`);
}
