// NodeGetVolumeStats and NodeExpandVolume: find what is at a volume path (a filesystem mount, or a block
// device bound onto a file), check it is this volume, report usage and health, grow the filesystem.
import type { Logger } from '../log/logger.js';
import type { NodeGetVolumeStatsResponse } from '../generated/csi/v1/NodeGetVolumeStatsResponse.js';
import type { VolumeCondition } from '../generated/csi/v1/VolumeCondition.js';
import {
  blockDeviceNumber,
  deviceProblem,
  devicePathOf,
  deviceSizeBytes,
  filesystemUsage,
  isReadOnlyMount,
  isSupportedFilesystem,
  mountPointState,
  readOnlyLoopBacking,
  refreshLoopCapacity,
  sameDevice,
  type DeviceNumber,
  type MountPointState,
} from '../mount/index.js';
import { failedPrecondition, invalidArgument, notFound, outOfRange, unavailable } from '../server/errors.js';
import { isConnectorError } from '../connector/index.js';
import type { NodeConnector } from './deps.js';
import type { ByteRange, Capability } from './request.js';
import { holdsVolume, volumeDevice, type VolumeDevice } from './ownership.js';
import { growIfSmaller } from './filesystem.js';

interface Ctx {
  connector: NodeConnector;
  log: Logger;
  signal?: AbortSignal;
}

type VolumeAtPath =
  | { kind: 'filesystem'; state: MountPointState; dev: DeviceNumber; fsType: string; readOnly: boolean }
  | { kind: 'block'; state: MountPointState; dev: DeviceNumber }
  | { kind: 'dead'; state: MountPointState; dev: DeviceNumber; reason: string };

/** What the volume path holds; NOT_FOUND when it is neither a mount nor a published block device. */
async function volumeAtPath(path: string, volumeId: string): Promise<VolumeAtPath> {
  const state = await mountPointState(path);
  const { mount, pathState } = state;
  if (!mount) throw notFound(`volume_path ${state.path} holds no volume (not a mount point)`);
  if (pathState.kind === 'dead')
    return { kind: 'dead', state, dev: mount, reason: `${state.path} does not answer (${pathState.reason})` };
  if (pathState.kind === 'blockDevice') return { kind: 'block', state, dev: pathState };
  if (pathState.kind !== 'directory') throw notFound(`volume_path ${state.path} holds no volume of ${volumeId}`);
  return { kind: 'filesystem', state, dev: mount, fsType: mount.fsType, readOnly: isReadOnlyMount(mount) };
}

/** Why the back end's view disagrees with what is mounted, or undefined when it agrees (or cannot tell). */
async function attachmentProblem(ctx: Ctx, volumeId: string, dev: DeviceNumber): Promise<string | undefined> {
  let attached: string | undefined;
  try {
    attached = await ctx.connector.queryDevice(volumeId, { signal: ctx.signal });
  } catch (err) {
    if (isConnectorError(err, 'VolumeNotFound')) return `volume ${volumeId} no longer exists on the back end`;
    // The VBS not answering says nothing about this volume's health.
    ctx.log.warn(
      { err: (err as Error).message },
      'cannot ask the connector about the volume; condition from local checks only',
    );
    return undefined;
  }
  if (attached === undefined) return `volume ${volumeId} is no longer attached to this node`;
  try {
    if (!sameDevice(await blockDeviceNumber(attached), dev))
      return `volume ${volumeId} is attached as ${attached}, not as the device mounted here`;
  } catch {
    return `volume ${volumeId}'s device ${attached} is missing`;
  }
  return undefined;
}

/** The volume's device, or undefined when the connector cannot answer now (then only local checks count). */
async function volumeDeviceIfAnswered(ctx: Ctx, volumeId: string): Promise<VolumeDevice | undefined> {
  try {
    return await volumeDevice(ctx, volumeId);
  } catch (err) {
    // The VBS not answering says nothing about this volume's health.
    ctx.log.warn(
      { err: (err as Error).message },
      'cannot ask the connector about the volume; condition from local checks only',
    );
    return undefined;
  }
}

export async function volumeStats(ctx: Ctx, volumeId: string, volumePath: string): Promise<NodeGetVolumeStatsResponse> {
  const volume = await volumeDeviceIfAnswered(ctx, volumeId);
  if (volume && !volume.known) throw notFound(`volume ${volumeId} does not exist`);
  const found = await volumeAtPath(volumePath, volumeId);
  // Another volume's mount (or anything else) at the path: this volume does not exist there (CSI: NOT_FOUND).
  if (volume && !(await holdsVolume(found.state, volume))) {
    throw notFound(
      `volume_path ${found.state.path} does not hold volume ${volumeId} (it holds ${found.state.mount!.source}, ${found.state.mount!.fsType})`,
    );
  }
  const problems: string[] = [];
  if (found.kind === 'dead') problems.push(found.reason);
  const onDevice = await deviceProblem(found.dev);
  if (onDevice) problems.push(onDevice);
  if (volume?.known && !volume.path) problems.push(`volume ${volumeId} is no longer attached to this node`);
  else if (volume?.known && !volume.dev) problems.push(`volume ${volumeId}'s device ${volume.path} is missing`);

  const usage: NonNullable<NodeGetVolumeStatsResponse['usage']> = [];
  if (found.kind === 'filesystem') {
    try {
      const u = await filesystemUsage(found.state.path);
      usage.push({
        unit: 'BYTES',
        total: String(u.totalBytes),
        available: String(u.availableBytes),
        used: String(u.usedBytes),
      });
      usage.push({
        unit: 'INODES',
        total: String(u.totalInodes),
        available: String(u.freeInodes),
        used: String(u.usedInodes),
      });
    } catch (err) {
      problems.push((err as Error).message);
    }
  } else if (found.kind === 'block') {
    const path = await devicePathOf(found.dev);
    if (path) {
      try {
        usage.push({ unit: 'BYTES', total: String(await deviceSizeBytes(path)) });
      } catch (err) {
        problems.push((err as Error).message);
      }
    }
  }
  const volume_condition: VolumeCondition = problems.length
    ? { abnormal: true, message: problems.join('; ') }
    : {
        abnormal: false,
        message: found.kind === 'block' ? 'block device attached and healthy' : 'filesystem mounted and healthy',
      };
  return { usage, volume_condition };
}

export interface ExpandRequest {
  volumeId: string;
  volumePath: string;
  stagingPath?: string;
  capability?: Capability;
  range: ByteRange;
  /** how long to wait for the device to show the size the controller gave the volume */
  deviceGrowWaitMs: number;
}

async function waitForDeviceSize(devicePath: string, requiredBytes: number, waitMs: number): Promise<number> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const bytes = await deviceSizeBytes(devicePath);
    if (bytes >= requiredBytes || Date.now() >= deadline) return bytes;
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function expandVolume(ctx: Ctx, req: ExpandRequest): Promise<{ capacityBytes: number }> {
  const found = await volumeAtPath(req.volumePath, req.volumeId);
  if (found.kind === 'dead') throw failedPrecondition(`cannot expand volume ${req.volumeId}: ${found.reason}`);
  const heldType = found.kind === 'block' ? 'block' : 'mount';
  if (req.capability && req.capability.accessType !== heldType) {
    throw invalidArgument(
      `volume_capability says ${req.capability.accessType}, but volume_path holds a ${found.kind === 'block' ? 'block device' : 'filesystem'}`,
    );
  }
  // A read-only block publish shows a read-only loop over the volume's device: the volume is what is under it.
  const readOnlyLoop = found.kind === 'block' ? await readOnlyLoopBacking(found.dev) : undefined;
  const volumeDev = readOnlyLoop ?? found.dev;
  const mismatch = await attachmentProblem(ctx, req.volumeId, volumeDev);
  if (mismatch) throw notFound(`volume_path ${found.state.path}: ${mismatch}`);
  const devicePath = await devicePathOf(volumeDev);
  if (!devicePath) throw notFound(`the device of volume ${req.volumeId} is gone`);

  const deviceBytes = await waitForDeviceSize(devicePath, req.range.requiredBytes, req.deviceGrowWaitMs);
  if (deviceBytes < req.range.requiredBytes) {
    // Not final: the back end may still be resizing the device. UNAVAILABLE lets the CO retry.
    throw unavailable(
      `the device of volume ${req.volumeId} is ${deviceBytes} bytes, less than the ${req.range.requiredBytes} asked; ControllerExpandVolume must finish first`,
    );
  }
  if (req.range.limitBytes > 0 && deviceBytes > req.range.limitBytes) {
    throw outOfRange(
      `the device of volume ${req.volumeId} is ${deviceBytes} bytes, more than capacity_range.limit_bytes ${req.range.limitBytes}`,
    );
  }
  if (found.kind === 'block') {
    if (readOnlyLoop) {
      const loopPath = await devicePathOf(found.dev);
      if (loopPath) await refreshLoopCapacity(loopPath, { signal: ctx.signal });
    }
    return { capacityBytes: deviceBytes };
  }

  // Grow through the staging mount when we have it: a read-only publish bind cannot take the grow ioctl.
  let mountPoint = found.state.path;
  let readOnly = found.readOnly;
  if (req.stagingPath) {
    const staging = await mountPointState(req.stagingPath);
    if (staging.mount && sameDevice(staging.mount, found.dev) && staging.pathState.kind === 'directory') {
      mountPoint = staging.path;
      readOnly = isReadOnlyMount(staging.mount);
    }
  }
  if (!isSupportedFilesystem(found.fsType))
    throw failedPrecondition(`volume ${req.volumeId} holds ${found.fsType}, which this driver cannot grow`);
  if (readOnly)
    throw failedPrecondition(
      `volume ${req.volumeId} is mounted read-only at ${mountPoint}; its filesystem cannot grow in that state`,
    );
  await growIfSmaller(ctx, devicePath, mountPoint, found.fsType);
  return { capacityBytes: deviceBytes };
}
