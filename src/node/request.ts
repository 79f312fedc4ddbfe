// Checks of node request fields, and the volume capability turned into what staging and publishing need.
import { isAbsolute } from 'node:path';
import type { CapacityRange__Output } from '../generated/csi/v1/CapacityRange.js';
import type { VolumeCapability__Output } from '../generated/csi/v1/VolumeCapability.js';
import { isSupportedFilesystem, mountFlagsProblem, type FsType } from '../mount/index.js';
import { isValidName } from '../protocol/vbs.js';
import { failedPrecondition, invalidArgument, notFound } from '../server/errors.js';
import { PUBLISH_ACCESS_MODE_KEY } from './deps.js';

export type AccessMode = NonNullable<VolumeCapability__Output['access_mode']>['mode'];

/** Modes this driver serves: one host at a time, or read-only on several (the controller's list). */
const SUPPORTED_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'MULTI_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
]);

const READER_ONLY_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>(['SINGLE_NODE_READER_ONLY', 'MULTI_NODE_READER_ONLY']);

/** Modes in which a volume may be published at one target path only on a node (spec's second-publish matrix). */
const ONE_TARGET_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>(['SINGLE_NODE_WRITER', 'SINGLE_NODE_READER_ONLY', 'SINGLE_NODE_SINGLE_WRITER']);

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
  if (!forCleanup && !isValidName(volumeId)) throw notFound(`volume ${JSON.stringify(volumeId.slice(0, 100))} does not exist (not a valid volume name)`);
  return volumeId;
}

/** A path field: required, absolute, no NUL; the OS limit (4096) is accepted. */
export function checkPath(field: string, path: string): string {
  if (path === '') throw invalidArgument(`${field} is required`);
  if (!isAbsolute(path)) throw invalidArgument(`${field} must be an absolute path`);
  if (path.includes('\0')) throw invalidArgument(`${field} contains a NUL byte`);
  if (Buffer.byteLength(path, 'utf8') > 4096) throw invalidArgument(`${field} is longer than 4096 bytes`);
  return path;
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
  if (!SUPPORTED_MODES.has(mode)) {
    throw unsupported(`${field}.access_mode ${mode} is not supported by this volume (one host at a time, or read-only on several)`);
  }
  const readerOnly = READER_ONLY_MODES.has(mode);
  if (cap.access_type === 'block') return { accessType: 'block', mode, readerOnly };
  if (cap.access_type !== 'mount' || !cap.mount) throw invalidArgument(`${field}.access_type (block or mount) is required`);
  const requested = cap.mount.fs_type || volumeContext.fsType || DEFAULT_FS_TYPE;
  if (!isSupportedFilesystem(requested)) {
    const from = cap.mount.fs_type ? `${field}.mount.fs_type` : 'volume_context.fsType';
    throw invalidArgument(`${from} ${JSON.stringify(requested.slice(0, 40))} is not supported (ext4 or xfs)`);
  }
  if (cap.mount.volume_mount_group) throw invalidArgument(`${field}.mount.volume_mount_group is not supported (the node does not advertise VOLUME_MOUNT_GROUP)`);
  const flags = cap.mount.mount_flags ?? [];
  const problem = mountFlagsProblem(flags);
  if (problem) throw invalidArgument(`${field}.mount.${problem}`);
  if (readerOnly && flags.includes('rw')) throw invalidArgument(`${field}.mount.mount_flags has rw, but access mode ${mode} is read-only`);
  return { accessType: 'mount', mode, readerOnly, fsType: requested, mountFlags: [...flags] };
}

/** Whether ControllerPublishVolume mapped the volume read-only to this host. */
export function mappedReadOnly(publishContext: Record<string, string>): boolean {
  return publishContext[PUBLISH_ACCESS_MODE_KEY] === 'ro';
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

export function parseCapacityRange(range: CapacityRange__Output | null): ByteRange {
  const requiredBytes = bytesField('capacity_range.required_bytes', range?.required_bytes);
  const limitBytes = bytesField('capacity_range.limit_bytes', range?.limit_bytes);
  if (limitBytes > 0 && requiredBytes > limitBytes) throw invalidArgument('capacity_range.required_bytes is larger than capacity_range.limit_bytes');
  return { requiredBytes, limitBytes };
}
