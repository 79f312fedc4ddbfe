// A published raw block volume whose loop device vanishes behind the driver's back, in the real stack and on
// the loop stand-in. This file runs alone, after every other file (vitest.config.ts, the `alone` project): the
// detach frees a loop number that a test running beside it would be given while this publish's device node
// still names it — the other test then sees this publish as a user of its own device, and this one sees that
// test's volume at its path.
import { execFileSync } from 'node:child_process';
import { mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { devicePathOf, splitDeviceNumber } from '../src/mount/index.js';
import { LoopConnector } from './support/loop-connector.js';
import { sh } from './support/loop-fixtures.js';
import { blockCap, useLoopNode, volumeRequests } from './support/node-harness.js';
import { startStack, type Stack } from './support/stack.js';

const MiB = 1024 * 1024;

describe('node service in the real stack: a device that vanished', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ mode: 'all', level: 'extended', pools: ['pool0:2G'] });
  });
  afterAll(async () => {
    await stack?.stop(); // fails the file if a mount or loop device is left in its dir
  });

  it('a block volume whose device vanished: condition abnormal, then unpublish and unstage OK', async () => {
    const { controller: ctl, node } = stack.csi;
    const nodeId = (await node.NodeGetInfo({})).node_id;
    const cap = blockCap();
    const { volume } = await ctl.CreateVolume({
      name: 'pvc-vanished',
      volume_capabilities: [cap],
      capacity_range: { required_bytes: String(64 * MiB) },
    });
    const volumeId = volume!.volume_id;
    const { publish_context } = await ctl.ControllerPublishVolume({
      volume_id: volumeId,
      node_id: nodeId,
      volume_capability: cap,
    });
    const dir = join(stack.dir, 'kubelet', 'pvc-vanished');
    await mkdir(join(dir, 'pods'), { recursive: true });
    const staging = join(dir, 'globalmount');
    await node.NodeStageVolume({
      volume_id: volumeId,
      staging_target_path: staging,
      volume_capability: cap,
      publish_context,
    });
    const target = join(dir, 'pods', 'dev');
    await node.NodePublishVolume({
      volume_id: volumeId,
      staging_target_path: staging,
      target_path: target,
      volume_capability: cap,
    });
    const device = (await devicePathOf(splitDeviceNumber((await stat(target)).rdev)))!;
    expect(device).toMatch(/^\/dev\/loop\d+$/);
    execFileSync('losetup', ['--detach', device]);
    const stats = await node.NodeGetVolumeStats({ volume_id: volumeId, volume_path: target });
    expect(stats.volume_condition?.abnormal).toBe(true);
    await node.NodeUnpublishVolume({ volume_id: volumeId, target_path: target });
    await node.NodeUnstageVolume({ volume_id: volumeId, staging_target_path: staging });
    await ctl.ControllerUnpublishVolume({ volume_id: volumeId, node_id: nodeId });
    await ctl.DeleteVolume({ volume_id: volumeId });
    expect((await ctl.ListVolumes({})).entries.map((e) => e.volume?.volume_id)).not.toContain(volumeId);
  });
});

describe('node service on the loop stand-in: a device that vanished', () => {
  const loop = useLoopNode('node-vanished', (f) => new LoopConnector(f));

  it('block volume whose loop device is detached behind our back: condition abnormal (size 0), unpublish and unstage OK', async () => {
    await loop.connector.create('c-vanished-blk', 64 * MiB);
    const staging = loop.fx.path('c-vanished-blk-staging');
    await mkdir(staging);
    const cap = blockCap();
    const vanished = volumeRequests(() => loop.h.node, 'c-vanished-blk');
    await vanished.stage(staging, cap);
    const target = loop.fx.path('c-vanished-blk-pod', 'dev');
    await vanished.publish(staging, target, cap);
    sh('losetup', ['--detach', (await loop.connector.queryDevice('c-vanished-blk'))!]);
    const stats = await loop.h.node.NodeGetVolumeStats({ volume_id: 'c-vanished-blk', volume_path: target });
    expect(stats.volume_condition).toMatchObject({
      abnormal: true,
      message: expect.stringMatching(/size 0|no longer attached/),
    });
    await vanished.unpublish(target);
    await vanished.unstage(staging);
    await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
