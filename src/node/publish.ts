// NodePublishVolume and NodeUnpublishVolume: bind mounts from the staging path (filesystem volumes) or of
// the device node onto a file (block volumes). Like staging, every step re-reads the mount table.
import { open, unlink } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Logger } from '../log/logger.js';
import {
  bindMount,
  blockDeviceNumber,
  createReadOnlyLoop,
  detachLoop,
  inspectPath,
  isReadOnlyMount,
  mountPointState,
  mountPointStateAt,
  mountPointStates,
  mountPointsOfDevice,
  mountsOfDevice,
  readMountTable,
  readOnlyLoopBacking,
  remountBindReadOnly,
  removeDirectory,
  sameDevice,
  unmountAll,
  unmountTop,
  type DeviceNumber,
  type MountPointState,
  type PathState,
} from '../mount/index.js';
import { alreadyExists, failedPrecondition, internal, invalidArgument, notFound } from '../server/errors.js';
import { isConnectorError } from '../connector/index.js';
import type { NodeConnector } from './deps.js';
import { allowsOneTarget, type Capability } from './request.js';
import {
  holdsVolume,
  releaseUnusedReadOnlyLoops,
  unmountOurs,
  unusedReadOnlyLoops,
  volumeDevice,
  type VolumeDevice,
} from './ownership.js';
import { ensureDirectory, makeDirectories } from './directories.js';
import type { StagedDevices } from './staged.js';

interface Ctx {
  connector: NodeConnector;
  log: Logger;
  signal?: AbortSignal;
  /** the devices this process staged (a hint that spares `querydev`; see staged.ts) */
  staged?: StagedDevices;
}

export interface PublishRequest {
  volumeId: string;
  stagingPath: string;
  targetPath: string;
  capability: Capability;
  readOnly: boolean;
}

/** The volume's device on this host; not attached means it was never staged here. */
async function stagedDevice(ctx: Ctx, volumeId: string): Promise<{ path: string; dev: DeviceNumber }> {
  let path: string | undefined;
  try {
    path = await ctx.connector.queryDevice(volumeId, { signal: ctx.signal });
  } catch (err) {
    if (isConnectorError(err, 'NotMapped')) path = undefined;
    else throw err;
  }
  if (!path)
    throw failedPrecondition(`volume ${volumeId} is not attached to this node: NodeStageVolume must come first`);
  return { path, dev: await blockDeviceNumber(path) };
}

/**
 * An existing mount at the target: the same publish again → true (nothing to do); a dead one is removed
 * → false; anything else → ALREADY_EXISTS.
 */
async function alreadyPublished(
  ctx: Ctx,
  req: PublishRequest,
  target: MountPointState,
  isOurs: boolean,
): Promise<boolean> {
  if (!target.mount) return false;
  if (target.pathState.kind === 'dead') {
    ctx.log.warn(
      { targetPath: target.path, reason: target.pathState.reason },
      'removing a dead mount at the target path',
    );
    await unmountAll(target.path);
    return false;
  }
  if (!isOurs)
    throw alreadyExists(
      `target_path ${target.path} already holds something else (${target.mount.source}, ${target.mount.fsType}); volume ${req.volumeId} was asked as ${req.capability.accessType}`,
    );
  const mountedReadOnly = isReadOnlyMount(target.mount);
  if (req.readOnly && !mountedReadOnly) {
    // A read-only bind takes two steps (bind, then remount ro); a crash between them leaves this. We cannot
    // tell that from a CO now asking ro where it asked rw, so finish the job: the safe direction. See docs/node.md.
    ctx.log.warn(
      { targetPath: target.path },
      'found a writable bind where a read-only one was asked; making it read-only',
    );
    await remountBindReadOnly(target.path);
    return true;
  }
  if (mountedReadOnly !== req.readOnly) {
    throw alreadyExists(
      `volume ${req.volumeId} is already published at ${target.path} ${mountedReadOnly ? 'read-only' : 'read-write'}; ${req.readOnly ? 'read-only' : 'read-write'} was asked`,
    );
  }
  return true;
}

/** For access modes that allow one target per node, a publish elsewhere is FAILED_PRECONDITION (spec matrix). */
async function checkSingleTarget(
  req: PublishRequest,
  dev: DeviceNumber,
  devicePath: string,
  exclude: string[],
): Promise<void> {
  if (!allowsOneTarget(req.capability.mode)) return;
  const elsewhere = (await mountPointsOfDevice(dev, devicePath)).filter((p) => !exclude.includes(p));
  if (elsewhere.length > 0) {
    throw failedPrecondition(
      `volume ${req.volumeId} is already published at ${elsewhere[0]}, and access mode ${req.capability.mode} allows one target per node`,
    );
  }
}

/**
 * The target's state once alreadyPublished has dealt with what was there: read again only if something was
 * (a dead mount it removed); with nothing mounted there it did nothing, and the state just read stands.
 */
async function targetAfterCheck(target: MountPointState): Promise<MountPointState> {
  const now = target.mount ? await mountPointStateAt(target.path) : target;
  if (now.mount) throw alreadyExists(`target_path ${now.path} is still a mount point`);
  return now;
}

export async function publishVolume(ctx: Ctx, req: PublishRequest): Promise<void> {
  // Both paths at once: their lstat and realpath calls share one thread-pool round trip, and one table read.
  const [staging, firstTarget] = (await mountPointStates([req.stagingPath, req.targetPath])) as [
    MountPointState,
    MountPointState,
  ];
  // A filesystem volume: its staging mount showing the device this process staged it as answers querydev.
  const staged =
    req.capability.accessType === 'mount' && staging.pathState.kind !== 'dead'
      ? await ctx.staged?.confirmed(req.volumeId, staging.mount)
      : undefined;
  const device = staged ?? (await stagedDevice(ctx, req.volumeId));
  // querydev runs a program: what the target held before it may have changed since.
  let target = staged ? firstTarget : await mountPointState(req.targetPath);

  // The target first: a publish already there answers for itself (same → OK, different → ALREADY_EXISTS).
  if (req.capability.accessType === 'mount') {
    const isOurs = target.mount !== undefined && sameDevice(target.mount, device.dev) && target.mount.root === '/';
    if (await alreadyPublished(ctx, req, target, isOurs)) return;
    if (!staging.mount || !sameDevice(staging.mount, device.dev) || staging.pathState.kind === 'dead') {
      throw failedPrecondition(
        `volume ${req.volumeId} is not staged at ${staging.path}: NodeStageVolume must come first`,
      );
    }
    if (staging.mount.fsType !== req.capability.fsType) {
      throw failedPrecondition(
        `volume ${req.volumeId} is staged as ${staging.mount.fsType}; ${req.capability.fsType} was asked`,
      );
    }
    target = await targetAfterCheck(target);
    await checkSingleTarget(req, device.dev, device.path, [staging.path, target.path]);
    await ensureDirectory('target_path', target.path, target.pathState);
    await bindMount(staging.path, target.path, req.readOnly);
    return;
  }

  const node = target.pathState.kind === 'blockDevice' ? target.pathState : undefined;
  const throughReadOnlyLoop =
    node !== undefined && sameDevice((await readOnlyLoopBacking(node)) ?? { major: -1, minor: -1 }, device.dev);
  if (target.mount && node && req.readOnly && sameDevice(node, device.dev)) {
    // A read-only publish of the device itself (an older driver's, or a crash's): writes go through it. Redo it.
    ctx.log.warn(
      { targetPath: target.path },
      'found the writable device bound where a read-only publish was asked; republishing it read-only',
    );
    await unmountTop(target.path);
    target = await mountPointState(req.targetPath);
  }
  const isOurs =
    target.mount !== undefined && node !== undefined && (sameDevice(node, device.dev) || throughReadOnlyLoop);
  if (target.mount && isOurs && throughReadOnlyLoop !== req.readOnly) {
    throw alreadyExists(
      `volume ${req.volumeId} is already published at ${target.path} ${throughReadOnlyLoop ? 'read-only' : 'read-write'}; ${req.readOnly ? 'read-only' : 'read-write'} was asked`,
    );
  }
  if (await alreadyPublished(ctx, req, target, isOurs)) return;
  await checkNoFilesystemMounted(req, staging.path, device.dev);
  target = await targetAfterCheck(target);
  await checkSingleTarget(req, device.dev, device.path, [target.path]);
  await ensureFile(target.path, target.pathState);
  if (!req.readOnly) {
    await bindMount(device.path, target.path, false);
    return;
  }
  // The pod gets a read-only loop device over the volume's: the kernel refuses writes to it, whoever opens it.
  const loop =
    (await unusedReadOnlyLoops(device.dev))[0] ?? (await createReadOnlyLoop(device.path, { signal: ctx.signal }));
  try {
    await bindMount(loop.path, target.path, true);
  } catch (err) {
    await detachLoop(loop.path).catch(() => undefined);
    throw err;
  }
}

/**
 * A block publish needs the device's filesystem mounted nowhere: at this staging path, at another one (a
 * second staging path with a filesystem capability), or bound at a publish. Raw writes beside a mounted
 * filesystem corrupt it, and a read-only loop over it reads a filesystem changing underneath.
 */
async function checkNoFilesystemMounted(req: PublishRequest, stagingPath: string, dev: DeviceNumber): Promise<void> {
  const mounted = mountsOfDevice(await readMountTable(), dev.major, dev.minor).map((m) => m.mountPoint);
  if (mounted.length === 0) return;
  if (mounted.includes(stagingPath))
    throw failedPrecondition(
      `volume ${req.volumeId} is staged as a filesystem at ${stagingPath}; a block publish was asked`,
    );
  throw failedPrecondition(
    `volume ${req.volumeId} is mounted as a filesystem at ${mounted[0]}; a block publish was asked: NodeUnpublishVolume / NodeUnstageVolume it there first`,
  );
}

/**
 * The file a block device is bound onto; created if missing (its parent too), a symlink refused. `state`: what
 * the caller has just seen at the path.
 */
async function ensureFile(path: string, state: PathState): Promise<void> {
  if (state.kind === 'file' || state.kind === 'dead') return;
  if (state.kind === 'symlink') throw invalidArgument(`target_path ${path} is a symbolic link; refusing to use it`);
  if (state.kind !== 'missing')
    throw invalidArgument(
      `target_path ${path} exists and is not a regular file (a block volume is published as a file)`,
    );
  await makeDirectories('target_path', dirname(path));
  try {
    await (await open(path, 'wx', 0o640)).close();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

export interface UnpublishRequest {
  volumeId: string;
  targetPath: string;
}

export async function unpublishVolume(ctx: Ctx, req: UnpublishRequest): Promise<void> {
  const target = await mountPointState(req.targetPath);
  // The target's mount showing the device this process staged the volume as answers what querydev would.
  const staged = await ctx.staged?.confirmed(req.volumeId, target.mount);
  const volume: VolumeDevice = staged ? { known: true, ...staged } : await volumeDevice(ctx, req.volumeId);
  if (!volume.known) {
    // Nothing can be this volume's: touch nothing. Nothing there is the idempotent "already unpublished".
    if (target.mount)
      throw notFound(
        `volume ${req.volumeId} does not exist; the mount at ${target.path} (${target.mount.source}, ${target.mount.fsType}) is not its and was left alone`,
      );
    return;
  }
  if (target.mount) {
    if (!(await holdsVolume(target, volume))) {
      // Not published here: the call's work is done. What is mounted there is someone else's.
      ctx.log.warn(
        { targetPath: target.path, source: target.mount.source, fsType: target.mount.fsType },
        `target_path holds a mount that is not volume ${req.volumeId}'s; left alone`,
      );
      return;
    }
    const { lazy } = await unmountOurs(target, volume);
    if (lazy) ctx.log.warn({ targetPath: target.path }, 'the publish mount was dead; it was unmounted lazily');
  }
  await releaseUnusedReadOnlyLoops(ctx, volume.dev);
  await removeTarget(ctx, target.path);
}

/**
 * Removes what NodePublishVolume made: an (empty) directory or the (empty) file of a block publish. What holds
 * data after the unmount was there before the publish (or was written beside the mount): not ours to delete,
 * and no reason to fail — the volume is no longer published here, and a failure would only make the CO repeat
 * the call forever. The directory (the common case) is tried first: one round trip, no lstat before it.
 */
async function removeTarget(ctx: Ctx, path: string): Promise<void> {
  const leaveAlone = (what: string) =>
    ctx.log.warn({ targetPath: path }, `target_path is ${what} after unmounting; left in place`);
  const stillDead = () => internal(`target_path ${path} still does not answer after unmounting`);
  const removed = await removeDirectory(path);
  if (removed === 'removed' || removed === 'missing') return;
  if (removed === 'notEmpty') return leaveAlone('a non-empty directory');
  if (removed === 'dead') throw stillDead();
  // Not a directory: the empty file of a block publish goes, anything else stays.
  const state = await inspectPath(path);
  if (state.kind === 'dead') throw stillDead();
  if (state.kind !== 'file') return;
  if (state.size !== 0) return leaveAlone('a non-empty file');
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
