// Which mounts are a volume's. Unpublish and unstage remove only mounts that show the volume's own device
// (a filesystem mount of it, a bind of that mount, a bind of its device node or of a read-only loop over
// it): a path handed to us may hold anything, and what is not this volume's is left exactly as it was.
// See docs/node.md, "What is the volume's".
import {
  blockDeviceNumber,
  detachLoop,
  deviceDetaching,
  isMountError,
  mountPointStateAt,
  mountPointsOfDevice,
  readOnlyLoopBacking,
  readOnlyLoopsOver,
  readMountTable,
  sameDevice,
  topMountAt,
  unmountTop,
  type DeviceNumber,
  type LoopDevice,
  type MountPointState,
} from '../mount/index.js';
import type { Logger } from '../log/logger.js';
import { isValidName } from '../protocol/vbs.js';
import { isConnectorError } from '../connector/index.js';
import type { NodeConnector } from './deps.js';

interface Ctx {
  connector: NodeConnector;
  signal?: AbortSignal;
}

export type VolumeDevice =
  /** the back end has no such volume (or the id cannot name one) */
  | { known: false }
  /** `dev` and `path` absent: the volume is not attached here (or its device node is gone) */
  | { known: true; path?: string; dev?: DeviceNumber };

/** The volume's device on this host, as the connector names it. */
export async function volumeDevice(ctx: Ctx, volumeId: string): Promise<VolumeDevice> {
  if (!isValidName(volumeId)) return { known: false };
  let path: string | undefined;
  try {
    path = await ctx.connector.queryDevice(volumeId, { signal: ctx.signal });
  } catch (err) {
    if (isConnectorError(err, 'VolumeNotFound')) return { known: false };
    if (isConnectorError(err, 'NotMapped')) return { known: true };
    throw err;
  }
  if (!path) return { known: true };
  try {
    return { known: true, path, dev: await blockDeviceNumber(path) };
  } catch (err) {
    if (isMountError(err, 'NotFound')) return { known: true, path };
    throw err;
  }
}

/**
 * Whether the mount at `state.path` is this volume's. With the device known: the mount shows it (its
 * filesystem, or a bind of its device node — or of a read-only loop device over it). With
 * the volume known but not attached: only a block device's mount whose device is being removed (what is left
 * of this volume's mount after the back end detached it); never an anonymous filesystem (tmpfs, FUSE, NFS).
 */
export async function holdsVolume(state: MountPointState, volume: VolumeDevice): Promise<boolean> {
  if (!state.mount || !volume.known) return false;
  const node = state.pathState.kind === 'blockDevice' ? state.pathState : undefined;
  if (volume.dev) {
    if (sameDevice(state.mount, volume.dev)) return true;
    if (!node) return false;
    if (sameDevice(node, volume.dev)) return true;
    const under = await readOnlyLoopBacking(node);
    return under !== undefined && sameDevice(under, volume.dev);
  }
  const dev = node ?? state.mount;
  return dev.major !== 0 && (await deviceDetaching(dev));
}

/**
 * Unmounts this volume's mounts stacked at the path of `first` (the caller's state of it, read under the
 * volume's lock), top first, and stops at the first that is not its: a mount under ours stays.
 */
export async function unmountOurs(
  first: MountPointState,
  volume: VolumeDevice,
): Promise<{ removed: number; lazy: boolean }> {
  let removed = 0;
  let lazy = false;
  let state = first;
  for (let round = 0; round < 16; round++) {
    if (!(await holdsVolume(state, volume))) return { removed, lazy };
    const step = await unmountTop(state.path);
    lazy ||= step.lazy;
    removed++;
    // Nothing left at the path (the common case): the mount table alone says so, no lstat needed.
    if (topMountAt(await readMountTable(), state.path) === undefined) return { removed, lazy };
    state = await mountPointStateAt(state.path);
  }
  return { removed, lazy };
}

/** Read-only loops over the device that no publish uses (left by a crash between making and binding one). */
export async function unusedReadOnlyLoops(dev: DeviceNumber): Promise<LoopDevice[]> {
  const unused: LoopDevice[] = [];
  for (const loop of await readOnlyLoopsOver(dev))
    if ((await mountPointsOfDevice(loop.dev, loop.path)).length === 0) unused.push(loop);
  return unused;
}

/** Detaches the read-only loops over the volume's device that no publish uses any more. */
export async function releaseUnusedReadOnlyLoops(
  ctx: Ctx & { log: Logger },
  dev: DeviceNumber | undefined,
): Promise<void> {
  if (!dev) return;
  for (const loop of await unusedReadOnlyLoops(dev)) {
    ctx.log.debug({ loop: loop.path }, 'detaching the read-only loop device of a read-only block publish');
    await detachLoop(loop.path);
  }
}
