// Copy image to volume on the original protocol level, the Kubernetes-native way (docs/features.md): CDI's
// importer and its clones need only raw block volumes and CSI clone/snapshot from the driver. This test makes
// the CSI calls they make, against the emulator in `--protocol original`, real loop devices: a block PVC is
// created, published and staged as a block device, an image written through it the way CDI's importer does
// (qemu-img convert to raw onto the device, O_DIRECT), unstaged; then a CSI clone (the csi-clone strategy)
// and a snapshot restore (smart clone) of it are made and read back byte for byte. A volume so filled is
// never formatted when staged as a filesystem.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { failure } from './support/csi-client.js';
import { poolFiles } from './support/emulator-inventory.js';
import {
  blockCap,
  MiB,
  mountCap,
  pattern,
  sha256,
  sha256File,
  stageVolume,
  unstageVolume,
} from './support/features.js';
import { type Stack } from './support/stack.js';
import { stackForSuite } from './support/suite-stack.js';

const SIZE = 64 * MiB;
let stack: Stack;
let seq = 0;
const name = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;
// The test's own files go in the stack's temp dir, removed with it.
stackForSuite({ mode: 'all', level: 'original', pools: ['pool0:2G'] }, (started) => (stack = started));

describe("CDI's CSI calls on the original level", () => {
  it('import into a block PVC, then CSI clone and snapshot restore of it, read back byte for byte', async () => {
    const ctl = stack.csi.controller;
    const caps = (await ctl.ControllerGetCapabilities({})).capabilities.map((c) => c.rpc?.type);
    expect(caps).toEqual(expect.arrayContaining(['CREATE_DELETE_VOLUME', 'PUBLISH_UNPUBLISH_VOLUME', 'CLONE_VOLUME']));
    expect(caps).toContain('CREATE_DELETE_SNAPSHOT');

    // The image a DataVolume names: a qcow2 of a disk with data at both ends and a hole between.
    const disk = Buffer.alloc(SIZE);
    pattern(3 * MiB, 'cdi-disk-head').copy(disk, 0);
    pattern(MiB, 'cdi-disk-tail').copy(disk, SIZE - MiB);
    const rawImage = join(stack.dir, 'disk.raw');
    const qcow = join(stack.dir, 'disk.qcow2');
    await writeFile(rawImage, disk);
    execFileSync('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', rawImage, qcow]);

    // The importer's target: a block PVC (volumeMode: Block), published and staged as a raw device.
    const target = name('pvc-dv');
    const created = await ctl.CreateVolume({
      name: target,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(SIZE) },
    });
    expect(created.volume!.volume_id).toBe(target);
    const staged = await stageVolume(stack, target, blockCap());
    // What the importer pod runs onto its device (/dev/cdi-block-volume there): qemu-img, O_DIRECT.
    execFileSync('qemu-img', ['convert', '-t', 'none', '-f', 'qcow2', '-O', 'raw', qcow, staged.target]);
    expect(await sha256File(staged.target, SIZE)).toBe(sha256(disk));
    await unstageVolume(stack, staged);

    // csi-clone strategy: CreateVolume with the PVC as its content source.
    const clone = name('pvc-clone');
    const cloned = await ctl.CreateVolume({
      name: clone,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(SIZE) },
      volume_content_source: { volume: { volume_id: target } },
    });
    expect(cloned.volume!.content_source?.volume?.volume_id).toBe(target);
    expect(cloned.volume!.volume_context).toMatchObject({ 'sdshypervisor.io/contentOrigin': 'volume' });

    // A volume filled from an image is never formatted: staged as a filesystem it is refused, data intact.
    // (kubelet hands NodeStage the PV's volume_context, which CreateVolume answered.)
    const nodeId = (await stack.csi.node.NodeGetInfo({})).node_id;
    const fsCap = mountCap('ext4');
    const { publish_context } = await ctl.ControllerPublishVolume({
      volume_id: clone,
      node_id: nodeId,
      volume_capability: fsCap,
    });
    const asFs = await failure(
      stack.csi.node.NodeStageVolume({
        volume_id: clone,
        staging_target_path: join(stack.dir, 'kubelet', clone, 'fs-staging'),
        volume_capability: fsCap,
        publish_context,
        volume_context: cloned.volume!.volume_context,
      }),
    );
    expect(asFs.codeName).toBe('FAILED_PRECONDITION');
    expect(asFs.message).toMatch(/never formatted/);
    await ctl.ControllerUnpublishVolume({ volume_id: clone, node_id: nodeId });

    const clonedStaged = await stageVolume(stack, clone, blockCap());
    expect(await sha256File(clonedStaged.target, SIZE)).toBe(sha256(disk));
    await unstageVolume(stack, clonedStaged);

    // snapshot strategy (smart clone): VolumeSnapshot of the PVC, then a PVC restored from it.
    const { snapshot } = await ctl.CreateSnapshot({ name: name('snap-dv'), source_volume_id: target });
    const restored = name('pvc-restored');
    await ctl.CreateVolume({
      name: restored,
      volume_capabilities: [blockCap()],
      capacity_range: { required_bytes: String(SIZE) },
      volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } },
    });
    await ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
    const restoredStaged = await stageVolume(stack, restored, blockCap());
    expect(await sha256File(restoredStaged.target, SIZE)).toBe(sha256(disk));
    await unstageVolume(stack, restoredStaged);

    // The VBS-side import of the extended level is not there: a class's imageSource says so, nothing made.
    const viaClass = await failure(
      ctl.CreateVolume({
        name: name('pvc-image'),
        volume_capabilities: [blockCap()],
        capacity_range: { required_bytes: String(SIZE) },
        parameters: { imageSource: rawImage },
      }),
    );
    expect(viaClass.codeName).toBe('FAILED_PRECONDITION');
    expect(viaClass.message).toMatch(/IMPORT_IMAGE_REQ: not offered by a VBS of the original protocol level/);

    for (const id of [restored, clone, target]) await ctl.DeleteVolume({ volume_id: id });
    expect(poolFiles(stack.emulatorDataDir)).toEqual({ volumes: [], snapshots: [], tmp: [] });
  });
});
