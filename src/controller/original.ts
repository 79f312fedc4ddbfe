// What the controller does differently on the original protocol level (docs/socket-api.md, "Calls × levels"):
// the capabilities it can honour there, and a clone made as the Cinder driver made one — a temporary
// snapshot of the source, a linked clone of it, the temporary snapshot removed — resumable by name alone.
import { createHash } from 'node:crypto';
import type { CallOptions, SdsBackend, VolumeInfo, VolumeSpec } from '../sds/backend.js';
import { isSdsError } from '../sds/errors.js';
import type { ProtocolLevel } from '../protocol/catalog.js';
import { invalidArgument } from '../server/errors.js';
import type { VolumeParameters } from './parameters.js';

export const EXTENDED_CONTROLLER_CAPABILITIES = [
  'CREATE_DELETE_VOLUME',
  'PUBLISH_UNPUBLISH_VOLUME',
  'LIST_VOLUMES',
  'GET_CAPACITY',
  'CREATE_DELETE_SNAPSHOT',
  'LIST_SNAPSHOTS',
  'CLONE_VOLUME',
  'PUBLISH_READONLY',
  'EXPAND_VOLUME',
  'LIST_VOLUMES_PUBLISHED_NODES',
  'VOLUME_CONDITION',
  'GET_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
  'MODIFY_VOLUME',
  'GET_SNAPSHOT',
] as const;
export type ControllerCapability = (typeof EXTENDED_CONTROLLER_CAPABILITIES)[number];

/**
 * On the original level: no list requests (LIST_*), no records beyond `status` (GET_VOLUME, GET_SNAPSHOT,
 * VOLUME_CONDITION), no QoS change (MODIFY_VOLUME), no mapping to enforce read-only access (PUBLISH_READONLY).
 * ControllerPublish stays advertised (the chart's attachRequired) and sends nothing to the VBS.
 */
export const ORIGINAL_CONTROLLER_CAPABILITIES: readonly ControllerCapability[] = [
  'CREATE_DELETE_VOLUME',
  'PUBLISH_UNPUBLISH_VOLUME',
  'GET_CAPACITY',
  'CREATE_DELETE_SNAPSHOT',
  'CLONE_VOLUME',
  'EXPAND_VOLUME',
  'SINGLE_NODE_MULTI_WRITER',
];

export function controllerCapabilities(level: ProtocolLevel): readonly ControllerCapability[] {
  return level === 'original' ? ORIGINAL_CONTROLLER_CAPABILITIES : EXTENDED_CONTROLLER_CAPABILITIES;
}

/** The CSI calls that need an extended VBS. */
export const EXTENDED_ONLY_CALLS = [
  'ListVolumes',
  'ListSnapshots',
  'GetSnapshot',
  'ControllerGetVolume',
  'ControllerModifyVolume',
] as const;

/**
 * Settings no request of the original level carries (CREATE_VOLUME_REQ has no MBps limit and no cache policy):
 * refused, naming the key, rather than dropped without a word and then claimed in the volume context. Their
 * neutral values ("0", "none") ask for nothing and pass. `fieldOf` names where the key came from.
 */
export function checkOriginalSettings(params: VolumeParameters, fieldOf: (key: string) => string): void {
  const why = 'the VBS speaks the original protocol level, which has no such setting';
  if ((params.qos.maxMBps ?? 0) > 0)
    throw invalidArgument(`${fieldOf('maxMBps')}.maxMBps: ${why} (leave it out or use "0")`);
  if (params.cachePolicy !== undefined && params.cachePolicy !== 'none')
    throw invalidArgument(`${fieldOf('cache')}.cache: ${why} (leave it out or use "none")`);
}

/**
 * The temporary snapshot a clone of the original level goes through. Derived from the target's name only, so
 * a retry after a crash finds it again, and DeleteVolume of the clone removes it when the VBS kept it.
 */
export function cloneSnapshotName(target: string): string {
  // Upper case never occurs in a name taken from CSI (ids.ts), so this cannot be a CO's snapshot.
  const name = `${target}.CLONE_SRC`;
  return name.length <= 96
    ? name
    : `C_${createHash('sha256').update(target, 'utf8').digest('hex').slice(0, 40)}.CLONE_SRC`;
}

export interface CloneLog {
  warn(obj: Record<string, unknown>, msg: string): void;
}

/**
 * Clone `sourceVolumeName` into `spec.name` on the original level. Each step is idempotent by name: the
 * snapshot is taken unless it is there, the linked clone made unless the target is there, and the snapshot
 * removed at the end. Where the VBS refuses to delete a snapshot that a linked clone depends on, it stays,
 * and is removed with the clone (removeCloneLeftovers).
 */
export async function cloneThroughSnapshot(
  backend: SdsBackend,
  spec: VolumeSpec & { sourceVolumeName: string },
  opts: CallOptions,
  log?: CloneLog,
): Promise<VolumeInfo> {
  const temporary = cloneSnapshotName(spec.name);
  if (!(await backend.getSnapshot(temporary, opts))) {
    try {
      await backend.createSnapshot(temporary, spec.sourceVolumeName, opts);
    } catch (err) {
      if (!isSdsError(err, 'AlreadyExists')) throw err;
    }
  }
  let clone: VolumeInfo;
  try {
    clone = await backend.createVolumeFromSnapshot({ ...spec, snapshotName: temporary, cloneType: 'linked' }, opts);
  } catch (err) {
    if (!isSdsError(err, 'AlreadyExists')) throw err;
    const existing = await backend.getVolume(spec.name, opts);
    if (!existing) throw err;
    clone = existing;
  }
  await removeTemporarySnapshot(backend, temporary, opts, log);
  return { ...clone, source: { type: 'volume', name: spec.sourceVolumeName }, cloneType: 'linked' };
}

async function removeTemporarySnapshot(
  backend: SdsBackend,
  temporary: string,
  opts: CallOptions,
  log?: CloneLog,
): Promise<void> {
  try {
    await backend.deleteSnapshot(temporary, opts);
  } catch (err) {
    if (!isSdsError(err, 'HasDependents') && !isSdsError(err, 'Internal')) throw err;
    log?.warn(
      { snapshot: temporary, err: (err as Error).message },
      "the VBS keeps the clone's temporary snapshot; it is removed with the clone",
    );
  }
}

/** After DeleteVolume on the original level: the temporary snapshot a clone may have kept. */
export async function removeCloneLeftovers(backend: SdsBackend, volumeName: string, opts: CallOptions): Promise<void> {
  await backend.deleteSnapshot(cloneSnapshotName(volumeName), opts);
}

/** A retried clone whose target exists: finish its last step (the temporary snapshot), best effort. */
export async function finishClone(
  backend: SdsBackend,
  volumeName: string,
  opts: CallOptions,
  log?: CloneLog,
): Promise<void> {
  await removeTemporarySnapshot(backend, cloneSnapshotName(volumeName), opts, log).catch(() => undefined);
}
