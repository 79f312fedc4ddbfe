// Volumes the sections stage and snapshot: created and published to the bench's node, then removed.
import { mountCap, type BenchContext } from '../lib/context.js';
import { HOST_ID } from '../lib/procs.js';

const GiB = 1024 ** 3;

/** A 1 GiB volume created and published (ControllerPublishVolume) to this node. */
export async function publishedVolume(
  b: BenchContext,
  name: string,
  fsType: string,
): Promise<{ id: string; publishContext: Record<string, string> }> {
  const { ctl } = b;
  const { volume } = await ctl.controller.CreateVolume({
    name,
    capacity_range: { required_bytes: String(GiB) },
    volume_capabilities: [mountCap(fsType)],
    parameters: {},
  });
  const { publish_context } = await ctl.controller.ControllerPublishVolume({
    volume_id: volume!.volume_id,
    node_id: HOST_ID,
    volume_capability: mountCap(fsType),
  });
  return { id: volume!.volume_id, publishContext: publish_context };
}

export async function removeVolume(b: BenchContext, id: string): Promise<void> {
  const { ctl } = b;
  await ctl.controller.ControllerUnpublishVolume({ volume_id: id, node_id: HOST_ID });
  await ctl.controller.DeleteVolume({ volume_id: id });
}
