// The node service in the real stack: the driver process (--mode=all) and the emulator process, the real
// KV connector running the C sds_cli, real loop devices and mounts, driven over the CSI socket the way
// kubelet and the attacher do. stack.stop() fails the file if a mount or loop device is left in its dir.
// The node suite runs on both protocol levels: on the original one the controller maps nothing and the node
// attaches with sds_cli alone, as os-brick did (docs/protocol-levels.md).
import { execFileSync } from 'node:child_process';
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { VolumeCapability } from '../src/generated/csi/v1/VolumeCapability.js';
import { failure, type ControllerApi, type NodeApi } from './support/csi-client.js';
import { hasCapSysResource } from './support/loop-fixtures.js';
import { FakeKubeApi, writeKubeconfig } from './support/fake-kube-api.js';
import { blockCap, dfSize, mountCap } from './support/node-harness.js';
import { startStack, type Stack, type StackLevel } from './support/stack.js';

const MiB = 1024 * 1024;
function mountsAt(path: string): string[] {
  return execFileSync('findmnt', ['--noheadings', '--output', 'FSTYPE', '--mountpoint', path], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean);
}
function findmntOrEmpty(path: string): string[] {
  try {
    return mountsAt(path);
  } catch {
    return [];
  }
}

let stack: Stack;
let ctl: ControllerApi;
let node: NodeApi;
let nodeId: string;
let seq = 0;

/** The extended stack: the first level's suite and the --mode=node tests use it. */
let extended: Stack;

async function use(s: Stack): Promise<void> {
  stack = s;
  ctl = s.csi.controller;
  node = s.csi.node;
  nodeId = (await node.NodeGetInfo({})).node_id;
}

beforeAll(async () => {
  extended = await startStack({ mode: 'all', level: 'extended', pools: ['pool0:8G'] });
  await use(extended);
});
afterAll(async () => {
  await extended?.stop();
});

/** A volume created and published to this node, as the provisioner and the attacher leave it for kubelet. */
async function attachedVolume(cap: VolumeCapability, bytes = 320 * MiB, parameters: Record<string, string> = {}) {
  const name = `pvc-node-${process.pid}-${++seq}`;
  const { volume } = await ctl.CreateVolume({
    name,
    volume_capabilities: [cap],
    capacity_range: { required_bytes: String(bytes) },
    parameters,
  });
  const { publish_context } = await ctl.ControllerPublishVolume({
    volume_id: volume!.volume_id,
    node_id: nodeId,
    volume_capability: cap,
  });
  const dir = join(stack.dir, 'kubelet', name);
  await mkdir(join(dir, 'pods'), { recursive: true });
  return {
    id: volume!.volume_id,
    context: volume!.volume_context,
    publish_context,
    staging: join(dir, 'globalmount'),
    dir,
  };
}

/** NodeStageVolume of an attached volume, as kubelet sends it. */
function stageRequest(v: Awaited<ReturnType<typeof attachedVolume>>, cap: VolumeCapability) {
  return {
    volume_id: v.id,
    staging_target_path: v.staging,
    volume_capability: cap,
    publish_context: v.publish_context,
  };
}

async function teardown(v: { id: string; staging: string }, targets: string[]) {
  for (const t of targets) await node.NodeUnpublishVolume({ volume_id: v.id, target_path: t });
  await node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
  await ctl.ControllerUnpublishVolume({ volume_id: v.id, node_id: nodeId });
  await ctl.DeleteVolume({ volume_id: v.id });
}

for (const level of ['extended', 'original'] as const satisfies readonly StackLevel[]) {
  describe(`node service in the real stack (${level} level)`, () => {
    if (level === 'original') {
      let original: Stack | undefined;
      beforeAll(async () => {
        original = await startStack({ mode: 'all', level: 'original', pools: ['pool0:8G'] });
        await use(original);
      });
      afterAll(async () => {
        await original?.stop();
        await use(extended);
      });
    }

    it('NodeGetInfo names the emulator host, which the controller publishes to', async () => {
      const info = await node.NodeGetInfo({});
      expect(info.node_id).toBe(stack.hostId);
      expect(info.accessible_topology?.segments).toEqual({ 'topology.sdshypervisor.io/host': stack.hostId });
    });

    for (const fsType of ['ext4', 'xfs'] as const) {
      it(`${fsType}: stage, two publishes (one read-only), stats, online expand, and back — every call twice`, async () => {
        const cap = mountCap(fsType, 'SINGLE_NODE_MULTI_WRITER');
        const v = await attachedVolume(cap);
        const stageReq = {
          volume_id: v.id,
          staging_target_path: v.staging,
          volume_capability: cap,
          volume_context: v.context,
          publish_context: v.publish_context,
        };
        await node.NodeStageVolume(stageReq);
        await node.NodeStageVolume(stageReq);
        expect(findmntOrEmpty(v.staging)).toEqual([fsType]);
        const [t1, t2] = [join(v.dir, 'pods', 'a'), join(v.dir, 'pods', 'b')];
        const pub = {
          volume_id: v.id,
          staging_target_path: v.staging,
          volume_capability: cap,
          volume_context: v.context,
          publish_context: v.publish_context,
        };
        await node.NodePublishVolume({ ...pub, target_path: t1 });
        await node.NodePublishVolume({ ...pub, target_path: t1 });
        await node.NodePublishVolume({ ...pub, target_path: t2, readonly: true });
        await node.NodePublishVolume({ ...pub, target_path: t2, readonly: true });
        await writeFile(join(t1, 'data.txt'), fsType);
        expect(await readFile(join(t2, 'data.txt'), 'utf8')).toBe(fsType);
        await expect(writeFile(join(t2, 'x'), 'x')).rejects.toMatchObject({ code: 'EROFS' });

        const stats = await node.NodeGetVolumeStats({
          volume_id: v.id,
          volume_path: t1,
          staging_target_path: v.staging,
        });
        expect(stats.usage.map((u) => u.unit).sort()).toEqual(['BYTES', 'INODES']);
        expect(stats.volume_condition).toMatchObject({ abnormal: false });

        const before = dfSize(t1);
        const grown = await ctl.ControllerExpandVolume({
          volume_id: v.id,
          capacity_range: { required_bytes: String(640 * MiB) },
          volume_capability: cap,
        });
        expect(grown).toMatchObject({ capacity_bytes: String(640 * MiB), node_expansion_required: true });
        const expandReq = {
          volume_id: v.id,
          volume_path: t1,
          staging_target_path: v.staging,
          volume_capability: cap,
          capacity_range: { required_bytes: String(640 * MiB) },
        };
        if (fsType === 'ext4' && !hasCapSysResource()) {
          expect(await failure(node.NodeExpandVolume(expandReq))).toMatchObject({
            codeName: 'FAILED_PRECONDITION',
            message: expect.stringContaining('CAP_SYS_RESOURCE'),
          });
        } else {
          expect((await node.NodeExpandVolume(expandReq)).capacity_bytes).toBe(String(640 * MiB));
          expect((await node.NodeExpandVolume(expandReq)).capacity_bytes).toBe(String(640 * MiB));
          expect(dfSize(t1)).toBeGreaterThan(before + 250 * MiB);
        }

        for (const t of [t1, t2]) {
          await node.NodeUnpublishVolume({ volume_id: v.id, target_path: t });
          await node.NodeUnpublishVolume({ volume_id: v.id, target_path: t });
          await expect(stat(t)).rejects.toMatchObject({ code: 'ENOENT' });
        }
        await node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
        await node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
        expect(findmntOrEmpty(v.staging)).toEqual([]);
        if (fsType === 'ext4' && !hasCapSysResource()) {
          // Staged again, the ext4 filesystem grows offline to its device before it is mounted.
          await node.NodeStageVolume(stageReq);
          expect(dfSize(v.staging)).toBeGreaterThan(before + 250 * MiB);
          expect(await readFile(join(v.staging, 'data.txt'), 'utf8')).toBe(fsType);
          await node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
        }
        await ctl.ControllerUnpublishVolume({ volume_id: v.id, node_id: nodeId });
        await ctl.DeleteVolume({ volume_id: v.id });
      });
    }

    it('block: the device at the target carries data; stats give its size; expand needs no filesystem work', async () => {
      const cap = blockCap();
      const v = await attachedVolume(cap, 64 * MiB);
      await node.NodeStageVolume(stageRequest(v, cap));
      const target = join(v.dir, 'pods', 'dev');
      await node.NodePublishVolume({
        volume_id: v.id,
        staging_target_path: v.staging,
        target_path: target,
        volume_capability: cap,
        publish_context: v.publish_context,
      });
      expect((await stat(target)).isBlockDevice()).toBe(true);
      const payload = Buffer.alloc(4096, 7);
      const fd = await open(target, 'r+');
      await fd.write(payload, 0, payload.length, 0);
      await fd.sync();
      const back = Buffer.alloc(4096);
      await fd.read(back, 0, 4096, 0);
      await fd.close();
      expect(back.equals(payload)).toBe(true);
      const stats = await node.NodeGetVolumeStats({ volume_id: v.id, volume_path: target });
      expect(stats.usage).toEqual([{ unit: 'BYTES', total: String(64 * MiB), available: '0', used: '0' }]);
      await ctl.ControllerExpandVolume({
        volume_id: v.id,
        capacity_range: { required_bytes: String(128 * MiB) },
        volume_capability: cap,
      });
      expect(
        (
          await node.NodeExpandVolume({
            volume_id: v.id,
            volume_path: target,
            capacity_range: { required_bytes: String(128 * MiB) },
          })
        ).capacity_bytes,
      ).toBe(String(128 * MiB));
      await teardown(v, [target]);
    });

    it('a restored linked clone mounts beside its source on the same host (xfs nouuid) and reads back the data', async () => {
      const cap = mountCap('xfs');
      const v = await attachedVolume(cap);
      await node.NodeStageVolume(stageRequest(v, cap));
      await writeFile(join(v.staging, 'before-snapshot.txt'), 'kept');
      execFileSync('sync', ['-f', join(v.staging, 'before-snapshot.txt')]);
      const { snapshot } = await ctl.CreateSnapshot({
        name: `snap-node-${process.pid}-${++seq}`,
        source_volume_id: v.id,
      });
      const clone = await ctl.CreateVolume({
        name: `pvc-node-clone-${process.pid}-${++seq}`,
        volume_capabilities: [cap],
        capacity_range: { required_bytes: String(480 * MiB) },
        parameters: { cloneMode: 'linked' },
        volume_content_source: { snapshot: { snapshot_id: snapshot!.snapshot_id } },
      });
      const c = clone.volume!;
      const { publish_context } = await ctl.ControllerPublishVolume({
        volume_id: c.volume_id,
        node_id: nodeId,
        volume_capability: cap,
      });
      const cloneStaging = join(stack.dir, 'kubelet', c.volume_id, 'globalmount');
      await node.NodeStageVolume({
        volume_id: c.volume_id,
        staging_target_path: cloneStaging,
        volume_capability: cap,
        publish_context,
      });
      expect(await readFile(join(cloneStaging, 'before-snapshot.txt'), 'utf8')).toBe('kept');
      // Restored larger than its snapshot: the filesystem was grown to the device at stage.
      expect(dfSize(cloneStaging)).toBeGreaterThan(400 * MiB);
      await teardown({ id: c.volume_id, staging: cloneStaging }, []);
      await ctl.DeleteSnapshot({ snapshot_id: snapshot!.snapshot_id });
      await teardown(v, []);
    });

    // Extended only: the original level has no mapping, so a stage needs no ControllerPublish before it.
    if (level === 'extended')
      it('stage before ControllerPublish → FAILED_PRECONDITION; unknown volume → NOT_FOUND', async () => {
        const cap = mountCap('ext4');
        const { volume } = await ctl.CreateVolume({
          name: `pvc-node-unpublished-${process.pid}`,
          volume_capabilities: [cap],
          capacity_range: { required_bytes: String(64 * MiB) },
        });
        const staging = join(stack.dir, 'kubelet', 'unpublished', 'globalmount');
        expect(
          await failure(
            node.NodeStageVolume({
              volume_id: volume!.volume_id,
              staging_target_path: staging,
              volume_capability: cap,
            }),
          ),
        ).toMatchObject({
          codeName: 'FAILED_PRECONDITION',
          message: expect.stringContaining('ControllerPublishVolume'),
        });
        expect(
          (
            await failure(
              node.NodeStageVolume({
                volume_id: 'pvc-never-created',
                staging_target_path: staging,
                volume_capability: cap,
              }),
            )
          ).codeName,
        ).toBe('NOT_FOUND');
        await ctl.DeleteVolume({ volume_id: volume!.volume_id });
      });

    it('unstage still ends OK when the loop device was detached behind our back', async () => {
      const cap = mountCap('ext4');
      const v = await attachedVolume(cap, 64 * MiB);
      await node.NodeStageVolume(stageRequest(v, cap));
      const device = execFileSync('findmnt', ['--noheadings', '--output', 'SOURCE', '--mountpoint', v.staging], {
        encoding: 'utf8',
      }).trim();
      expect(device).toMatch(/^\/dev\/loop\d+$/);
      execFileSync('losetup', ['--detach', device]); // mounted: the kernel clears it when the mount goes
      await node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
      expect(findmntOrEmpty(v.staging)).toEqual([]);
      await node.NodeUnstageVolume({ volume_id: v.id, staging_target_path: v.staging });
      await ctl.ControllerUnpublishVolume({ volume_id: v.id, node_id: nodeId });
      await ctl.DeleteVolume({ volume_id: v.id });
    });
    // The block volume whose device vanished runs alone: node-vanished-device.alone.test.ts.
  });
}

describe('--mode=node', () => {
  it('NodeGetInfo adds the Node labels named by --topology-labels, read from the Kubernetes API', async () => {
    const tlsDir = join(dirname(fileURLToPath(import.meta.url)), 'support', 'tls');
    const caFile = join(tlsDir, 'fake-kube-api.crt');
    const tls = {
      key: await readFile(join(tlsDir, 'fake-kube-api.key'), 'utf8'),
      cert: await readFile(caFile, 'utf8'),
      caFile,
    };
    const api = await new FakeKubeApi({ token: 'node-token', tls }).start();
    api.addNode({ name: 'worker-7', labels: { 'topology.kubernetes.io/zone': 'zone-c', 'kubernetes.io/os': 'linux' } });
    const kubeconfig = await writeKubeconfig(stack.dir, api.url, 'node-token', { caFile, fileName: 'kubeconfig-node' });
    const labelled = await startStack({
      mode: 'node',
      driverArgs: [
        '--node-name=worker-7',
        '--topology-labels=topology.kubernetes.io/zone,example.com/missing',
        `--kubeconfig=${kubeconfig}`,
      ],
    });
    try {
      const info = await labelled.csi.node.NodeGetInfo({});
      expect(info.accessible_topology?.segments).toEqual({
        'topology.kubernetes.io/zone': 'zone-c',
        'topology.sdshypervisor.io/host': labelled.hostId,
      });
    } finally {
      await labelled.stop();
      await api.stop();
    }
  });

  it('serves identity and node, not the controller', async () => {
    const only = await startStack({ mode: 'node' });
    try {
      expect((await only.csi.node.NodeGetCapabilities({})).capabilities.length).toBe(5);
      expect((await only.csi.node.NodeGetInfo({})).node_id).toBe(only.hostId);
      expect((await failure(only.csi.controller.ControllerGetCapabilities({}))).codeName).toBe('UNIMPLEMENTED');
    } finally {
      await only.stop();
    }
  });
});
