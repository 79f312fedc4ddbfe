// The mount room: the only driver code that runs mkfs, blkid, mount, umount, e2fsck, dumpe2fs, resize2fs,
// xfs_growfs, xfs_db, blockdev and losetup. Every tool runs through execFile with an argv array and a timeout (exec.ts).
export { MountError, isMountError, type MountErrorKind } from './errors.js';
export {
  parseMountInfo,
  readMountTable,
  mountsAt,
  topMountAt,
  mountsOfDevice,
  isReadOnlyMount,
  isWithin,
  unescapeMountField,
  type MountEntry,
} from './mountinfo.js';
export {
  inspectPath,
  canonicalPath,
  isDeadMountError,
  removeDirectory,
  splitDeviceNumber,
  type PathState,
} from './paths.js';
export {
  blockDeviceNumber,
  deviceDetaching,
  deviceExists,
  deviceName,
  devicePathOf,
  deviceSizeBytes,
  deviceProblem,
  sameDevice,
  type DeviceNumber,
} from './device.js';
export {
  SUPPORTED_FILESYSTEMS,
  FILESYSTEM_MINIMUM_BYTES,
  isSupportedFilesystem,
  probeDevice,
  makeFilesystem,
  xfsMkfsInterrupted,
  filesystemSizeBytes,
  filesystemSmallerThan,
  ext4SuperblockSizeBytes,
  growFilesystem,
  growUnmountedExt4,
  filesystemUsage,
  type FsType,
  type DeviceContent,
  type FilesystemUsage,
} from './filesystem.js';
export { mountFilesystem, bindMount, remountBindReadOnly, unmount } from './mounts.js';
export { mountFlagsProblem, optionName } from './options.js';
export {
  mountPointState,
  mountPointStateAt,
  mountPointStates,
  mountPointsOfDevice,
  unmountAll,
  unmountTop,
  type MountPointState,
} from './state.js';
export {
  createReadOnlyLoop,
  detachLoop,
  readOnlyLoopBacking,
  readOnlyLoopsOver,
  refreshLoopCapacity,
  type LoopDevice,
} from './readonly-device.js';
