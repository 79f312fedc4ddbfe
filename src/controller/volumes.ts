// Back-end records → CSI messages, and the comparison behind CreateVolume's idempotency.
import type { Snapshot } from '../generated/csi/v1/Snapshot.js';
import type { Volume } from '../generated/csi/v1/Volume.js';
import type { VolumeCondition } from '../generated/csi/v1/VolumeCondition.js';
import type { VolumeContentSource } from '../generated/csi/v1/VolumeContentSource.js';
import type { CloneType, PoolInfo, SnapshotInfo, VolumeInfo } from '../sds/backend.js';
import type { VolumeParameters } from './parameters.js';
import { FILESYSTEM_MINIMUM_BYTES, isSupportedFilesystem } from '../mount/filesystem.js';
import { outOfRange } from '../server/errors.js';
import { sizeFits, topologyOfHosts, type ByteRange, type CapabilitySummary } from './validation.js';

/** volume_context key telling the node which filesystem to make when the capability names none. */
export const CONTEXT_FS_TYPE = 'fsType';

export type RequestedSource = { type: 'snapshot'; id: string } | { type: 'volume'; id: string };

export function contentSourceOf(info: VolumeInfo): VolumeContentSource | null {
  if (info.source.type === 'snapshot') return { snapshot: { snapshot_id: info.source.name } };
  if (info.source.type === 'volume') return { volume: { volume_id: info.source.name } };
  return null;
}

/**
 * volume_context key telling the node where the volume's content came from ('image', 'snapshot', 'volume');
 * absent for a blank volume. The node never formats a volume that has an origin (docs/node.md).
 */
export const CONTEXT_CONTENT_ORIGIN = 'sdshypervisor.io/contentOrigin';

export type ContentOrigin = 'image' | 'snapshot' | 'volume';

/** What CreateVolume tells the node. `origin` comes from the request (content source or image), not from records. */
export function volumeContext(
  params: Pick<VolumeParameters, 'fsType'>,
  origin?: ContentOrigin,
): Record<string, string> {
  return {
    ...(params.fsType ? { [CONTEXT_FS_TYPE]: params.fsType } : {}),
    ...(origin ? { [CONTEXT_CONTENT_ORIGIN]: origin } : {}),
  };
}

export function csiVolume(info: VolumeInfo, pool: PoolInfo | undefined, context: Record<string, string> = {}): Volume {
  return {
    volume_id: info.name,
    capacity_bytes: String(info.sizeBytes),
    volume_context: context,
    content_source: contentSourceOf(info),
    accessible_topology: topologyOfHosts(pool?.hosts ?? []),
  };
}

/** The prefix of the settings ControllerGetVolume and ListVolumes report in volume_context. */
export const REPORTED_PREFIX = 'sdshypervisor.io/';
const QOS_LEVELS = { 3: 'high', 2: 'normal', 1: 'low' } as const;

/**
 * The back end's current settings of a volume, as ControllerGetVolume and ListVolumes report them (after a
 * ControllerModifyVolume too). Informational: CreateVolume's context, which the node sees, holds only fsType and the content origin.
 */
export function reportedSettings(info: VolumeInfo): Record<string, string> {
  return {
    [`${REPORTED_PREFIX}pool`]: info.poolId,
    [`${REPORTED_PREFIX}thin`]: String(info.thin),
    [`${REPORTED_PREFIX}allocatedBytes`]: String(info.allocatedBytes),
    [`${REPORTED_PREFIX}cache`]: info.cachePolicy,
    [`${REPORTED_PREFIX}maxIOPS`]: String(info.qos.maxIops),
    [`${REPORTED_PREFIX}maxMBps`]: String(info.qos.maxMBps),
    [`${REPORTED_PREFIX}qosLevel`]: QOS_LEVELS[info.qos.priority] ?? String(info.qos.priority),
    ...(info.cloneType ? { [`${REPORTED_PREFIX}cloneMode`]: info.cloneType } : {}),
  };
}

export function volumeCondition(info: VolumeInfo): VolumeCondition {
  const abnormal = !info.healthy || info.state === 'fault';
  return {
    abnormal,
    message: abnormal ? `volume is faulty: ${info.faultReason || 'the back end reports a fault'}` : 'volume is healthy',
  };
}

export function csiSnapshot(info: SnapshotInfo): Snapshot {
  const ms = info.createdAt.getTime();
  return {
    snapshot_id: info.name,
    source_volume_id: info.volumeName,
    size_bytes: String(info.sizeBytes),
    creation_time: { seconds: String(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
    ready_to_use: info.state === 'available' || info.state === 'in-use',
    group_snapshot_id: info.groupName ?? '',
  };
}

export interface WantedVolume {
  range: ByteRange;
  params: VolumeParameters;
  source?: RequestedSource;
  cloneType?: CloneType;
}

/** Settings of an existing volume that differ from the parameters; `thin` counts only when `compareThin`. */
export function settingDifferences(existing: VolumeInfo, params: VolumeParameters, compareThin: boolean): string[] {
  const diffs: string[] = [];
  if (params.poolId !== undefined && existing.poolId !== params.poolId)
    diffs.push(`it is in pool ${existing.poolId}, not ${params.poolId}`);
  if (compareThin && existing.thin !== params.thin) diffs.push(`it is ${existing.thin ? 'thin' : 'thick'}`);
  if (params.qos.maxIops !== undefined && existing.qos.maxIops !== params.qos.maxIops)
    diffs.push(`its maxIOPS is ${existing.qos.maxIops}`);
  if (params.qos.maxMBps !== undefined && existing.qos.maxMBps !== params.qos.maxMBps)
    diffs.push(`its maxMBps is ${existing.qos.maxMBps}`);
  if (params.qos.priority !== undefined && existing.qos.priority !== params.qos.priority)
    diffs.push(`its IO priority is ${existing.qos.priority}`);
  if (params.cachePolicy !== undefined && existing.cachePolicy !== params.cachePolicy)
    diffs.push(`its cache is ${existing.cachePolicy}`);
  return diffs;
}

/** What makes an existing volume unlike the requested one (empty: it is the same volume). */
export function incompatibilities(existing: VolumeInfo, want: WantedVolume): string[] {
  const diffs: string[] = [];
  if (!sizeFits(existing.sizeBytes, want.range))
    diffs.push(`its size ${existing.sizeBytes} bytes is outside the requested capacity_range`);
  diffs.push(...settingDifferences(existing, want.params, true));
  const src = existing.source;
  const have =
    src.type === 'snapshot' || src.type === 'volume'
      ? `${src.type} ${src.name}`
      : src.type === 'image'
        ? 'an image'
        : 'no source';
  const wanted = want.source ? `${want.source.type} ${want.source.id}` : want.params.image ? 'an image' : 'no source';
  if (have !== wanted) diffs.push(`it was made from ${have}, not ${wanted}`);
  else if (want.source && want.cloneType && existing.cloneType && existing.cloneType !== want.cloneType) {
    diffs.push(`it is a ${existing.cloneType} clone, not ${want.cloneType}`);
  }
  return diffs;
}

/**
 * The capacity range with the smallest filesystem the volume may get (FILESYSTEM_MINIMUM_BYTES; ext4 when
 * a mount capability names none, as the node does): a required size below it is rounded up to it, a limit
 * below it is OUT_OF_RANGE. Block-only volumes and an unsized range (the default size) are left as asked.
 */
export function withFilesystemMinimum(
  field: string,
  range: ByteRange,
  caps: CapabilitySummary,
  params: Pick<VolumeParameters, 'fsType'>,
): ByteRange {
  if (!caps.mount || (range.requiredBytes === 0 && range.limitBytes === 0)) return range;
  const fsTypes = new Set([...caps.fsTypes, ...(params.fsType ? [params.fsType] : [])]);
  if (fsTypes.size === 0) fsTypes.add('ext4');
  let minimum = 0;
  let needs = '';
  for (const fsType of fsTypes) {
    const bytes = isSupportedFilesystem(fsType) ? FILESYSTEM_MINIMUM_BYTES[fsType] : 0;
    if (bytes > minimum) [minimum, needs] = [bytes, fsType];
  }
  if (range.limitBytes > 0 && range.limitBytes < minimum) {
    throw outOfRange(
      `${field}.limit_bytes ${range.limitBytes} is below the smallest ${needs} filesystem (${minimum} bytes, ${minimum / 1048576} MiB)`,
    );
  }
  // required 0 (a limit only): the default size, capped at the limit, which is at least the minimum.
  return range.requiredBytes === 0 || range.requiredBytes >= minimum ? range : { ...range, requiredBytes: minimum };
}
