// The node service end to end over its real gRPC socket, with real loop devices, filesystems and mounts.
// The connector is the loop stand-in (test/support/loop-connector.ts); node-stack.test.ts runs the same
// life against the emulator through the real KV connector.
import { mkdir, open, readFile, stat, writeFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { KvConnector } from '../src/connector/index.js';

import { LoopConnector } from './support/loop-connector.js';
import { hasCapSysResource, sh } from './support/loop-fixtures.js';
import { blockCap, codeOf, dfSize, mountAt, mountCap, startNodeServer, useLoopNode } from './support/node-harness.js';

const MiB = 1024 * 1024;

describe('node service over gRPC', () => {
  const loop = useLoopNode('node-svc', (f) => new LoopConnector(f));

  it('advertises its capabilities and identity', async () => {
    const caps = await loop.h.node.NodeGetCapabilities({});
    expect(caps.capabilities.map((c) => c.rpc?.type).sort()).toEqual(
      [
        'EXPAND_VOLUME',
        'GET_VOLUME_STATS',
        'SINGLE_NODE_MULTI_WRITER',
        'STAGE_UNSTAGE_VOLUME',
        'VOLUME_CONDITION',
      ].sort(),
    );
    const info = await loop.h.node.NodeGetInfo({});
    expect(info).toMatchObject({ node_id: 'host-a', max_volumes_per_node: '16' });
    expect(info.accessible_topology?.segments).toEqual({ 'topology.sdshypervisor.io/host': 'host-a' });
  });

  it('NodeGetInfo asks the VBS for the host id once, and adds the Node labels to the topology', async () => {
    let asked = 0;
    const backend = {
      systemInfo: async () => {
        asked++;
        return { product: 'SDSHypervisor', version: 'x', apiVersion: '2', hostId: 'host-from-vbs', capabilities: [] };
      },
    };
    const other = await startNodeServer(loop.fx.path('info.sock'), {
      connector: loop.connector,
      backend,
      maxVolumesPerNode: 7,
      topologyLabels: async () => ({
        'topology.kubernetes.io/zone': 'zone-1',
        'topology.sdshypervisor.io/host': 'spoofed',
      }),
    });
    try {
      for (let i = 0; i < 3; i++) {
        const info = await other.node.NodeGetInfo({});
        expect(info).toMatchObject({ node_id: 'host-from-vbs', max_volumes_per_node: '7' });
        expect(info.accessible_topology?.segments).toEqual({
          'topology.kubernetes.io/zone': 'zone-1',
          'topology.sdshypervisor.io/host': 'host-from-vbs',
        });
      }
      expect(asked).toBe(1);
    } finally {
      await other.stop();
    }
    const noHost = await startNodeServer(loop.fx.path('nohost.sock'), { connector: loop.connector });
    try {
      expect(await codeOf(noHost.node.NodeGetInfo({}))).toBe('FAILED_PRECONDITION');
    } finally {
      await noHost.stop();
    }
  });

  it('with the real KV connector and no sds_cli installed, stage says so (FAILED_PRECONDITION)', async () => {
    const kv = await startNodeServer(loop.fx.path('kv.sock'), {
      connector: new KvConnector({ cliPath: loop.fx.path('no-such-sds_cli') }),
      hostId: 'host-a',
    });
    try {
      const err = await kv.node
        .NodeStageVolume({
          volume_id: 'pvc-x',
          staging_target_path: loop.fx.path('kv-staging'),
          volume_capability: mountCap('ext4'),
        })
        .catch((e: Error) => e);
      expect(err).toMatchObject({ code: 9, details: expect.stringContaining('sds_cli not found') });
    } finally {
      await kv.stop();
    }
  });

  for (const fsType of ['ext4', 'xfs'] as const) {
    it(`${fsType}: stage (formats), two publishes (rw, ro), stats, online expand, unpublish, unstage — each repeated`, async () => {
      const vol = `vol-${fsType}`;
      const image = await loop.connector.create(vol, 320 * MiB);
      const staging = loop.fx.path(`${vol}-staging`);
      await mkdir(staging);
      const t1 = loop.fx.path(`${vol}-pod1`, 'mount');
      const t2 = loop.fx.path(`${vol}-pod2`, 'mount');
      await mkdir(loop.fx.path(`${vol}-pod1`));
      await mkdir(loop.fx.path(`${vol}-pod2`));
      const cap = mountCap(fsType, 'SINGLE_NODE_MULTI_WRITER', ['noatime']);
      const stageReq = { volume_id: vol, staging_target_path: staging, volume_capability: cap };

      await loop.h.node.NodeStageVolume(stageReq);
      await loop.h.node.NodeStageVolume(stageReq);
      const staged = await mountAt(staging);
      expect(staged).toMatchObject({ fsType, source: await loop.connector.queryDevice(vol) });
      expect(staged!.options).toContain('noatime');
      if (fsType === 'xfs') expect(staged!.superOptions).toContain('nouuid');
      const other = fsType === 'ext4' ? 'xfs' : 'ext4';
      expect(
        await codeOf(
          loop.h.node.NodeStageVolume({ ...stageReq, volume_capability: mountCap(other, 'SINGLE_NODE_MULTI_WRITER') }),
        ),
      ).toBe('ALREADY_EXISTS');
      expect(
        await codeOf(
          loop.h.node.NodeStageVolume({ ...stageReq, volume_capability: blockCap('SINGLE_NODE_MULTI_WRITER') }),
        ),
      ).toBe('ALREADY_EXISTS');

      const pub1 = {
        volume_id: vol,
        staging_target_path: staging,
        target_path: t1,
        volume_capability: cap,
        readonly: false,
      };
      const pub2 = { ...pub1, target_path: t2, readonly: true };
      await loop.h.node.NodePublishVolume(pub1);
      await loop.h.node.NodePublishVolume(pub1);
      await writeFile(`${t1}/hello.txt`, `hello from ${fsType}`);
      await loop.h.node.NodePublishVolume(pub2);
      await loop.h.node.NodePublishVolume(pub2);
      expect(await readFile(`${t2}/hello.txt`, 'utf8')).toBe(`hello from ${fsType}`);
      await expect(writeFile(`${t2}/nope.txt`, 'x')).rejects.toMatchObject({ code: 'EROFS' });
      expect(await codeOf(loop.h.node.NodePublishVolume({ ...pub2, readonly: false }))).toBe('ALREADY_EXISTS');
      expect(
        await codeOf(
          loop.h.node.NodePublishVolume({ ...pub1, volume_capability: blockCap('SINGLE_NODE_MULTI_WRITER') }),
        ),
      ).toBe('ALREADY_EXISTS');
      // The spec's matrix: a one-target mode may not publish to a second target on this node.
      expect(
        await codeOf(
          loop.h.node.NodePublishVolume({
            ...pub1,
            target_path: loop.fx.path(`${vol}-pod3`),
            volume_capability: mountCap(fsType, 'SINGLE_NODE_SINGLE_WRITER'),
          }),
        ),
      ).toBe('FAILED_PRECONDITION');

      const stats = await loop.h.node.NodeGetVolumeStats({
        volume_id: vol,
        volume_path: t1,
        staging_target_path: staging,
      });
      const bytes = stats.usage.find((u) => u.unit === 'BYTES')!;
      const inodes = stats.usage.find((u) => u.unit === 'INODES')!;
      expect(Number(bytes.total)).toBeGreaterThan(200 * MiB);
      expect(Number(bytes.used) + Number(bytes.available)).toBeLessThanOrEqual(Number(bytes.total));
      expect(Number(inodes.total)).toBeGreaterThan(1000);
      expect(Number(inodes.used)).toBeGreaterThan(0);
      expect(stats.volume_condition).toEqual({ abnormal: false, message: 'filesystem mounted and healthy' });

      // Online expand: the back end grows the device, then the CO calls NodeExpandVolume.
      const before = dfSize(t1);
      const device = (await loop.connector.queryDevice(vol))!;
      await loop.fx.grow(image, device, 640 * MiB);
      const expandReq = {
        volume_id: vol,
        volume_path: t1,
        staging_target_path: staging,
        volume_capability: cap,
        capacity_range: { required_bytes: String(640 * MiB), limit_bytes: '0' },
      };
      if (fsType === 'ext4' && !hasCapSysResource()) {
        // This sandbox drops CAP_SYS_RESOURCE, which the kernel needs for an online ext4 resize: the RPC says
        // so (FAILED_PRECONDITION: cannot grow in this state), and the next stage grows it offline.
        const err = await loop.h.node.NodeExpandVolume(expandReq).catch((e: Error) => e);
        expect(err).toMatchObject({ code: 9, details: expect.stringContaining('CAP_SYS_RESOURCE') });
        expect(dfSize(t1)).toBe(before);
      } else {
        const expanded = await loop.h.node.NodeExpandVolume(expandReq);
        expect(expanded.capacity_bytes).toBe(String(640 * MiB));
        expect(dfSize(t1)).toBeGreaterThan(before + 250 * MiB);
        expect(dfSize(t2)).toBe(dfSize(t1));
        expect((await loop.h.node.NodeExpandVolume(expandReq)).capacity_bytes).toBe(String(640 * MiB));
      }
      expect(
        await codeOf(
          loop.h.node.NodeExpandVolume({
            ...expandReq,
            capacity_range: { required_bytes: '0', limit_bytes: String(320 * MiB) },
          }),
        ),
      ).toBe('OUT_OF_RANGE');

      expect(await codeOf(loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging }))).toBe(
        'FAILED_PRECONDITION',
      );
      for (const target of [t1, t2]) {
        await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
        await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
        await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
      }

      if (fsType === 'ext4' && !hasCapSysResource()) {
        // Restage: the filesystem grows offline before it is mounted.
        await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
        await loop.h.node.NodeStageVolume(stageReq);
        expect(dfSize(staging)).toBeGreaterThan(before + 250 * MiB);
        expect(await readFile(`${staging}/hello.txt`, 'utf8')).toBe(`hello from ${fsType}`);
      }

      await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
      await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
      expect(await mountAt(staging)).toBeUndefined();
      expect(await loop.connector.queryDevice(vol)).toBeUndefined();
    });
  }

  it('block: stage attaches, publish binds the device onto a file, data goes through, stats, expand, cleanup', async () => {
    const vol = 'vol-block';
    const image = await loop.connector.create(vol, 64 * MiB);
    const staging = loop.fx.path(`${vol}-staging`);
    await mkdir(staging);
    const t1 = loop.fx.path(`${vol}-pods`, 'pod1');
    const t2 = loop.fx.path(`${vol}-pods`, 'pod2');
    const cap = blockCap('SINGLE_NODE_MULTI_WRITER');
    const stageReq = { volume_id: vol, staging_target_path: staging, volume_capability: cap };
    await loop.h.node.NodeStageVolume(stageReq);
    await loop.h.node.NodeStageVolume(stageReq);
    expect(await mountAt(staging)).toBeUndefined();
    const device = (await loop.connector.queryDevice(vol))!;
    expect(device).toMatch(/^\/dev\/loop\d+$/);

    const pub = {
      volume_id: vol,
      staging_target_path: staging,
      target_path: t1,
      volume_capability: cap,
      readonly: false,
    };
    await loop.h.node.NodePublishVolume(pub);
    await loop.h.node.NodePublishVolume(pub);
    await loop.h.node.NodePublishVolume({ ...pub, target_path: t2, readonly: true });
    const [published, dev] = await Promise.all([stat(t1), stat(device)]);
    expect(published.isBlockDevice()).toBe(true);
    expect(published.rdev).toBe(dev.rdev);
    expect(await codeOf(loop.h.node.NodePublishVolume({ ...pub, target_path: t2, readonly: false }))).toBe(
      'ALREADY_EXISTS',
    );
    expect(
      await codeOf(
        loop.h.node.NodePublishVolume({ ...pub, volume_capability: mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER') }),
      ),
    ).toBe('ALREADY_EXISTS');
    // Staged as block: a filesystem publish elsewhere has nothing staged to bind.
    expect(
      await codeOf(
        loop.h.node.NodePublishVolume({
          ...pub,
          target_path: loop.fx.path(`${vol}-fs-pod`),
          volume_capability: mountCap('ext4', 'SINGLE_NODE_MULTI_WRITER'),
        }),
      ),
    ).toBe('FAILED_PRECONDITION');
    // A one-target access mode may not add a second block publish on this node.
    expect(
      await codeOf(
        loop.h.node.NodePublishVolume({
          ...pub,
          target_path: loop.fx.path(`${vol}-pods`, 'pod3'),
          volume_capability: blockCap('SINGLE_NODE_WRITER'),
        }),
      ),
    ).toBe('FAILED_PRECONDITION');

    const block = Buffer.alloc(4096, 0x5a);
    const out = await open(t1, 'r+');
    await out.write(block, 0, block.length, 8192);
    await out.sync();
    await out.close();
    const back = Buffer.alloc(4096);
    const inp = await open(device, 'r');
    await inp.read(back, 0, back.length, 8192);
    await inp.close();
    expect(back.equals(block)).toBe(true);

    const stats = await loop.h.node.NodeGetVolumeStats({ volume_id: vol, volume_path: t1 });
    expect(stats.usage).toEqual([{ unit: 'BYTES', total: String(64 * MiB), available: '0', used: '0' }]);
    expect(stats.volume_condition?.abnormal).toBe(false);

    await loop.fx.grow(image, device, 128 * MiB);
    const expanded = await loop.h.node.NodeExpandVolume({
      volume_id: vol,
      volume_path: t1,
      capacity_range: { required_bytes: String(128 * MiB), limit_bytes: '0' },
    });
    expect(expanded.capacity_bytes).toBe(String(128 * MiB));

    for (const target of [t1, t2]) {
      await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
      await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
      await expect(stat(target)).rejects.toMatchObject({ code: 'ENOENT' });
    }
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
    expect(await loop.connector.queryDevice(vol)).toBeUndefined();
  });

  it('reader-only access modes stage read-only without replaying the journal; a blank volume cannot stage read-only', async () => {
    for (const fsType of ['ext4', 'xfs'] as const) {
      const vol = `vol-ro-${fsType}`;
      const staging = loop.fx.path(`${vol}-staging`);
      await mkdir(staging);
      await loop.connector.create(vol, 320 * MiB);
      const roCap = mountCap(fsType, 'MULTI_NODE_READER_ONLY');
      expect(
        await codeOf(
          loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: roCap }),
        ),
      ).toBe('FAILED_PRECONDITION');
      // Write something once, as a writer would have.
      await loop.h.node.NodeStageVolume({
        volume_id: vol,
        staging_target_path: staging,
        volume_capability: mountCap(fsType),
      });
      await writeFile(`${staging}/data`, 'seed');
      await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });

      await loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: roCap });
      const m = await mountAt(staging);
      expect(m!.options).toContain('ro');
      expect(m!.superOptions).toContain('norecovery'); // the kernel shows ext4's noload as norecovery too
      expect(await readFile(`${staging}/data`, 'utf8')).toBe('seed');
      // Same path, read-write asked now: incompatible.
      expect(
        await codeOf(
          loop.h.node.NodeStageVolume({
            volume_id: vol,
            staging_target_path: staging,
            volume_capability: mountCap(fsType),
          }),
        ),
      ).toBe('ALREADY_EXISTS');
      const target = loop.fx.path(`${vol}-pod`);
      await loop.h.node.NodePublishVolume({
        volume_id: vol,
        staging_target_path: staging,
        target_path: target,
        volume_capability: roCap,
        readonly: false,
      });
      await expect(writeFile(`${target}/x`, 'x')).rejects.toMatchObject({ code: 'EROFS' });
      await loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: target });
      await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
    }
  });

  it('the publish_context of a read-only mapping stages read-only', async () => {
    const vol = 'vol-mapped-ro';
    const staging = loop.fx.path(`${vol}-staging`);
    await loop.connector.create(vol, 64 * MiB);
    await loop.h.node.NodeStageVolume({
      volume_id: vol,
      staging_target_path: staging,
      volume_capability: mountCap('ext4'),
    });
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
    await loop.h.node.NodeStageVolume({
      volume_id: vol,
      staging_target_path: staging,
      volume_capability: mountCap('ext4'),
      publish_context: { 'sdshypervisor.io/access-mode': 'ro' },
    });
    expect((await mountAt(staging))!.options).toContain('ro');
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
  });

  it('never formats a volume holding another filesystem: FAILED_PRECONDITION naming both', async () => {
    const vol = 'vol-mismatch';
    const image = await loop.connector.create(vol, 320 * MiB);
    sh('mkfs.xfs', ['-q', image]);
    const staging = loop.fx.path(`${vol}-staging`);
    const err = await loop.h.node
      .NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: mountCap('ext4') })
      .catch((e: Error) => e);
    expect(err).toMatchObject({ code: 9, details: expect.stringMatching(/xfs.*ext4/) });
    expect(sh('blkid', ['-p', '-o', 'value', '-s', 'TYPE', image]).trim()).toBe('xfs');
    expect(await mountAt(staging)).toBeUndefined();
    // fs_type from volume_context when the capability names none
    await loop.h.node.NodeStageVolume({
      volume_id: vol,
      staging_target_path: staging,
      volume_capability: mountCap(''),
      volume_context: { fsType: 'xfs' },
    });
    expect((await mountAt(staging))!.fsType).toBe('xfs');
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
  });

  it('answers bad and unknown requests with the spec codes', async () => {
    const vol = 'vol-errors';
    await loop.connector.create(vol, 64 * MiB);
    const staging = loop.fx.path(`${vol}-staging`);
    const cap = mountCap('ext4');
    const missing: Array<[string, Promise<unknown>]> = [
      ['stage: volume_id', loop.h.node.NodeStageVolume({ staging_target_path: staging, volume_capability: cap })],
      ['stage: staging path', loop.h.node.NodeStageVolume({ volume_id: vol, volume_capability: cap })],
      ['stage: capability', loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging })],
      [
        'stage: access mode',
        loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: { mount: {} } }),
      ],
      [
        'stage: access type',
        loop.h.node.NodeStageVolume({
          volume_id: vol,
          staging_target_path: staging,
          volume_capability: { access_mode: { mode: 'SINGLE_NODE_WRITER' } },
        }),
      ],
      [
        'stage: relative path',
        loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: 'relative/dir', volume_capability: cap }),
      ],
      [
        'stage: fs type',
        loop.h.node.NodeStageVolume({
          volume_id: vol,
          staging_target_path: staging,
          volume_capability: mountCap('btrfs'),
        }),
      ],
      [
        'stage: mount flag',
        loop.h.node.NodeStageVolume({
          volume_id: vol,
          staging_target_path: staging,
          volume_capability: mountCap('ext4', 'SINGLE_NODE_WRITER', ['ro,remount']),
        }),
      ],
      ['unstage: volume_id', loop.h.node.NodeUnstageVolume({ staging_target_path: staging })],
      ['unstage: path', loop.h.node.NodeUnstageVolume({ volume_id: vol })],
      [
        'publish: volume_id',
        loop.h.node.NodePublishVolume({
          staging_target_path: staging,
          target_path: loop.fx.path('t'),
          volume_capability: cap,
        }),
      ],
      [
        'publish: target',
        loop.h.node.NodePublishVolume({ volume_id: vol, staging_target_path: staging, volume_capability: cap }),
      ],
      [
        'publish: capability',
        loop.h.node.NodePublishVolume({ volume_id: vol, staging_target_path: staging, target_path: loop.fx.path('t') }),
      ],
      ['unpublish: volume_id', loop.h.node.NodeUnpublishVolume({ target_path: loop.fx.path('t') })],
      ['unpublish: target', loop.h.node.NodeUnpublishVolume({ volume_id: vol })],
      ['stats: volume_id', loop.h.node.NodeGetVolumeStats({ volume_path: staging })],
      ['stats: path', loop.h.node.NodeGetVolumeStats({ volume_id: vol })],
      ['expand: volume_id', loop.h.node.NodeExpandVolume({ volume_path: staging })],
      ['expand: path', loop.h.node.NodeExpandVolume({ volume_id: vol })],
      [
        'expand: negative-looking size',
        loop.h.node.NodeExpandVolume({
          volume_id: vol,
          volume_path: staging,
          capacity_range: { required_bytes: '10', limit_bytes: '5' },
        }),
      ],
      [
        'expand: a mount capability shared by several writers',
        loop.h.node.NodeExpandVolume({
          volume_id: vol,
          volume_path: staging,
          volume_capability: mountCap('ext4', 'MULTI_NODE_MULTI_WRITER'),
        }),
      ],
    ];
    for (const [what, call] of missing) expect([what, await codeOf(call)]).toEqual([what, 'INVALID_ARGUMENT']);

    expect(
      await codeOf(
        loop.h.node.NodeStageVolume({
          volume_id: vol,
          staging_target_path: staging,
          volume_capability: mountCap('ext4', 'MULTI_NODE_MULTI_WRITER'),
        }),
      ),
    ).toBe('FAILED_PRECONDITION');
    // Something else (a tmpfs) mounted at the staging path is not ours to remove.
    await mkdir(staging, { recursive: true });
    sh('mount', ['-t', 'tmpfs', 'tmpfs', staging]);
    expect(
      await codeOf(
        loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: cap }),
      ),
    ).toBe('ALREADY_EXISTS');
    sh('umount', [staging]);
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });
    expect(
      await codeOf(
        loop.h.node.NodeStageVolume({
          volume_id: 'no-such-volume',
          staging_target_path: staging,
          volume_capability: cap,
        }),
      ),
    ).toBe('NOT_FOUND');
    expect(
      await codeOf(
        loop.h.node.NodeStageVolume({ volume_id: '../etc', staging_target_path: staging, volume_capability: cap }),
      ),
    ).toBe('NOT_FOUND');
    loop.connector.unmapped.add(vol);
    const notMapped = await loop.h.node
      .NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: cap })
      .catch((e: Error) => e);
    expect(notMapped).toMatchObject({ code: 9, details: expect.stringContaining('ControllerPublishVolume') });
    loop.connector.unmapped.delete(vol);

    // Publish before stage, or without a staging path.
    const target = loop.fx.path(`${vol}-pod`);
    expect(
      await codeOf(
        loop.h.node.NodePublishVolume({
          volume_id: vol,
          staging_target_path: staging,
          target_path: target,
          volume_capability: cap,
        }),
      ),
    ).toBe('FAILED_PRECONDITION');
    expect(
      await codeOf(loop.h.node.NodePublishVolume({ volume_id: vol, target_path: target, volume_capability: cap })),
    ).toBe('FAILED_PRECONDITION');
    await loop.h.node.NodeStageVolume({ volume_id: vol, staging_target_path: staging, volume_capability: cap });
    // A symlinked target is refused, never followed.
    const { symlink } = await import('node:fs/promises');
    await symlink('/etc', loop.fx.path('evil-link'));
    expect(
      await codeOf(
        loop.h.node.NodePublishVolume({
          volume_id: vol,
          staging_target_path: staging,
          target_path: loop.fx.path('evil-link'),
          volume_capability: cap,
        }),
      ),
    ).toBe('INVALID_ARGUMENT');
    await loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: staging });

    // Unknown paths: unpublish/unstage are OK, stats and expand NOT_FOUND; unknown volume on unstage NOT_FOUND.
    expect(
      await codeOf(loop.h.node.NodeUnpublishVolume({ volume_id: vol, target_path: loop.fx.path('never-published') })),
    ).toBe('OK');
    expect(
      await codeOf(
        loop.h.node.NodeUnstageVolume({ volume_id: vol, staging_target_path: loop.fx.path('never-staged') }),
      ),
    ).toBe('OK');
    expect(
      await codeOf(
        loop.h.node.NodeUnstageVolume({
          volume_id: 'no-such-volume',
          staging_target_path: loop.fx.path('never-staged'),
        }),
      ),
    ).toBe('NOT_FOUND');
    expect(
      await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: vol, volume_path: loop.fx.path('never-published') })),
    ).toBe('NOT_FOUND');
    expect(await codeOf(loop.h.node.NodeGetVolumeStats({ volume_id: vol, volume_path: loop.fx.dir }))).toBe(
      'NOT_FOUND',
    );
    expect(
      await codeOf(loop.h.node.NodeExpandVolume({ volume_id: vol, volume_path: loop.fx.path('never-published') })),
    ).toBe('NOT_FOUND');
  });
});
