// Checks of node request fields, and the volume capability turned into what staging and publishing need.
import { isAbsolute } from 'node:path';
import type { CapacityRange__Output } from '../generated/csi/v1/CapacityRange.js';
import type { VolumeCapability__Output } from '../generated/csi/v1/VolumeCapability.js';
import { isSupportedFilesystem, mountFlagsProblem, type FsType } from '../mount/index.js';
import { isValidName } from '../protocol/vbs.js';
import { failedPrecondition, invalidArgument, notFound, outOfRange } from '../server/errors.js';
import { isReadOnlyMode, SUPPORTED_ACCESS_MODES, type AccessMode } from '../util/access-modes.js';
import { CONTEXT_CONTENT_ORIGIN_KEY, PUBLISH_ACCESS_MODE_KEY } from './deps.js';

/** Modes in which a volume may be published at one target path only on a node (spec's second-publish matrix). */
const ONE_TARGET_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
]);

export const DEFAULT_FS_TYPE: FsType = 'ext4';

export type Capability =
  | { accessType: 'block'; mode: AccessMode; readerOnly: boolean }
  | { accessType: 'mount'; mode: AccessMode; readerOnly: boolean; fsType: FsType; mountFlags: string[] };

export function allowsOneTarget(mode: AccessMode): boolean {
  return ONE_TARGET_MODES.has(mode);
}

/**
 * The volume id checked: empty → INVALID_ARGUMENT; an id no back-end volume can have → NOT_FOUND (such a
 * volume cannot exist), unless the caller only cleans up (`forCleanup`), where the id is not used.
 */
export function checkVolumeId(volumeId: string, forCleanup = false): string {
  if (volumeId === '') throw invalidArgument('volume_id is required');
  if (!forCleanup && !isValidName(volumeId))
    throw notFound(`volume ${JSON.stringify(volumeId.slice(0, 100))} does not exist (not a valid volume name)`);
  return volumeId;
}

/** Linux limits: a path of at most PATH_MAX (4096) bytes with its terminating NUL, components of NAME_MAX. */
const MAX_PATH_BYTES = 4095;
const MAX_COMPONENT_BYTES = 255;

/**
 * A path field: required, absolute, no NUL, within the OS limits, and normalized — no `.`, `..` or empty
 * component, no trailing `/`. A path must name the place it spells: a `..` would lead out of the directory
 * it appears to be in. Kubelet never sends such paths. See docs/RELIABILITY.md, "Node paths".
 */
export function checkPath(field: string, path: string): string {
  if (path === '') throw invalidArgument(`${field} is required`);
  if (!isAbsolute(path)) throw invalidArgument(`${field} must be an absolute path`);
  if (path.includes('\0')) throw invalidArgument(`${field} contains a NUL byte`);
  if (Buffer.byteLength(path, 'utf8') > MAX_PATH_BYTES)
    throw invalidArgument(`${field} is longer than ${MAX_PATH_BYTES} bytes`);
  if (path === '/') throw invalidArgument(`${field} must not be the root directory`);
  const components = path.slice(1).split('/');
  if (components.some((c) => c === '' || c === '.' || c === '..')) {
    throw invalidArgument(
      `${field} must be a normalized absolute path: no ".", ".." or empty component, no trailing "/"`,
    );
  }
  if (components.some((c) => Buffer.byteLength(c, 'utf8') > MAX_COMPONENT_BYTES)) {
    throw invalidArgument(`${field} has a component longer than ${MAX_COMPONENT_BYTES} bytes`);
  }
  return path;
}

/**
 * The path of NodeGetVolumeStats and NodeExpandVolume: only an empty one is INVALID_ARGUMENT. CSI's tables
 * answer NOT_FOUND for "the volume does not exist at the path", whatever the path's form: a relative or
 * malformed path holds no volume either (and is never used).
 */
export function checkVolumePath(field: string, path: string): string {
  if (path === '') throw invalidArgument(`${field} is required`);
  try {
    return checkPath(field, path);
  } catch (err) {
    throw notFound(`no volume at ${field}: ${(err as Error).message}`);
  }
}

/**
 * The capability of a stage/publish/expand request. `volumeContext.fsType` is used when fs_type is empty. An
 * access mode the volume cannot have is FAILED_PRECONDITION for stage and publish, INVALID_ARGUMENT for
 * expand (the spec's tables differ).
 */
export function parseCapability(
  field: string,
  cap: VolumeCapability__Output | null,
  volumeContext: Record<string, string> = {},
  unsupported: (message: string) => Error = failedPrecondition,
): Capability {
  if (!cap) throw invalidArgument(`${field} is required`);
  const mode = cap.access_mode?.mode;
  if (mode === undefined || mode === 'UNKNOWN') throw invalidArgument(`${field}.access_mode is required`);
  if (!SUPPORTED_ACCESS_MODES.has(mode)) {
    throw unsupported(
      `${field}.access_mode ${mode} is not supported by this volume (one host at a time, or read-only on several)`,
    );
  }
  const readerOnly = isReadOnlyMode(mode);
  if (cap.access_type === 'block') return { accessType: 'block', mode, readerOnly };
  if (cap.access_type !== 'mount' || !cap.mount)
    throw invalidArgument(`${field}.access_type (block or mount) is required`);
  // ext4 and xfs are not cluster file systems: a second writing host would corrupt them.
  if (mode === 'MULTI_NODE_MULTI_WRITER')
    throw unsupported(`${field}.access_mode ${mode} is not supported for a mount volume (raw block only)`);
  const requested = cap.mount.fs_type || volumeContext.fsType || DEFAULT_FS_TYPE;
  if (!isSupportedFilesystem(requested)) {
    const from = cap.mount.fs_type ? `${field}.mount.fs_type` : 'volume_context.fsType';
    throw invalidArgument(`${from} ${JSON.stringify(requested.slice(0, 40))} is not supported (ext4 or xfs)`);
  }
  if (cap.mount.volume_mount_group)
    throw invalidArgument(
      `${field}.mount.volume_mount_group is not supported (the node does not advertise VOLUME_MOUNT_GROUP)`,
    );
  const flags = cap.mount.mount_flags ?? [];
  const problem = mountFlagsProblem(flags);
  if (problem) throw invalidArgument(`${field}.mount.${problem}`);
  if (readerOnly && flags.includes('rw'))
    throw invalidArgument(`${field}.mount.mount_flags has rw, but access mode ${mode} is read-only`);
  return { accessType: 'mount', mode, readerOnly, fsType: requested, mountFlags: [...flags] };
}

/** Whether ControllerPublishVolume mapped the volume read-only to this host. */
export function mappedReadOnly(publishContext: Record<string, string>): boolean {
  return publishContext[PUBLISH_ACCESS_MODE_KEY] === 'ro';
}

/** Where the volume's content came from, when CreateVolume recorded it (any value counts: never format it). */
export function contentOrigin(volumeContext: Record<string, string>): string | undefined {
  const origin = volumeContext[CONTEXT_CONTENT_ORIGIN_KEY];
  return origin === undefined || origin === '' ? undefined : origin.slice(0, 40);
}

function bytesField(field: string, value: string | undefined): number {
  if (value === undefined || value === '' || value === '0') return 0;
  if (!/^\d+$/.test(value)) throw invalidArgument(`${field} must be a non-negative number of bytes`);
  const n = Number(value);
  if (!Number.isSafeInteger(n)) throw invalidArgument(`${field} is too large`);
  return n;
}

export interface ByteRange {
  requiredBytes: number;
  /** 0 = no limit */
  limitBytes: number;
}

/** The largest volume the socket API can describe: 67,108,864 MiB (docs/socket-api.md, vol_size). */
const MAX_VOLUME_BYTES = 67_108_864 * 1024 * 1024;

export function parseCapacityRange(range: CapacityRange__Output | null): ByteRange {
  const requiredBytes = bytesField('capacity_range.required_bytes', range?.required_bytes);
  const limitBytes = bytesField('capacity_range.limit_bytes', range?.limit_bytes);
  // No device will ever grow that far: say so now, rather than wait for it and answer "not yet".
  if (requiredBytes > MAX_VOLUME_BYTES)
    throw outOfRange(
      `capacity_range.required_bytes exceeds the largest volume the back end can hold (${MAX_VOLUME_BYTES} bytes)`,
    );
  if (limitBytes > 0 && requiredBytes > limitBytes)
    throw invalidArgument('capacity_range.required_bytes is larger than capacity_range.limit_bytes');
  return { requiredBytes, limitBytes };
}
