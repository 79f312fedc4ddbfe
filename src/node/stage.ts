// NodeStageVolume and NodeUnstageVolume. Every step looks at reality first (the connector's view of the
// attachment, the mount table, what blkid sees on the device), so a call repeated after a crash anywhere in
// the middle finishes the job instead of redoing or tripping over it. See docs/node.md.
import type { Logger } from '../log/logger.js';
import {
  blockDeviceNumber,
  canonicalPath,
  deviceExists,
  ext4SuperblockSizeBytes,
  inspectPath,
  isMountError,
  makeFilesystem,
  mountFilesystem,
  mountsOfDevice,
  readMountTable,
  mountPointState,
  mountPointStateAt,
  mountPointsOfDevice,
  probeDevice,
  sameDevice,
  topMountAt,
  unmountAll,
  isReadOnlyMount,
  xfsMkfsInterrupted,
  MountError,
  type DeviceContent,
  type DeviceNumber,
  type FsType,
  type MountEntry,
  type MountPointState,
} from '../mount/index.js';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '../server/errors.js';
import { isConnectorError } from '../connector/index.js';
import type { NodeConnector } from './deps.js';
import { holdsVolume, releaseUnusedReadOnlyLoops, unmountOurs, volumeDevice, type VolumeDevice } from './ownership.js';
import type { Capability } from './request.js';
import { formatIfBlank, growIfSmaller, growUnmountedExt4IfSmaller } from './filesystem.js';
import type { StagedDevices } from './staged.js';
import { checkDirectoryState, makeDirectories } from './directories.js';

export interface StageRequest {
  volumeId: string;
  stagingPath: string;
  capability: Capability;
  /** the host mapping is read-only (ControllerPublishVolume's publish_context) */
  mappedReadOnly: boolean;
  /** where the content came from ('image', 'snapshot', 'volume'): then it is never formatted */
  contentOrigin?: string;
}

interface Ctx {
  connector: NodeConnector;
  log: Logger;
  signal?: AbortSignal;
  /** the devices this process staged (a hint that spares `querydev`; see staged.ts) */
  staged?: StagedDevices;
}

/** Attaches the volume, turning the connector's "not mapped here" into the CSI answer for it. */
export async function attachVolume(ctx: Ctx, volumeId: string): Promise<string> {
  try {
    return await ctx.connector.attach(volumeId, { signal: ctx.signal });
  } catch (err) {
    if (isConnectorError(err, 'NotMapped')) {
      throw failedPrecondition(
        `volume ${volumeId} is not mapped to this host: ControllerPublishVolume has not happened (or was undone) — ${(err as Error).message}`,
      );
    }
    throw err;
  }
}

/** Mount options: the CO's flags, plus what the filesystem and the read-only-ness need. */
export function stageMountOptions(fsType: FsType, flags: readonly string[], readOnly: boolean): string[] {
  const options = flags.filter((f) => f !== 'ro' && f !== 'rw');
  // Linked clones share their source's XFS UUID; both must be mountable on one host.
  if (fsType === 'xfs' && !options.includes('nouuid')) options.push('nouuid');
  if (readOnly) {
    // A read-only mapping cannot replay a journal, and readers on several hosts must not write one.
    options.unshift('ro');
    const skipJournal = fsType === 'ext4' ? 'noload' : 'norecovery';
    if (!options.includes(skipJournal)) options.push(skipJournal);
  } else if (flags.includes('ro')) {
    options.unshift('ro');
  }
  return options;
}

/** A filesystem mount at the staging path matches the request, or throws ALREADY_EXISTS saying how it differs. */
function checkStagedCompatible(
  volumeId: string,
  stagingPath: string,
  mount: MountEntry,
  fsType: FsType,
  readOnly: boolean,
): void {
  const differences: string[] = [];
  if (mount.fsType !== fsType) differences.push(`it is ${mount.fsType}, ${fsType} was asked`);
  const mountedReadOnly = isReadOnlyMount(mount);
  if (mountedReadOnly !== readOnly)
    differences.push(
      `it is mounted ${mountedReadOnly ? 'read-only' : 'read-write'}, ${readOnly ? 'read-only' : 'read-write'} was asked`,
    );
  if (differences.length) {
    throw alreadyExists(
      `volume ${volumeId} is already staged at ${stagingPath} with another capability: ${differences.join('; ')}`,
    );
  }
}

/**
 * A mount at the staging path that no longer works is stale, safe to remove: its path does not answer, or
 * it is a block device's filesystem whose device is gone. (Major 0 is an anonymous device — tmpfs, FUSE,
 * NFS — which has no block device to look for: live, it is simply someone else's.)
 */
async function isStale(mount: MountEntry, pathDead: boolean): Promise<boolean> {
  return pathDead || (mount.major !== 0 && !(await deviceExists(mount)));
}

export async function stageVolume(ctx: Ctx, req: StageRequest): Promise<void> {
  const { volumeId, stagingPath, capability } = req;
  // Checked first, made only once the volume is attached: a refused request, or one for a volume that does
  // not exist, leaves nothing behind. Its parent directories are resolved in the same pool round trip.
  const [seen, resolved] = await Promise.all([inspectPath(stagingPath), canonicalPath(stagingPath)]);
  checkDirectoryState('staging_target_path', stagingPath, seen);
  const devicePath = await attachVolume(ctx, volumeId);
  const device = await blockDeviceNumber(devicePath);
  // The staging path is looked at again (the attach took a while); its lstat goes to the pool first, so it
  // runs while blkid is spawned.
  const table = await readMountTable();
  const firstState = settledLater(mountPointStateAt(resolved, table));
  // A filesystem stage onto a path that shows no mount (the usual case) will probe the device: blkid starts
  // now and runs while the path is checked. Its answer is used only if nothing is unmounted meanwhile.
  const early =
    capability.accessType === 'mount' && topMountAt(table, resolved) === undefined
      ? settledLater(probeDevice(devicePath))
      : undefined;
  try {
    await stageOnto(ctx, req, { devicePath, device, state: firstState.promise, probe: early?.promise });
  } finally {
    // No tool outlives the call (and its lock), whatever the checks decided.
    await early?.settled();
  }
}

/** A promise whose rejection is handled where it is awaited, and which can be waited for without throwing. */
function settledLater<T>(promise: Promise<T>): { promise: Promise<T>; settled: () => Promise<void> } {
  promise.catch(() => undefined);
  return {
    promise,
    settled: () =>
      promise.then(
        () => undefined,
        () => undefined,
      ),
  };
}

async function stageOnto(
  ctx: Ctx,
  req: StageRequest,
  at: {
    devicePath: string;
    device: DeviceNumber;
    state: Promise<MountPointState>;
    probe?: Promise<DeviceContent>;
  },
): Promise<void> {
  const { volumeId, stagingPath, capability } = req;
  const { devicePath, device } = at;
  let state = await at.state;
  if (checkDirectoryState('staging_target_path', stagingPath, state.pathState) === 'missing') {
    await makeDirectories('staging_target_path', stagingPath);
    state = await mountPointState(stagingPath); // its parents may be new: resolve them again
  }

  if (capability.accessType === 'block') {
    // A block volume is only attached at stage; a filesystem of this device here means it was staged as one.
    if (state.mount && sameDevice(state.mount, device)) {
      throw alreadyExists(
        `volume ${volumeId} is already staged at ${stagingPath} as a filesystem; a block stage was asked`,
      );
    }
    // Its filesystem mounted at another staging path: raw writes beside a mounted filesystem would corrupt it.
    const mounted = mountsOfDevice(await readMountTable(), device.major, device.minor);
    if (mounted.length > 0) {
      throw failedPrecondition(
        `volume ${volumeId} is staged as a filesystem at ${mounted[0]!.mountPoint}; a block stage was asked: NodeUnstageVolume it there first`,
      );
    }
    return;
  }

  const fsType = capability.fsType;
  const readOnly = capability.readerOnly || req.mappedReadOnly;
  let probe = at.probe;
  if (state.mount) {
    const dead = state.pathState.kind === 'dead';
    if (sameDevice(state.mount, device) && !dead) {
      checkStagedCompatible(
        volumeId,
        stagingPath,
        state.mount,
        fsType,
        readOnly || capability.mountFlags.includes('ro'),
      );
      // Staged already; finish what a crash may have cut short (xfs grows after mounting; ext4 grew before).
      if (fsType === 'xfs' && !isReadOnlyMount(state.mount)) await growIfSmaller(ctx, devicePath, stagingPath, fsType);
      ctx.staged?.remember(volumeId, { path: devicePath, dev: device });
      return;
    }
    if (!(await isStale(state.mount, dead))) {
      throw alreadyExists(
        `staging_target_path ${stagingPath} already holds another filesystem (${state.mount.source}, ${state.mount.fsType}); volume ${volumeId} is ${devicePath}`,
      );
    }
    ctx.log.warn(
      { stagingPath, source: state.mount.source, pathState: state.pathState.kind },
      'removing a stale mount at the staging path',
    );
    const { lazy } = await unmountAll(state.path);
    if (lazy) ctx.log.warn({ stagingPath }, 'the stale mount needed a lazy unmount');
    state = await mountPointStateAt(state.path);
    probe = undefined; // probed before the unmount: ask again
  }

  // One staging path per volume per host: a second one would make each unstage see the other as a publish
  // still in place, and refuse forever. The first mount of the device is its staging mount.
  const elsewhere = (await mountPointsOfDevice(device, devicePath)).filter((p) => p !== state.path);
  if (elsewhere.length > 0) {
    throw failedPrecondition(
      `volume ${volumeId} is already staged or published at ${elsewhere[0]}; a volume has one staging path per node: NodeUnpublishVolume / NodeUnstageVolume it there first`,
    );
  }
  // ext4 grows before it is mounted (offline resize needs no CAP_SYS_RESOURCE, which online resize does); its
  // superblock is read while blkid runs, and read again if the device is formatted.
  const superblock = fsType === 'ext4' && !readOnly ? ext4SuperblockSizeBytes(devicePath) : undefined;
  const formatted = await formatIfBlank(ctx, {
    volumeId,
    devicePath,
    fsType,
    readOnly,
    contentOrigin: req.contentOrigin,
    probe,
  }).finally(() => superblock);
  if (superblock) await growUnmountedExt4IfSmaller(ctx, devicePath, formatted ? undefined : superblock);
  const options = stageMountOptions(fsType, capability.mountFlags, readOnly);
  await mountStaged(ctx, {
    volumeId,
    devicePath,
    stagingPath,
    fsType,
    options,
    hasCoFlags: capability.mountFlags.length > 0,
    contentOrigin: req.contentOrigin,
  });
  // The mount table alone answers whether the mount is there (no lstat of the new mount point needed).
  const mounted = topMountAt(await readMountTable(), state.path);
  if (!mounted || !sameDevice(mounted, device))
    throw new MountError(
      'Failed',
      `mounted ${devicePath} at ${stagingPath}, but the mount table does not show it there`,
    );
  if (fsType === 'xfs' && !isReadOnlyMount(mounted)) await growIfSmaller(ctx, devicePath, stagingPath, fsType);
  ctx.staged?.remember(volumeId, { path: devicePath, dev: device });
}

async function mountStaged(
  ctx: Ctx,
  m: {
    volumeId: string;
    devicePath: string;
    stagingPath: string;
    fsType: FsType;
    options: string[];
    hasCoFlags: boolean;
    contentOrigin?: string;
  },
): Promise<void> {
  try {
    await mountFilesystem(m.devicePath, m.stagingPath, m.fsType, m.options);
    return;
  } catch (err) {
    // mkfs.xfs marks its superblock "in progress" until it is done; a crash in the middle leaves one that
    // blkid calls xfs and the kernel refuses. Nothing was ever stored there: finish the format and retry.
    if (
      m.fsType === 'xfs' &&
      m.contentOrigin === undefined &&
      isMountError(err, 'Failed') &&
      (await xfsMkfsInterrupted(m.devicePath))
    ) {
      ctx.log.warn({ device: m.devicePath }, 'found an interrupted mkfs.xfs; formatting again');
      await makeFilesystem(m.devicePath, 'xfs', { force: true });
      await mountFilesystem(m.devicePath, m.stagingPath, m.fsType, m.options);
      return;
    }
    if (
      m.hasCoFlags &&
      isMountError(err, 'Failed') &&
      /bad option|wrong fs type|invalid argument/i.test((err as Error).message)
    ) {
      throw invalidArgument(
        `mounting volume ${m.volumeId} failed; check volume_capability.mount.mount_flags: ${(err as Error).message}`,
      );
    }
    throw err;
  }
}

export interface UnstageRequest {
  volumeId: string;
  stagingPath: string;
}

export async function unstageVolume(ctx: Ctx, req: UnstageRequest): Promise<void> {
  const { volumeId, stagingPath } = req;
  const state = await mountPointState(stagingPath);
  // The staging mount showing the device this process staged the volume as answers what querydev would.
  const staged = await ctx.staged?.confirmed(volumeId, state.mount);
  const volume: VolumeDevice = staged ? { known: true, ...staged } : await volumeDevice(ctx, volumeId);
  // No such volume: nothing here can be its; touch nothing.
  if (!volume.known) {
    throw notFound(
      `volume ${volumeId} does not exist${state.mount ? ` (the mount at ${state.path} is not its and was left alone)` : ''}`,
    );
  }
  const ours = await holdsVolume(state, volume);
  if (state.mount && !ours) {
    ctx.log.warn(
      { stagingPath: state.path, source: state.mount.source, fsType: state.mount.fsType },
      `staging_target_path holds a mount that is not volume ${volumeId}'s; left alone`,
    );
  }

  // Publishes of this volume still in place would lose their device: the CO must unpublish first.
  const devices: Array<{ dev: DeviceNumber; path?: string }> = [];
  if (state.mount && ours) devices.push({ dev: state.mount });
  // The same device twice (the usual case): once is enough, without the path (which only narrows the search).
  if (volume.dev && !(state.mount && ours && sameDevice(state.mount, volume.dev)))
    devices.push({ dev: volume.dev, path: volume.path });
  const users = new Set<string>();
  for (const { dev, path } of devices)
    for (const p of await mountPointsOfDevice(dev, path)) if (p !== state.path) users.add(p);
  if (users.size > 0 && !ours) {
    // Staged (or used) elsewhere, not here: detaching would pull the device from under that mount.
    throw failedPrecondition(
      `volume ${volumeId} has no mount at ${state.path} but is still in use at ${[...users].slice(0, 5).join(', ')} (staged or published there): NodeUnpublishVolume / NodeUnstageVolume it there first`,
    );
  }
  if (users.size > 0) {
    throw failedPrecondition(
      `volume ${volumeId} is still published at ${[...users].slice(0, 5).join(', ')}; NodeUnpublishVolume must come first`,
    );
  }

  ctx.staged?.forget(volumeId);
  if (ours) {
    const { removed, lazy } = await unmountOurs(state, volume);
    if (lazy) ctx.log.warn({ stagingPath: state.path }, 'the staging mount was dead; it was unmounted lazily');
    ctx.log.debug({ stagingPath: state.path, removed }, 'unmounted the staging path');
  }
  await releaseUnusedReadOnlyLoops(ctx, volume.dev);
  // Always ask: detaching a volume that is not attached is success, and the back end may know better than querydev.
  await ctx.connector.detach(volumeId, { signal: ctx.signal });
}
