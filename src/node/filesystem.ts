// The staged filesystem: a blank device formatted (only a blank one, never content from a source), and a
// filesystem grown to fill a device that is larger than it, mounted or not.
import type { Logger } from '../log/logger.js';
import {
  FILESYSTEM_MINIMUM_BYTES,
  deviceSizeBytes,
  filesystemSmallerThan,
  growFilesystem,
  growUnmountedExt4,
  makeFilesystem,
  probeDevice,
  type DeviceContent,
  type FsType,
} from '../mount/index.js';
import { failedPrecondition } from '../server/errors.js';

/** Grows the staged filesystem when its device is larger (a clone restored bigger than its snapshot, an expand). */
export async function growIfSmaller(
  ctx: { log: Logger },
  devicePath: string,
  mountPoint: string,
  fsType: FsType,
): Promise<{ deviceBytes: number; grew: boolean }> {
  const deviceBytes = await deviceSizeBytes(devicePath);
  const size = await filesystemSmallerThan({ devicePath, mountPoint }, fsType, deviceBytes);
  if (!size.smaller) return { deviceBytes, grew: false };
  ctx.log.info(
    { device: devicePath, mountPoint, fsBytes: size.fsBytes, deviceBytes },
    'growing the filesystem to fill its device',
  );
  await growFilesystem({ devicePath, mountPoint }, fsType);
  return { deviceBytes, grew: true };
}

/**
 * `superblock`: the ext4 superblock's size, read by the caller while other work ran (not valid across a
 * format: pass it only when nothing wrote the device since it was read).
 */
export async function growUnmountedExt4IfSmaller(
  ctx: { log: Logger },
  devicePath: string,
  superblock?: Promise<number | undefined>,
): Promise<void> {
  const deviceBytes = await deviceSizeBytes(devicePath);
  const size = await filesystemSmallerThan({ devicePath, mountPoint: '' }, 'ext4', deviceBytes, { superblock });
  if (!size.smaller) return;
  ctx.log.info(
    { device: devicePath, fsBytes: size.fsBytes, deviceBytes },
    'growing the ext4 filesystem to fill its device before mounting it',
  );
  await growUnmountedExt4(devicePath);
}

const mebibytes = (bytes: number): string =>
  `${Math.floor(bytes / 1048576) === bytes / 1048576 ? bytes / 1048576 : (bytes / 1048576).toFixed(1)} MiB`;

const ORIGIN_WORDS: Record<string, string> = {
  image: 'an image',
  snapshot: 'a snapshot',
  volume: 'a clone of another volume',
};

/**
 * blkid first: a blank device gets a filesystem; anything else on it is kept, never formatted over. `probe`:
 * the blkid probe of the device, when the caller started it already. Resolves with whether it formatted.
 */
export async function formatIfBlank(
  ctx: { log: Logger },
  {
    volumeId,
    devicePath,
    fsType,
    readOnly,
    contentOrigin,
    probe,
  }: {
    volumeId: string;
    devicePath: string;
    fsType: FsType;
    readOnly: boolean;
    contentOrigin?: string;
    probe?: Promise<DeviceContent>;
  },
): Promise<boolean> {
  const content = await (probe ?? probeDevice(devicePath));
  if (content.kind === 'filesystem') {
    if (content.fsType !== fsType) {
      throw failedPrecondition(
        `volume ${volumeId} already holds a ${content.fsType} filesystem, but ${fsType} was asked; it is never reformatted`,
      );
    }
    return false;
  }
  if (content.kind === 'other') {
    throw failedPrecondition(
      `volume ${volumeId} (${devicePath}) holds ${content.description}; refusing to format it as ${fsType}`,
    );
  }
  if (contentOrigin !== undefined) {
    // Its content came from somewhere (a raw disk image, a snapshot or clone of a block volume): formatting
    // would destroy it. Only its owner knows what it is.
    throw failedPrecondition(
      `volume ${volumeId} was made from ${ORIGIN_WORDS[contentOrigin] ?? `a source (${contentOrigin})`} and holds no filesystem blkid recognizes; ` +
        `it is never formatted (that would destroy its content): stage it as a raw block volume, or put a ${fsType} filesystem on its source`,
    );
  }
  if (readOnly)
    throw failedPrecondition(
      `volume ${volumeId} is blank and is to be mounted read-only: there is no filesystem to mount, and a read-only volume cannot be formatted`,
    );
  const deviceBytes = await deviceSizeBytes(devicePath);
  const minimum = FILESYSTEM_MINIMUM_BYTES[fsType];
  if (deviceBytes < minimum) {
    throw failedPrecondition(
      `volume ${volumeId} is ${mebibytes(deviceBytes)}, too small for ${fsType}, which needs at least ${mebibytes(minimum)}: ` +
        `expand the volume to ${mebibytes(minimum)} or more, or stage it as ${fsType === 'xfs' ? 'ext4' : 'a raw block volume'}`,
    );
  }
  ctx.log.info({ device: devicePath, fsType }, 'formatting a blank volume');
  await makeFilesystem(devicePath, fsType);
  return true;
}
