// Volumes the way kubelet uses them, over the CSI socket of a real stack in --mode=all: CreateVolume (blank
// or from a snapshot), ControllerPublishVolume to this node, NodeStageVolume, NodePublishVolume; and the
// way back. For tests that need data on volumes (group snapshots, snapshot metadata).
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { VolumeCapability } from '../../src/generated/csi/v1/VolumeCapability.js';
import { unstageVolume } from './features.js';
import type { Stack } from './stack.js';

export const MiB = 1024 * 1024;
export const mountCap = (fsType = 'ext4'): VolumeCapability => ({
  mount: { fs_type: fsType },
  access_mode: { mode: 'SINGLE_NODE_WRITER' },
});
export const blockCap = (): VolumeCapability => ({ block: {}, access_mode: { mode: 'SINGLE_NODE_WRITER' } });

export interface Published {
  id: string;
  /** a directory (mount) or a block device node (block) */
  target: string;
  staging: string;
  cap: VolumeCapability;
}

let seq = 0;

/** Creates (or restores, with `snapshotId`) a volume and publishes it on the stack's node. */
export async function publishVolume(
  stack: Stack,
  name: string,
  cap: VolumeCapability,
  options: { bytes?: number; snapshotId?: string } = {},
): Promise<Published> {
  const ctl = stack.csi.controller;
  const node = stack.csi.node;
  const nodeId = (await node.NodeGetInfo({})).node_id;
  const { volume } = await ctl.CreateVolume({
    name,
    volume_capabilities: [cap],
    capacity_range: { required_bytes: String(options.bytes ?? 64 * MiB) },
    ...(options.snapshotId ? { volume_content_source: { snapshot: { snapshot_id: options.snapshotId } } } : {}),
  });
  const id = volume!.volume_id;
  const { publish_context } = await ctl.ControllerPublishVolume({
    volume_id: id,
    node_id: nodeId,
    volume_capability: cap,
  });
  const dir = join(stack.dir, 'kubelet', `${name}-${++seq}`);
  await mkdir(join(dir, 'pods'), { recursive: true });
  const staging = join(dir, 'globalmount');
  const target = join(dir, 'pods', 'target');
  const common = { volume_id: id, volume_capability: cap, publish_context, volume_context: volume!.volume_context };
  await node.NodeStageVolume({ ...common, staging_target_path: staging });
  await node.NodePublishVolume({ ...common, staging_target_path: staging, target_path: target });
  return { id, target, staging, cap };
}

/** Unpublishes, unstages, detaches from the node and deletes the volume. */
export async function removeVolume(stack: Stack, v: Published): Promise<void> {
  await unstageVolume(stack, v);
  await stack.csi.controller.DeleteVolume({ volume_id: v.id });
}
