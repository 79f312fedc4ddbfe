// Which mounts are a volume's. Unpublish and unstage remove only mounts that show the volume's own device
// (a filesystem mount of it, a bind of that mount, a bind of its device node): a path handed to us may hold
// anything, and what is not this volume's is left exactly as it was. See docs/node.md, "What is ours".
import {
  blockDeviceNumber, deviceDetaching, isMountError, mountPointState, sameDevice, unmountTop, type DeviceNumber, type MountPointState,
} from '../mount/index.js';
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
 * filesystem, or a bind of its device node — or of a read-only loop device over it, `readOnlyLoopOf`). With
 * the volume known but not attached: only a block device's mount whose device is being removed (what is left
 * of this volume's mount after the back end detached it); never an anonymous filesystem (tmpfs, FUSE, NFS).
 */
export async function holdsVolume(
  state: MountPointState,
  volume: VolumeDevice,
  readOnlyLoopOf?: (loop: DeviceNumber) => Promise<DeviceNumber | undefined>,
): Promise<boolean> {
  if (!state.mount || !volume.known) return false;
  const node = state.pathState.kind === 'blockDevice' ? state.pathState : undefined;
  if (volume.dev) {
    if (sameDevice(state.mount, volume.dev)) return true;
    if (!node) return false;
    if (sameDevice(node, volume.dev)) return true;
    const under = readOnlyLoopOf ? await readOnlyLoopOf(node) : undefined;
    return under !== undefined && sameDevice(under, volume.dev);
  }
  const dev = node ?? state.mount;
  return dev.major !== 0 && (await deviceDetaching(dev));
}

/**
 * Unmounts this volume's mounts stacked at `path` (canonical), top first, and stops at the first that is not
 * its: a mount under ours stays.
 */
export async function unmountOurs(path: string, volume: VolumeDevice): Promise<{ removed: number; lazy: boolean }> {
  let removed = 0;
  let lazy = false;
  for (let round = 0; round < 16; round++) {
    const state = await mountPointState(path);
    if (!(await holdsVolume(state, volume))) return { removed, lazy };
    const step = await unmountTop(path);
    lazy ||= step.lazy;
    removed++;
  }
  return { removed, lazy };
}
