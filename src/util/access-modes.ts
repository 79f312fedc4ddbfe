// The CSI access modes this driver serves, one list for the controller (CreateVolume, publish) and the node
// (stage, publish), so that neither accepts a mode the other refuses.
import type { VolumeCapability__Output } from '../generated/csi/v1/VolumeCapability.js';

export type AccessMode = NonNullable<VolumeCapability__Output['access_mode']>['mode'];

/**
 * One host at a time, read-only on several, or raw block written from several (MULTI_NODE_MULTI_WRITER: a
 * volume shared by the two hosts of a live migration; each room refuses it for a mount volume).
 */
export const SUPPORTED_ACCESS_MODES: ReadonlySet<AccessMode> = new Set<AccessMode>([
  'SINGLE_NODE_WRITER',
  'SINGLE_NODE_READER_ONLY',
  'MULTI_NODE_READER_ONLY',
  'SINGLE_NODE_SINGLE_WRITER',
  'SINGLE_NODE_MULTI_WRITER',
  'MULTI_NODE_MULTI_WRITER',
]);

export function isReadOnlyMode(mode: AccessMode): boolean {
  return mode === 'SINGLE_NODE_READER_ONLY' || mode === 'MULTI_NODE_READER_ONLY';
}
