// The life of a PVC as Kubernetes drives it, step by step: create, attach, stage, publish, write, snapshot,
// restore a linked clone and mount it elsewhere, read back, expand online, and tear it all down.
import { randomBytes } from 'node:crypto';
import { open, readFile, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { CreateVolumeRequest } from '../generated/csi/v1/CreateVolumeRequest.js';
import type { VolumeCapability } from '../generated/csi/v1/VolumeCapability.js';
import type { CsiClients } from '../util/csi-client.js';
import { nothingLive, undoCalls, undoEach, type Live } from './cleanup.js';
import { IDENTITY_CALL } from './driver.js';
import { size } from './output.js';

const GiB = 1024 ** 3;

export interface Step {
  title: string;
  /** does the step; answers its one-line result */
  run: () => Promise<string>;
}

export interface PvcLife {
  steps: Step[];
  /** what the steps made and not yet removed */
  live: Live;
  /** the node the volumes are attached to ('' before NodeGetInfo) */
  nodeId: () => string;
}

async function dfBytes(path: string): Promise<number> {
  const s = await statfs(path);
  return s.blocks * s.bsize;
}

/** The steps of one PVC's life through `csi`, with its paths under `work`. */
export function pvcLife(csi: CsiClients, work: string, fsType: string): PvcLife {
  const tag = randomBytes(3).toString('hex');
  const pvc = `pvc-demo-${tag}`;
  const snap = `snapshot-demo-${tag}`;
  const clone = `pvc-demo-${tag}-restored`;
  const capability: VolumeCapability = {
    access_mode: { mode: 'SINGLE_NODE_WRITER' },
    mount: { fs_type: fsType, mount_flags: [] },
  };
  const paths = {
    staging: join(work, 'staging', pvc),
    target: join(work, 'pods', 'writer', pvc),
    cloneStaging: join(work, 'staging', clone),
    cloneTarget: join(work, 'pods', 'reader', clone),
  };
  const message = `written by the demo at ${new Date().toISOString()}\n`;
  let nodeId = '';
  let volumeId = '';
  let cloneId = '';
  let snapshotId = '';
  let sizeBefore = 0;
  const live = nothingLive();
  const undo = undoCalls(csi, () => nodeId);
  /** The writer pod's volume as NodeExpandVolume and NodeGetVolumeStats name it. */
  const writerVolumePath = () => ({
    volume_id: volumeId,
    volume_path: paths.target,
    staging_target_path: paths.staging,
  });
  const contexts = new Map<string, { volume: Record<string, string>; publish: Record<string, string> }>();

  const createVolume = async (request: Omit<CreateVolumeRequest, 'capacity_range' | 'volume_capabilities'>) => {
    const volume = (
      await csi.controller.CreateVolume({
        capacity_range: { required_bytes: String(GiB) },
        volume_capabilities: [capability],
        ...request,
      })
    ).volume!;
    live.volumes.push(volume.volume_id);
    contexts.set(volume.volume_id, { volume: volume.volume_context, publish: {} });
    return volume;
  };
  // Recorded before the call: a failed attach, stage or publish may have done part of its work, and its undo
  // is safe on anything (unpublish/unstage of what is not there is OK).
  const attach = async (id: string) => {
    live.attached.add(id);
    const res = await csi.controller.ControllerPublishVolume({
      volume_id: id,
      node_id: nodeId,
      volume_capability: capability,
      readonly: false,
    });
    contexts.get(id)!.publish = res.publish_context;
    return res.publish_context;
  };
  const stage = async (id: string, staging: string) => {
    const context = contexts.get(id)!;
    live.staged.set(staging, id);
    await csi.node.NodeStageVolume({
      volume_id: id,
      staging_target_path: staging,
      volume_capability: capability,
      volume_context: context.volume,
      publish_context: context.publish,
    });
  };
  const publish = async (id: string, staging: string, target: string) => {
    live.published.set(target, id);
    await csi.node.NodePublishVolume({
      volume_id: id,
      staging_target_path: staging,
      target_path: target,
      volume_capability: capability,
      readonly: false,
    });
  };

  const steps: Step[] = [
    {
      title: 'GetPluginInfo + Probe',
      run: async () => {
        const info = await csi.identity.GetPluginInfo({}, IDENTITY_CALL);
        const probe = await csi.identity.Probe({}, IDENTITY_CALL);
        return `${info.name} ${info.vendor_version}, ready=${probe.ready?.value ?? true}`;
      },
    },
    {
      title: 'NodeGetInfo',
      run: async () => {
        const info = await csi.node.NodeGetInfo({});
        nodeId = info.node_id;
        return `node ${nodeId}, max ${info.max_volumes_per_node} volumes, topology ${JSON.stringify(info.accessible_topology?.segments ?? {})}`;
      },
    },
    {
      title: 'CreateVolume',
      run: async () => {
        const volume = await createVolume({ name: pvc, parameters: { fsType } });
        volumeId = volume.volume_id;
        return `${volumeId}: ${size(Number(volume.capacity_bytes))}, context ${JSON.stringify(volume.volume_context)}`;
      },
    },
    {
      title: 'ControllerPublishVolume',
      run: async () => `${volumeId} mapped to ${nodeId} ${JSON.stringify(await attach(volumeId))}`,
    },
    {
      title: 'NodeStageVolume',
      run: async () => {
        await stage(volumeId, paths.staging);
        return `attached with sds_cli, formatted ${fsType}, mounted at ${paths.staging}`;
      },
    },
    {
      title: 'NodePublishVolume',
      run: async () => {
        await publish(volumeId, paths.staging, paths.target);
        sizeBefore = await dfBytes(paths.target);
        return `bind-mounted at ${paths.target} (df: ${size(sizeBefore)})`;
      },
    },
    {
      title: 'write a file',
      run: async () => {
        await writeFile(join(paths.target, 'hello.txt'), message);
        const handle = await open(join(paths.target, 'hello.txt'), 'r');
        await handle.sync();
        await handle.close();
        return `hello.txt (${message.length} bytes) written and synced`;
      },
    },
    {
      title: 'CreateSnapshot',
      run: async () => {
        const res = await csi.controller.CreateSnapshot({ name: snap, source_volume_id: volumeId });
        snapshotId = res.snapshot!.snapshot_id;
        live.snapshots.add(snapshotId);
        return `${snapshotId} of ${volumeId}, ready=${res.snapshot!.ready_to_use}`;
      },
    },
    {
      title: 'CreateVolume from snapshot',
      run: async () => {
        const volume = await createVolume({
          name: clone,
          parameters: { fsType, cloneMode: 'linked' },
          volume_content_source: { snapshot: { snapshot_id: snapshotId } },
        });
        cloneId = volume.volume_id;
        return `${cloneId}: linked clone of ${snapshotId}, ${size(Number(volume.capacity_bytes))}`;
      },
    },
    {
      title: 'ControllerPublishVolume (clone)',
      run: async () => {
        await attach(cloneId);
        return `${cloneId} mapped to ${nodeId}`;
      },
    },
    {
      title: 'NodeStageVolume (clone)',
      run: async () => {
        await stage(cloneId, paths.cloneStaging);
        return `mounted at ${paths.cloneStaging}${fsType === 'xfs' ? " (nouuid: it shares its source's XFS UUID)" : ''}`;
      },
    },
    {
      title: 'NodePublishVolume (clone)',
      run: async () => {
        await publish(cloneId, paths.cloneStaging, paths.cloneTarget);
        return `bind-mounted at ${paths.cloneTarget}`;
      },
    },
    {
      title: 'read the file from the clone',
      run: async () => {
        const text = await readFile(join(paths.cloneTarget, 'hello.txt'), 'utf8');
        if (text !== message)
          throw new Error(`the clone holds ${JSON.stringify(text)}, expected ${JSON.stringify(message)}`);
        return `hello.txt matches: ${JSON.stringify(text.trim())}`;
      },
    },
    {
      title: 'ControllerExpandVolume',
      run: async () => {
        const res = await csi.controller.ControllerExpandVolume({
          volume_id: volumeId,
          capacity_range: { required_bytes: String(2 * GiB) },
          volume_capability: capability,
        });
        return `${volumeId} → ${size(Number(res.capacity_bytes))}, node_expansion_required=${res.node_expansion_required}`;
      },
    },
    {
      title: 'NodeExpandVolume (online)',
      run: async () => {
        const res = await csi.node.NodeExpandVolume({
          ...writerVolumePath(),
          volume_capability: capability,
          capacity_range: { required_bytes: String(2 * GiB) },
        });
        const after = await dfBytes(paths.target);
        return `capacity ${size(Number(res.capacity_bytes))}; df at the pod's path: ${size(sizeBefore)} → ${size(after)} while mounted`;
      },
    },
    {
      title: 'NodeGetVolumeStats',
      run: async () => {
        const stats = await csi.node.NodeGetVolumeStats(writerVolumePath());
        const bytes = stats.usage.find((u) => u.unit === 'BYTES');
        const inodes = stats.usage.find((u) => u.unit === 'INODES');
        return `used ${size(Number(bytes?.used ?? 0))} of ${size(Number(bytes?.total ?? 0))}, inodes ${inodes?.used}/${inodes?.total}, condition: ${stats.volume_condition?.message}`;
      },
    },
    {
      title: 'NodeUnpublishVolume ×2',
      run: async () => {
        await undoEach(live.published, undo.unpublish);
        return "both pods' bind mounts removed";
      },
    },
    {
      title: 'NodeUnstageVolume ×2',
      run: async () => {
        await undoEach(live.staged, undo.unstage);
        return 'unmounted and detached with sds_cli';
      },
    },
    {
      title: 'ControllerUnpublishVolume ×2',
      run: async () => {
        await undoEach(live.attached, undo.unmap);
        return `both volumes unmapped from ${nodeId}`;
      },
    },
    {
      title: 'DeleteVolume (clone), DeleteSnapshot, DeleteVolume',
      run: async () => {
        await csi.controller.DeleteVolume({ volume_id: cloneId });
        live.volumes = live.volumes.filter((v) => v !== cloneId);
        await csi.controller.DeleteSnapshot({ snapshot_id: snapshotId });
        live.snapshots.delete(snapshotId);
        await csi.controller.DeleteVolume({ volume_id: volumeId });
        live.volumes = live.volumes.filter((v) => v !== volumeId);
        return `${cloneId}, ${snapshotId} and ${volumeId} deleted`;
      },
    },
  ];
  return { steps, live, nodeId: () => nodeId };
}
