// Issue 15 items 8 and 10 end to end: CreateVolume records where a volume's content came from (an image, a snapshot,
// a clone) in its volume_context, and the node, handed that context as kubelet does, never formats such a
// volume; a blank one is formatted as before. The emulator and the driver (all mode) as real processes.
import { mkdtempSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { failure, status } from './support/csi-client.js';
import { blockCap, MiB, mountCap, readDevice, sha256, stageVolume, unstageVolume } from './support/features.js';
import { startStack, type Stack } from './support/stack.js';
import type { CreateVolumeRequest } from '../src/generated/csi/v1/CreateVolumeRequest.js';
import type { Volume__Output } from '../src/generated/csi/v1/Volume.js';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';

const ORIGIN = 'sdshypervisor.io/contentOrigin';
/** Raw data with no signature blkid knows: what a raw disk image or a copy of a block volume holds. */
const RAW = Buffer.alloc(8 * MiB);
for (let i = 0; i < RAW.length; i += 4096) RAW.write(`raw block ${i / 4096}`, i);

let stack: Stack;
let images: string;

beforeAll(async () => {
  images = mkdtempSync(join(tmpdir(), 'node-origin-images-'));
  await writeFile(join(images, 'raw.img'), RAW);
  stack = await startStack({ mode: 'all', pools: ['pool0:2G'], emulatorArgs: ['--image-dir', images] });
}, 60_000);

afterAll(async () => {
  await stack?.stop();
  await rm(images, { recursive: true, force: true });
});

/** CreateVolume for `bytes` at least; the volume it answers. */
async function createVolume(
  name: string,
  volume_capabilities: VolumeCapability[],
  bytes: number,
  more: Partial<CreateVolumeRequest> = {},
): Promise<Volume__Output> {
  const created = await stack.csi.controller.CreateVolume({
    name,
    volume_capabilities,
    capacity_range: { required_bytes: String(bytes) },
    ...more,
  });
  return created.volume!;
}

describe('the content origin travels from CreateVolume to NodeStage', () => {
  it('image, snapshot and clone: origin in volume_context; a filesystem stage is FAILED_PRECONDITION; the data is intact', async () => {
    const ctl = stack.csi.controller;
    const caps = [mountCap('ext4'), blockCap()];
    const fromImage = await createVolume('pvc-from-image', caps, 64 * MiB, {
      parameters: { imageSource: join(images, 'raw.img') },
    });
    expect(fromImage.volume_context[ORIGIN]).toBe('image');
    const snap = (await ctl.CreateSnapshot({ name: 'snap-of-image', source_volume_id: fromImage.volume_id })).snapshot!;
    const fromSnapshot = await createVolume('pvc-from-snap', caps, 64 * MiB, {
      volume_content_source: { snapshot: { snapshot_id: snap.snapshot_id } },
    });
    expect(fromSnapshot.volume_context[ORIGIN]).toBe('snapshot');
    const clone = await createVolume('pvc-clone', caps, 64 * MiB, {
      volume_content_source: { volume: { volume_id: fromImage.volume_id } },
    });
    expect(clone.volume_context[ORIGIN]).toBe('volume');
    // A repeat of the create answers the same context.
    const again = await createVolume('pvc-clone', caps, 64 * MiB, {
      volume_content_source: { volume: { volume_id: fromImage.volume_id } },
    });
    expect(again.volume_context).toEqual(clone.volume_context);

    const nodeId = (await stack.csi.node.NodeGetInfo({})).node_id;
    for (const volume of [fromImage, fromSnapshot, clone]) {
      const cap = mountCap('ext4');
      const { publish_context } = await ctl.ControllerPublishVolume({
        volume_id: volume.volume_id,
        node_id: nodeId,
        volume_capability: cap,
      });
      const staging = join(stack.dir, 'kubelet', volume.volume_id, 'globalmount');
      const refused = await failure(
        stack.csi.node.NodeStageVolume({
          volume_id: volume.volume_id,
          staging_target_path: staging,
          volume_capability: cap,
          publish_context,
          volume_context: volume.volume_context,
        }),
      );
      expect(refused.code).toBe(status.FAILED_PRECONDITION);
      expect(refused.message).toMatch(/never formatted/);
      await stack.csi.node.NodeUnstageVolume({ volume_id: volume.volume_id, staging_target_path: staging });
      await ctl.ControllerUnpublishVolume({ volume_id: volume.volume_id, node_id: nodeId });
      // What it holds is still the image, byte for byte.
      const raw = await stageVolume(stack, volume.volume_id, blockCap());
      expect(sha256(await readDevice(raw.target, RAW.length))).toBe(sha256(RAW));
      await unstageVolume(stack, raw);
    }
    for (const id of [clone.volume_id, fromSnapshot.volume_id]) await ctl.DeleteVolume({ volume_id: id });
    await ctl.DeleteSnapshot({ snapshot_id: snap.snapshot_id });
    await ctl.DeleteVolume({ volume_id: fromImage.volume_id });
  });

  it('a blank volume has no origin and is formatted at its first stage', async () => {
    const ctl = stack.csi.controller;
    const blank = await createVolume('pvc-blank', [mountCap('ext4')], 64 * MiB);
    expect(blank.volume_context[ORIGIN]).toBeUndefined();
    const staged = await stageVolume(stack, blank.volume_id, mountCap('ext4'));
    await writeFile(join(staged.target, 'hello'), 'formatted');
    await unstageVolume(stack, staged);
    await ctl.DeleteVolume({ volume_id: blank.volume_id });
  });

  it('item 10: CreateVolume rounds a filesystem volume up to its minimum, or answers OUT_OF_RANGE; the result stages', async () => {
    const ctl = stack.csi.controller;
    const xfs = await createVolume('pvc-small-xfs', [mountCap('xfs')], 256 * MiB);
    expect(Number(xfs.capacity_bytes)).toBe(300 * MiB);
    // The same request again is the same volume.
    const again = await createVolume('pvc-small-xfs', [mountCap('xfs')], 256 * MiB);
    expect(again.capacity_bytes).toBe(xfs.capacity_bytes);
    // fsType from the parameters counts like the capability's; ext4 (the default) needs less.
    const byParam = await createVolume('pvc-small-param', [mountCap('')], MiB, { parameters: { fsType: 'xfs' } });
    expect(Number(byParam.capacity_bytes)).toBe(300 * MiB);
    const ext4 = await createVolume('pvc-small-ext4', [mountCap('')], MiB);
    expect(Number(ext4.capacity_bytes)).toBe(8 * MiB);
    const block = await createVolume('pvc-small-block', [blockCap()], MiB);
    expect(Number(block.capacity_bytes)).toBe(MiB);
    const capped = await failure(
      ctl.CreateVolume({
        name: 'pvc-capped-xfs',
        volume_capabilities: [mountCap('xfs')],
        capacity_range: { required_bytes: String(256 * MiB), limit_bytes: String(256 * MiB) },
      }),
    );
    expect(capped.code).toBe(status.OUT_OF_RANGE);
    expect(capped.message).toMatch(/smallest xfs filesystem/);

    const staged = await stageVolume(stack, xfs.volume_id, mountCap('xfs'));
    await writeFile(join(staged.target, 'hello'), 'xfs');
    await unstageVolume(stack, staged);
    for (const v of [xfs, byParam, ext4, block]) await ctl.DeleteVolume({ volume_id: v.volume_id });
  });
});
