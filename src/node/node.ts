// CSI Node service: thin handlers. Validation is in request.ts; the work in stage.ts, publish.ts and
// volume.ts; tools only through src/mount, attachments only through the connector.
import type { NodeGetCapabilitiesResponse } from '../generated/csi/v1/NodeGetCapabilitiesResponse.js';
import type { NodeGetInfoResponse } from '../generated/csi/v1/NodeGetInfoResponse.js';
import type { NodeHandlers } from '../generated/csi/v1/Node.js';
import type { NodePublishVolumeRequest__Output } from '../generated/csi/v1/NodePublishVolumeRequest.js';
import type { NodeStageVolumeRequest__Output } from '../generated/csi/v1/NodeStageVolumeRequest.js';
import type { NodeUnpublishVolumeRequest__Output } from '../generated/csi/v1/NodeUnpublishVolumeRequest.js';
import type { NodeUnstageVolumeRequest__Output } from '../generated/csi/v1/NodeUnstageVolumeRequest.js';
import type { RpcContext, RpcFactory } from '../server/rpc.js';
import { failedPrecondition, internal, invalidArgument } from '../server/errors.js';
import { TOPOLOGY_HOST_KEY, type NodeConnector, type NodeDeps } from './deps.js';
import { VolumeLocks } from './locks.js';
import { publishVolume, unpublishVolume } from './publish.js';
import {
  checkPath,
  checkVolumeId,
  checkVolumePath,
  contentOrigin,
  mappedReadOnly,
  parseCapability,
  parseCapacityRange,
} from './request.js';
import { stageVolume, unstageVolume } from './stage.js';
import { StagedDevices } from './staged.js';
import { expandVolume, volumeStats } from './volume.js';

export type { NodeDeps, NodeConnector } from './deps.js';

const NODE_CAPABILITIES = [
  'STAGE_UNSTAGE_VOLUME',
  'EXPAND_VOLUME',
  'GET_VOLUME_STATS',
  'VOLUME_CONDITION',
  'SINGLE_NODE_MULTI_WRITER',
] as const;

export function nodeCapabilities(): NodeGetCapabilitiesResponse {
  return { capabilities: NODE_CAPABILITIES.map((type) => ({ rpc: { type } })) };
}

/** The connector as one CSI call sees it: each of its calls carries the call's request id. */
function connectorFor(connector: NodeConnector, requestId: string): NodeConnector {
  return {
    attach: (volumeName, opts) => connector.attach(volumeName, { ...opts, requestId }),
    detach: (volumeName, opts) => connector.detach(volumeName, { ...opts, requestId }),
    queryDevice: (volumeName, opts) => connector.queryDevice(volumeName, { ...opts, requestId }),
  };
}

/** What each step of the node service works with: this call's connector, log and signal, the staged devices. */
interface NodeWork {
  connector: NodeConnector;
  log: RpcContext['log'];
  signal: AbortSignal;
  staged: StagedDevices;
}

export function nodeService(deps: NodeDeps, rpc: RpcFactory): NodeHandlers {
  const locks = new VolumeLocks();
  const staged = new StagedDevices();
  const work = (ctx: RpcContext): NodeWork => ({
    connector: connectorFor(deps.connector, ctx.requestId),
    log: ctx.log,
    signal: ctx.signal,
    staged,
  });
  let hostId = deps.hostId;

  async function resolveHostId(ctx: RpcContext): Promise<string> {
    if (hostId) return hostId;
    if (!deps.backend) throw failedPrecondition('this node has no host id: set --host-id, or give it a reachable VBS');
    const info = await deps.backend.systemInfo({ requestId: ctx.requestId, signal: ctx.signal });
    if (!info.hostId) throw internal('the VBS reported an empty host id');
    hostId = info.hostId; // a host's id does not change while we run
    return hostId;
  }

  /**
   * A handler that checks its request into the arguments of `step`, then runs the step under the volume's lock
   * (one operation on a volume at a time). Its reply is empty.
   */
  function locked<Req, A extends { volumeId: string }>(
    method: string,
    step: (work: NodeWork, args: A) => Promise<void>,
    check: (req: Req) => A,
  ) {
    return rpc.unary(method, async (req: Req, ctx) => {
      const args = check(req);
      await locks.run(args.volumeId, method, () => step(work(ctx), args));
      return {};
    });
  }

  return {
    NodeStageVolume: locked('NodeStageVolume', stageVolume, (req: NodeStageVolumeRequest__Output) => ({
      volumeId: checkVolumeId(req.volume_id),
      stagingPath: checkPath('staging_target_path', req.staging_target_path),
      capability: parseCapability('volume_capability', req.volume_capability, req.volume_context),
      mappedReadOnly: mappedReadOnly(req.publish_context),
      contentOrigin: contentOrigin(req.volume_context),
    })),

    NodeUnstageVolume: locked('NodeUnstageVolume', unstageVolume, (req: NodeUnstageVolumeRequest__Output) => ({
      volumeId: checkVolumeId(req.volume_id),
      stagingPath: checkPath('staging_target_path', req.staging_target_path),
    })),

    NodePublishVolume: locked('NodePublishVolume', publishVolume, (req: NodePublishVolumeRequest__Output) => {
      const volumeId = checkVolumeId(req.volume_id);
      const targetPath = checkPath('target_path', req.target_path);
      const capability = parseCapability('volume_capability', req.volume_capability, req.volume_context);
      // We stage every volume: a publish without a staging path is a publish before stage.
      if (req.staging_target_path === '')
        throw failedPrecondition('staging_target_path is required: this node stages volumes (NodeStageVolume first)');
      const stagingPath = checkPath('staging_target_path', req.staging_target_path);
      const readOnly = req.readonly || capability.readerOnly;
      return { volumeId, stagingPath, targetPath, capability, readOnly };
    }),

    NodeUnpublishVolume: locked('NodeUnpublishVolume', unpublishVolume, (req: NodeUnpublishVolumeRequest__Output) => ({
      volumeId: checkVolumeId(req.volume_id, true),
      targetPath: checkPath('target_path', req.target_path),
    })),

    NodeGetVolumeStats: rpc.unary('NodeGetVolumeStats', async (req, ctx) => {
      const volumeId = checkVolumeId(req.volume_id);
      const volumePath = checkVolumePath('volume_path', req.volume_path);
      return volumeStats(work(ctx), volumeId, volumePath);
    }),

    NodeExpandVolume: rpc.unary('NodeExpandVolume', async (req, ctx) => {
      const volumeId = checkVolumeId(req.volume_id);
      const volumePath = checkVolumePath('volume_path', req.volume_path);
      const stagingPath = req.staging_target_path
        ? checkVolumePath('staging_target_path', req.staging_target_path)
        : undefined;
      const capability = req.volume_capability
        ? parseCapability('volume_capability', req.volume_capability, {}, invalidArgument)
        : undefined;
      const range = parseCapacityRange(req.capacity_range);
      const { capacityBytes } = await locks.run(volumeId, 'NodeExpandVolume', () =>
        expandVolume(work(ctx), {
          volumeId,
          volumePath,
          stagingPath,
          capability,
          range,
          deviceGrowWaitMs: deps.deviceGrowWaitMs ?? 10_000,
        }),
      );
      return { capacity_bytes: String(capacityBytes) };
    }),

    NodeGetCapabilities: rpc.unary('NodeGetCapabilities', async () => nodeCapabilities()),

    NodeGetInfo: rpc.unary('NodeGetInfo', async (_req, ctx): Promise<NodeGetInfoResponse> => {
      const id = await resolveHostId(ctx);
      const labels = deps.topologyLabels ? await deps.topologyLabels(ctx.signal) : {};
      return {
        node_id: id,
        max_volumes_per_node: String(deps.maxVolumesPerNode),
        accessible_topology: { segments: { ...labels, [TOPOLOGY_HOST_KEY]: id } },
      };
    }),
  };
}
